//! The drain proxy on one accept loop per thread, as HAProxy runs one event loop per thread.
//!
//! A multi-threaded tokio runtime hands connections' tasks between worker threads; on the few
//! cores a sidecar gets, those cross-thread wakes cost more than the forwarding itself. So the
//! proxy runs `threads` shards: the first on the supervisor's runtime, each other on a thread
//! with a single-threaded runtime of its own. Every shard accepts from the same listening
//! socket (a duplicate of its descriptor) and keeps each connection, and its upstream
//! connections, on its own thread. All shards share the one lifecycle, so the drain behaviour
//! is the same whichever shard a connection landed on.

use std::net::TcpListener as StdListener;

use lameduck::Lameduck;
use lameduck_proxy::{Forward, Protocol, serve_tcp};
use tokio::net::TcpListener;

use crate::RunError;
use crate::supervisor::{ProxyConfig, error_text};

/// Starts the proxy's shards on `listener` (bound, non-blocking).
///
/// # Guarantees
/// - Every shard stops accepting at Closing; the listening socket closes once all did.
/// - A shard's runtime lives until the shutdown finished, so its connections drain and are
///   force-closed like the first shard's.
pub(crate) fn start(
    lameduck: &Lameduck,
    listener: StdListener,
    proxy: ProxyConfig,
    threads: usize,
) -> Result<(), RunError> {
    for shard in 1..threads {
        let listener = listener.try_clone().map_err(RunError::ProxyThread)?;
        let lameduck = lameduck.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RunError::ProxyThread)?;
        std::thread::Builder::new()
            .name(format!("lameduck-proxy-{shard}"))
            .spawn(move || {
                runtime.block_on(async move {
                    serve(lameduck.clone(), listener, proxy).await;
                    // Spliced and upgraded connections live in this runtime's tasks.
                    lameduck.stopped().await;
                });
            })
            .map_err(RunError::ProxyThread)?;
    }
    tokio::spawn(serve(lameduck.clone(), listener, proxy));
    Ok(())
}

/// One shard: an accept loop until Closing (HTTP: and until stopped).
async fn serve(lameduck: Lameduck, listener: StdListener, proxy: ProxyConfig) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "drain proxy shard cannot register its listener");
            return;
        }
    };
    match proxy.protocol {
        Protocol::Http => {
            // One Forward per shard: its upstream connections stay on this shard's thread.
            let forward = Forward::new(
                proxy.spec.upstream,
                proxy.upstream_protocol,
                lameduck.shutdown().force_close().clone(),
            );
            if let Err(error) = lameduck.serve(listener, forward).await {
                tracing::error!(error = %error_text(&error), "drain proxy failed");
            }
        }
        Protocol::Tcp => {
            serve_tcp(lameduck.shutdown().clone(), listener, proxy.spec.upstream).await;
        }
    }
}
