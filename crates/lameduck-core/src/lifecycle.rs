//! The lifecycle state machine, observable through a watch channel.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A phase of the lifecycle. Phases only move forward, with one exception: a drain *held* for
/// the gate ([`Lifecycle::hold`]) can be cancelled back to Serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Readiness fails until the app says it is ready.
    Starting,
    /// Ready: routers may send traffic.
    Serving,
    /// The lame-duck phase: readiness fails, traffic is still served until routers caught up.
    Draining,
    /// No new connections; in-flight work finishes, the rest is told to end, then forced.
    Closing,
    /// Everything ended; the process exits.
    Stopped,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Starting,
        Phase::Serving,
        Phase::Draining,
        Phase::Closing,
        Phase::Stopped,
    ];

    /// The lower-case name used in probes, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Closing => "closing",
            Phase::Stopped => "stopped",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A stop signal (SIGTERM, SIGINT); the preStop time configured as already spent applies.
    Signal(&'static str),
    /// The application called [`Lifecycle::drain`] itself.
    Programmatic,
    /// The admin `/drain` endpoint (for example from a preStop hook running `lameduck wait`).
    Admin,
    /// The gate took the pod out of rotation ahead of its deletion (`POST /drain?hold`); the
    /// drain wait starts only with the stop signal (or another trigger) that follows.
    Gate,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Signal(name) => write!(f, "signal {name}"),
            Trigger::Programmatic => f.write_str("programmatic"),
            Trigger::Admin => f.write_str("admin /drain"),
            Trigger::Gate => f.write_str("gate (held)"),
        }
    }
}

/// The state at one moment: the phase, when each phase was entered, and why draining started.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The current phase.
    pub phase: Phase,
    /// When each phase was entered (indexed like [`Phase::ALL`]); `None` if not reached.
    pub entered: [Option<Instant>; 5],
    /// What started the drain, once it started.
    pub trigger: Option<Trigger>,
    /// Whether an immediate stop was requested (a second signal).
    pub forced: bool,
    /// Draining, but held for the gate: out of rotation, still serving, and the drain wait has
    /// not started (it starts with the stop signal, or the hold is cancelled).
    pub held: bool,
    /// When the gate's hold began, if the pod was held (kept after the hold is released).
    pub held_since: Option<Instant>,
    /// The gate confirmed, from the cluster's EndpointSlices and a sync margin, that no router
    /// still routes here: the drain wait may end at once.
    pub confirmed_safe: bool,
}

impl Snapshot {
    /// When `phase` was entered, if it was.
    pub fn entered(&self, phase: Phase) -> Option<Instant> {
        self.entered[phase.index()]
    }

    /// How long the process spent in `phase` so far (zero if never entered).
    pub fn time_in(&self, phase: Phase, now: Instant) -> std::time::Duration {
        let Some(start) = self.entered(phase) else {
            return Default::default();
        };
        let end = Phase::ALL[phase.index() + 1..]
            .iter()
            .find_map(|next| self.entered(*next))
            .unwrap_or(now);
        end.saturating_duration_since(start)
    }
}

/// The lifecycle of one process, shared by everything that serves or watches it.
///
/// Cloning is cheap; all clones see the same state. Transitions only move forward, so racing
/// triggers (a signal and `/drain` at once) are harmless: the first one wins.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: watch::Sender<Snapshot>,
    force: CancellationToken,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A new lifecycle in [`Phase::Starting`].
    pub fn new() -> Self {
        let mut entered = [None; 5];
        entered[Phase::Starting.index()] = Some(Instant::now());
        let snapshot = Snapshot {
            phase: Phase::Starting,
            entered,
            trigger: None,
            forced: false,
            held: false,
            held_since: None,
            confirmed_safe: false,
        };
        Self {
            inner: Arc::new(Inner {
                state: watch::Sender::new(snapshot),
                force: CancellationToken::new(),
            }),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.inner.state.borrow().phase
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.state.borrow().clone()
    }

    /// A receiver that sees every transition.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.inner.state.subscribe()
    }

    /// Starting → Serving. Returns false if the lifecycle was past Starting.
    pub fn mark_ready(&self) -> bool {
        self.advance(Phase::Serving, None)
    }

    /// Starting or Serving → Draining, or the release of a held drain (whose drain wait then
    /// starts now, as if the drain began with this trigger). Returns false if a drain wait had
    /// already started.
    pub fn drain(&self, trigger: Trigger) -> bool {
        if self.release(&trigger) {
            tracing::info!(%trigger, "held drain released: the drain wait starts");
            return true;
        }
        let started = self.advance(Phase::Draining, Some(trigger.clone()));
        if started {
            tracing::info!(%trigger, "draining: readiness now fails; still serving");
        }
        started
    }

    /// Starting or Serving → Draining, *held*: readiness fails and traffic is still served,
    /// but the drain wait does not start until a stop signal (or another trigger) releases the
    /// hold, and [`Lifecycle::cancel_hold`] can put the process back in service. The gate uses
    /// this to take a pod out of rotation before it admits the pod's deletion. Returns false if
    /// the lifecycle was already draining (held or not) or later.
    pub fn hold(&self) -> bool {
        let now = Instant::now();
        let held = self.inner.state.send_if_modified(|s| {
            if s.phase >= Phase::Draining {
                return false;
            }
            for p in Phase::ALL
                .iter()
                .filter(|p| **p > s.phase && **p <= Phase::Draining)
            {
                s.entered[p.index()] = Some(now);
            }
            s.phase = Phase::Draining;
            s.trigger = Some(Trigger::Gate);
            s.held = true;
            s.held_since = Some(now);
            true
        });
        if held {
            tracing::info!("held for the gate: readiness now fails; still serving");
        }
        held
    }

    /// A held drain → Serving (the deletion it was for did not follow). Returns false, changing
    /// nothing, unless the drain is still held: a drain wait that started cannot be undone.
    pub fn cancel_hold(&self) -> bool {
        let cancelled = self.inner.state.send_if_modified(|s| {
            if !(s.phase == Phase::Draining && s.held) {
                return false;
            }
            s.phase = Phase::Serving;
            s.entered[Phase::Draining.index()] = None;
            s.trigger = None;
            s.held = false;
            s.held_since = None;
            s.confirmed_safe = false;
            true
        });
        if cancelled {
            tracing::info!("hold cancelled: serving again");
        }
        cancelled
    }

    /// Records the gate's confirmation that no router routes here any more, so the drain wait
    /// ends at once. Returns false unless draining.
    pub fn confirm_safe(&self) -> bool {
        let confirmed = self.inner.state.send_if_modified(|s| {
            if s.phase != Phase::Draining || s.confirmed_safe {
                return false;
            }
            s.confirmed_safe = true;
            true
        });
        if confirmed {
            tracing::info!("the gate confirmed no router routes here any more");
        }
        confirmed
    }

    /// Completes once a drain wait started: Draining and not held (or any later phase).
    pub async fn drain_started(&self) {
        let mut rx = self.subscribe();
        let _ = rx
            .wait_for(|s| s.phase > Phase::Draining || (s.phase == Phase::Draining && !s.held))
            .await;
    }

    fn release(&self, trigger: &Trigger) -> bool {
        let now = Instant::now();
        self.inner.state.send_if_modified(|s| {
            if !(s.phase == Phase::Draining && s.held) {
                return false;
            }
            // The budget counts from the stop signal, not from the hold: the grace period
            // starts with the deletion the gate admitted.
            s.entered[Phase::Draining.index()] = Some(now);
            s.trigger = Some(trigger.clone());
            s.held = false;
            true
        })
    }

    /// → Closing (used by the shutdown driver). Returns false if already closing or later.
    pub fn close(&self) -> bool {
        self.advance(Phase::Closing, None)
    }

    /// → Stopped. Returns false if already stopped.
    pub fn stop(&self) -> bool {
        self.advance(Phase::Stopped, None)
    }

    /// Requests an immediate stop: the driver skips every wait and force-closes what is open.
    pub fn force_stop(&self) {
        self.inner.state.send_modify(|s| s.forced = true);
        self.inner.force.cancel();
    }

    /// Completes once [`Lifecycle::force_stop`] was called.
    pub async fn forced(&self) {
        self.inner.force.cancelled().await
    }

    /// Whether an immediate stop was requested.
    pub fn is_forced(&self) -> bool {
        self.inner.force.is_cancelled()
    }

    /// Completes once the lifecycle reached `phase` (or a later one).
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we hold it.
        let _ = rx.wait_for(|s| s.phase >= phase).await;
    }

    fn advance(&self, to: Phase, trigger: Option<Trigger>) -> bool {
        let now = Instant::now();
        self.inner.state.send_if_modified(|s| {
            if s.phase >= to {
                return false;
            }
            // Phases skipped on the way (Starting → Draining) count as entered now, so
            // "time in phase" stays well defined.
            for p in Phase::ALL.iter().filter(|p| **p > s.phase && **p <= to) {
                s.entered[p.index()] = Some(now);
            }
            s.phase = to;
            if trigger.is_some() {
                s.trigger = trigger;
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_only_move_forward() {
        let lc = Lifecycle::new();
        assert!(lc.mark_ready());
        assert!(lc.drain(Trigger::Programmatic));
        assert!(
            !lc.drain(Trigger::Admin),
            "a second trigger must not restart the drain"
        );
        assert!(!lc.mark_ready());
        assert_eq!(lc.snapshot().trigger, Some(Trigger::Programmatic));
        assert!(lc.close());
        assert!(lc.stop());
        assert!(!lc.close());
        assert_eq!(lc.phase(), Phase::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_drain_can_be_cancelled_until_a_signal_releases_it() {
        let lc = Lifecycle::new();
        lc.mark_ready();
        assert!(lc.hold());
        assert!(!lc.hold(), "already held");
        let snap = lc.snapshot();
        assert_eq!((snap.phase, snap.held), (Phase::Draining, true));
        assert_eq!(snap.trigger, Some(Trigger::Gate));
        assert!(lc.confirm_safe());
        assert!(lc.cancel_hold());
        let snap = lc.snapshot();
        assert_eq!(
            (snap.phase, snap.held, snap.confirmed_safe),
            (Phase::Serving, false, false)
        );
        assert_eq!(snap.entered(Phase::Draining), None);

        assert!(lc.hold());
        let waiter = tokio::spawn({
            let lc = lc.clone();
            async move { lc.drain_started().await }
        });
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a held drain has not started its wait"
        );
        assert!(
            lc.drain(Trigger::Signal("SIGTERM")),
            "the signal releases the hold"
        );
        waiter.await.unwrap();
        let snap = lc.snapshot();
        assert!(!snap.held);
        assert_eq!(snap.trigger, Some(Trigger::Signal("SIGTERM")));
        assert_eq!(
            snap.entered(Phase::Draining),
            Some(Instant::now()),
            "the budget counts from the signal"
        );
        assert_eq!(
            snap.held_since.map(|t| Instant::now() - t),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(!lc.cancel_hold(), "a started drain wait cannot be undone");
        assert!(!lc.drain(Trigger::Admin));
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_phases_are_entered_and_timed() {
        let lc = Lifecycle::new();
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        lc.drain(Trigger::Signal("SIGTERM"));
        let snap = lc.snapshot();
        assert_eq!(snap.entered(Phase::Serving), snap.entered(Phase::Draining));
        assert_eq!(snap.time_in(Phase::Starting, Instant::now()).as_secs(), 2);
        assert_eq!(snap.time_in(Phase::Serving, Instant::now()).as_secs(), 0);
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert_eq!(snap.time_in(Phase::Draining, Instant::now()).as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn watchers_see_transitions() {
        let lc = Lifecycle::new();
        let waiter = tokio::spawn({
            let lc = lc.clone();
            async move { lc.reached(Phase::Closing).await }
        });
        lc.drain(Trigger::Admin);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        lc.close();
        waiter.await.unwrap();
    }
}
