//! TCP mode: splice bytes between each client and the app, and apply the phases per connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lameduck::{Listener, PhaseBroadcast, is_per_connection, proxy_protocol};
use lameduck_core::{InFlightGuard, Phase, Shutdown};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ClientAddress;
use crate::client_address::proxy_header;
use crate::detect::{Detected, Verdict, classify};
use crate::metrics::{Failure, ProxyMetrics};

/// How long connecting to the app may take before the client's connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where TCP mode sends each connection, and what it tells the app of the client.
#[derive(Debug, Clone)]
pub struct TcpForward {
    /// The app.
    pub upstream: SocketAddr,
    /// `ProxyV1`/`ProxyV2`: each app connection first gets a PROXY protocol header naming the
    /// client.
    pub client_address: ClientAddress,
    /// Each client connection must itself start with such a header (from a load balancer):
    /// it is consumed, and the client it names is the one passed on.
    pub accept_proxy_protocol: bool,
    /// Where connections closed because the app could not be reached are counted.
    pub metrics: ProxyMetrics,
    /// The connections come from `auto` detection, which saw no HTTP in their first bytes (so
    /// HTTP seen later means a client that waited past the detection timeout).
    pub after_detection: bool,
}

/// Accepts on `listener` until Closing and splices every connection as `forward` says.
///
/// Each connection counts as one arrival and stays "in flight" for the shutdown core while it
/// is open (bytes carry no request boundaries), and is tracked by `shutdown.connections()`;
/// the listener's guard lives as long as the connection.
///
/// # Guarantees
/// - Stops accepting when the lifecycle reaches Closing (the listener is dropped on return).
/// - At Closing, a connection that moved no byte in either direction for `idle_grace` is
///   closed (idleness is sampled, so up to a quarter grace later); a busy one is left to finish (or
///   to the app, once it is told to stop).
/// - At the forced close every spliced connection is dropped.
///
/// Returns when Closing starts; the connections live on in their tracked tasks.
pub async fn serve_tcp<L: Listener>(shutdown: Shutdown, mut listener: L, forward: TcpForward) {
    let phases = PhaseBroadcast::start(&shutdown);
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
                    phases.clone(),
                    stream,
                    forward.clone(),
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
    phases: PhaseBroadcast,
    mut client: TcpStream,
    forward: TcpForward,
    _in_flight: InFlightGuard,
) {
    let TcpForward {
        upstream,
        client_address,
        accept_proxy_protocol,
        metrics,
        after_detection,
    } = forward;
    let mut bell = phases.subscribe();
    let _ = client.set_nodelay(true);
    let proxied = if accept_proxy_protocol {
        match proxy_protocol::read_header(&shutdown, &mut client).await {
            Ok(proxied) => proxied,
            // Logged by read_header.
            Err(_) => return,
        }
    } else {
        None
    };
    let header = match client_address {
        ClientAddress::ProxyV1 | ClientAddress::ProxyV2 => {
            let addresses = match proxied {
                Some(proxied) => Ok((proxied.client, proxied.destination)),
                None => client
                    .peer_addr()
                    .and_then(|p| Ok((p, client.local_addr()?))),
            };
            match addresses.map(|(peer, local)| proxy_header(client_address, peer, local)) {
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
    let mut app = match crate::upstream::dial(upstream, CONNECT_TIMEOUT).await {
        Ok(app) => app,
        Err(error) => {
            tracing::debug!(%upstream, %error, "cannot connect to the upstream; closing the client");
            metrics.failed(Failure::UpstreamUnreachable);
            return;
        }
    };
    if let Some(header) = header {
        // Before any byte of the client's: the app reads it as the start of the connection.
        if let Err(error) = app.write_all(&header).await {
            tracing::debug!(%upstream, %error, "cannot send the PROXY header; closing the client");
            metrics.failed(Failure::UpstreamUnreachable);
            return;
        }
    }
    // Reads that moved bytes, counted (a load and a store) rather than timed: the clock is read
    // only when the loop below looks at the phases, not on every read.
    let moved = AtomicU64::new(0);
    let mut client = Counted {
        stream: client,
        moved: &moved,
        sniff: Some(Sniff {
            metrics: &metrics,
            after_detection,
        }),
    };
    let mut app = Counted {
        stream: app,
        moved: &moved,
        sniff: None,
    };
    let copy =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut app, 32 * 1024, 32 * 1024);
    tokio::pin!(copy);

    let idle_grace = shutdown.config().settings().idle_grace;
    let mut quiet = Quiet::new();
    loop {
        if phases.forced() {
            tracing::debug!("forced close: dropping a spliced connection");
            return;
        }
        let now = Instant::now();
        quiet.sample(moved.load(Ordering::Relaxed), now);
        let mut wake_at = None;
        if phases.phase() >= Phase::Closing {
            match quiet.idle_check(now, idle_grace) {
                None => {
                    tracing::debug!("closing: closing an idle spliced connection");
                    return;
                }
                Some(next) => wake_at = Some(next),
            }
        }
        if let Some(result) = bell.until_rung(copy.as_mut(), wake_at).await {
            if let Err(error) = result {
                tracing::debug!(%error, "spliced connection ended with an error");
            }
            return;
        }
    }
}

/// Since when no byte has moved on a connection, as far as samples of its byte count tell.
///
/// Samples are taken when the connection starts, at each phase change and, from Closing on,
/// at least every quarter of `idle_grace`: so a connection is closed between `idle_grace` and
/// 1.25 × `idle_grace` after its last byte (at once at Closing if it was quiet since a phase
/// change at least `idle_grace` before), and never while bytes are moving.
#[derive(Debug)]
struct Quiet {
    count: u64,
    since: Instant,
}

impl Quiet {
    fn new() -> Self {
        Self {
            count: 0,
            since: Instant::now(),
        }
    }

    fn sample(&mut self, count: u64, now: Instant) {
        if count != self.count {
            // Bytes moved some time since the last sample: count the quiet from now.
            self.count = count;
            self.since = now;
        }
    }

    /// `None` if the connection has been quiet for `idle_grace`; otherwise when to look again.
    fn idle_check(&self, now: Instant, idle_grace: Duration) -> Option<Instant> {
        let idle_at = self.since + idle_grace;
        (now < idle_at).then(|| idle_at.min(now + idle_grace / 4))
    }
}

/// A socket that counts its reads that returned data.
#[derive(Debug)]
struct Counted<'a> {
    stream: TcpStream,
    /// Shared by both sockets of a connection, which one task polls.
    moved: &'a AtomicU64,
    /// The client's side: its first read is looked at once for HTTP.
    sniff: Option<Sniff<'a>>,
}

/// Says (once per proxy) that a spliced connection speaks HTTP, which the splice cannot drain
/// without losing the requests that race an idle close.
#[derive(Debug)]
struct Sniff<'a> {
    metrics: &'a ProxyMetrics,
    after_detection: bool,
}

impl Sniff<'_> {
    fn first_read(self, bytes: &[u8]) {
        let http = matches!(
            classify(bytes),
            Verdict::Is(Detected::Http1 | Detected::H2c)
        );
        if !http || !self.metrics.first_http_spliced() {
            return;
        }
        if self.after_detection {
            tracing::warn!(
                "a client sent HTTP only after the detection timeout, so its connection is \
                 spliced and cannot be drained without loss; raise --detect-timeout if clients \
                 open connections ahead of their requests (further ones are not logged)"
            );
        } else {
            tracing::warn!(
                "a TCP proxy is splicing HTTP: closing idle keep-alive connections races with \
                 clients' next requests; --protocol http or auto would drain them without loss \
                 (further ones are not logged)"
            );
        }
    }
}

impl AsyncRead for Counted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // A load and a store, not an atomic add: one task is the only writer.
            let moved = self.moved.load(Ordering::Relaxed);
            self.moved.store(moved.wrapping_add(1), Ordering::Relaxed);
            if let Some(sniff) = self.sniff.take() {
                sniff.first_read(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl AsyncWrite for Counted<'_> {
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

#[cfg(test)]
mod tests;
