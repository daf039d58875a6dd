//! Long-lived sessions (WebSocket echoes, streaming responses), each round trip one request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{connect_tcp, l4_info, one};
use super::{Ctx, Outcome, Record, RequestKind, Target};
use crate::events::PodId;
use crate::routers::POD_HEADER;

/// Streaming responses, one after another on one keep-alive connection; each is one request.
pub(super) async fn stream_session(
    ctx: Ctx,
    target: Target,
    path: String,
    stop: CancellationToken,
) {
    let mut conn = None;
    let ctx = Ctx {
        timeout: ctx.timeout.max(Duration::from_secs(30)),
        ..ctx
    };
    while !stop.is_cancelled() {
        ctx.stats.started.fetch_add(1, Ordering::SeqCst);
        one(&ctx, &target, &mut conn, &path, RequestKind::Stream, false).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A WebSocket session echoing a message every 100 ms; each round trip is one request. A
/// session the server closed cleanly (close frame) is reopened, as a real client does.
pub(super) async fn websocket_session(
    ctx: Ctx,
    target: Target,
    path: String,
    stop: CancellationToken,
) {
    let url = format!("ws://{}{}", target.addr, path);
    let mut ws: Option<(
        tokio_tungstenite::WebSocketStream<TcpStream>,
        Option<PodId>,
        SocketAddr,
    )> = None;
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        ctx.stats.started.fetch_add(1, Ordering::SeqCst);
        let t = ctx.clock.now();
        let started = Instant::now();
        let outcome: Result<Option<PodId>, (Outcome, Option<PodId>)> = async {
            if ws.is_none() {
                let (stream, local) = connect_tcp(&target).await.map_err(|a| (a.outcome, a.pod))?;
                match tokio::time::timeout(
                    ctx.timeout,
                    tokio_tungstenite::client_async(url.as_str(), stream),
                )
                .await
                {
                    Ok(Ok((s, resp))) => {
                        let pod = resp
                            .headers()
                            .get(POD_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| ctx.directory.resolve(v))
                            .or_else(|| l4_info(&target, Some(local)).0);
                        ws = Some((s, pod, local));
                    }
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r)))
                        if r.status().is_server_error() =>
                    {
                        let pod = r
                            .headers()
                            .get(POD_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| ctx.directory.resolve(v));
                        return Err((Outcome::Status5xx, pod));
                    }
                    Ok(Err(_)) => {
                        let (pod, refused) = l4_info(&target, Some(local));
                        return Err((
                            if refused {
                                Outcome::Refused
                            } else {
                                Outcome::Reset
                            },
                            pod,
                        ));
                    }
                    Err(_) => return Err((Outcome::Timeout, l4_info(&target, Some(local)).0)),
                }
            }
            let Some((s, pod, _)) = ws.as_mut() else {
                return Err((Outcome::Reset, None));
            };
            let pod = *pod;
            n += 1;
            let msg = format!("m{n}");
            let fut = async {
                s.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
                    .await
                    .map_err(|_| Outcome::Reset)?;
                loop {
                    match s.next().await {
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))
                            if t.as_str() == msg =>
                        {
                            return Ok(());
                        }
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                            return Err(Outcome::Ok);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return Err(Outcome::Reset),
                    }
                }
            };
            match tokio::time::timeout(ctx.timeout, fut).await {
                Ok(Ok(())) => Ok(pod),
                // The server closed the session cleanly: reopen it and send this message there.
                Ok(Err(Outcome::Ok)) => Err((Outcome::Ok, pod)),
                Ok(Err(o)) => Err((o, pod)),
                Err(_) => Err((Outcome::Timeout, pod)),
            }
        }
        .await;
        let (outcome, pod) = match outcome {
            Ok(pod) => (Outcome::Ok, pod),
            Err((Outcome::Ok, pod)) => {
                // Clean close: not a failure of this message, which a client would resend.
                ws = None;
                (Outcome::Ok, pod)
            }
            Err((o, pod)) => {
                ws = None;
                (o, pod)
            }
        };
        ctx.finish(Record {
            t,
            latency: started.elapsed().as_secs_f32(),
            outcome,
            router: target.router,
            pod,
            retried: false,
            kind: RequestKind::Websocket,
            detail: None,
        });
    }
    if let Some((mut s, _, _)) = ws {
        let _ = s.close(None).await;
    }
}
