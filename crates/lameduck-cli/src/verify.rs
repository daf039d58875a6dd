//! `lameduck verify`: flags → [`lameduck_verify::Scenario`], run, render, exit code.
//!
//! Exit codes: 0 when every run passed (failures ≤ `--max-failures`), 1 when one did not,
//! 2 for bad flags, scenario files or replica commands (including one that never listens),
//! 3 when the testbed itself failed (a router would not start, the accounting invariant broke).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use lameduck_verify::{
    Distribution, Dur, Local, PortRef, PreStop, Protocol, Report, RouterKind, RouterSpec,
    RunOptions, Scenario, VerifyError, parse_duration,
};

use crate::exit::Failure;

/// Flags of `lameduck verify` (boxed: they are many, and the subcommand enum stays small).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: Box<Flags>,
}

/// Flags of `lameduck verify`. Flags override the scenario file.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    lameduck verify --demo\n  \
    lameduck verify --router l4 --propagation uniform:0.5s..3s -- ./app --port {port}\n  \
    lameduck verify -f rollout.yaml --json > report.json\n  \
    lameduck verify -f deploy.yaml -f service.yaml --router l4,l7 -- ./my-app\n\n\
    Placeholders in the command: {port} (routers send here), {admin_port}, {app_port}, {pod}.")]
struct Flags {
    /// A scenario file (YAML; see docs/verify.md for its keys) or Kubernetes manifests (a
    /// Deployment, StatefulSet or Argo Rollout, with its Service beside it); repeatable.
    /// Manifests override the scenario file.
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "scenario",
        value_name = "FILE"
    )]
    files: Vec<PathBuf>,
    /// Print the scenario the files and flags make (JSON) and what the manifests map
    /// approximately or not at all, then exit without running.
    #[arg(long)]
    dry_run: bool,
    /// Run the built-in demo: a naive app bare, then under `lameduck run`, side by side.
    #[arg(long)]
    demo: bool,
    /// Replica count.
    #[arg(long)]
    replicas: Option<u32>,
    /// Rolling updates to perform (0: steady load for --duration).
    #[arg(long)]
    rollouts: Option<u32>,
    /// Seed of every random draw (propagation delays, kubelet delays, request mix).
    #[arg(long)]
    seed: Option<u64>,
    /// Routers: KIND or KIND=COUNT, comma-separated or repeated (kinds: l4, l7, haproxy, nginx).
    #[arg(long = "router", value_name = "KIND[=COUNT]", value_delimiter = ',')]
    routers: Vec<String>,
    /// Retry idempotent requests once on another endpoint (l7, haproxy, nginx routers).
    #[arg(long)]
    retry: bool,
    /// Propagation delay: fixed:1s, uniform:0.5s..3s, lognormal:MEDIAN,P99.
    #[arg(long, value_name = "DIST")]
    propagation: Option<String>,
    /// Delay from t0 until the kubelet acts (same syntax as --propagation).
    #[arg(long, value_name = "DIST")]
    kubelet_delay: Option<String>,
    /// Client model: open (requests arrive at --rate) or closed (each connection sends its next
    /// request as soon as the previous one ended, at most --rate in total).
    #[arg(long, value_name = "MODEL")]
    clients: Option<String>,
    /// Requests per second over all routers: the open loop's arrival rate, the closed loop's cap.
    #[arg(long)]
    rate: Option<f64>,
    /// Keep-alive connections per router (with --clients closed: busy clients per router).
    #[arg(long)]
    connections: Option<u32>,
    /// Load protocol: http1 or h2c.
    #[arg(long)]
    protocol: Option<String>,
    /// Share of requests that are slow (0 to 1), sent to the scenario's slow path.
    #[arg(long, value_name = "P")]
    slow_share: Option<f64>,
    /// Concurrent WebSocket sessions.
    #[arg(long, value_name = "N")]
    websockets: Option<u32>,
    /// Concurrent streaming responses.
    #[arg(long, value_name = "N")]
    streams: Option<u32>,
    /// Load duration when --rollouts is 0.
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// A request without a full response after this long fails with `timeout`.
    #[arg(long, value_name = "DURATION")]
    request_timeout: Option<String>,
    /// strategy.rollingUpdate.maxSurge (count or percentage).
    #[arg(long)]
    max_surge: Option<String>,
    /// strategy.rollingUpdate.maxUnavailable (count or percentage).
    #[arg(long)]
    max_unavailable: Option<String>,
    /// minReadySeconds.
    #[arg(long, value_name = "DURATION")]
    min_ready: Option<String>,
    /// terminationGracePeriodSeconds.
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// preStop: sleep for this long.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["pre_stop_exec", "pre_stop_http", "no_pre_stop"])]
    pre_stop_sleep: Option<String>,
    /// preStop: run this command (split on whitespace; placeholders allowed).
    #[arg(long, value_name = "CMD", conflicts_with_all = ["pre_stop_http", "no_pre_stop"])]
    pre_stop_exec: Option<String>,
    /// preStop: GET this path on {port}.
    #[arg(long, value_name = "PATH", conflicts_with = "no_pre_stop")]
    pre_stop_http: Option<String>,
    /// No preStop hook, whatever the scenario file says.
    #[arg(long)]
    no_pre_stop: bool,
    /// Stop signal (default SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Readiness probe path ("tcp" for a TCP check).
    #[arg(long, value_name = "PATH")]
    probe_path: Option<String>,
    /// Readiness probe port: port, admin or app.
    #[arg(long, value_name = "WHICH")]
    probe_port: Option<String>,
    /// The run passes when at most this many requests failed.
    #[arg(long, value_name = "N")]
    max_failures: Option<u64>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Keep replica logs in this directory.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// The replica command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn usage(msg: impl std::fmt::Display) -> Failure {
    Failure::usage(anyhow!("{msg}"))
}

fn dur(flag: &str, v: &str) -> Result<Dur, Failure> {
    parse_duration(v)
        .map(Dur)
        .map_err(|e| usage(format!("--{flag}: {e}")))
}

/// Applies the flags on top of `sc`; the command after `--` too unless manifests took it.
fn apply(args: &Flags, sc: &mut Scenario, command: bool) -> Result<(), Failure> {
    if command && !args.command.is_empty() {
        sc.command.clone_from(&args.command);
    }
    if let Some(v) = args.replicas {
        sc.replicas = v;
    }
    if let Some(v) = args.rollouts {
        sc.rollouts = v;
    }
    if let Some(v) = args.seed {
        sc.seed = v;
    }
    if !args.routers.is_empty() {
        sc.routers.clear();
        for r in &args.routers {
            let (kind, count) = r.split_once('=').unwrap_or((r, "1"));
            let kind: RouterKind = kind.parse().map_err(|e| usage(format!("--router: {e}")))?;
            let count: u32 = count
                .parse()
                .ok()
                .filter(|c| (1..=64).contains(c))
                .ok_or_else(|| usage(format!("--router {r}: COUNT must be 1 to 64")))?;
            sc.routers.push(RouterSpec {
                kind,
                count,
                retry: false,
                propagation: None,
            });
        }
    }
    if args.retry {
        for r in &mut sc.routers {
            r.retry = r.kind != RouterKind::L4;
        }
    }
    if let Some(v) = &args.propagation {
        sc.propagation =
            Distribution::parse_flag(v).map_err(|e| usage(format!("--propagation: {e}")))?;
    }
    if let Some(v) = &args.kubelet_delay {
        sc.kubelet_delay =
            Distribution::parse_flag(v).map_err(|e| usage(format!("--kubelet-delay: {e}")))?;
    }
    if let Some(v) = &args.clients {
        sc.load.clients = v.parse().map_err(|e| usage(format!("--clients: {e}")))?;
    }
    if let Some(v) = args.rate {
        sc.load.rate = v;
    }
    if let Some(v) = args.connections {
        sc.load.connections = v.max(1);
    }
    if let Some(v) = &args.protocol {
        sc.load.protocol = v
            .parse::<Protocol>()
            .map_err(|e| usage(format!("--protocol: {e}")))?;
    }
    if let Some(v) = args.slow_share {
        sc.load.slow_share = v;
    }
    if let Some(v) = args.websockets {
        sc.load.websockets = v;
    }
    if let Some(v) = args.streams {
        sc.load.streams = v;
    }
    if let Some(v) = &args.duration {
        sc.load.duration = dur("duration", v)?;
    }
    if let Some(v) = &args.request_timeout {
        sc.load.timeout = dur("request-timeout", v)?;
    }
    if let Some(v) = &args.max_surge {
        sc.max_surge = v.parse().map_err(|e| usage(format!("--max-surge: {e}")))?;
    }
    if let Some(v) = &args.max_unavailable {
        sc.max_unavailable = v
            .parse()
            .map_err(|e| usage(format!("--max-unavailable: {e}")))?;
    }
    if let Some(v) = &args.min_ready {
        sc.min_ready = dur("min-ready", v)?;
    }
    if let Some(v) = &args.grace {
        sc.grace = dur("grace", v)?;
    }
    if args.no_pre_stop {
        sc.pre_stop = None;
    }
    if let Some(v) = &args.pre_stop_sleep {
        sc.pre_stop = Some(PreStop::Sleep(dur("pre-stop-sleep", v)?));
    }
    if let Some(v) = &args.pre_stop_exec {
        sc.pre_stop = Some(PreStop::Exec(
            v.split_whitespace().map(str::to_owned).collect(),
        ));
    }
    if let Some(v) = &args.pre_stop_http {
        sc.pre_stop = Some(PreStop::Http {
            path: v.clone(),
            port: PortRef::Port,
        });
    }
    if let Some(v) = &args.stop_signal {
        sc.stop_signal.clone_from(v);
    }
    if let Some(v) = &args.probe_path {
        sc.readiness.path = if v == "tcp" { None } else { Some(v.clone()) };
    }
    if let Some(v) = &args.probe_port {
        sc.readiness.port = match v.as_str() {
            "port" => PortRef::Port,
            "admin" => PortRef::Admin,
            "app" => PortRef::App,
            o => {
                return Err(usage(format!(
                    "--probe-port: {o:?} is not port, admin or app"
                )));
            }
        };
    }
    if let Some(v) = args.max_failures {
        sc.max_failures = v;
    }
    Ok(())
}

/// Reads the `-f` files: at most one scenario file (no `kind`), the base; then every Kubernetes
/// manifest at once, over it. Returns the scenario and whether manifests gave the command.
fn read_files(args: &Flags) -> Result<(Scenario, bool), Failure> {
    let mut scenario: Option<Scenario> = None;
    let mut manifests: Vec<(PathBuf, String)> = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        // Kubernetes objects have a `kind`; scenario files never do.
        if lameduck_lint::load(&path.display().to_string(), &text)
            .objects
            .is_empty()
        {
            if scenario.is_some() {
                return Err(usage(format!(
                    "{}: a second scenario file (no Kubernetes `kind` in it); give one",
                    path.display()
                )));
            }
            scenario = Some(Scenario::from_yaml(&text, path).map_err(Failure::usage)?);
        } else {
            manifests.push((path.clone(), text));
        }
    }
    let mut sc = scenario.unwrap_or_default();
    if manifests.is_empty() {
        return Ok((sc, false));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::with_code(3, anyhow!("cannot find the lameduck binary: {e}")))?;
    let sources: Vec<(&std::path::Path, &str)> = manifests
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let notes = sc
        .apply_manifests(
            &sources,
            &Local {
                command: &args.command,
                lameduck: &exe,
                runnable: &lameduck_verify::runnable_here,
            },
        )
        .map_err(Failure::usage)?;
    // Listed once, before the run, on stderr so that `--json` stays one document.
    for note in &notes {
        eprintln!("{note}");
    }
    Ok((sc, true))
}

fn failure(e: VerifyError) -> Failure {
    match e {
        VerifyError::Scenario(_) | VerifyError::Pod(_) => Failure::usage(e),
        VerifyError::Interrupted => Failure::with_code(130, e),
        other => Failure::with_code(3, other),
    }
}

/// Runs `lameduck verify`.
pub fn main(args: Args) -> Result<ExitCode, Failure> {
    let args = *args.flags;
    let runs: Vec<(Scenario, String)> = if args.demo {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::with_code(3, anyhow!("cannot find the lameduck binary: {e}")))?;
        let (mut bare, mut wrapped) = lameduck_verify::demo_scenarios(&exe);
        apply(&args, &mut bare, true)?;
        apply(&args, &mut wrapped, true)?;
        vec![(bare, "naive app".into()), (wrapped, "lameduck run".into())]
    } else {
        let (mut sc, manifests) = read_files(&args)?;
        apply(&args, &mut sc, !manifests)?;
        vec![(sc, String::new())]
    };
    for (sc, _) in &runs {
        sc.validate().map_err(Failure::usage)?;
    }
    if args.dry_run {
        let scenarios: Vec<&Scenario> = runs.iter().map(|(sc, _)| sc).collect();
        let json = serde_json::to_string_pretty(&scenarios)
            .map_err(|e| Failure::with_code(3, anyhow!("cannot print the scenario: {e}")))?;
        out(&format!("{json}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::with_code(3, anyhow!("cannot start the runtime: {e}")))?;
    let mut reports: Vec<Report> = Vec::new();
    for (sc, label) in runs {
        let opts = RunOptions {
            progress: !args.quiet && !args.json,
            label,
            workdir: args.logs.clone(),
        };
        reports.push(
            rt.block_on(lameduck_verify::run(sc, opts))
                .map_err(failure)?,
        );
    }
    if args.json {
        out(&format!("{}\n", lameduck_verify::render_json(&reports)));
    } else {
        out(&lameduck_verify::render_terminal(&reports));
    }
    if let Some(path) = &args.html {
        std::fs::write(path, lameduck_verify::render_html(&reports))
            .map_err(|e| Failure::with_code(3, anyhow!("cannot write {}: {e}", path.display())))?;
        if !args.json {
            out(&format!("\nHTML report: {}\n", path.display()));
        }
    }
    let passed = if args.demo {
        // The demo makes its point when the bare app lost requests and the wrapped one none.
        reports.first().is_some_and(|r| r.load.failed > 0)
            && reports.get(1).is_some_and(|r| r.passed)
    } else {
        reports.iter().all(|r| r.passed)
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
