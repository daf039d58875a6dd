//! Upgraded connections (WebSocket and other `Upgrade:` protocols): bytes both ways.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// Splices the client's and the app's upgraded connections once both upgrades completed.
///
/// The tunnel ends when either side closes (the app closes its WebSockets when it gets the stop
/// signal, so clients see a clean close frame), or when `force_close` fires.
pub(crate) fn spawn(downstream: OnUpgrade, upstream: OnUpgrade, force_close: CancellationToken) {
    tokio::spawn(async move {
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let mut downstream = TokioIo::new(downstream);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
            }
            () = force_close.cancelled() => {
                tracing::debug!("forced close: cutting an upgraded connection");
            }
        }
    });
}
