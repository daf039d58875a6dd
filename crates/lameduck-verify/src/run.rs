//! One run: routers up, replicas up, load, rollouts, cool-down, accounting.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::accounting::{Inputs, Report, RouterInfo, TestbedCost, account};
use crate::events::{Clock, EventKind, EventLog, RouterId};
use crate::load::{self, Target};
use crate::rollout::{Executor, PodError};
use crate::routers::{PodDirectory, Propagator, Router, RouterError};
use crate::scenario::{Scenario, ScenarioError};

/// A run that could not be carried out (as opposed to one that found failed requests).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A router could not start.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A replica could not start or become ready.
    #[error(transparent)]
    Pod(#[from] PodError),
    /// The work directory could not be made.
    #[error("cannot create work directory {}: {source}", path.display())]
    Workdir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Interrupted (SIGINT or SIGTERM); every replica and router was ended.
    #[error("interrupted")]
    Interrupted,
    /// Requests were lost by the testbed itself: started ≠ ok + failed.
    #[error("accounting invariant violated: {started} requests started but {counted} were counted")]
    Invariant {
        /// Requests started.
        started: u64,
        /// Records received.
        counted: u64,
    },
}

/// How to run (not what: that is the [`Scenario`]).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
    /// Label of the run in reports.
    pub label: String,
    /// Keep replica logs here instead of a temporary directory that is removed after success.
    pub workdir: Option<PathBuf>,
}

impl RunOptions {
    /// Sets the label.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Shows (or hides) the progress bar.
    #[must_use]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
}

/// Runs `sc` and returns its report.
///
/// Guarantees: every replica and real router started is ended (by its PID or process group)
/// before this returns, also on error; every request started is accounted for.
pub async fn run(sc: Scenario, opts: RunOptions) -> Result<Report, VerifyError> {
    sc.validate()?;
    let (workdir, temporary) = match &opts.workdir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "lameduck-verify-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&workdir).map_err(|source| VerifyError::Workdir {
        path: workdir.clone(),
        source,
    })?;
    let clock = Clock::new();
    let cpu_start = cpu_seconds();
    let log = EventLog::new(clock);

    // Routers.
    let mut routers: Vec<Arc<Router>> = Vec::new();
    let mut infos = Vec::new();
    let mut consumers = Vec::new();
    for spec in &sc.routers {
        for _ in 0..spec.count {
            let id = RouterId::try_from(routers.len()).unwrap_or(RouterId::MAX);
            let r =
                match Router::start(id, spec.kind, spec.retry, sc.load.timeout.0, &workdir).await {
                    Ok(r) => Arc::new(r),
                    Err(e) => {
                        for r in &routers {
                            r.shutdown().await;
                        }
                        return Err(e.into());
                    }
                };
            let dist = spec.propagation.unwrap_or(sc.propagation);
            infos.push(RouterInfo {
                id,
                kind: spec.kind,
                addr: r.addr().to_string(),
                propagation: dist.to_string(),
            });
            consumers.push((Arc::clone(&r), dist));
            routers.push(r);
        }
    }
    let directory = Arc::new(PodDirectory::default());
    let propagator = Arc::new(Propagator::new(consumers, sc.seed, log.clone()));
    let mut exec = Executor::new(
        sc.clone(),
        log.clone(),
        Arc::clone(&propagator),
        Arc::clone(&directory),
        workdir.clone(),
    );

    // Ctrl-C must not leave replicas behind: they run in their own process groups.
    let result = tokio::select! {
        r = drive(&sc, &opts, &mut exec, &routers, &propagator, &directory, &log) => r,
        () = interrupted() => Err(VerifyError::Interrupted),
    };
    exec.teardown().await;
    for r in &routers {
        r.shutdown().await;
    }
    let (started, records, load_window) = result?;
    let counted = records.len() as u64;
    if counted != started {
        return Err(VerifyError::Invariant { started, counted });
    }
    let pods = exec
        .pods()
        .iter()
        .map(|p| (p.id, p.revision, p.port, p.pid))
        .collect();
    let accounting_start = std::time::Instant::now();
    let mut report = account(Inputs {
        scenario: sc,
        label: opts.label.clone(),
        started,
        records,
        events: log.snapshot(),
        routers: infos,
        pods,
        router_errors: propagator.errors(),
        load_window,
    });
    report.testbed = TestbedCost {
        cpu_seconds: cpu_seconds() - cpu_start,
        wall_seconds: clock.now(),
        accounting_seconds: accounting_start.elapsed().as_secs_f64(),
        records: counted,
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    Ok(report)
}

type Driven = (u64, Vec<load::Record>, (f64, f64));

async fn drive(
    sc: &Scenario,
    opts: &RunOptions,
    exec: &mut Executor,
    routers: &[Arc<Router>],
    propagator: &Propagator,
    directory: &Arc<PodDirectory>,
    log: &EventLog,
) -> Result<Driven, VerifyError> {
    exec.start_initial().await?;
    let path = sc.readiness.path.as_deref().unwrap_or(&sc.load.path);
    for r in routers {
        r.await_routing(path).await;
    }
    let targets: Vec<Target> = routers
        .iter()
        .enumerate()
        .map(|(i, r)| Target {
            router: RouterId::try_from(i).unwrap_or(RouterId::MAX),
            addr: r.addr(),
            l4: r.as_l4(),
            pool: Arc::new(load::ClientPool::new(sc.load.connections as usize)),
        })
        .collect();
    let load_start = log.push(None, None, EventKind::LoadStarted);
    let load = load::start(
        &targets,
        &sc.load,
        sc.seed,
        log.clock(),
        Arc::clone(directory),
    );
    let stats = load.stats();
    let bar = if opts.progress {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let label = if opts.label.is_empty() {
        String::new()
    } else {
        format!("[{}] ", opts.label)
    };
    let update = |phase: &str, exec: &Executor| {
        if let Some(b) = &bar {
            let (alive, term) = exec.counts();
            b.set_message(format!(
                "{label}{phase}: {alive} pods ({term} terminating) | {} requests, {} failed",
                stats.started.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed)
            ));
        }
    };
    let outcome: Result<(), VerifyError> = async {
        if sc.rollouts == 0 {
            wait(sc.load.duration.0, || update("steady load", exec)).await;
            return Ok(());
        }
        wait(sc.load.warmup.0, || update("warm-up", exec)).await;
        for i in 1..=sc.rollouts {
            log.push(None, None, EventKind::RolloutStarted { rollout: i });
            update("rolling update", exec);
            {
                let fut = exec.rolling_update(i);
                tokio::pin!(fut);
                loop {
                    tokio::select! {
                        r = &mut fut => { r?; break; }
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if let Some(b) = &bar {
                                b.set_message(format!(
                                    "{label}rolling update {i}/{} | {} requests, {} failed",
                                    sc.rollouts,
                                    stats.started.load(Ordering::Relaxed),
                                    stats.failed.load(Ordering::Relaxed)
                                ));
                            }
                        }
                    }
                }
            }
            propagator.settle().await;
            log.push(None, None, EventKind::RolloutFinished { rollout: i });
        }
        wait(sc.load.cooldown.0, || update("cool-down", exec)).await;
        Ok(())
    }
    .await;
    load.stop();
    let load_end = log.push(None, None, EventKind::LoadStopped);
    let (started, records) = load.finish().await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    outcome?;
    Ok((started, records, (load_start, load_end)))
}

/// Waits `d`, calling `f` every 200 ms.
async fn wait(d: Duration, mut f: impl FnMut()) {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        f();
        tokio::time::sleep_until(
            until.min(tokio::time::Instant::now() + Duration::from_millis(200)),
        )
        .await;
    }
}

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// Resolves on SIGINT or SIGTERM (a Ctrl-C, `timeout`, a CI job being cancelled).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
