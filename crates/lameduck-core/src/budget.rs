//! The shutdown budget: one grace period split over the phases.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Settings, Trigger};

/// The deadlines of one shutdown, all derived from the grace period.
///
/// ```text
/// t0 ── preStop ── drain start ── drain wait (min..max, quiet) ── Closing ── force ── exit by ── SIGKILL
///                                                  ≤ drain_deadline    ≤ force_close_at  t0+grace-margin
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPlan {
    /// When the kubelet's grace countdown started (estimated).
    pub t0: Instant,
    /// When Draining was entered.
    pub drain_started: Instant,
    /// The drain wait ends by this moment whatever the traffic.
    pub drain_deadline: Instant,
    /// What is still open is force-closed at this moment.
    pub force_close_at: Instant,
    /// The process must have exited by this moment (`t0 + grace - safety margin`).
    pub exit_by: Instant,
}

impl BudgetPlan {
    /// Splits the grace period for a drain that started at `drain_started` because of `trigger`.
    ///
    /// A signal arrives after the preStop hook ran, so the configured preStop time is taken as
    /// already spent; a drain started through `/drain` or in code starts the countdown itself.
    pub fn new(settings: &Settings, trigger: &Trigger, drain_started: Instant) -> Self {
        let spent = match trigger {
            Trigger::Signal(_) => settings.prestop,
            Trigger::Programmatic | Trigger::Admin | Trigger::Gate => Duration::ZERO,
        };
        let t0 = drain_started.checked_sub(spent).unwrap_or(drain_started);
        let budget = settings.budget(spent);
        let drain_deadline = drain_started + budget.drain_deadline;
        let force_close_at = drain_started + budget.force_close_at;
        let exit_by = drain_started + budget.exit_by;
        Self {
            t0,
            drain_started,
            drain_deadline,
            force_close_at,
            exit_by,
        }
    }

    /// The longest the drain wait may last.
    pub fn max_drain_wait(&self) -> Duration {
        self.drain_deadline - self.drain_started
    }

    /// Time from the drain start to the forced close.
    pub fn until_force_close(&self) -> Duration {
        self.force_close_at - self.drain_started
    }
}

impl fmt::Display for BudgetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since_t0 = |at: Instant| at.saturating_duration_since(self.t0).as_secs_f64();
        write!(
            f,
            "drain started at t0+{:.2}s; drain wait ends by t0+{:.2}s; force-close at t0+{:.2}s; exit by t0+{:.2}s",
            since_t0(self.drain_started),
            since_t0(self.drain_deadline),
            since_t0(self.force_close_at),
            since_t0(self.exit_by),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn default_split_leaves_close_time_and_margin() {
        let s = Settings::default();
        let start = Instant::now();
        let plan = BudgetPlan::new(&s, &Trigger::Signal("SIGTERM"), start);
        assert_eq!(plan.t0, start);
        assert_eq!(plan.max_drain_wait(), secs(20.0));
        assert_eq!(plan.exit_by - start, secs(28.0));
        assert_eq!(plan.until_force_close(), secs(27.75));
    }

    #[tokio::test(start_paused = true)]
    async fn prestop_time_shrinks_the_drain_wait() {
        let s = Settings {
            prestop: secs(10.0),
            ..Settings::default()
        };
        let start = Instant::now() + secs(100.0);
        let plan = BudgetPlan::new(&s, &Trigger::Signal("SIGTERM"), start);
        // 30 - 10 (preStop) - 2 (margin) - 0.25 (force grace) - 5 (close) = 12.75 s.
        assert_eq!(plan.max_drain_wait(), secs(12.75));
        assert_eq!(plan.exit_by - start, secs(18.0));
        // A drain started by /drain is the countdown itself: no preStop time is deducted.
        let admin = BudgetPlan::new(&s, &Trigger::Admin, start);
        assert_eq!(admin.max_drain_wait(), secs(20.0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_overspent_budget_never_goes_backwards() {
        let s = Settings {
            prestop: secs(40.0),
            ..Settings::default()
        };
        let start = Instant::now() + secs(100.0);
        let plan = BudgetPlan::new(&s, &Trigger::Signal("SIGTERM"), start);
        assert_eq!(plan.drain_deadline, start);
        assert_eq!(plan.force_close_at, start);
        assert_eq!(plan.exit_by, start);
    }
}
