//! SIGTERM and SIGINT: the first one starts the drain, the second one stops at once.

use lameduck_core::Trigger;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::{Error, Lameduck};

pub(crate) fn spawn(lameduck: Lameduck) -> Result<JoinHandle<()>, Error> {
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    Ok(tokio::spawn(async move {
        // Count signals, not phases: a preStop `lameduck wait` may have started the drain through
        // /drain already, and the kubelet's SIGTERM that follows is still the first signal.
        let mut received = 0_u32;
        loop {
            let (name, number) = tokio::select! {
                Some(()) = term.recv() => ("SIGTERM", 15),
                Some(()) = int.recv() => ("SIGINT", 2),
                else => return,
            };
            received += 1;
            if received == 1 {
                if !lameduck.lifecycle().drain(Trigger::Signal(name)) {
                    tracing::info!(signal = name, "already draining");
                }
                continue;
            }
            tracing::warn!(signal = name, "second stop signal: stopping now");
            lameduck.lifecycle().force_stop();
            if lameduck.hard_exit_enabled() {
                std::process::exit(128 + number);
            }
        }
    }))
}
