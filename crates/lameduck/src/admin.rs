//! The admin listener: probes, metrics and `/drain`, answering until the process exits.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lameduck_core::{Phase, Trigger};
use tokio::net::TcpListener;

use crate::{Lameduck, metrics};

pub(crate) async fn serve(lameduck: Lameduck, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let lameduck = lameduck.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(lameduck.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
}

async fn respond(
    lameduck: Lameduck,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let phase = lameduck.lifecycle().phase();
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    let probe = |ok: bool| {
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        reply(status, format!("{phase}\n"))
    };
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/livez") => probe(true),
        (&Method::GET | &Method::HEAD, "/readyz") => match lameduck.readiness_check() {
            Some(check) if phase == Phase::Serving => match check().await {
                Ok(()) => probe(true),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{phase}; not ready: {why}\n"),
                ),
            },
            _ => probe(phase == Phase::Serving),
        },
        (&Method::GET | &Method::HEAD, "/startupz") => probe(phase != Phase::Starting),
        (&Method::GET, "/metrics") => {
            let mut response = reply(StatusCode::OK, metrics::render(&lameduck));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (&Method::POST, "/drain") => {
            let started = lameduck.lifecycle().drain(Trigger::Admin);
            let wait = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "wait=true" || kv == "wait"));
            if wait {
                // Blocks a preStop `lameduck wait` until the drain wait is over, so the kubelet's
                // SIGTERM arrives when the process is already closing.
                lameduck.lifecycle().reached(Phase::Closing).await;
            }
            let now = lameduck.lifecycle().phase();
            let what = if started {
                "drain started"
            } else {
                "already draining"
            };
            reply(StatusCode::OK, format!("{what}; phase {now}\n"))
        }
        (_, "/livez" | "/readyz" | "/startupz" | "/metrics" | "/drain") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_owned(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "not found: try /livez /readyz /startupz /metrics or POST /drain\n".to_owned(),
        ),
    };
    Ok(response)
}
