//! `lameduck gate serve`: flags to [`lameduck_gate::ServeOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lameduck_gate::{HoldPolicy, PodAddresses, ServeOptions, Settings};

use crate::exit::Failure;
use crate::logs::LogFormat;

/// Flags of `lameduck gate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: GateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GateCommand {
    /// Serve the admission webhook (POST /validate) with /healthz and /metrics.
    Serve(Box<ServeArgs>),
}

/// What happens to a pod still not safe at its max hold.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Policy {
    /// Let it go (with a Warning event).
    BestEffort,
    /// Keep refusing: graceful or not at all (Warning event, metric).
    Strict,
}

/// Flags of `lameduck gate serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// HTTPS listen address.
    #[arg(long, env = "LAMEDUCK_GATE_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Serving certificate (PEM) whose SANs name the webhook's Service (or address).
    #[arg(long, env = "LAMEDUCK_GATE_TLS_CERT", value_name = "PATH")]
    tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "LAMEDUCK_GATE_TLS_KEY", value_name = "PATH")]
    tls_key: PathBuf,
    /// A kubeconfig file (default: in-cluster configuration, or $KUBECONFIG).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// After every EndpointSlice shows the pod not ready, how long the slowest consumer may
    /// take to apply it (kube-proxy: its min sync period, 1 s by default).
    #[arg(long, env = "LAMEDUCK_GATE_SYNC_MARGIN", value_name = "DURATION", default_value = "2s", value_parser = crate::run::duration)]
    sync_margin: Duration,
    /// The longest a DELETE is held inside one webhook call (also capped below the call's own
    /// timeout); then it is denied with what is pending, and the caller retries.
    #[arg(long, env = "LAMEDUCK_GATE_HOLD_LIMIT", value_name = "DURATION", default_value = "25s", value_parser = crate::run::duration)]
    hold_limit: Duration,
    /// A pod taken out of traffic whose deletion does not follow within this is put back.
    #[arg(long, env = "LAMEDUCK_GATE_CANCEL_AFTER", value_name = "DURATION", default_value = "30s", value_parser = crate::run::duration)]
    cancel_after: Duration,
    /// Default max hold per pod (annotation lameduck.dev/max-hold overrides it).
    #[arg(long, env = "LAMEDUCK_GATE_MAX_HOLD", value_name = "DURATION", default_value = "5m", value_parser = crate::run::duration)]
    max_hold: Duration,
    /// Default policy at the max hold (annotation lameduck.dev/hold-policy overrides it).
    #[arg(
        long,
        env = "LAMEDUCK_GATE_HOLD_POLICY",
        value_name = "POLICY",
        default_value = "best-effort"
    )]
    hold_policy: Policy,
    /// Calls to a pod's admin endpoint or prepare hook fail after this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::run::duration)]
    pod_call_timeout: Duration,
    /// The gate's own namespace: its own pods (label app.kubernetes.io/name=lameduck-gate) are
    /// never held.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    own_namespace: Option<String>,
    /// Log level: error, warn, info, debug, trace or off.
    #[arg(long, env = "LAMEDUCK_LOG", default_value = "info")]
    log: tracing_subscriber::filter::LevelFilter,
    /// Log lines as text or JSON.
    #[arg(long, env = "LAMEDUCK_LOG_FORMAT", default_value = "json")]
    log_format: LogFormat,
    /// Tests only: a file of `POD_IP:PORT ADDRESS` lines mapping pod addresses to where the
    /// pods really listen (local processes standing in for pods).
    #[arg(long, hide = true, value_name = "PATH")]
    pod_address_map: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn main(args: Args) -> Result<ExitCode, Failure> {
    let GateCommand::Serve(args) = args.command;
    crate::logs::init(args.log, args.log_format);
    for (flag, path) in [("--tls-cert", &args.tls_cert), ("--tls-key", &args.tls_key)] {
        if !path.is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{flag} {}: no such file",
                path.display()
            )));
        }
    }
    let options = ServeOptions {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        kubeconfig: args.kubeconfig,
        settings: Settings {
            sync_margin: args.sync_margin,
            hold_limit: args.hold_limit,
            cancel_after: args.cancel_after,
            max_hold: args.max_hold,
            hold_policy: match args.hold_policy {
                Policy::BestEffort => HoldPolicy::BestEffort,
                Policy::Strict => HoldPolicy::Strict,
            },
            pod_call_timeout: args.pod_call_timeout,
            own_namespace: args.own_namespace,
            ..Settings::default()
        },
        addresses: args
            .pod_address_map
            .map_or(PodAddresses::Direct, PodAddresses::MapFile),
    };
    options
        .settings
        .validate()
        .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime
        .block_on(lameduck_gate::serve(options))
        .map_err(|e| match e {
            lameduck_gate::Error::Tls(_) => Failure::usage(e),
            other => Failure::with_code(1, other),
        })?;
    Ok(ExitCode::SUCCESS)
}
