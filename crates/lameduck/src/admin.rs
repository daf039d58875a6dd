//! The admin listener: probes, metrics and `/drain`, answering until the process exits.
//!
//! `/drain` also speaks to the gate (`lameduck gate`), which takes a pod out of rotation before
//! it admits the pod's deletion: `POST /drain?hold` (readiness fails, still serving, no drain
//! wait until the stop signal), `GET /drain` (the pod's own evidence: quiet, in flight, busy
//! tasks), `POST /drain/safe` (the cluster confirmed no router routes here: the drain wait ends
//! at once) and `DELETE /drain` (the deletion did not follow: serve again).

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
        (&Method::POST, "/drain") if has_flag(&req, "hold") => {
            let held = lameduck.lifecycle().hold();
            let now = lameduck.lifecycle().phase();
            let what = if held { "held" } else { "already draining" };
            reply(StatusCode::OK, format!("{what}; phase {now}\n"))
        }
        (&Method::GET, "/drain") => {
            let mut response = reply(StatusCode::OK, drain_status(&lameduck));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        (&Method::DELETE, "/drain") => {
            if lameduck.lifecycle().cancel_hold() {
                reply(StatusCode::OK, "hold cancelled; phase serving\n".to_owned())
            } else {
                let snapshot = lameduck.lifecycle().snapshot();
                let why = match (snapshot.phase, snapshot.trigger) {
                    (Phase::Starting | Phase::Serving, _) => "not draining".to_owned(),
                    (phase, Some(trigger)) => {
                        format!(
                            "phase {phase}, started by {trigger}: only a held drain can be cancelled"
                        )
                    }
                    (phase, None) => format!("phase {phase}: only a held drain can be cancelled"),
                };
                reply(StatusCode::CONFLICT, format!("{why}\n"))
            }
        }
        (&Method::POST, "/drain/safe") => {
            if lameduck.lifecycle().confirm_safe() {
                reply(
                    StatusCode::OK,
                    "confirmed safe; the drain wait ends at once\n".to_owned(),
                )
            } else if lameduck.lifecycle().snapshot().confirmed_safe {
                reply(StatusCode::OK, "already confirmed safe\n".to_owned())
            } else {
                let phase = lameduck.lifecycle().phase();
                reply(
                    StatusCode::CONFLICT,
                    format!("phase {phase}: not draining\n"),
                )
            }
        }
        (&Method::POST, "/drain") => {
            let started = lameduck.lifecycle().drain(Trigger::Admin);
            if has_flag(&req, "wait") {
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
        (_, "/livez" | "/readyz" | "/startupz" | "/metrics" | "/drain" | "/drain/safe") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".to_owned(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "not found: try /livez /readyz /startupz /metrics or /drain\n".to_owned(),
        ),
    };
    Ok(response)
}

/// Whether the query string holds `name` or `name=true`.
fn has_flag(req: &Request<Incoming>, name: &str) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == name || kv.strip_prefix(name) == Some("=true"))
    })
}

/// The pod's own evidence for the gate, as JSON. `quiet`: draining, nothing in flight, and no
/// connection or request arrived for the quiet window (counted from the drain's start, since
/// traffic before it proves nothing). `busy_tasks`: tracked tasks of long work still running
/// (resident tasks, such as the child `lameduck run` supervises, are not busy work).
fn drain_status(lameduck: &Lameduck) -> String {
    let shutdown = lameduck.shutdown();
    let snapshot = lameduck.lifecycle().snapshot();
    let activity = shutdown.activity();
    let settings = shutdown.config().settings();
    let now = tokio::time::Instant::now();
    let since = snapshot
        .held_since
        .or(snapshot.entered(Phase::Draining))
        .filter(|_| snapshot.phase >= Phase::Draining);
    let quiet_for = since.map(|start| now.saturating_duration_since(activity.quiet_since(start)));
    let in_flight = activity.in_flight();
    let quiet = quiet_for.is_some_and(|q| q >= settings.quiet_window) && in_flight == 0;
    let millis = |d: std::time::Duration| d.as_millis().to_string();
    // Hand-written JSON: the values are numbers, booleans and trigger names of our own, and the
    // container entrypoint stays free of a JSON library.
    let trigger = snapshot
        .trigger
        .map_or_else(|| "null".to_owned(), |t| format!("\"{t}\""));
    format!(
        concat!(
            "{{\"phase\":\"{}\",\"trigger\":{},\"held\":{},\"confirmed_safe\":{},",
            "\"quiet\":{},\"quiet_for_ms\":{},\"quiet_window_ms\":{},\"in_flight\":{},",
            "\"arrivals\":{},\"busy_tasks\":{}}}\n"
        ),
        snapshot.phase.as_str(),
        trigger,
        snapshot.held,
        snapshot.confirmed_safe,
        quiet,
        quiet_for.map_or_else(|| "null".to_owned(), millis),
        millis(settings.quiet_window),
        in_flight,
        activity.arrivals(),
        shutdown.tasks().busy(),
    )
}
