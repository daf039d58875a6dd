//! `lameduck run`, `sleep`, `wait` and `probe`: flags → the lameduck-run crate → exit codes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use lameduck_run::{Builder, Protocol, ProxyConfig, RunConfig, Settings, Target};
pub use lameduck_settings::cli::{RunArgs, duration};

use crate::exit::Failure;

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
    let proxies = args.proxy_configs().map_err(Failure::usage)?;
    let config = args
        .settings(|var| std::env::var(var).ok())
        .map_err(Failure::usage)?;
    let mut builder = Builder::from_env()
        .map_err(Failure::usage)?
        .with_settings(config.settings().clone());
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
    let settings = builder.settings();
    let secs = |d: Duration| format!("{}s", d.as_secs_f64());
    let mut out = String::from("lameduck run: the settings are valid\n\nsettings:\n");
    for spec in lameduck_run::SETTINGS {
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
