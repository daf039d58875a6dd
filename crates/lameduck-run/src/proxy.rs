//! The drain proxy on one accept loop per thread, as HAProxy runs one event loop per thread.
//!
//! A multi-threaded tokio runtime hands connections' tasks between worker threads; on the few
//! cores a sidecar gets, those cross-thread wakes cost more than the forwarding itself. So the
//! proxy runs `threads` shards: the first on the supervisor's runtime, each other on a thread
//! with a single-threaded runtime of its own. Each shard has a listening socket of its own on
//! the one address (`SO_REUSEPORT`: the kernel spreads new connections evenly; a shared socket
//! let whichever thread woke first take nearly all of them) and keeps each connection, and its
//! upstream connections, on its own thread, unless the kernel's spread left it two connections
//! ahead of another shard: then it passes the next one over (see [`crate::balance`]). All
//! shards share the one lifecycle, so the drain behaviour is the same whichever shard a
//! connection landed on.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

use lameduck::{Lameduck, Listener};
use lameduck_proxy::{Detection, Forward, Protocol, ProxyMetrics, TcpForward, split};
use tokio::net::{TcpListener, TcpSocket};

use crate::RunError;
use crate::balance::{Balancer, Seat};
use crate::supervisor::{ProxyConfig, error_text};

/// How many connections may wait for `accept` on each shard's socket.
const BACKLOG: u32 = 1024;

/// Binds `threads` listening sockets on `addr` (the first decides the port if `addr` has none).
///
/// `SO_REUSEPORT` only joins sockets of the same user that all set it, so a port held by
/// another program still fails here.
pub(crate) fn bind(addr: SocketAddr, threads: usize) -> io::Result<Vec<StdListener>> {
    let mut listeners = Vec::with_capacity(threads);
    let mut addr = addr;
    for _ in 0..threads.max(1) {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?.into_std()?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Starts one shard per listener (from [`bind`]).
///
/// # Guarantees
/// - Every shard stops accepting at Closing (its socket closes then).
/// - A shard's runtime lives until the shutdown finished, so its connections drain and are
///   force-closed like the first shard's.
pub(crate) fn start(
    lameduck: &Lameduck,
    listeners: Vec<StdListener>,
    proxy: ProxyConfig,
    metrics: ProxyMetrics,
) -> Result<(), RunError> {
    let seats = Balancer::seats(listeners.len());
    let mut shards = listeners.into_iter().zip(seats);
    let Some(first) = shards.next() else {
        return Ok(());
    };
    for (number, shard) in (1..).zip(shards) {
        let lameduck = lameduck.clone();
        let metrics = metrics.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RunError::ProxyThread)?;
        std::thread::Builder::new()
            .name(format!("lameduck-proxy-{number}"))
            .spawn(move || {
                runtime.block_on(async move {
                    serve(lameduck.clone(), shard, proxy, metrics).await;
                    // Spliced and upgraded connections live in this runtime's tasks.
                    lameduck.stopped().await;
                });
            })
            .map_err(RunError::ProxyThread)?;
    }
    tokio::spawn(serve(lameduck.clone(), first, proxy, metrics));
    Ok(())
}

/// One shard: an accept loop until Closing (HTTP: and until stopped).
async fn serve(
    lameduck: Lameduck,
    (listener, seat): (StdListener, Seat),
    proxy: ProxyConfig,
    metrics: ProxyMetrics,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => seat.listen(listener),
        Err(error) => {
            tracing::error!(%error, "drain proxy shard cannot register its listener");
            return;
        }
    };
    match proxy.protocol {
        Protocol::Http => serve_http(&lameduck, listener, proxy, metrics).await,
        Protocol::Tcp => serve_tcp(&lameduck, listener, proxy, metrics, false).await,
        Protocol::Auto => {
            let detection = Detection {
                timeout: proxy.detect_timeout,
                accept_proxy_protocol: proxy.accept_proxy_protocol,
                counters: metrics.detects(),
            };
            let (http, tcp) = split(lameduck.shutdown().clone(), listener, detection);
            tokio::join!(
                serve_http(&lameduck, http, proxy, metrics.clone()),
                serve_tcp(&lameduck, tcp, proxy, metrics, true),
            );
        }
    }
}

/// The HTTP path: the library's server (phases per request) over a [`Forward`].
async fn serve_http(
    lameduck: &Lameduck,
    listener: impl Listener,
    proxy: ProxyConfig,
    metrics: ProxyMetrics,
) {
    // One Forward per shard: its upstream connections stay on this shard's thread.
    let forward = Forward::new(
        proxy.spec.upstream,
        proxy.upstream_protocol,
        proxy.client_address,
        lameduck.shutdown().force_close().clone(),
        metrics,
    );
    let serve = lameduck
        .serve(listener, forward)
        .per_connection(Forward::for_connection);
    let serve = if proxy.accept_proxy_protocol {
        serve.accept_proxy_protocol()
    } else {
        serve
    };
    if let Err(error) = serve.await {
        tracing::error!(error = %error_text(&error), "drain proxy failed");
    }
}

/// The TCP path: bytes spliced, phases per connection.
async fn serve_tcp(
    lameduck: &Lameduck,
    listener: impl Listener,
    proxy: ProxyConfig,
    metrics: ProxyMetrics,
    after_detection: bool,
) {
    let forward = TcpForward {
        upstream: proxy.spec.upstream,
        // Under auto, X-Forwarded-For reaches the app on HTTP connections only: a spliced one
        // has no place for it.
        client_address: proxy.client_address,
        accept_proxy_protocol: proxy.accept_proxy_protocol,
        metrics,
        after_detection,
    };
    lameduck_proxy::serve_tcp(lameduck.shutdown().clone(), listener, forward).await;
}
