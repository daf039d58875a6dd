//! Phase changes reach every connection of a server through one task that rings each one.
//!
//! Why not have each connection watch the lifecycle channel and the force token itself? Every
//! wake-up of a connection task would then poll those shared notifiers, and polling a tokio
//! `Notified` takes its waiter-list lock: busy connections would serialise on two global
//! mutexes (measured: a third of the throughput of plain `axum::serve`). Instead the
//! connection registers here once, and its driver only polls a per-connection waker.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;
use lameduck_core::{Lifecycle, Phase, Shutdown};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub(crate) struct Broadcast {
    phase: AtomicU8,
    forced: AtomicBool,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<dyn Ring>>>,
}

/// What the broadcast rings: anything that holds a [`Doorbell`].
pub(crate) trait Ring: Send + Sync + std::fmt::Debug {
    fn doorbell(&self) -> &Doorbell;
}

/// Wakes one connection's driver and counts the rings, so the driver can tell a ring from a
/// wake-up of its own (its socket's, its timer's).
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    rings: AtomicU64,
    waker: AtomicWaker,
}

impl Doorbell {
    pub(crate) fn ring(&self) {
        self.rings.fetch_add(1, Ordering::Release);
        self.waker.wake();
    }

    /// Registers the driver's waker and returns the ring count; a driver that saw a count and
    /// registers again gets woken by any later ring.
    pub(crate) fn register(&self, waker: &Waker) -> u64 {
        self.waker.register(waker);
        self.rings.load(Ordering::Acquire)
    }
}

/// Polls `work` until it completes (`Some` of its output), or until `doorbell` rang since the
/// count in `seen` or `wake_at` passed (`None`): the driver then looks at the phase and its
/// deadlines again, and comes back.
///
/// A `poll_fn` rather than an `async fn`: it is polled on every wake-up of a busy connection,
/// so it adds no state machine of its own around `work`.
pub(crate) fn until_rung<'a, F: Future + ?Sized>(
    doorbell: &'a Doorbell,
    seen: &'a mut u64,
    mut work: Pin<&'a mut F>,
    wake_at: Option<Instant>,
) -> impl Future<Output = Option<F::Output>> + 'a {
    let mut timer = wake_at.map(|at| Box::pin(sleep_until(at)));
    poll_fn(move |cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let rings = doorbell.register(cx.waker());
        if rings != *seen {
            *seen = rings;
            return Poll::Ready(None);
        }
        if timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
}

impl Ring for Doorbell {
    fn doorbell(&self) -> &Doorbell {
        self
    }
}

/// Removes a connection from the broadcast when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    broadcast: Arc<Broadcast>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.broadcast.conns().remove(&self.id);
    }
}

impl Broadcast {
    /// The phase as last broadcast (a relaxed load: cheap enough for every request).
    pub(crate) fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed)).min(Phase::ALL.len() - 1)]
    }

    /// Whether the forced close was broadcast.
    pub(crate) fn forced(&self) -> bool {
        self.forced.load(Ordering::Relaxed)
    }

    pub(crate) fn register(self: &Arc<Self>, conn: Arc<dyn Ring>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns().insert(id, conn);
        Registration {
            broadcast: Arc::clone(self),
            id,
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<dyn Ring>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring_all(&self) {
        for conn in self.conns().values() {
            conn.doorbell().ring();
        }
    }

    /// Mirrors the lifecycle and the force token into this broadcast until Stopped.
    pub(crate) async fn run(self: Arc<Self>, lifecycle: Lifecycle, force: CancellationToken) {
        let mut phases = lifecycle.subscribe();
        loop {
            let phase = phases.borrow_and_update().phase;
            self.phase.store(phase as u8, Ordering::Relaxed);
            self.ring_all();
            if phase == Phase::Stopped {
                return;
            }
            tokio::select! {
                changed = phases.changed() => if changed.is_err() { return },
                () = force.cancelled(), if !self.forced() => {
                    self.forced.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The lifecycle's phase and forced close, followed for many connections by one task, for
/// servers of connections other than [`Lameduck::serve`](crate::Lameduck::serve)'s (the drain
/// proxy's TCP mode uses it).
///
/// A connection task that polled the lifecycle's channel and the force token on every wake-up
/// would take their shared locks on every read; with this it polls a waker of its own.
#[derive(Debug, Clone)]
pub struct PhaseBroadcast {
    inner: Arc<Broadcast>,
}

impl PhaseBroadcast {
    /// Starts the task (on the current tokio runtime) that follows `shutdown`'s lifecycle and
    /// forced close; it ends when the lifecycle reaches Stopped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(shutdown: &Shutdown) -> Self {
        let inner = Arc::new(Broadcast::default());
        tokio::spawn(
            Arc::clone(&inner).run(shutdown.lifecycle().clone(), shutdown.force_close().clone()),
        );
        Self { inner }
    }

    /// The phase as last broadcast (a relaxed load).
    pub fn phase(&self) -> Phase {
        self.inner.phase()
    }

    /// Whether the forced close was broadcast.
    pub fn forced(&self) -> bool {
        self.inner.forced()
    }

    /// Registers one connection; it stays registered until the bell is dropped.
    pub fn subscribe(&self) -> PhaseBell {
        let doorbell = Arc::new(Doorbell::default());
        let registration = self.inner.register(Arc::clone(&doorbell) as Arc<dyn Ring>);
        PhaseBell {
            doorbell,
            _registration: registration,
            seen: 0,
        }
    }
}

/// One connection's subscription to a [`PhaseBroadcast`]: rung on every phase change and on
/// the forced close.
#[derive(Debug)]
pub struct PhaseBell {
    doorbell: Arc<Doorbell>,
    _registration: Registration,
    seen: u64,
}

impl PhaseBell {
    /// Polls `work` (the connection) until it completes, returning `Some` of its output; or
    /// returns `None` once the bell rang (since the subscription or the last `None`) or
    /// `wake_at` passed. Then read the new state with [`PhaseBroadcast::phase`] and
    /// [`PhaseBroadcast::forced`], act on it, and call again with the same `work`.
    pub fn until_rung<'a, F: Future + ?Sized>(
        &'a mut self,
        work: Pin<&'a mut F>,
        wake_at: Option<Instant>,
    ) -> impl Future<Output = Option<F::Output>> + 'a {
        until_rung(&self.doorbell, &mut self.seen, work, wake_at)
    }
}
