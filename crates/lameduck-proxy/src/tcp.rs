//! TCP mode: splice bytes between each client and the app, and apply the phases per connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lameduck::{Listener, is_per_connection};
use lameduck_core::{InFlightGuard, Phase, Shutdown};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use crate::ClientAddress;

/// How long connecting to the app may take before the client's connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts on `listener` until Closing and splices every connection to `upstream`, which
/// first gets a PROXY protocol header naming the client if `client_address` asks for one.
///
/// Each connection counts as one arrival and stays "in flight" for the shutdown core while it
/// is open (bytes carry no request boundaries), and is tracked by `shutdown.connections()`;
/// the listener's guard lives as long as the connection.
///
/// # Guarantees
/// - Stops accepting when the lifecycle reaches Closing (the listener is dropped on return).
/// - At Closing, a connection that moved no byte in either direction for `idle_grace` is
///   closed; a busy one is left to finish (or to the app, once it is told to stop).
/// - At the forced close every spliced connection is dropped.
///
/// Returns when Closing starts; the connections live on in their tracked tasks.
pub async fn serve_tcp<L: Listener>(
    shutdown: Shutdown,
    mut listener: L,
    upstream: SocketAddr,
    client_address: ClientAddress,
) {
    let closing = shutdown.lifecycle().clone();
    let closing = closing.reached(Phase::Closing);
    tokio::pin!(closing);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut closing => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, listener_guard)) => {
                let in_flight = shutdown.activity().start_request();
                let connection = splice(
                    shutdown.clone(),
                    stream,
                    upstream,
                    client_address,
                    in_flight,
                );
                shutdown.connections().spawn(async move {
                    connection.await;
                    drop(listener_guard);
                });
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying in 50ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn splice(
    shutdown: Shutdown,
    client: TcpStream,
    upstream: SocketAddr,
    client_address: ClientAddress,
    _in_flight: InFlightGuard,
) {
    let _ = client.set_nodelay(true);
    let header = match client_address {
        ClientAddress::ProxyV1 | ClientAddress::ProxyV2 => {
            let addresses = client
                .peer_addr()
                .and_then(|p| Ok((p, client.local_addr()?)));
            match addresses.map(|(peer, local)| client_address.proxy_header(peer, local)) {
                Ok(Some(header)) => Some(header),
                // The app expects a header: without one it would misread the first bytes.
                _ => {
                    tracing::debug!("no PROXY header for a client; closing it");
                    return;
                }
            }
        }
        ClientAddress::XForwardedFor | ClientAddress::None => None,
    };
    let mut app = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(app)) => app,
        Ok(Err(error)) => {
            tracing::debug!(%upstream, %error, "cannot connect to the upstream; closing the client");
            return;
        }
        Err(_) => {
            tracing::debug!(%upstream, "connecting to the upstream timed out; closing the client");
            return;
        }
    };
    let _ = app.set_nodelay(true);
    if let Some(header) = header {
        // Before any byte of the client's: the app reads it as the start of the connection.
        if let Err(error) = app.write_all(&header).await {
            tracing::debug!(%upstream, %error, "cannot send the PROXY header; closing the client");
            return;
        }
    }
    let clock = Arc::new(Clock::new());
    let mut client = Stamped {
        stream: client,
        clock: Arc::clone(&clock),
    };
    let mut app = Stamped {
        stream: app,
        clock: Arc::clone(&clock),
    };
    let copy =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut app, 32 * 1024, 32 * 1024);
    tokio::pin!(copy);

    let idle_grace = shutdown.config().settings().idle_grace;
    let force = shutdown.force_close().clone();
    let mut phases = shutdown.lifecycle().subscribe();
    loop {
        let closing = phases.borrow_and_update().phase >= Phase::Closing;
        let mut wake_at = None;
        if closing {
            let idle_until = clock.last() + idle_grace;
            if Instant::now() >= idle_until {
                tracing::debug!("closing: closing an idle spliced connection");
                return;
            }
            wake_at = Some(idle_until);
        }
        tokio::select! {
            result = &mut copy => {
                if let Err(error) = result {
                    tracing::debug!(%error, "spliced connection ended with an error");
                }
                return;
            }
            () = force.cancelled() => {
                tracing::debug!("forced close: dropping a spliced connection");
                return;
            }
            changed = phases.changed(), if !closing => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
        }
    }
}

/// When a byte last moved on a connection, in either direction.
#[derive(Debug)]
struct Clock {
    base: Instant,
    /// Nanoseconds after `base` of the last read that returned data.
    last: AtomicU64,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn stamp(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A socket that stamps the clock on every read that returns data.
#[derive(Debug)]
struct Stamped {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Stamped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.stamp();
        }
        polled
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
