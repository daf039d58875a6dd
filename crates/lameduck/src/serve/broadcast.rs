//! Phase changes reach every connection of a server through one task that pokes each one.
//!
//! Why not have each connection watch the lifecycle channel and the force token itself? Every
//! wake-up of a connection task would then poll those shared notifiers, and polling a tokio
//! `Notified` takes its waiter-list lock: busy connections would serialise on two global
//! mutexes (measured: a third of the throughput of plain `axum::serve`). Instead the
//! connection registers here once, and its driver only polls a per-connection waker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lameduck_core::Phase;

use super::io::ConnState;
use crate::Lameduck;

#[derive(Debug, Default)]
pub(crate) struct Broadcast {
    phase: AtomicU8,
    forced: AtomicBool,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// Removes a connection from the broadcast when dropped.
pub(crate) struct Registration<'a> {
    broadcast: &'a Broadcast,
    id: u64,
}

impl Drop for Registration<'_> {
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

    pub(crate) fn register(&self, conn: Arc<ConnState>) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns().insert(id, conn);
        Registration {
            broadcast: self,
            id,
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poke_all(&self) {
        for conn in self.conns().values() {
            conn.poke();
        }
    }

    /// Mirrors the lifecycle and the force token into this broadcast until Stopped.
    pub(crate) async fn run(self: Arc<Self>, lameduck: Lameduck) {
        let mut phases = lameduck.lifecycle().subscribe();
        let force = lameduck.shutdown().force_close().clone();
        loop {
            let phase = phases.borrow_and_update().phase;
            self.phase.store(phase as u8, Ordering::Relaxed);
            self.poke_all();
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
