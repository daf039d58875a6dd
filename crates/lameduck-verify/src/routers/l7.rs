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
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ERROR_HEADER, Endpoint, POD_HEADER, RETRIED_HEADER, RouterError, Table};
use crate::events::RouterId;

type Body = BoxBody<Bytes, hyper::Error>;

/// The ingress-like router.
pub(crate) struct L7Router {
    id: RouterId,
    addr: SocketAddr,
    table: Table,
    retry: bool,
    client: Client<HttpConnector, Full<Bytes>>,
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
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        let router = Arc::new(Self {
            id,
            addr,
            table: Table::default(),
            retry,
            client,
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
        let Ok(body) = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
        else {
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
        match self.forward(ep, &parts, body.clone()).await {
            Ok(resp) => Ok(tag(resp, ep, false)),
            Err(kind) => {
                if self.retry
                    && idempotent
                    && let Some(ep2) = self.table.pick_other(ep.pod)
                {
                    return Ok(match self.forward(ep2, &parts, body).await {
                        Ok(resp) => tag(resp, ep2, true),
                        Err(kind) => error_response(StatusCode::BAD_GATEWAY, Some(ep2), kind),
                    });
                }
                tracing::debug!(router = self.id, pod = ep.pod, "upstream failure: {kind}");
                Ok(error_response(StatusCode::BAD_GATEWAY, Some(ep), kind))
            }
        }
    }

    async fn forward(
        &self,
        ep: Endpoint,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Incoming>, &'static str> {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("http://{}{}", ep.addr, pq)
            .parse()
            .map_err(|_| "bad-uri")?;
        let mut req = Request::builder().method(parts.method.clone()).uri(uri);
        for (k, v) in &parts.headers {
            if !is_hop_header(k) {
                req = req.header(k, v);
            }
        }
        let req = req.body(Full::new(body)).map_err(|_| "bad-request")?;
        match self.client.request(req).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_connect() => Err("connect"),
            Err(_) => Err("upstream-reset"),
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

fn tag(resp: Response<Incoming>, ep: Endpoint, retried: bool) -> Response<Body> {
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
