//! The last line of defence: exit before the kubelet's SIGKILL even if `main` is stuck.

use std::time::Duration;

use lameduck_core::Shutdown;

/// Once draining starts, arms a thread that exits the process shortly after the plan's
/// `exit_by` (half the safety margin later, at most 1 s), still before SIGKILL.
///
/// A plain thread, not a task: it must fire even when the runtime's workers are blocked.
pub(crate) fn arm_when_draining(shutdown: Shutdown) {
    tokio::spawn(async move {
        let lifecycle = shutdown.lifecycle();
        // Not while held for the gate: that hold may be cancelled, and no budget runs yet.
        lifecycle.drain_started().await;
        let Some(plan) = shutdown.plan() else { return };
        let settings = shutdown.config().settings();
        let slack = (settings.safety_margin / 2).min(Duration::from_secs(1));
        let deadline = plan.exit_by.into_std() + slack;
        let spawned = std::thread::Builder::new()
            .name("lameduck-watchdog".into())
            .spawn(move || {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                std::thread::sleep(left);
                tracing::error!("the process did not exit within its shutdown budget; exiting now");
                std::process::exit(1);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the shutdown watchdog thread");
        }
    });
}
