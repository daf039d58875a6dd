//! Reaping: collect the exit status of every child, the app's and re-parented orphans'.
//!
//! As PID 1 (or as a child subreaper, see `prctl(PR_SET_CHILD_SUBREAPER)`), every process whose
//! parent died is re-parented to us. Nobody else waits for them, so without this loop they stay
//! zombies until the container ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::Signal;
use tokio::sync::watch;

use crate::ChildExit;

/// A SIGCHLD can stand for many exits (signals coalesce), so each wake-up reaps until none is
/// left; this bounds one sweep.
const MAX_REAPS_PER_SWEEP: usize = 4096;
/// A sweep also runs this often, in case a SIGCHLD was missed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The app's exit status once reaped, and how many orphans were reaped.
#[derive(Debug, Clone)]
pub(crate) struct Reaped {
    pub(crate) main: watch::Receiver<Option<ChildExit>>,
    pub(crate) orphans: Arc<AtomicU64>,
}

impl Reaped {
    /// Completes when the app has exited and been reaped.
    pub(crate) async fn main_exited(&self) -> ChildExit {
        let mut rx = self.main.clone();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The reaper lives as long as the runtime; if it is gone, so is everything else.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The app's exit status, if it has been reaped.
    pub(crate) fn main_exit(&self) -> Option<ChildExit> {
        *self.main.borrow()
    }
}

/// Reaps children in the background for the rest of the process. `sigchld` must have been
/// registered before `main` was spawned, so its exit cannot be missed.
pub(crate) fn start(mut sigchld: Signal, main: Pid) -> Reaped {
    let (tx, rx) = watch::channel(None);
    let orphans = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&orphans);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            sweep(main, &tx, &counter);
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tick.tick() => {}
            }
        }
    });
    Reaped { main: rx, orphans }
}

fn sweep(main: Pid, tx: &watch::Sender<Option<ChildExit>>, orphans: &AtomicU64) {
    for _ in 0..MAX_REAPS_PER_SWEEP {
        let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ChildExit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => (pid, ChildExit::Signal(signal)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(error) => {
                tracing::warn!(%error, "waitpid failed");
                return;
            }
        };
        if pid == main {
            tracing::debug!(%pid, %exit, "reaped the app");
            tx.send_replace(Some(exit));
        } else {
            orphans.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%pid, %exit, "reaped an orphaned process");
        }
    }
}
