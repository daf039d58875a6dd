//! A first hyper reverse proxy: hyper's HTTP/1 server in front of hyper-util's pooled client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::HeaderValue;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::PeerError;

type Upstream = Client<HttpConnector, Incoming>;
/// The app's response, or the proxy's own when the app cannot be reached.
type Reply = Response<Either<Incoming, String>>;

/// Accepts on `listen` and forwards each request to `upstream` until the process is killed.
pub(crate) fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
) -> Result<(), PeerError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        // hyper-util's default idle timeout, spelled out: it only takes effect with a timer.
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(connector);
    crate::serve_on_tokio(listen, threads, move |stream, peer| {
        if stream.set_nodelay(true).is_err() {
            return;
        }
        let client = client.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream, peer, request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
}

async fn forward(
    client: Upstream,
    upstream: SocketAddr,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(upstream.to_string())
        .path_and_query(path)
        .build()
    else {
        return Ok(own_reply(StatusCode::BAD_REQUEST));
    };
    *request.uri_mut() = uri;
    // As lameduck's HTTP mode and HAProxy's `option forwardfor` do.
    if let Ok(address) = HeaderValue::from_str(&peer.ip().to_string()) {
        request.headers_mut().append("x-forwarded-for", address);
    }
    Ok(match client.request(request).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => own_reply(StatusCode::BAD_GATEWAY),
    })
}

fn own_reply(status: StatusCode) -> Reply {
    let mut reply = Response::new(Either::Right(String::new()));
    *reply.status_mut() = status;
    reply
}
