//! Wires the app, the reaper, the signal policy, readiness and the proxy to one lifecycle.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use lameduck::{Builder, Lameduck, Phase};
use lameduck_proxy::ProxyMetrics;
use nix::sys::prctl;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::guard::GroupGuard;
use crate::probe::{self, Target};
use crate::reaper::{self, Reaped};
use crate::{ChildExit, ForwardTo, RunError, child, proxy, signals};

/// How long a readiness check of the app may take.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the supervisor looks whether requests in flight on tunnels or the app's leftover
/// processes are gone.
const POLL: Duration = Duration::from_millis(10);
/// Leftovers of the app's process group get this long after the stop signal before SIGKILL,
/// once the app itself has exited.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(1);
/// Once the app has exited during the drain, how long the proxy's connections get to finish
/// what the app's exit left them to say (close frames) before the process exits.
pub const CONNECTIONS_AFTER_EXIT: Duration = Duration::from_secs(1);
/// After the forced close, how long to wait for the SIGKILLed app to be reaped.
const REAP_AFTER_KILL: Duration = Duration::from_secs(2);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Sent to the app's process group when the drain wait is over (default SIGTERM).
    pub stop_signal: Signal,
    /// Where forwarded signals go.
    pub forward_to: ForwardTo,
    /// The app's own readiness, checked by `/readyz` while serving. With proxies and no
    /// target, a TCP connect to each upstream is used.
    pub ready: Option<Target>,
    /// The drain proxies, one per port of the app (none: the app's traffic is not seen).
    pub proxies: Vec<ProxyConfig>,
    /// The `lameduck` binary, run as `lameduck guard-process-group PGID` to kill the app's
    /// process group if this process is killed (not as PID 1, where the kernel does it);
    /// `None` leaves only the app's own parent-death signal.
    pub guard_program: Option<OsString>,
}

pub use lameduck_settings::proxy_config::ProxyConfig;

/// Runs the app under the lameduck lifecycle and returns the exit code to end with.
///
/// `builder` carries the drain settings and the admin address; the process-exit watchdog of the
/// library is turned off, because the supervisor must SIGKILL the app before it exits.
///
/// # Guarantees
/// - Listeners bind before the app starts: a port in use fails without starting it.
/// - The app never sees SIGTERM/SIGINT from us before the drain wait is over; it gets
///   `stop_signal` when in-flight proxied work finished (or half the close timeout passed).
/// - The app's process group is SIGKILLed at the budget's forced close; the function returns
///   once the app was reaped (or, if it cannot be, shortly after).
/// - If the app exits on its own, the function returns its code at once.
pub async fn run(builder: Builder, config: RunConfig) -> Result<u8, RunError> {
    if config.command.is_empty() {
        return Err(RunError::NoCommand);
    }
    let lameduck = builder.hard_exit(false).build()?;
    // PID 1 adopts orphans anyway; elsewhere (a dev shell, a CI job) this makes us adopt them.
    if let Err(error) = prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become a child subreaper; orphans of the app will not be reaped by lameduck");
    }
    if let Some(addr) = lameduck.bind_admin().await? {
        tracing::info!(%addr, "admin endpoints: /livez /readyz /startupz /metrics, /drain");
    }
    let mut bound = Vec::with_capacity(config.proxies.len());
    for proxy in &config.proxies {
        let listeners = proxy::bind(proxy.spec.listen, proxy.thread_count()).map_err(|source| {
            RunError::ProxyBind {
                addr: proxy.spec.listen,
                source,
            }
        })?;
        bound.push((listeners, *proxy));
    }
    let sigchld = signal(SignalKind::child()).map_err(RunError::Signals)?;
    let drain_signals = signals::register()?;

    let pid = child::spawn(&config.command)?;
    tracing::info!(%pid, command = ?config.command, "started the app in its own process group");
    let guard = start_guard(&config, pid);
    let reaped = reaper::start(sigchld, pid);
    drain_signals.spawn(lameduck.lifecycle().clone(), pid, config.forward_to);

    set_readiness(&lameduck, &config);
    supervise(&lameduck, pid, config.stop_signal, reaped.clone());
    register_rules(&lameduck);
    // One family of counters for every proxy, on the supervisor's /metrics.
    let metrics = ProxyMetrics::default();
    if !bound.is_empty() {
        metrics.register(&lameduck);
    }
    let mut serves_http = false;
    for (listeners, proxy) in bound {
        let threads = listeners.len();
        // The address bound, which names the port the kernel chose for `--proxy 127.0.0.1:0=…`.
        let listen = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(proxy.spec.listen);
        tracing::info!(%listen, upstream = %proxy.spec.upstream, protocol = %proxy.protocol, accept_proxy_protocol = proxy.accept_proxy_protocol, threads, "drain proxy");
        // Labelled with the address bound: two `--proxy 127.0.0.1:0=…` stay apart.
        let metrics = metrics.for_listener(listen);
        proxy::start(&lameduck, listeners, proxy, metrics)?;
        serves_http |= proxy.protocol.serves_http();
    }
    if !serves_http {
        // An HTTP proxy marks the process ready once it accepts.
        lameduck.mark_ready();
    }

    let exit = tokio::select! {
        exit = reaped.main_exited() => exit,
        () = async { lameduck.stopped().await; sleep(REAP_AFTER_KILL).await } => {
            tracing::error!(%pid, "the app was not reaped after SIGKILL; exiting anyway");
            return Ok(ChildExit::Signal(Signal::SIGKILL).code());
        }
    };
    let phase = lameduck.lifecycle().phase();
    if phase < Phase::Closing {
        tracing::warn!(%exit, %phase, "the app exited on its own");
    } else {
        tracing::info!(%exit, "the app exited");
    }
    end_leftovers(pid, config.stop_signal).await;
    if phase >= Phase::Closing {
        // The app's exit ended its side of every tunnel; the proxy answers each client (a
        // WebSocket's `1001 Going Away`) before the process may exit and cut those writes.
        if timeout(
            CONNECTIONS_AFTER_EXIT,
            lameduck.shutdown().connections().wait(),
        )
        .await
        .is_err()
        {
            tracing::debug!("connections still open after the app exited; exiting anyway");
        }
    }
    if let Some(guard) = guard {
        guard.release();
    }
    tracing::info!(
        orphans_reaped = reaped.orphans.load(std::sync::atomic::Ordering::Relaxed),
        code = exit.code(),
        "exiting"
    );
    Ok(exit.code())
}

/// Starts the process-group guard, unless this is PID 1 or there is no program for it.
fn start_guard(config: &RunConfig, pgid: Pid) -> Option<GroupGuard> {
    let program = config.guard_program.as_ref()?;
    if std::process::id() == 1 {
        return None;
    }
    match GroupGuard::start(program, pgid) {
        Ok(guard) => {
            tracing::debug!(pid = %guard.pid(), %pgid, "guarding the app's process group");
            Some(guard)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot start the process-group guard: if lameduck run is killed, processes the app started may run on");
            None
        }
    }
}

/// `/readyz` asks the app too: `--ready-url`, or else a TCP connect to each proxy's upstream.
fn set_readiness(lameduck: &Lameduck, config: &RunConfig) {
    let mut targets: Vec<Target> = config.ready.iter().cloned().collect();
    if targets.is_empty() {
        for proxy in &config.proxies {
            let target = Target::Tcp {
                authority: proxy.spec.upstream.to_string(),
            };
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    if targets.is_empty() {
        return;
    }
    let targets = Arc::new(targets);
    lameduck.set_readiness_check(move || {
        let targets = Arc::clone(&targets);
        async move {
            for target in targets.iter() {
                probe::check(target, READY_TIMEOUT)
                    .await
                    .map_err(|e| error_text(&e))?;
            }
            Ok(())
        }
    });
}

/// The app as a tracked task: at Closing it waits for in-flight work, then sends the stop
/// signal; at the forced close it SIGKILLs the group. Closing lasts until the app exited.
fn supervise(lameduck: &Lameduck, pid: Pid, stop_signal: Signal, reaped: Reaped) {
    let shutdown = lameduck.shutdown().clone();
    lameduck.spawn_resident_task("app", move |closing| async move {
        tokio::select! {
            _ = reaped.main_exited() => return,
            () = closing.cancelled() => {}
        }
        let force = shutdown.force_close();
        let settings = shutdown.config().settings();
        let closing_at = Instant::now();
        let force_close_at = shutdown
            .plan()
            .map_or(closing_at + settings.close_timeout, |plan| plan.force_close_at);
        // The rules are the settings' (`Settings::app_stop`), so `--check` and /metrics show
        // them: in-flight work finishes first, but the app keeps half the close timeout.
        let rules = settings.app_stop();
        let stop_by = (closing_at + rules.signal_by).min(force_close_at);
        let settled_at = closing_at + rules.settled;
        tracing::info!(
            settled_after = ?rules.settled,
            signal_by = ?stop_by.saturating_duration_since(closing_at),
            "closing: the app gets the stop signal once nothing is in flight (tunnels counted after settled_after), at the latest signal_by into Closing"
        );
        let activity = shutdown.activity();
        let drained = async {
            tokio::select! {
                // Every proxied connection closed (or there is no proxy): nothing in flight.
                () = shutdown.connections().wait() => {}
                // Tunnels remain: wait only for requests in flight. The activity counter has no
                // wake-up for reaching zero, so look every few milliseconds (stop_by bounds it).
                () = async {
                    sleep_until(settled_at).await;
                    while activity.in_flight() > 0 {
                        sleep(POLL).await;
                    }
                } => {}
            }
        };
        tokio::select! {
            () = drained => {}
            () = sleep_until(stop_by) => {}
            () = force.cancelled() => {}
            _ = reaped.main_exited() => {}
        }
        if reaped.main_exit().is_none() {
            let in_flight = activity.in_flight();
            match killpg(pid, stop_signal) {
                Ok(()) => tracing::info!(signal = %stop_signal, pgid = %pid, in_flight, "sent the stop signal to the app's process group"),
                Err(error) => tracing::warn!(signal = %stop_signal, %error, "cannot signal the app"),
            }
        }
        tokio::select! {
            _ = reaped.main_exited() => {}
            () = force.cancelled() => {
                if reaped.main_exit().is_none() {
                    tracing::warn!(pgid = %pid, "the app did not exit within the budget: SIGKILL to its process group");
                    let _ = killpg(pid, Signal::SIGKILL);
                    reaped.main_exited().await;
                }
            }
        }
    });
}

/// The supervisor's own timing rules, beside the drain settings and budget on `/metrics`, as
/// `lameduck_run_rules_seconds{rule}`: when the app is signalled after Closing
/// (`Settings::app_stop`), how long leftovers of its group get, how long a SIGKILLed app may
/// take to be reaped. (`POLL` is how often it looks, not a deadline.)
fn register_rules(lameduck: &Lameduck) {
    use lameduck::prometheus_client::metrics::family::Family;
    use lameduck::prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::AtomicU64;

    let rules = lameduck.shutdown().config().settings().app_stop();
    let gauges = Family::<[(&'static str, &'static str); 1], Gauge<f64, AtomicU64>>::default();
    for (rule, value) in [
        ("tunnels_settled_after_closing", rules.settled),
        ("stop_signal_by_after_closing", rules.signal_by),
        ("leftovers_before_sigkill", LEFTOVER_GRACE),
        ("connections_after_app_exit", CONNECTIONS_AFTER_EXIT),
        ("reap_after_sigkill", REAP_AFTER_KILL),
    ] {
        gauges
            .get_or_create(&[("rule", rule)])
            .set(value.as_secs_f64());
    }
    lameduck.register_metrics(move |registry| {
        registry.register(
            "lameduck_run_rules_seconds",
            "When lameduck run acts on its app, in seconds (after Closing, or after the signal named)",
            gauges.clone(),
        );
    });
}

/// The app is gone; ends what is left of its process group (workers, background jobs).
async fn end_leftovers(pgid: Pid, stop_signal: Signal) {
    if killpg(pgid, None).is_err() {
        return;
    }
    tracing::info!(%pgid, signal = %stop_signal, "the app's process group still has processes; signalling them");
    let _ = killpg(pgid, stop_signal);
    let deadline = Instant::now() + LEFTOVER_GRACE;
    while Instant::now() < deadline {
        if killpg(pgid, None).is_err() {
            return;
        }
        sleep(POLL).await;
    }
    tracing::warn!(%pgid, "SIGKILL to what is left of the app's process group");
    let _ = killpg(pgid, Signal::SIGKILL);
    // Let the reaper collect them so none is left a zombie while we exit.
    let _ = timeout(Duration::from_millis(200), async {
        while killpg(pgid, None).is_ok() {
            sleep(POLL).await;
        }
    })
    .await;
}

pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
