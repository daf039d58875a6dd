//! The drain wait: how long to stay in the lame-duck phase, decided by evidence.

use std::fmt;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::{Activity, BudgetPlan, Lifecycle, Settings};

/// Why the drain wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEndReason {
    /// `min_wait` passed and nothing arrived for `quiet_window`: routers have caught up.
    Quiet,
    /// Traffic kept arriving until `max_wait` (or the budget) ran out.
    MaxWait,
    /// An immediate stop was requested.
    Forced,
    /// The gate confirmed from the cluster that no router routes here any more.
    Confirmed,
}

impl fmt::Display for DrainEndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrainEndReason::Quiet => "quiet",
            DrainEndReason::MaxWait => "max_wait",
            DrainEndReason::Forced => "forced",
            DrainEndReason::Confirmed => "confirmed",
        })
    }
}

/// The outcome of the drain wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainEnd {
    /// Why it ended.
    pub reason: DrainEndReason,
    /// How long it lasted.
    pub waited: Duration,
}

/// Waits in Draining until, after `min_wait`, no arrival was seen for `quiet_window`, or until
/// the plan's drain deadline, or until a forced stop.
///
/// # Guarantees
/// - With no traffic the wait lasts `max(min_wait, quiet_window)` (capped by the budget): the
///   quiet window is counted from the drain start, since traffic before it proves nothing.
/// - Under traffic that never pauses for `quiet_window`, it lasts until the drain deadline.
/// - Once the gate confirmed the pod safe ([`Lifecycle::confirm_safe`]) it ends at once: the
///   cluster's own evidence replaces the pod's guess from traffic.
pub async fn wait_for_quiet(
    settings: &Settings,
    plan: &BudgetPlan,
    activity: &Activity,
    lifecycle: &Lifecycle,
) -> DrainEnd {
    let start = plan.drain_started;
    let end = |reason| DrainEnd {
        reason,
        waited: Instant::now().saturating_duration_since(start),
    };
    let mut changes = lifecycle.subscribe();
    loop {
        let now = Instant::now();
        if lifecycle.is_forced() {
            return end(DrainEndReason::Forced);
        }
        if changes.borrow_and_update().confirmed_safe {
            return end(DrainEndReason::Confirmed);
        }
        let quiet_since = activity.quiet_since(start);
        let quiet_at = (start + settings.min_wait).max(quiet_since + settings.quiet_window);
        if quiet_at <= now && quiet_at <= plan.drain_deadline {
            return end(DrainEndReason::Quiet);
        }
        if plan.drain_deadline <= now {
            return end(DrainEndReason::MaxWait);
        }
        tokio::select! {
            () = sleep_until(quiet_at.min(plan.drain_deadline)) => {}
            () = lifecycle.forced() => {}
            // The sender lives with `lifecycle`; an error cannot happen while it is borrowed.
            _ = changes.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Trigger;

    fn settings(min: u64, quiet: u64, max: u64) -> Settings {
        Settings {
            min_wait: Duration::from_secs(min),
            quiet_window: Duration::from_secs(quiet),
            max_wait: Duration::from_secs(max),
            ..Settings::default()
        }
    }

    async fn run(
        settings: Settings,
        traffic_every: Option<Duration>,
        traffic_for: Duration,
    ) -> DrainEnd {
        let lifecycle = Lifecycle::new();
        let activity = Arc::new(Activity::new());
        let plan = BudgetPlan::new(&settings, &Trigger::Programmatic, Instant::now());
        if let Some(every) = traffic_every {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move {
                let stop = Instant::now() + traffic_for;
                while Instant::now() < stop {
                    activity.record_arrival();
                    tokio::time::sleep(every).await;
                }
            });
        }
        wait_for_quiet(&settings, &plan, &activity, &lifecycle).await
    }

    #[tokio::test(start_paused = true)]
    async fn no_traffic_ends_at_min_wait_or_quiet_window() {
        let end = run(settings(3, 1, 20), None, Duration::ZERO).await;
        assert_eq!(
            end,
            DrainEnd {
                reason: DrainEndReason::Quiet,
                waited: Duration::from_secs(3)
            }
        );
        let end = run(settings(1, 4, 20), None, Duration::ZERO).await;
        assert_eq!(
            end,
            DrainEnd {
                reason: DrainEndReason::Quiet,
                waited: Duration::from_secs(4)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_extends_the_wait_until_it_stops() {
        let end = run(
            settings(3, 1, 20),
            Some(Duration::from_millis(100)),
            Duration::from_secs(7),
        )
        .await;
        assert_eq!(end.reason, DrainEndReason::Quiet);
        // Last arrival just before 7 s, then one quiet second.
        assert!(
            end.waited >= Duration::from_secs(7) && end.waited <= Duration::from_millis(8100),
            "{end:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn steady_traffic_ends_at_max_wait() {
        let end = run(
            settings(3, 1, 10),
            Some(Duration::from_millis(200)),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            end,
            DrainEnd {
                reason: DrainEndReason::MaxWait,
                waited: Duration::from_secs(10)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_gates_confirmation_ends_the_wait_despite_traffic() {
        let lifecycle = Lifecycle::new();
        lifecycle.drain(Trigger::Programmatic);
        let activity = Arc::new(Activity::new());
        let s = settings(3, 1, 20);
        let plan = BudgetPlan::new(&s, &Trigger::Programmatic, Instant::now());
        let traffic = Arc::clone(&activity);
        tokio::spawn(async move {
            for _ in 0..100 {
                traffic.record_arrival();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let confirmer = lifecycle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            confirmer.confirm_safe();
        });
        let end = wait_for_quiet(&s, &plan, &activity, &lifecycle).await;
        assert_eq!(
            end,
            DrainEnd {
                reason: DrainEndReason::Confirmed,
                waited: Duration::from_millis(1500)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn force_stop_ends_the_wait() {
        let lifecycle = Lifecycle::new();
        let activity = Activity::new();
        let s = settings(3, 1, 20);
        let plan = BudgetPlan::new(&s, &Trigger::Programmatic, Instant::now());
        let forcer = lifecycle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            forcer.force_stop();
        });
        let end = wait_for_quiet(&s, &plan, &activity, &lifecycle).await;
        assert_eq!(
            end,
            DrainEnd {
                reason: DrainEndReason::Forced,
                waited: Duration::from_millis(500)
            }
        );
    }
}
