//! `lameduck run`, `sleep`, `wait` and `probe`: flags → the lameduck-run crate → exit codes.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use lameduck_run::{
    Builder, ClientAddress, ForwardTo, Protocol, ProxyConfig, ProxySpec, RunConfig, Settings,
    Signal, Target, UpstreamProtocol, parse_signal,
};

use crate::exit::Failure;
use crate::logs::LogFormat;

const RUN_EXAMPLES: &str = "\
Examples:
  # Container entrypoint: drain on SIGTERM, then stop the app.
  lameduck run -- /app/server --port 8080

  # With the drain proxy: the Service targets :8080, the app listens on 127.0.0.1:8081.
  lameduck run --proxy 0.0.0.0:8080=127.0.0.1:8081 --grace 30 -- /app/server --port 8081

  # A TCP service (e.g. a database protocol) whose app reads the PROXY protocol for client IPs.
  lameduck run --proxy 5432=127.0.0.1:5433 --protocol tcp --client-address proxy-v2 -- /app/db

  # An app with an HTTP port and a gRPC port, each drained by a proxy of its own.
  lameduck run --proxy 8080=8081 --proxy 9090=9091 -- /app/server

  # Behind an AWS NLB with proxy protocol on: the app's X-Forwarded-For names the real client.
  lameduck run --proxy 8080=8081 --accept-proxy-protocol -- /app/server --port 8081
  # ... only on the port the NLB reaches; in-cluster clients use :8080 without a header.
  lameduck run --proxy 8080=8081 --proxy 8443=8081 --accept-proxy-protocol 8443 -- /app/server

  # Readiness of lameduck's /readyz also asks the app; nginx stops gracefully on SIGQUIT.
  lameduck run --ready-url http://127.0.0.1:8081/healthz --stop-signal SIGQUIT -- nginx -g 'daemon off;'

Every flag has an environment variable (LAMEDUCK_GRACE_SECONDS, LAMEDUCK_MIN_WAIT, ..., listed
with each flag); flags win. Durations take 5s, 500ms, 1m30s or plain seconds.

Exit status: the app's (128+N if signal N killed it); 127 command not found, 126 not
executable, 2 invalid flags or settings, 125 lameduck could not set up (e.g. a port in use).";

/// Flags of `lameduck run`.
#[derive(Debug, clap::Args)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Where /livez /readyz /startupz /metrics and POST /drain listen; `off` disables them
    /// [env: LAMEDUCK_ADMIN_ADDR] [default: 0.0.0.0:8686].
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Drain proxy: listen on LISTEN and forward to the app on UPSTREAM (IP:PORT, or a bare
    /// PORT meaning 0.0.0.0:PORT and 127.0.0.1:PORT). Repeat it (or separate values with
    /// commas) for an app with several ports; a leading `auto:`, `http:` or `tcp:` sets that
    /// proxy's protocol.
    #[arg(
        long,
        value_name = "[PROTOCOL:]LISTEN=UPSTREAM",
        env = "LAMEDUCK_PROXY",
        value_delimiter = ','
    )]
    pub proxy: Vec<ProxySpec>,
    /// What the proxies speak unless their --proxy says: auto (per connection: HTTP/1 and h2c
    /// are drained as HTTP, TLS and other protocols spliced), http (HTTP/1.1, h2c, WebSocket)
    /// or tcp (bytes) [default: auto].
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "LAMEDUCK_PROTOCOL",
        requires = "proxy"
    )]
    pub protocol: Option<Protocol>,
    /// Auto: how long a connection may send nothing before it is spliced as a server-first
    /// protocol (SMTP, MySQL), whose greeting waits that long [default: 250ms].
    #[arg(
        long,
        value_name = "DURATION",
        env = "LAMEDUCK_DETECT_TIMEOUT",
        requires = "proxy",
        value_parser = duration
    )]
    pub detect_timeout: Option<Duration>,
    /// What the HTTP proxy speaks to the app: same (as the client), http1 or h2c
    /// [default: same].
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "LAMEDUCK_UPSTREAM_PROTOCOL",
        requires = "proxy"
    )]
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// How the proxy tells the app the client's address: x-forwarded-for (HTTP), proxy-v1 or
    /// proxy-v2 (PROXY protocol header, TCP) or none [default: x-forwarded-for for http, none
    /// for tcp].
    #[arg(
        long,
        value_name = "HOW",
        env = "LAMEDUCK_CLIENT_ADDRESS",
        requires = "proxy"
    )]
    pub client_address: Option<ClientAddress>,
    /// Client connections start with a PROXY protocol header (v1 or v2) from a load balancer,
    /// such as an AWS NLB with proxy protocol on: the client it names is the one the app is
    /// told of; connections without a valid header are closed. Alone: on every proxy; with
    /// PORTS (e.g. 8443,9443): only on the proxies listening there, so that in-cluster
    /// clients, which send no header, can use another port.
    #[arg(
        long,
        value_name = "PORTS",
        env = "LAMEDUCK_ACCEPT_PROXY_PROTOCOL",
        requires = "proxy",
        num_args = 0..=1,
        default_missing_value = "all",
        value_parser = accept_proxy_protocol
    )]
    pub accept_proxy_protocol: Option<AcceptProxyProtocol>,
    /// Threads each proxy forwards on, each with its own event loop [default: one per CPU the
    /// process may use].
    #[arg(
        long,
        value_name = "N",
        env = "LAMEDUCK_PROXY_THREADS",
        requires = "proxy",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub proxy_threads: Option<u16>,
    /// The app's own readiness (http://HOST:PORT/PATH or tcp://HOST:PORT), checked by /readyz
    /// [default with --proxy: a TCP connect to the upstream].
    #[arg(long, value_name = "URL", env = "LAMEDUCK_READY_URL")]
    pub ready_url: Option<Target>,
    /// Signal sent to the app's process group when the drain wait is over.
    #[arg(long, value_name = "SIGNAL", env = "LAMEDUCK_STOP_SIGNAL", default_value = "SIGTERM", value_parser = parse_signal)]
    pub stop_signal: Signal,
    /// Where other signals (SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, ...) are forwarded: the app's
    /// main process (child) or its whole process group (group).
    #[arg(
        long,
        value_name = "WHERE",
        env = "LAMEDUCK_FORWARD_TO",
        default_value = "child"
    )]
    pub forward_to: ForwardTo,
    /// The pod's terminationGracePeriodSeconds [env: LAMEDUCK_GRACE_SECONDS] [default: 30].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
    /// Grace time a preStop hook uses before SIGTERM [env: LAMEDUCK_PRESTOP_SECONDS] [default: 0].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub prestop: Option<Duration>,
    /// Kept free before the kubelet's SIGKILL [env: LAMEDUCK_SAFETY_MARGIN] [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub safety_margin: Option<Duration>,
    /// Shortest drain wait [env: LAMEDUCK_MIN_WAIT] [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub min_wait: Option<Duration>,
    /// The drain wait ends after this long without new connections or requests
    /// [env: LAMEDUCK_QUIET_WINDOW] [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub quiet_window: Option<Duration>,
    /// Longest drain wait [env: LAMEDUCK_MAX_WAIT] [default: 20s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_wait: Option<Duration>,
    /// Reserved after the drain wait for in-flight work and the app's own stop
    /// [env: LAMEDUCK_CLOSE_TIMEOUT] [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub close_timeout: Option<Duration>,
    /// At Closing, idle proxied connections are closed once idle this long
    /// [env: LAMEDUCK_IDLE_GRACE] [default: 500ms].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub idle_grace: Option<Duration>,
    /// At Closing, proxied connections that sent no byte are closed after this long
    /// [env: LAMEDUCK_FIRST_BYTE_GRACE] [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub first_byte_grace: Option<Duration>,
    /// Log level: error, warn, info, debug, trace or off.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "LAMEDUCK_LOG",
        default_value = "info"
    )]
    pub log: tracing_subscriber::filter::LevelFilter,
    /// Log lines as text, or as one JSON object per line (for log pipelines).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "LAMEDUCK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Validate the flags and settings, print the drain budget they lead to, and exit (0
    /// valid, 2 invalid) without starting anything: what `lameduck lint` checks of a
    /// container, asked of the real thing.
    #[arg(long)]
    pub check: bool,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Which proxies take a PROXY protocol header from a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptProxyProtocol {
    /// Every proxy (the flag alone, or `true`/`yes`/`on`/`all`).
    Everywhere,
    /// Only the proxies listening on these ports.
    Ports(Vec<u16>),
    /// None (`false`/`no`/`off`/`none`, for the environment variable).
    Nowhere,
}

fn accept_proxy_protocol(value: &str) -> Result<AcceptProxyProtocol, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "all" => Ok(AcceptProxyProtocol::Everywhere),
        "false" | "no" | "off" | "none" => Ok(AcceptProxyProtocol::Nowhere),
        ports => ports
            .split(',')
            .map(|port| port.trim().parse::<u16>().ok().filter(|&port| port > 0))
            .collect::<Option<Vec<u16>>>()
            .map(AcceptProxyProtocol::Ports)
            .ok_or_else(|| {
                format!("{value:?} is not a list of listen ports (e.g. 8443,9443), true or false")
            }),
    }
}

/// Flags of `lameduck sleep`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example (Kubernetes, image without a shell):\n  \
    lifecycle: {preStop: {exec: {command: [\"/lameduck\", \"sleep\", \"5s\"]}}}")]
pub struct SleepArgs {
    /// How long: 5s, 500ms, 1m or plain seconds.
    #[arg(value_name = "DURATION", value_parser = duration)]
    pub duration: Duration,
}

/// Flags of `lameduck wait`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example (Kubernetes preStop of a container started with `lameduck run`):\n  \
    lifecycle: {preStop: {exec: {command: [\"/lameduck\", \"wait\"]}}}\n\n\
    Exit status: 0 once the drain wait is over, 1 if the wrapper cannot be reached or the timeout \
    passed, 2 invalid flags."
)]
pub struct WaitArgs {
    /// The admin address of the running `lameduck run` (0.0.0.0 means this host)
    /// [env: LAMEDUCK_ADMIN_ADDR] [default: 127.0.0.1:8686].
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Give up after this long [default: LAMEDUCK_GRACE_SECONDS, else 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,
}

/// Flags of `lameduck probe`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    lameduck probe http://127.0.0.1:8686/readyz\n  \
    lameduck probe tcp://127.0.0.1:5432\n\n\
    Exit status: 0 healthy (HTTP 2xx/3xx, or the TCP connection opened), 1 unhealthy or \
    unreachable, 2 invalid flags.")]
pub struct ProbeArgs {
    /// http://HOST:PORT/PATH or tcp://HOST:PORT.
    #[arg(value_name = "TARGET")]
    pub target: Target,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1s")]
    pub timeout: Duration,
}

pub(crate) fn duration(value: &str) -> Result<Duration, String> {
    lameduck_run::parse_duration_value(value).map_err(|error| error.to_string())
}

fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if multi_thread {
        // One worker: the supervisor's work is light, and the drain proxy runs one event loop
        // per thread of its own (see lameduck-run's proxy module) instead of sharing workers.
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(1);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        Failure::with_code(
            lameduck_run::SETUP_FAILED,
            anyhow!(e).context("starting the runtime"),
        )
    })
}

/// Runs `lameduck run`.
pub fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    crate::logs::init(args.log, args.log_format);
    let proxies = proxy_configs(&args)?;
    let mut builder = Builder::from_env().map_err(Failure::usage)?;
    if let Some(admin) = &args.admin {
        builder = builder.admin_addr(match admin.trim() {
            "off" | "none" => None,
            addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
                Failure::usage(anyhow!(
                    "--admin: {admin:?} is not an address like 0.0.0.0:8686 (or off)"
                ))
            })?),
        });
    }
    let flags = [
        (
            args.grace,
            Builder::grace as fn(Builder, Duration) -> Builder,
        ),
        (args.prestop, Builder::prestop),
        (args.safety_margin, Builder::safety_margin),
        (args.min_wait, Builder::min_wait),
        (args.quiet_window, Builder::quiet_window),
        (args.max_wait, Builder::max_wait),
        (args.close_timeout, Builder::close_timeout),
        (args.idle_grace, Builder::idle_grace),
        (args.first_byte_grace, Builder::first_byte_grace),
    ];
    for (value, set) in flags {
        if let Some(value) = value {
            builder = set(builder, value);
        }
    }
    if args.check {
        return check(&builder, &proxies, &args);
    }
    let config = RunConfig {
        command: args.command,
        stop_signal: args.stop_signal,
        forward_to: args.forward_to,
        ready: args.ready_url,
        proxies,
        // Where /proc is missing (a bare chroot) the guard is not started; the app still gets
        // its parent-death signal.
        guard_program: std::env::current_exe().ok().map(Into::into),
    };
    match runtime(true)?.block_on(lameduck_run::run(builder, config)) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(error) => Err(Failure::with_code(error.exit_code(), error)),
    }
}

/// `lameduck run --check`: the settings' validation and the budget they give, on stdout.
fn check(builder: &Builder, proxies: &[ProxyConfig], args: &RunArgs) -> Result<ExitCode, Failure> {
    let config = builder
        .settings()
        .clone()
        .validate()
        .map_err(|error| Failure::usage(anyhow!(error)))?;
    let settings = config.settings();
    let secs = |d: Duration| format!("{}s", d.as_secs_f64());
    let mut out = String::from("lameduck run: the settings are valid\n\nsettings:\n");
    for spec in &lameduck_run::SETTINGS {
        let value = settings.get(spec.env).map_or_else(|| "?".to_owned(), secs);
        out.push_str(&format!("  {:<20} {:<27} {value}\n", spec.flag, spec.env));
    }
    for (what, spent) in [
        (
            "a drain started by the stop signal (after the preStop time)",
            settings.prestop,
        ),
        (
            "a drain started by POST /drain or lameduck wait",
            Duration::ZERO,
        ),
    ] {
        let budget = settings.budget(spent);
        out.push_str(&format!(
            "\nbudget of {what}, from the drain's start:\n  drain wait {}..{} (ends after {} without arrivals)\n  \
             Closing by {}, forced close at {}, exit by {} (the grace period ends at {})\n",
            secs(settings.min_wait),
            secs(budget.drain_deadline),
            secs(settings.quiet_window),
            secs(budget.drain_deadline),
            secs(budget.force_close_at),
            secs(budget.exit_by),
            secs(settings.grace.saturating_sub(spent)),
        ));
    }
    let rules = settings.app_stop();
    out.push_str(&format!(
        "\nthe app gets the stop signal once nothing is in flight, counting tunnels only after {} \
         into Closing, and at the latest {} into Closing (half the close timeout); leftovers of \
         its process group get {} before SIGKILL\n",
        secs(rules.settled),
        secs(rules.signal_by),
        secs(lameduck_run::LEFTOVER_GRACE),
    ));
    out.push_str(&format!(
        "\nadmin endpoints: {}\nstop signal: {}\n",
        builder
            .admin()
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        args.stop_signal
    ));
    for proxy in proxies {
        out.push_str(&format!(
            "proxy: {} -> {} ({}{})\n",
            proxy.spec.listen,
            proxy.spec.upstream,
            proxy.protocol,
            if proxy.protocol == Protocol::Auto {
                format!(
                    ", silent connections spliced after {}",
                    secs(proxy.detect_timeout)
                )
            } else {
                String::new()
            }
        ));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// One [`ProxyConfig`] per `--proxy`, the shared flags applied to each.
fn proxy_configs(args: &RunArgs) -> Result<Vec<ProxyConfig>, Failure> {
    let mut configs: Vec<ProxyConfig> = Vec::with_capacity(args.proxy.len());
    for &spec in &args.proxy {
        let protocol = spec.protocol.or(args.protocol).unwrap_or_default();
        let client_address = args
            .client_address
            .unwrap_or_else(|| ClientAddress::default_for(protocol));
        if let Some(conflict) = client_address.conflict(protocol) {
            return Err(Failure::usage(anyhow!(
                "--client-address: {conflict} (for --proxy {spec})"
            )));
        }
        let overlaps = |other: &ProxyConfig| {
            let (a, b) = (other.spec.listen, spec.listen);
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        if let Some(other) = configs.iter().find(|other| overlaps(other)) {
            return Err(Failure::usage(anyhow!(
                "--proxy {} and --proxy {spec} listen on the same port",
                other.spec
            )));
        }
        configs.push(ProxyConfig {
            spec,
            protocol,
            detect_timeout: args
                .detect_timeout
                .unwrap_or(lameduck_run::DEFAULT_DETECT_TIMEOUT),
            upstream_protocol: args.upstream_protocol.unwrap_or_default(),
            client_address,
            accept_proxy_protocol: match &args.accept_proxy_protocol {
                None | Some(AcceptProxyProtocol::Nowhere) => false,
                Some(AcceptProxyProtocol::Everywhere) => true,
                Some(AcceptProxyProtocol::Ports(ports)) => ports.contains(&spec.listen.port()),
            },
            threads: args.proxy_threads.map_or(0, usize::from),
        });
    }
    if let Some(AcceptProxyProtocol::Ports(ports)) = &args.accept_proxy_protocol {
        if let Some(port) = ports
            .iter()
            .find(|&&port| configs.iter().all(|c| c.spec.listen.port() != port))
        {
            return Err(Failure::usage(anyhow!(
                "--accept-proxy-protocol: no --proxy listens on port {port}"
            )));
        }
    }
    if args.upstream_protocol.is_some() && configs.iter().all(|c| c.protocol == Protocol::Tcp) {
        return Err(Failure::usage(anyhow!(
            "--upstream-protocol applies to --protocol http and auto only; a TCP proxy passes \
             bytes as they are"
        )));
    }
    if args.detect_timeout.is_some() && configs.iter().all(|c| c.protocol != Protocol::Auto) {
        return Err(Failure::usage(anyhow!(
            "--detect-timeout applies to --protocol auto only"
        )));
    }
    Ok(configs)
}

/// Runs `lameduck sleep`.
pub fn sleep(args: SleepArgs) -> Result<ExitCode, Failure> {
    std::thread::sleep(args.duration);
    Ok(ExitCode::SUCCESS)
}

/// Runs `lameduck wait`.
pub fn wait(args: WaitArgs) -> Result<ExitCode, Failure> {
    let env_admin = std::env::var("LAMEDUCK_ADMIN_ADDR")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let admin = args
        .admin
        .or(env_admin)
        .unwrap_or_else(|| "127.0.0.1:8686".to_owned());
    let mut addr: SocketAddr = admin.trim().parse().map_err(|_| {
        Failure::usage(anyhow!(
            "admin address {admin:?} is not an address like 127.0.0.1:8686"
        ))
    })?;
    // The wrapper listens on every interface; reach it on loopback.
    if addr.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    } else if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        addr.set_ip(Ipv6Addr::LOCALHOST.into());
    }
    let timeout = match args.timeout {
        Some(timeout) => timeout,
        None => {
            Settings::from_lookup(|k| std::env::var(k).ok())
                .map_err(Failure::usage)?
                .grace
        }
    };
    let answer = runtime(false)?
        .block_on(lameduck_run::request_drain(addr, timeout))
        .map_err(|e| Failure::with_code(1, anyhow!(e).context("lameduck wait")))?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `lameduck probe`.
pub fn probe(args: ProbeArgs) -> Result<ExitCode, Failure> {
    runtime(false)?
        .block_on(lameduck_run::check(&args.target, args.timeout))
        .map_err(|e| Failure::with_code(1, e))?;
    Ok(ExitCode::SUCCESS)
}
