//! Zero-downtime shutdown for tokio/hyper/axum/tonic services on Kubernetes.
//!
//! When a pod is deleted, routers keep sending it traffic for a while after the kubelet sends
//! SIGTERM. `lameduck` keeps serving through that window (the *lame-duck* phase), ends it when the
//! traffic evidence says routers caught up, then closes connections in an order that loses no
//! request, all within the pod's grace period.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//! });
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // Reads LAMEDUCK_* settings, serves /livez /readyz /startupz /metrics /drain on
//! // LAMEDUCK_ADMIN_ADDR, handles SIGTERM/SIGINT, and returns once drained.
//! let report = lameduck::serve(listener, app).await?;
//! println!("drain ended: {}", report.drain.reason);
//! # Ok(()) }
//! ```
//!
//! The phases, their settings and the Kubernetes facts behind them are in the repository's
//! `docs/guide.md`.

mod admin;
mod error;
mod handle;
mod metrics;
pub mod proxy_protocol;
mod serve;
mod signals;
mod watchdog;

#[cfg(feature = "tonic")]
pub mod grpc;

pub use error::Error;
pub use handle::{Builder, DEFAULT_ADMIN_ADDR, Lameduck};
pub use lameduck_core::{
    BudgetPlan, Config, ConfigError, DrainEnd, DrainEndReason, Lifecycle, Phase, Settings,
    Shutdown, ShutdownReport, Snapshot, TrackedTasks, Trigger,
};
/// The metrics library of `/metrics`, for [`Lameduck::register_metrics`].
pub use prometheus_client;
pub use serve::{
    ClosingSignal, ConnectionInfo, Listener, PeerAddr, PhaseBell, PhaseBroadcast, Protocol, Serve,
    is_per_connection,
};
pub use tokio_util::sync::CancellationToken;

/// Serves `service` on `listener` with lameduck's lifecycle, configured from the environment.
///
/// Reads the `LAMEDUCK_*` settings, starts the admin listener on `LAMEDUCK_ADMIN_ADDR`
/// (default [`DEFAULT_ADMIN_ADDR`]), drains on SIGTERM/SIGINT (a second one exits at once), and
/// returns once the shutdown finished. Use [`Lameduck::builder`] for more control.
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
) -> Result<ShutdownReport, Error>
where
    S: serve::HttpService<B>,
    B: serve::ResponseBody,
{
    let lameduck = Lameduck::from_env()?;
    lameduck.bind_admin().await?;
    lameduck.handle_signals()?;
    lameduck.serve(listener, service).await
}
