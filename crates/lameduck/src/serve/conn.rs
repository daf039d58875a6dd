//! One connection's driver: serves it and applies the phases to it.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use lameduck_core::Phase;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::io::{ConnIo, ConnState};
use super::service::Tracked;
use super::{HttpService, Protocol, ResponseBody, Shared};

/// Serves one accepted connection until it ends, is closed by the drain, or is forced.
pub(crate) async fn drive<S, B>(
    shared: Arc<Shared>,
    stream: TcpStream,
    tracked: TaskTrackerToken,
    service: S,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let lameduck = &shared.lameduck;
    let shutdown = lameduck.shutdown();
    let settings = shutdown.config().settings();
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, so the forced close can shut it even after an upgrade
    // has moved the stream into a WebSocket handler's hands.
    let (stream, killer) = match split_killer(stream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "dropping a connection that could not be set up");
            return;
        }
    };
    let state = Arc::new(ConnState::new(Arc::clone(lameduck.stats())));
    let gone = CancellationToken::new();
    let io = ConnIo::new(
        stream,
        Arc::clone(&state),
        tracked,
        gone.clone().drop_guard(),
    );
    let service = Tracked {
        inner: service,
        body: std::marker::PhantomData,
        conn: Arc::clone(&state),
        shared: Arc::clone(&shared),
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);

    let mut phases = lameduck.lifecycle().subscribe();
    let force = shutdown.force_close();
    let mut goaway_sent = false;
    let mut close_requested = false;
    let mut closing_since: Option<Instant> = None;
    loop {
        let phase = phases.borrow_and_update().phase;
        let mut wake_at = None;
        if phase >= Phase::Draining && !goaway_sent && state.protocol() == Protocol::Http2 {
            // Two-step GOAWAY (h2): new streams go elsewhere, open ones complete.
            conn.as_mut().graceful_shutdown();
            goaway_sent = true;
        }
        if phase >= Phase::Closing && !close_requested {
            let now = Instant::now();
            let since = *closing_since.get_or_insert(now);
            if !state.has_read() {
                let deadline = since + settings.first_byte_grace;
                if now >= deadline {
                    tracing::debug!("closing a connection that never sent a byte");
                    return;
                }
                wake_at = Some(deadline);
            } else if let Some(idle_since) = state.idle_since() {
                let deadline = idle_since + settings.idle_grace;
                if now >= deadline {
                    // Idle long enough that the client is not mid-request: close it. A busy
                    // HTTP/1 connection closes after its response (it carries Connection: close).
                    conn.as_mut().graceful_shutdown();
                    close_requested = true;
                } else {
                    wake_at = Some(deadline);
                }
            }
        }
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = force.cancelled() => {
                lameduck.stats().forced_close();
                let _ = killer.shutdown(std::net::Shutdown::Both);
                return;
            }
            changed = phases.changed(), if phase < Phase::Stopped => {
                if changed.is_err() {
                    break;
                }
            }
            () = state.changed(), if phase >= Phase::Draining => {}
            () = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
        }
    }

    if state.protocol() == Protocol::Upgraded {
        // hyper handed the socket to the upgrade's handler; it got the closing signal with its
        // request. Shut the socket at the forced close if it is still open then.
        tokio::select! {
            () = force.cancelled() => {
                lameduck.stats().forced_close();
                let _ = killer.shutdown(std::net::Shutdown::Both);
            }
            () = gone.cancelled() => {}
        }
    }
}

fn split_killer(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let killer = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, killer))
}
