//! The wrapper's signal policy.
//!
//! - SIGTERM and SIGINT start the drain (the app does not see them: it gets the stop signal
//!   when the drain wait is over); a second one forces an immediate stop.
//! - Every other catchable asynchronous signal is forwarded to the app as is (SIGHUP to reload,
//!   SIGUSR1/2, SIGQUIT for a thread dump, SIGWINCH, ...).
//!
//! This differs from the library's `handle_signals` (which only drains), hence its own loop over
//! the same lifecycle.

use lameduck_core::{Lifecycle, Trigger};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::{ForwardTo, RunError};

/// Signals passed on to the app. Not here: SIGTERM/SIGINT (drain), SIGCHLD (reaping), SIGKILL
/// and SIGSTOP (cannot be caught), synchronous faults, SIGPIPE, and the job-control stops
/// SIGTSTP/SIGTTIN/SIGTTOU, which must keep stopping the wrapper itself.
pub(crate) const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGPWR,
];

/// Streams for the drain signals, registered before the app starts so none is lost.
pub(crate) struct DrainSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    forwarded: Vec<(Signal, tokio::signal::unix::Signal)>,
}

pub(crate) fn register() -> Result<DrainSignals, RunError> {
    let stream = |kind| signal(kind).map_err(RunError::Signals);
    let mut forwarded = Vec::with_capacity(FORWARDED.len());
    for sig in FORWARDED {
        forwarded.push((sig, stream(SignalKind::from_raw(sig as i32))?));
    }
    Ok(DrainSignals {
        term: stream(SignalKind::terminate())?,
        int: stream(SignalKind::interrupt())?,
        forwarded,
    })
}

impl DrainSignals {
    /// Drives the policy in background tasks for the rest of the process.
    pub(crate) fn spawn(self, lifecycle: Lifecycle, child: Pid, forward_to: ForwardTo) {
        let DrainSignals {
            mut term,
            mut int,
            forwarded,
        } = self;
        tokio::spawn(async move {
            // Count signals, not phases: a preStop `lameduck wait` may have started the drain
            // through /drain already, and the kubelet's SIGTERM that follows is still the first.
            let mut received = 0_u32;
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    else => return,
                };
                received += 1;
                if received == 1 {
                    if !lifecycle.drain(Trigger::Signal(name)) {
                        tracing::info!(signal = name, "already draining");
                    }
                } else {
                    tracing::warn!(signal = name, "second stop signal: stopping the app now");
                    lifecycle.force_stop();
                }
            }
        });
        for (sig, mut stream) in forwarded {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let sent = match forward_to {
                        ForwardTo::Child => kill(child, sig),
                        ForwardTo::Group => killpg(child, sig),
                    };
                    match sent {
                        Ok(()) => {
                            tracing::info!(signal = %sig, to = ?forward_to, "forwarded a signal to the app")
                        }
                        Err(error) => {
                            tracing::debug!(signal = %sig, %error, "could not forward a signal")
                        }
                    }
                }
            });
        }
    }
}
