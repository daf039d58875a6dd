//! `lameduck gate`: a validating admission webhook that intercepts pod deletions (`DELETE
//! pods`) and evictions (`CREATE pods/eviction`), takes the pod out of traffic without touching
//! its labels, and lets the deletion through only once the cluster shows it is safe: every
//! EndpointSlice lists the pod not ready, the slowest consumer's sync margin passed, the pod
//! says it is quiet, and its prepare hook (if any) is done.
//!
//! A DELETE is held inside the webhook call while the evidence comes in (up to the hold
//! limit, below the call's timeout), then denied with what is pending if it did not; an
//! eviction is answered 429 until safe, which `kubectl drain` and autoscalers retry. A pod
//! whose deletion does not follow is put back in service.

mod budget;
mod caches;
mod gate;
mod hold_record;
mod lease;
mod metrics;
mod pods;
mod serving;
mod settings;
mod webhook;

pub use budget::{Budget, selects};
pub use caches::Caches;
pub use gate::{Gate, Verdict};
pub use hold_record::{HELD_LABEL, HOLD_ANNOTATION, HoldRecord};
pub use lease::Leadership;
pub use metrics::Metrics;
pub use pods::{DrainStatus, Handle, PodAddresses};
pub use settings::{
    ADMIN_PORT_ANNOTATION, HOLD_POLICY_ANNOTATION, HoldPolicy, MAX_HOLD_ANNOTATION, OPT_IN_LABEL,
    OPT_IN_VALUE, PREPARE_URL_ANNOTATION, PodHold, SERVING_CONDITION, Settings,
};
pub use webhook::tls_acceptor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// No client for the API server.
    #[error("Kubernetes client: {0}")]
    Client(String),
    /// The watches did not start.
    #[error("watching EndpointSlices and Namespaces: {0}")]
    Caches(String),
    /// The listen address could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How to run `lameduck gate serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The HTTPS listen address.
    pub listen: SocketAddr,
    /// The serving certificate (PEM; its SANs must name the webhook's service or address).
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    pub tls_key: PathBuf,
    /// A kubeconfig file; in-cluster configuration (or `$KUBECONFIG`) when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// What the gate waits for.
    pub settings: Settings,
    /// How pods are reached.
    pub addresses: PodAddresses,
}

/// Runs the gate until the process is stopped: starts the watches, the cancel loop and the
/// HTTPS listener, and prints `listening on ADDR` once it answers.
pub async fn serve(options: ServeOptions) -> Result<(), Error> {
    let tls = tls_acceptor(&options.tls_cert, &options.tls_key)?;
    let client = client(options.kubeconfig.as_deref()).await?;
    let (caches, _watches) = Caches::start(&client, Duration::from_secs(60))
        .await
        .map_err(Error::Caches)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: options.listen,
        source,
    })?;
    let gate = Arc::new(Gate::new(
        client,
        options.settings,
        options.addresses,
        caches,
    ));
    // Every replica answers admission requests; the one holding the Lease puts pods back.
    let namespace = gate
        .settings()
        .own_namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("lameduck-gate-{}", std::process::id()));
    tokio::spawn(lease::run(
        gate.client().clone(),
        namespace,
        "lameduck-gate".to_owned(),
        identity,
        Arc::clone(gate.leadership()),
    ));
    tokio::spawn(Arc::clone(&gate).cancel_loop());
    tokio::spawn(serving::open_new_pods(gate.client().clone()));
    tracing::info!(
        %addr,
        sync_margin = ?gate.settings().sync_margin,
        hold_limit = ?gate.settings().hold_limit,
        "lameduck gate: POST /validate, GET /healthz, GET /metrics"
    );
    println!("listening on {addr}");
    webhook::serve(gate, listener, tls).await;
    Ok(())
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Client(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Client(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Client(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
}
