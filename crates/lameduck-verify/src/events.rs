//! The run's clock and its timestamped event log.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// Identifies a replica ("pod") for the whole run: 0.. for the first revision, then onwards.
pub type PodId = u32;

/// Identifies a router (index into the run's router list).
pub type RouterId = u16;

/// Seconds since the start of the run.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Seconds since the start.
    #[must_use]
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum EventKind {
    /// The load started.
    LoadStarted,
    /// A rolling update began.
    RolloutStarted {
        /// 1-based rollout number.
        rollout: u32,
    },
    /// A rolling update finished (every new pod available, every old pod gone).
    RolloutFinished {
        /// 1-based rollout number.
        rollout: u32,
    },
    /// The load stopped.
    LoadStopped,
    /// A replica process was started.
    PodStarted {
        /// Its PID.
        pid: u32,
        /// Revision (0 = initial).
        revision: u32,
    },
    /// Its readiness probe passed `successThreshold` times.
    PodReady,
    /// It stayed ready for `minReadySeconds`.
    PodAvailable,
    /// Its readiness probe failed `failureThreshold` times.
    PodUnready,
    /// The endpoints controller published the pod as ready (routers apply it later).
    EndpointPublished,
    /// t0: the pod was deleted; the endpoints controller marked it not ready.
    PodDeleted,
    /// A router started routing to the pod.
    RouterAdded,
    /// A router stopped routing to the pod.
    RouterWithdrew,
    /// The kubelet started the preStop hook.
    PreStopStarted,
    /// The preStop hook returned.
    PreStopFinished {
        /// Whether it succeeded (exit 0 / 2xx).
        ok: bool,
    },
    /// The kubelet sent the stop signal.
    StopSignal {
        /// Signal name.
        signal: String,
    },
    /// The grace period ran out: SIGKILL.
    Killed,
    /// The replica process exited.
    Exited {
        /// Exit code, when it exited by itself.
        code: Option<i32>,
        /// Signal that ended it, if any.
        signal: Option<i32>,
    },
}

/// One timestamped event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Seconds since the start of the run.
    pub t: f64,
    /// The pod it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodId>,
    /// The router it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterId>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Shared, append-only event log.
#[derive(Clone, Debug)]
pub struct EventLog {
    clock: Clock,
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    /// An empty log on `clock`.
    #[must_use]
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            events: Arc::default(),
        }
    }

    /// The clock of the run.
    #[must_use]
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Records `kind` now.
    pub fn push(&self, pod: Option<PodId>, router: Option<RouterId>, kind: EventKind) -> f64 {
        let t = self.clock.now();
        self.push_at(t, pod, router, kind);
        t
    }

    /// Records `kind` at `t`.
    pub fn push_at(&self, t: f64, pod: Option<PodId>, router: Option<RouterId>, kind: EventKind) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Event {
                t,
                pod,
                router,
                kind,
            });
    }

    /// Every event so far, in time order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<Event> {
        let mut v = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }
}
