//! One HTTP request through a router: connect, send, and classify how it ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pool::{Conn, OpenGuard, Sender};
use super::{Ctx, Outcome, Record, RequestKind, Target};
use crate::events::PodId;
use crate::routers::{ERROR_HEADER, POD_HEADER, RETRIED_HEADER};
use crate::scenario::Protocol;

fn router_error(v: &[u8]) -> Option<&'static str> {
    Some(match v {
        b"connect" => "connect",
        b"upstream-reset" => "upstream-reset",
        b"no-endpoint" => "no-endpoint",
        _ => "other",
    })
}

/// What one attempt produced: outcome, pod, retried.
pub(super) struct Attempt {
    pub(super) outcome: Outcome,
    pub(super) pod: Option<PodId>,
    pub(super) retried: bool,
    pub(super) detail: Option<&'static str>,
}

/// Connects to the router from a port bound first, so that even a connection reset during the
/// handshake (an L4 router whose connect to the pod failed) can be looked up by its address.
pub(super) async fn connect_tcp(target: &Target) -> Result<(TcpStream, SocketAddr), Attempt> {
    let fail = |outcome| Attempt {
        outcome,
        pod: None,
        retried: false,
        detail: None,
    };
    let sock = tokio::net::TcpSocket::new_v4().map_err(|_| fail(Outcome::Reset))?;
    sock.bind(([127, 0, 0, 1], 0).into())
        .map_err(|_| fail(Outcome::Reset))?;
    let local = sock.local_addr().map_err(|_| fail(Outcome::Reset))?;
    match tokio::time::timeout(Duration::from_secs(2), sock.connect(target.addr)).await {
        Ok(Ok(s)) => Ok((s, local)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(fail(Outcome::Refused))
        }
        Ok(Err(_)) => Err(unsent_failure(target, local)),
        Err(_) => Err(Attempt {
            outcome: Outcome::Timeout,
            pod: l4_info(target, Some(local)).0,
            retried: false,
            detail: None,
        }),
    }
}

/// A new HTTP connection (HTTP/1.1 or h2c) to the router.
async fn connect(ctx: &Ctx, target: &Target, pooled: bool) -> Result<Conn, Attempt> {
    let fail = |outcome| Attempt {
        outcome,
        pod: None,
        retried: false,
        detail: None,
    };
    let (stream, local) = connect_tcp(target).await?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let sender = match ctx.protocol {
        Protocol::Http1 => {
            let (s, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| fail(Outcome::Protocol))?;
            tokio::spawn(conn);
            Sender::H1(s)
        }
        Protocol::H2c => {
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| unsent_failure(target, local))?;
            tokio::spawn(conn);
            Sender::H2(s)
        }
    };
    // One of the pool's long-lived connections while there are fewer than `size`; an extra
    // one (closed after use) otherwise.
    let pool = &target.pool;
    let open = (pooled && pool.open.fetch_add(1, Ordering::SeqCst) < pool.size)
        .then(|| Arc::new(OpenGuard(Arc::clone(&pool.open))));
    if pooled && open.is_none() {
        pool.open.fetch_sub(1, Ordering::SeqCst);
    }
    Ok(Conn {
        sender,
        local,
        _open: open,
    })
}

pub(super) fn l4_info(target: &Target, local: Option<SocketAddr>) -> (Option<PodId>, bool) {
    match (&target.l4, local) {
        (Some(r), Some(local)) => r
            .conn_info(local)
            .map_or((None, false), |i| (i.pod, i.refused)),
        _ => (None, false),
    }
}

fn classify(e: &hyper::Error) -> Outcome {
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        Outcome::Protocol
    } else if e.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Reset
    }
}

/// One request on `conn` (replaced when closed). `Err` only for the caller's timeout path.
async fn request(
    ctx: &Ctx,
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    pooled: bool,
) -> Attempt {
    for attempt in 0..3 {
        // A request that was never written is sent again on a new connection, as real clients
        // do, but only when the connection it found was an old keep-alive one: a fresh
        // connection that is closed before the request could be written is a failure (an L4
        // router's failed connect to the pod looks exactly like that).
        let mut fresh = false;
        if conn.as_ref().is_none_or(Conn::is_closed) {
            match connect(ctx, target, pooled).await {
                Ok(c) => *conn = Some(c),
                Err(attempt) => return attempt,
            }
            fresh = true;
        }
        let Some(c) = conn.as_mut() else { continue };
        if !c.ready().await {
            let local = c.local;
            *conn = None;
            if fresh {
                return unsent_failure(target, local);
            }
            continue;
        }
        let local = c.local;
        let req = Request::get(path)
            .header(http::header::HOST, "lameduck-verify")
            .body(Empty::new())
            .unwrap_or_default();
        let req = if ctx.protocol == Protocol::H2c {
            let (mut parts, body) = req.into_parts();
            parts.uri = format!("http://lameduck-verify{path}")
                .parse()
                .unwrap_or_default();
            Request::from_parts(parts, body)
        } else {
            req
        };
        match c.send(req).await {
            Ok(resp) => {
                let status = resp.status();
                let close = resp
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let retried = resp.headers().contains_key(RETRIED_HEADER);
                let pod = resp
                    .headers()
                    .get(POD_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| ctx.directory.resolve(v))
                    .or_else(|| l4_info(target, Some(local)).0);
                let detail = resp
                    .headers()
                    .get(ERROR_HEADER)
                    .and_then(|v| router_error(v.as_bytes()));
                let from_router = detail.is_some();
                let body = resp.into_body().collect().await;
                if close {
                    *conn = None;
                }
                let outcome = match body {
                    Err(e) => {
                        *conn = None;
                        classify(&e)
                    }
                    Ok(_) if status.is_server_error() || from_router => Outcome::Status5xx,
                    Ok(_) if status.is_client_error() || status.is_informational() => {
                        Outcome::Protocol
                    }
                    Ok(_) => Outcome::Ok,
                };
                return Attempt {
                    outcome,
                    pod,
                    retried,
                    detail,
                };
            }
            Err(mut e) => {
                *conn = None;
                if e.take_message().is_some() {
                    if fresh {
                        return unsent_failure(target, local);
                    }
                    if attempt < 2 {
                        continue; // never written on a stale connection: send it on a new one
                    }
                }
                let (pod, refused) = l4_info(target, Some(local));
                let outcome = if refused {
                    Outcome::Refused
                } else {
                    classify(e.error())
                };
                return Attempt {
                    outcome,
                    pod,
                    retried: false,
                    detail: None,
                };
            }
        }
    }
    Attempt {
        outcome: Outcome::Reset,
        pod: None,
        retried: false,
        detail: None,
    }
}

/// A fresh connection closed before the request was written: refused when an L4 router says
/// its connect to the pod failed, reset otherwise.
fn unsent_failure(target: &Target, local: SocketAddr) -> Attempt {
    let (pod, refused) = l4_info(target, Some(local));
    Attempt {
        outcome: if refused {
            Outcome::Refused
        } else {
            Outcome::Reset
        },
        pod,
        retried: false,
        detail: None,
    }
}

/// Sends one request (already counted as started) and records how it ended.
pub(super) async fn one(
    ctx: &Ctx,
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    kind: RequestKind,
    pooled: bool,
) {
    let t = ctx.clock.now();
    let started = Instant::now();
    let local = conn.as_ref().map(|c| c.local);
    let attempt =
        match tokio::time::timeout(ctx.timeout, request(ctx, target, conn, path, pooled)).await {
            Ok(a) => a,
            Err(_) => {
                let local = conn.as_ref().map(|c| c.local).or(local);
                *conn = None;
                Attempt {
                    outcome: Outcome::Timeout,
                    pod: l4_info(target, local).0,
                    retried: false,
                    detail: None,
                }
            }
        };
    ctx.finish(Record {
        t,
        latency: started.elapsed().as_secs_f32(),
        outcome: attempt.outcome,
        router: target.router,
        pod: attempt.pod,
        retried: attempt.retried,
        kind,
        detail: attempt.detail,
    });
}
