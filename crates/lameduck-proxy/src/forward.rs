//! HTTP mode: a tower service that forwards each request to the app over pooled connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lameduck_settings::proxy_config::UpstreamProtocol;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::ClientAddress;
use crate::metrics::{Failure, ProxyMetrics};
use crate::upstream::{self, PooledBody, RawBody, UpstreamError};
use crate::{headers, tunnel};

/// How long connecting to the app may take before the request gets a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pooled upstream connections idle longer than this are closed by the proxy, before the app's
/// own keep-alive timeout closes them under a request (Node's is 5 s, gunicorn's 2 s).
const POOL_IDLE_TIMEOUT: Duration = upstream::IDLE_TIMEOUT;

/// The body of a forwarded response: the app's, or a 502 written by the proxy.
#[derive(Debug)]
pub struct ForwardBody(BodyKind);

#[derive(Debug)]
enum BodyKind {
    /// From a connection of the lean HTTP/1 pool; reading it drives that connection.
    Pooled(PooledBody),
    /// The response to a bodiless request, read from the connection it came on.
    Raw(RawBody),
    /// From hyper-util's client (h2c, upgrades).
    Client(Incoming),
    /// Written by the proxy.
    Local(Full<Bytes>),
}

/// Why a response body ended early: the upstream exchange failed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        fn boxed<E: std::error::Error + Send + Sync + 'static>(
            frame: Option<Result<Frame<Bytes>, E>>,
        ) -> Option<Result<Frame<Bytes>, BodyError>> {
            frame.map(|result| result.map_err(BodyError::from))
        }
        match &mut self.get_mut().0 {
            BodyKind::Pooled(body) => Pin::new(body).poll_frame(cx).map(boxed),
            BodyKind::Raw(body) => Pin::new(body).poll_frame(cx).map(boxed),
            BodyKind::Client(body) => Pin::new(body).poll_frame(cx).map(boxed),
            BodyKind::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Pooled(body) => body.is_end_stream(),
            BodyKind::Raw(body) => body.is_end_stream(),
            BodyKind::Client(body) => body.is_end_stream(),
            BodyKind::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Pooled(body) => body.size_hint(),
            BodyKind::Raw(body) => body.size_hint(),
            BodyKind::Client(body) => body.size_hint(),
            BodyKind::Local(body) => body.size_hint(),
        }
    }
}

/// Forwards requests to one upstream address: the app, on loopback.
///
/// - Hop-by-hop headers are dropped both ways; `Host` is kept, so the app sees what it saw
///   before the proxy was put in front of it. With [`ClientAddress::XForwardedFor`] the
///   client's address (from [`Forward::for_connection`], or else the request's
///   [`lameduck::PeerAddr`]) is appended to `X-Forwarded-For`.
/// - Upgrades (WebSocket) are passed through: after the app answers 101, the two upgraded
///   connections are spliced until either side closes or `force_close` fires. A WebSocket
///   the app leaves open when it stops gets a `1001 Going Away` close frame from the proxy.
/// - An unreachable app or a failed upstream exchange becomes `502 Bad Gateway`.
///
/// Phase behaviour (`Connection: close`, GOAWAY, idle close) is not here: serve this service
/// with `lameduck::Lameduck::serve`, which applies it to every connection.
#[derive(Clone)]
pub struct Forward {
    inner: Arc<Inner>,
    /// The client's address, when this is one connection's service ([`Forward::for_connection`]).
    client: Option<IpAddr>,
}

struct Inner {
    upstream: SocketAddr,
    upstream_authority: Authority,
    /// `Host` for HTTP/1 requests that name none (HTTP/1.0 clients).
    upstream_host: HeaderValue,
    protocol: UpstreamProtocol,
    /// Whether the client's address is appended to `X-Forwarded-For`.
    forwarded_for: bool,
    /// Plain HTTP/1 requests with a body: hyper connections driven by the requests' own tasks.
    pool: Arc<upstream::Pool>,
    /// Plain HTTP/1 requests without a body (most of them): connections spoken to directly.
    raw: Arc<upstream::RawPool>,
    /// Upgrade handshakes over HTTP/1 (the upgraded connection needs a task of its own).
    http1: Client<Connector, Incoming>,
    h2c: Client<Connector, Incoming>,
    force_close: CancellationToken,
    metrics: ProxyMetrics,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("upstream", &self.inner.upstream)
            .field("protocol", &self.inner.protocol)
            .finish_non_exhaustive()
    }
}

impl Forward {
    /// Forwards to `upstream`, telling it the client's address as `client_address` says (only
    /// [`ClientAddress::XForwardedFor`] does anything in HTTP mode); upgraded tunnels are cut
    /// when `force_close` fires; the 502s it answers itself are counted in `metrics`.
    pub fn new(
        upstream: SocketAddr,
        protocol: UpstreamProtocol,
        client_address: ClientAddress,
        force_close: CancellationToken,
        metrics: ProxyMetrics,
    ) -> Self {
        let connector = Connector { addr: upstream };
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .http2_adaptive_window(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        let upstream_authority = Authority::from_str(&upstream.to_string())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        let upstream_host = HeaderValue::from_str(upstream_authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            inner: Arc::new(Inner {
                upstream,
                upstream_authority,
                upstream_host,
                protocol,
                forwarded_for: client_address == ClientAddress::XForwardedFor,
                pool: Arc::new(upstream::Pool::new(upstream, CONNECT_TIMEOUT)),
                raw: Arc::new(upstream::RawPool::new(upstream, CONNECT_TIMEOUT)),
                http1,
                h2c,
                force_close,
                metrics,
            }),
            client: None,
        }
    }

    /// This service for one client connection, knowing the client's address from the start
    /// instead of from each request's [`lameduck::PeerAddr`] extension, which costs
    /// allocations on every request: `lameduck.serve(listener, forward)
    /// .per_connection(Forward::for_connection)`.
    pub fn for_connection(&self, connection: &lameduck::ConnectionInfo) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            client: connection.peer.map(|peer| peer.ip()),
        }
    }
}

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<ForwardBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(Arc::clone(&self.inner).forward(self.client, req))
    }
}

impl Inner {
    /// Forwards one request. Each async fn's state keeps its own copy of its arguments and the
    /// future is moved several times per request, so the plain HTTP/1 path stays in this fn and
    /// the pool's `send`, and the other paths are boxed.
    async fn forward(
        self: Arc<Self>,
        client: Option<IpAddr>,
        mut req: Request<Incoming>,
    ) -> Result<Response<ForwardBody>, Infallible> {
        if self.forwarded_for {
            let client = client.or_else(|| {
                let peer = req.extensions().get::<lameduck::PeerAddr>()?;
                Some(peer.0.ip())
            });
            if let Some(client) = client {
                headers::forwarded_for(req.headers_mut(), client);
            }
        }
        let upgrade = req.version() < Version::HTTP_2 && headers::wants_upgrade(req.headers());
        let websocket = upgrade && headers::upgrades_to_websocket(req.headers());
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
        let h2 = match self.protocol {
            UpstreamProtocol::Same => req.version() == Version::HTTP_2,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2c => true,
        };
        if h2 || upgrade {
            return Ok(Box::pin(self.forward_via_client(req, h2, downstream, websocket)).await);
        }
        self.prepare_http1(&mut req);
        if req.body().is_end_stream() {
            let response = self.raw.send(&req).await;
            return Ok(self.finish_http1(response.map(|r| r.map(BodyKind::Raw))));
        }
        // Boxed: hyper's exchange is large and would enlarge (and push out of the allocator's
        // small-size cache) the future of every bodiless request.
        let response = Box::pin(self.pool.send(req)).await.map(|mut response| {
            // The short path leaves hop-by-hop fields out as it parses; hyper keeps them.
            headers::strip(response.headers_mut(), false);
            response.map(BodyKind::Pooled)
        });
        Ok(self.finish_http1(response))
    }

    /// h2c and upgrade handshakes, through hyper-util's client.
    async fn forward_via_client(
        &self,
        mut req: Request<Incoming>,
        h2: bool,
        downstream: Option<hyper::upgrade::OnUpgrade>,
        websocket: bool,
    ) -> Response<ForwardBody> {
        let upgrade = downstream.is_some();
        headers::strip(req.headers_mut(), upgrade);

        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let authority = if h2 {
            // HTTP/2 carries the authority as :authority; a Host header that differs from it
            // makes the request malformed (RFC 9113 §8.3.1), so the client's authority moves
            // there. The connector ignores it and always dials the upstream address.
            let host = req
                .headers_mut()
                .remove(header::HOST)
                .and_then(|h| Authority::from_str(h.to_str().ok()?).ok());
            host.or_else(|| req.uri().authority().cloned())
                .unwrap_or_else(|| self.upstream_authority.clone())
        } else {
            // HTTP/1: the Host header travels as is (an h2 client's authority becomes one);
            // the URI only keys the connection pool.
            if !req.headers().contains_key(header::HOST) {
                if let Some(value) = req
                    .uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                {
                    req.headers_mut().insert(header::HOST, value);
                }
            }
            self.upstream_authority.clone()
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(error) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("bad request target: {error}"),
                );
            }
        }
        *req.version_mut() = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };

        let client = if h2 { &self.h2c } else { &self.http1 };
        let mut response = match client.request(req).await {
            Ok(response) => response,
            Err(error) => return self.bad_gateway(&error),
        };
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switched {
            match downstream {
                Some(downstream) => {
                    let upstream = hyper::upgrade::on(&mut response);
                    tunnel::spawn(downstream, upstream, websocket, self.force_close.clone());
                }
                None => return self.unasked_switch(),
            }
        }
        headers::strip(response.headers_mut(), switched);
        response.map(|body| ForwardBody(BodyKind::Client(body)))
    }

    /// Readies a plain HTTP/1 request for the lean pool, where no task but the client
    /// connection's own does the exchange.
    fn prepare_http1(&self, req: &mut Request<Incoming>) {
        headers::strip(req.headers_mut(), false);
        if !req.headers().contains_key(header::HOST) {
            // An h2 client's authority, or (HTTP/1.0 without Host) the upstream's.
            let host = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .unwrap_or_else(|| self.upstream_host.clone());
            req.headers_mut().insert(header::HOST, host);
        }
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            // Absolute-form (an h2 client's, or a proxy-style request): the app gets origin-form.
            let path = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(path);
        }
        *req.version_mut() = Version::HTTP_11;
    }

    fn finish_http1(
        &self,
        response: Result<Response<BodyKind>, UpstreamError>,
    ) -> Response<ForwardBody> {
        match response {
            Ok(response) => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return self.unasked_switch();
                }
                response.map(ForwardBody)
            }
            Err(error) => self.bad_gateway(&error),
        }
    }

    /// A 502 for an exchange with the app that failed; counted in the proxy's metrics.
    fn bad_gateway(&self, error: &(dyn std::error::Error + 'static)) -> Response<ForwardBody> {
        tracing::debug!(upstream = %self.upstream, error = %error_chain(error), "upstream request failed");
        self.metrics.failed(Failure::BadGateway);
        reply(
            StatusCode::BAD_GATEWAY,
            format!(
                "lameduck: upstream {} failed: {}",
                self.upstream,
                error_chain(error)
            ),
        )
    }

    fn unasked_switch(&self) -> Response<ForwardBody> {
        self.metrics.failed(Failure::BadGateway);
        reply(
            StatusCode::BAD_GATEWAY,
            "lameduck: upstream switched protocols without being asked".to_owned(),
        )
    }
}

fn reply(status: StatusCode, text: String) -> Response<ForwardBody> {
    let mut response = Response::new(ForwardBody(BodyKind::Local(Full::new(Bytes::from(
        text + "\n",
    )))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Dials the upstream address whatever the request's authority says.
#[derive(Debug, Clone)]
struct Connector {
    addr: SocketAddr,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr;
        Box::pin(async move { Ok(TokioIo::new(upstream::dial(addr, CONNECT_TIMEOUT).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without running it.
    fn future_size<A, F: Future>(_f: impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request's future is boxed (`Forward::call`); glibc serves blocks up to 1,032
    /// bytes from a per-thread cache, larger ones from slower paths with colder memory.
    #[test]
    fn a_request_future_fits_the_allocators_small_block_cache() {
        let forward = Forward::new(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            UpstreamProtocol::Same,
            ClientAddress::XForwardedFor,
            CancellationToken::new(),
            ProxyMetrics::default(),
        );
        let inner = Arc::clone(&forward.inner);
        let size = future_size(|req: Request<Incoming>| Arc::clone(&inner).forward(None, req));
        assert!(size <= 1024, "a request future is {size} bytes");
    }
}
