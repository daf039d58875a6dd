//! One connection's driver: serves it and applies the phases to it.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use lameduck_core::Phase;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::broadcast::{Ring, until_rung};
use super::io::{ConnIo, ConnState};
use super::service::Tracked;
use super::{
    ConnectionInfo, HttpService, MakeConnectionService, PeerAddr, Protocol, ResponseBody, Shared,
};

/// How long an upgraded connection's handler may still use the socket after the forced close:
/// well inside the core's `FORCE_GRACE` (250 ms), after which the process moves on to exit.
const UPGRADED_GOODBYE: Duration = Duration::from_millis(100);

/// Serves one accepted connection until it ends, is closed by the drain, or is forced.
///
/// `tracked` (the shutdown's count of open connections, and the listener's guard) lives in the
/// socket wrapper, so an upgraded connection stays counted after hyper hands it over.
pub(crate) async fn drive<S, B, G>(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    tracked: (TaskTrackerToken, G),
    service: S,
    per_connection: Option<MakeConnectionService<S>>,
) where
    S: HttpService<B>,
    B: ResponseBody,
    G: Send + Sync + 'static,
{
    let lameduck = &shared.lameduck;
    let settings = lameduck.shutdown().config().settings();
    let _ = stream.set_nodelay(true);
    let peer = if shared.proxy_protocol {
        match crate::proxy_protocol::read_header(lameduck.shutdown(), &mut stream).await {
            Ok(Some(proxied)) => Some(proxied.client),
            Ok(None) => stream.peer_addr().ok(),
            // Logged by read_header.
            Err(_) => return,
        }
    } else {
        stream.peer_addr().ok()
    };
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
    let _registration = shared
        .broadcast
        .register(Arc::clone(&state) as Arc<dyn Ring>);
    let io = ConnIo::new(stream, Arc::clone(&state), tracked);
    let extensions = per_connection.is_none();
    let service = match per_connection {
        Some(make) => {
            let info = ConnectionInfo {
                peer,
                closing: shared.closing.clone(),
            };
            make(&service, &info)
        }
        None => service,
    };
    let service = Tracked {
        inner: service,
        body: std::marker::PhantomData,
        conn: Arc::clone(&state),
        shared: Arc::clone(&shared),
        extensions,
        peer: peer.map(PeerAddr),
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);

    let force_close = || {
        lameduck.stats().forced_close();
        let _ = killer.shutdown(std::net::Shutdown::Both);
    };
    let mut seen_events = 0;
    let mut goaway_sent = false;
    let mut close_requested = false;
    let mut closing_since: Option<Instant> = None;
    loop {
        if shared.broadcast.forced() {
            force_close();
            return;
        }
        let phase = shared.broadcast.phase();
        let mut wake_at = None;
        if phase >= Phase::Draining {
            state.watch_requests();
            if !goaway_sent && state.protocol() == Protocol::Http2 {
                // Two-step GOAWAY (h2): new streams go elsewhere, open ones complete.
                conn.as_mut().graceful_shutdown();
                goaway_sent = true;
            }
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
        let finished = until_rung(state.doorbell(), &mut seen_events, conn.as_mut(), wake_at).await;
        if let Some(result) = finished {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            break;
        }
    }

    if state.protocol() == Protocol::Upgraded {
        // hyper handed the socket to the upgrade's handler, which got the closing signal with
        // its request. Shut the socket at the forced close if it is still open then.
        poll_fn(|cx| {
            state.register(cx.waker());
            if state.io_dropped() || shared.broadcast.forced() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if !state.io_dropped() {
            // The handler saw the same forced close; give it a moment to say goodbye on the
            // socket (the drain proxy sends WebSocket clients `1001 Going Away`) before it is
            // shut under it.
            let _ = tokio::time::timeout(
                UPGRADED_GOODBYE,
                poll_fn(|cx| {
                    state.register(cx.waker());
                    if state.io_dropped() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }),
            )
            .await;
        }
        if !state.io_dropped() {
            force_close();
        }
    }
}

fn split_killer(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let killer = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, killer))
}
