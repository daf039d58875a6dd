//! The shutdown driver: the one place that moves a process from Draining to Stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::FORCE_GRACE;
use crate::{
    Activity, BudgetPlan, Config, DrainEnd, Lifecycle, Phase, TrackedTasks, Trigger, wait_for_quiet,
};

/// Everything a process needs to shut down well, shared by servers, tasks and the driver.
///
/// Servers register each connection with [`Shutdown::connections`] and report traffic to
/// [`Shutdown::activity`]; handlers and tasks watch [`Shutdown::closing`]; what must end at once
/// watches [`Shutdown::force_close`]. [`Shutdown::run`] drives the phases.
#[derive(Debug, Clone)]
pub struct Shutdown {
    lifecycle: Lifecycle,
    config: Arc<Config>,
    activity: Arc<Activity>,
    connections: TaskTracker,
    tasks: TrackedTasks,
    closing: CancellationToken,
    force_close: CancellationToken,
}

/// What happened during one shutdown.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// What started the drain.
    pub trigger: Trigger,
    /// The deadlines used.
    pub plan: BudgetPlan,
    /// How the drain wait ended.
    pub drain: DrainEnd,
    /// How long Closing took until everything ended or was forced.
    pub closing: Duration,
    /// Connections still open at the forced close (0 if none was forced).
    pub forced_connections: usize,
    /// Names of tracked tasks still running at the forced close.
    pub abandoned_tasks: Vec<String>,
}

impl Shutdown {
    /// A shutdown for a process in [`Phase::Starting`].
    pub fn new(config: Config) -> Self {
        let closing = CancellationToken::new();
        Self {
            lifecycle: Lifecycle::new(),
            config: Arc::new(config),
            activity: Arc::new(Activity::new()),
            connections: TaskTracker::new(),
            tasks: TrackedTasks::new(closing.clone()),
            closing,
            force_close: CancellationToken::new(),
        }
    }

    /// The lifecycle.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The traffic evidence the drain wait reads.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Tracks connection tasks: Closing waits for all of them.
    pub fn connections(&self) -> &TaskTracker {
        &self.connections
    }

    /// Long-running tasks: told to stop at Closing, awaited, abandoned at the forced close.
    pub fn tasks(&self) -> &TrackedTasks {
        &self.tasks
    }

    /// Fires when Closing starts: streams, upgraded connections and tasks should finish.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// Fires at the forced close: whatever is still open must end now.
    pub fn force_close(&self) -> &CancellationToken {
        &self.force_close
    }

    /// The deadlines of the running shutdown, once draining started (`None` before).
    ///
    /// The one place the plan is derived from the lifecycle, so logs, metrics, the watchdog and
    /// the `run` supervisor agree on every deadline.
    pub fn plan(&self) -> Option<BudgetPlan> {
        let snapshot = self.lifecycle.snapshot();
        if snapshot.held {
            return None; // no budget runs until the stop signal releases the hold
        }
        let started = snapshot.entered(Phase::Draining)?;
        let trigger = snapshot.trigger.unwrap_or(Trigger::Programmatic);
        Some(BudgetPlan::new(self.config.settings(), &trigger, started))
    }

    /// Waits for the drain to start, then drives Draining → Closing → Stopped within the budget.
    ///
    /// # Guarantees
    /// - Returns after the lifecycle reached [`Phase::Stopped`], no later than the plan's
    ///   `exit_by` (plus scheduling delay), whatever connections and tasks do.
    /// - A forced stop ([`Lifecycle::force_stop`]) skips every wait.
    pub async fn run(&self) -> ShutdownReport {
        let lifecycle = &self.lifecycle;
        lifecycle.drain_started().await;
        let trigger = lifecycle
            .snapshot()
            .trigger
            .unwrap_or(Trigger::Programmatic);
        let settings = self.config.settings();
        // Draining was reached above, so the plan exists.
        let plan = self
            .plan()
            .unwrap_or_else(|| BudgetPlan::new(settings, &trigger, Instant::now()));
        tracing::info!(
            %trigger,
            grace = ?settings.grace,
            prestop = ?settings.prestop,
            safety_margin = ?settings.safety_margin,
            min_wait = ?settings.min_wait,
            quiet_window = ?settings.quiet_window,
            max_wait = ?plan.max_drain_wait(),
            close_timeout = ?settings.close_timeout,
            "shutdown budget: {plan}"
        );

        let drain = wait_for_quiet(settings, &plan, &self.activity, lifecycle).await;
        lifecycle.close();
        self.closing.cancel();
        self.connections.close();
        self.tasks.tracker().close();
        tracing::info!(reason = %drain.reason, waited = ?drain.waited, "closing: no new connections; finishing in-flight work");

        let closing_started = Instant::now();
        let everything_ended = async {
            self.connections.wait().await;
            self.tasks.tracker().wait().await;
        };
        let ended = tokio::select! {
            () = everything_ended => true,
            () = sleep_until(plan.force_close_at) => false,
            () = lifecycle.forced() => false,
        };
        let mut forced_connections = 0;
        let mut abandoned_tasks = Vec::new();
        if !ended {
            forced_connections = self.connections.len();
            self.force_close.cancel();
            // What holds the force token (a supervisor that must SIGKILL its child, say) gets
            // a moment to act on it before the tasks still running are aborted.
            let grace = FORCE_GRACE.min(plan.exit_by.saturating_duration_since(Instant::now()));
            let _ = timeout(grace, async {
                self.connections.wait().await;
                self.tasks.tracker().wait().await;
            })
            .await;
            abandoned_tasks = self.tasks.abandon_all();
            tracing::warn!(
                connections = forced_connections,
                tasks = ?abandoned_tasks,
                "forced close: deadline reached with work still open"
            );
        }
        let closing = closing_started.elapsed();
        lifecycle.stop();
        tracing::info!(closing = ?closing, "stopped");
        ShutdownReport {
            trigger,
            plan,
            drain,
            closing,
            forced_connections,
            abandoned_tasks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DrainEndReason, Settings};

    fn shutdown() -> Shutdown {
        let settings = Settings {
            grace: Duration::from_secs(12),
            safety_margin: Duration::from_secs(1),
            min_wait: Duration::from_secs(2),
            quiet_window: Duration::from_secs(1),
            max_wait: Duration::from_secs(5),
            close_timeout: Duration::from_secs(3),
            ..Settings::default()
        };
        Shutdown::new(settings.validate().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_process_stops_after_min_wait() {
        let sd = shutdown();
        sd.lifecycle().drain(Trigger::Programmatic);
        let report = sd.run().await;
        assert_eq!(report.drain.reason, DrainEndReason::Quiet);
        assert_eq!(report.drain.waited, Duration::from_secs(2));
        assert_eq!(report.forced_connections, 0);
        assert_eq!(sd.lifecycle().phase(), Phase::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_get_their_token_and_are_awaited() {
        let sd = shutdown();
        let finished = sd.tasks().spawn("reindex", |token| async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            "done"
        });
        sd.lifecycle().drain(Trigger::Programmatic);
        let report = sd.run().await;
        assert!(report.abandoned_tasks.is_empty());
        assert_eq!(finished.await.unwrap(), "done");
        assert_eq!(report.closing, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn stubborn_work_is_forced_before_the_exit_deadline() {
        let sd = shutdown();
        let handle = sd
            .tasks()
            .spawn("stubborn", |_token| std::future::pending::<()>());
        let force = sd.force_close().clone();
        sd.connections()
            .spawn(async move { force.cancelled().await });
        sd.lifecycle().drain(Trigger::Programmatic);
        let started = Instant::now();
        let report = sd.run().await;
        assert_eq!(report.abandoned_tasks, vec!["stubborn".to_owned()]);
        assert_eq!(report.forced_connections, 1);
        assert!(
            Instant::now() <= report.plan.exit_by,
            "must stop before exit_by"
        );
        assert_eq!(report.plan.exit_by - started, Duration::from_secs(11));
        assert!(handle.await.unwrap_err().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn force_stop_skips_every_wait() {
        let sd = shutdown();
        sd.connections().spawn(std::future::pending::<()>());
        sd.lifecycle().drain(Trigger::Signal("SIGTERM"));
        sd.lifecycle().force_stop();
        let started = Instant::now();
        let report = sd.run().await;
        assert_eq!(report.drain.reason, DrainEndReason::Forced);
        assert!(started.elapsed() <= FORCE_GRACE);
    }
}
