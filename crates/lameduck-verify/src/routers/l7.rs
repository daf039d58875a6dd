//! The embedded L7 router: an ingress controller's behaviour.
//!
//! - one endpoint is chosen per *request* (round robin) over pooled keep-alive upstream
//!   connections; a withdrawn endpoint gets no new request;
//! - clients speak HTTP/1.1 or h2c; upstreams get HTTP/1.1, as ingress-nginx does;
//! - an upstream failure (connect refused, reset, closed before the response) becomes a `502`
//!   naming the pod; with `retry`, an idempotent request is retried once on another endpoint
//!   and the response says so (`x-lameduck-retried`), so the report can count it separately;
//! - WebSocket upgrades are tunnelled to the chosen endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::pool::Pool;
use super::{ERROR_HEADER, Endpoint, POD_HEADER, RETRIED_HEADER, RouterError, Table};
use crate::events::RouterId;

type Body = BoxBody<Bytes, hyper::Error>;

/// The ingress-like router.
pub(crate) struct L7Router {
    id: RouterId,
    addr: SocketAddr,
    table: Table,
    retry: bool,
    pool: Arc<Pool>,
    cancel: CancellationToken,
}

impl L7Router {
    pub async fn start(id: RouterId, retry: bool) -> Result<Arc<Self>, RouterError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RouterError::io("l7 bind", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RouterError::io("l7 bind", e))?;

        let router = Arc::new(Self {
            id,
            addr,
            table: Table::default(),
            retry,
            pool: Arc::default(),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(Arc::clone(&router).serve(listener));
        Ok(router)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let cancel = me.cancel.clone();
                let svc = hyper::service::service_fn(move |req| Arc::clone(&me).route(req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                tokio::select! {
                    () = cancel.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let Some(ep) = self.table.pick() else {
            return Ok(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "no-endpoint",
            ));
        };
        if req.headers().contains_key(http::header::UPGRADE) {
            return Ok(self.upgrade(ep, req).await);
        }
        let (parts, body) = req.into_parts();
        let collected = if http_body::Body::is_end_stream(&body) {
            Ok(Bytes::new())
        } else {
            body.collect()
                .await
                .map(http_body_util::Collected::to_bytes)
        };
        let Ok(body) = collected else {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                Some(ep),
                "client-body",
            ));
        };
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        // The retry needs a copy of the request; without retries the parts are moved as they are.
        let copy = (self.retry && idempotent).then(|| upstream_request(&parts, body.clone()));
        let req = Request::from_parts(strip(parts), Full::new(body));
        match self.pool.send(ep.addr, req).await {
            Ok(resp) => Ok(tag(resp, ep, false)),
            Err(e) => {
                if let Some(req) = copy
                    && let Some(ep2) = self.table.pick_other(ep.pod)
                {
                    return Ok(match self.pool.send(ep2.addr, req).await {
                        Ok(resp) => tag(resp, ep2, true),
                        Err(e) => error_response(StatusCode::BAD_GATEWAY, Some(ep2), e.name()),
                    });
                }
                tracing::debug!(
                    router = self.id,
                    pod = ep.pod,
                    "upstream failure: {}",
                    e.name()
                );
                Ok(error_response(StatusCode::BAD_GATEWAY, Some(ep), e.name()))
            }
        }
    }

    /// Tunnels a WebSocket (or other upgrade) to `ep` over a fresh upstream connection.
    async fn upgrade(&self, ep: Endpoint, mut req: Request<Incoming>) -> Response<Body> {
        let stream = match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(ep.addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => return error_response(StatusCode::BAD_GATEWAY, Some(ep), "connect"),
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
        else {
            return error_response(StatusCode::BAD_GATEWAY, Some(ep), "upstream-reset");
        };
        tokio::spawn(conn.with_upgrades());
        let mut up = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().path_and_query().map_or("/", |p| p.as_str()));
        for (k, v) in req.headers() {
            up = up.header(k, v);
        }
        let Ok(up) = up.body(Full::new(Bytes::new())) else {
            return error_response(StatusCode::BAD_REQUEST, Some(ep), "bad-request");
        };
        let mut resp = match sender.send_request(up).await {
            Ok(r) => r,
            Err(_) => return error_response(StatusCode::BAD_GATEWAY, Some(ep), "upstream-reset"),
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return tag(resp, ep, false);
        }
        let client_upgrade = hyper::upgrade::on(&mut req);
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            }
        });
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        out = out.header(POD_HEADER, ep.pod);
        out.body(empty())
            .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, Some(ep), "bad-response"))
    }
}

/// The request parts as sent upstream: origin-form URI, no hop-by-hop headers.
fn strip(mut parts: http::request::Parts) -> http::request::Parts {
    // HTTP/2 clients name the host in :authority; HTTP/1.1 upstreams want a Host header.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(a) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(http::header::HOST, a);
    }
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| http::uri::PathAndQuery::from_static("/"), Clone::clone);
    parts.uri = http::Uri::from(pq);
    let hop: Vec<http::HeaderName> = parts
        .headers
        .keys()
        .filter(|k| is_hop_header(k))
        .cloned()
        .collect();
    for k in hop {
        parts.headers.remove(k);
    }
    parts.version = http::Version::HTTP_11;
    parts
}

/// A copy of the request for a retry.
fn upstream_request(parts: &http::request::Parts, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    let (p, b) = req.into_parts();
    Request::from_parts(strip(p), b)
}

fn is_hop_header(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn tag<B>(resp: Response<B>, ep: Endpoint, retried: bool) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(http::header::CONNECTION);
    parts.headers.remove("keep-alive");
    parts.headers.insert(POD_HEADER, HeaderValue::from(ep.pod));
    if retried {
        parts
            .headers
            .insert(RETRIED_HEADER, HeaderValue::from_static("1"));
    }
    Response::from_parts(parts, body.boxed())
}

fn error_response(status: StatusCode, ep: Option<Endpoint>, kind: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{} {kind}\n", status.as_u16())))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(kind));
    if let Some(ep) = ep {
        resp.headers_mut()
            .insert(POD_HEADER, HeaderValue::from(ep.pod));
    }
    resp
}
