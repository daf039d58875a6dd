//! When a router's requests start: the open loop's schedule or the closed loop's busy clients.
//!
//! Both models share everything but the decision of when to send: the request mix, the
//! per-router pacing (one start per `interval` at most), counting each start, and the one
//! request path (`client::one`) that ends every start in exactly one record.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::one;
use super::{Ctx, RequestKind, Target};
use crate::scenario::Clients;

/// Start times at most one per `interval`, for one router.
#[derive(Debug)]
pub(super) struct Pacer {
    next: Instant,
    interval: Duration,
}

impl Pacer {
    pub(super) fn new(first: Instant, interval: Duration) -> Self {
        Self {
            next: first,
            interval,
        }
    }

    /// The open loop's next arrival: one interval after the previous one, even when that is
    /// already past, so a dispatcher that was starved of CPU catches up instead of silently
    /// dropping arrivals.
    fn next_arrival(&mut self) -> Instant {
        let due = self.next;
        self.next += self.interval;
        due
    }

    /// The closed loop's next start: not before `now`, and one interval after the previous
    /// start. Time nobody used is not saved up, so no burst ever goes above the rate: a client
    /// that waited for its answer does not make up for it.
    fn next_start(&mut self, now: Instant) -> Instant {
        let due = self.next.max(now);
        self.next = due + self.interval;
        due
    }
}

/// Waits for the open loop's next arrival; false once `stop` came first. The open loop never
/// waits for a request: each arrival goes to a task of its own.
async fn arrival(pacer: &mut Pacer, stop: &CancellationToken) -> bool {
    // Arrivals already due are sent even when the stop came meanwhile (see `next_arrival`).
    tokio::select! {
        biased;
        () = tokio::time::sleep_until(pacer.next_arrival()) => true,
        () = stop.cancelled() => false,
    }
}

/// Waits until a closed-loop client, whose previous request ended, may start its next one: at
/// once, unless the pacer it shares with the router's other clients says later. False once
/// `stop` came.
async fn turn(pacer: &Mutex<Pacer>, stop: &CancellationToken) -> bool {
    let due = pacer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .next_start(Instant::now());
    tokio::select! {
        biased;
        () = stop.cancelled() => false,
        () = tokio::time::sleep_until(due) => true,
    }
}

/// Which path the next request asks for: `slow_path` with probability `slow_share`.
pub(super) struct Mix {
    pub(super) path: Arc<str>,
    pub(super) slow_path: Arc<str>,
    pub(super) slow_share: f64,
    pub(super) rng: StdRng,
}

impl Mix {
    /// The next request, counted as started: from here `client::one` ends it in one record.
    fn start(&mut self, ctx: &Ctx) -> (Arc<str>, RequestKind) {
        let next = if self.slow_share > 0.0 && self.rng.random::<f64>() < self.slow_share {
            (Arc::clone(&self.slow_path), RequestKind::Slow)
        } else {
            (Arc::clone(&self.path), RequestKind::Plain)
        };
        ctx.stats.started.fetch_add(1, Ordering::SeqCst);
        next
    }
}

/// The requests of one router.
pub(super) struct Dispatcher {
    pub(super) ctx: Ctx,
    pub(super) target: Target,
    pub(super) mix: Mix,
    pub(super) pacer: Pacer,
    pub(super) tracker: TaskTracker,
}

impl Dispatcher {
    /// Starts this router's requests on the tracker, in the scenario's client model;
    /// `connections` is the closed loop's number of clients.
    pub(super) fn spawn(self, clients: Clients, connections: usize, stop: CancellationToken) {
        let tracker = self.tracker.clone();
        match clients {
            Clients::Open => {
                tracker.spawn(self.open(stop));
            }
            Clients::Closed => self.closed(connections, &stop),
        }
    }

    /// Each arrival is a task that takes a connection from the router's pool (or an extra one).
    async fn open(self, stop: CancellationToken) {
        let Self {
            ctx,
            target,
            mut mix,
            mut pacer,
            tracker,
        } = self;
        while arrival(&mut pacer, &stop).await {
            let (path, kind) = mix.start(&ctx);
            let (ctx, target) = (ctx.clone(), target.clone());
            tracker.spawn(async move {
                let mut conn = target.pool.checkout();
                let _permit = target.pool.extra_permit(&conn).await;
                one(&ctx, &target, &mut conn, &path, kind, true).await;
                if let Some(c) = conn {
                    target.pool.checkin(c);
                }
            });
        }
    }

    /// `connections` clients, each with a keep-alive connection of its own (replaced only when
    /// the server closes it), sharing the router's pacer and request mix.
    fn closed(self, connections: usize, stop: &CancellationToken) {
        let Self {
            ctx,
            target,
            mix,
            pacer,
            tracker,
        } = self;
        let shared = Arc::new((Mutex::new(pacer), Mutex::new(mix)));
        for _ in 0..connections.max(1) {
            let (ctx, target, shared, stop) = (
                ctx.clone(),
                target.clone(),
                Arc::clone(&shared),
                stop.clone(),
            );
            tracker.spawn(async move {
                let mut conn = None;
                let (pacer, mix) = &*shared;
                while turn(pacer, &stop).await {
                    let (path, kind) = mix
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .start(&ctx);
                    one(&ctx, &target, &mut conn, &path, kind, false).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn open_arrivals_catch_up_and_closed_starts_never_burst() {
        let t0 = Instant::now();
        let mut open = Pacer::new(t0, 10 * MS);
        assert_eq!(
            [
                open.next_arrival(),
                open.next_arrival(),
                open.next_arrival()
            ],
            [t0, t0 + 10 * MS, t0 + 20 * MS]
        );
        let mut closed = Pacer::new(t0, 10 * MS);
        assert_eq!(closed.next_start(t0), t0);
        // Asked again at once: one interval later, not now.
        assert_eq!(closed.next_start(t0), t0 + 10 * MS);
        // After a long wait for an answer: now, and the idle time is not saved up.
        let later = t0 + 1000 * MS;
        assert_eq!(closed.next_start(later), later);
        assert_eq!(closed.next_start(later), later + 10 * MS);
    }

    /// Runs `clients` closed-loop clients for 995 ms of paused time (so that no start ties
    /// with the stop), each request taking `latency`, with a pacer of `interval`; returns
    /// (requests started, most in flight at once per client, most in flight at once in total).
    async fn closed(clients: usize, interval: Duration, latency: Duration) -> (u32, u32, u32) {
        let pacer = Mutex::new(Pacer::new(Instant::now(), interval));
        let stop = CancellationToken::new();
        let (started, in_flight, most) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let per_client_most = Cell::new(0);
        let client = async || {
            // As `Dispatcher::closed`'s clients do, with a sleep for `client::one`.
            let mine = Cell::new(0);
            while turn(&pacer, &stop).await {
                started.set(started.get() + 1);
                mine.set(mine.get() + 1);
                in_flight.set(in_flight.get() + 1);
                per_client_most.set(per_client_most.get().max(mine.get()));
                most.set(most.get().max(in_flight.get()));
                tokio::time::sleep(latency).await;
                mine.set(mine.get() - 1);
                in_flight.set(in_flight.get() - 1);
            }
        };
        let all = futures_util::future::join_all((0..clients).map(|_| client()));
        let stopper = async {
            tokio::time::sleep(995 * MS).await;
            stop.cancel();
        };
        tokio::join!(all, stopper);
        (started.get(), per_client_most.get(), most.get())
    }

    #[tokio::test(start_paused = true)]
    async fn closed_clients_send_back_to_back_when_the_rate_allows() {
        // 4 clients, 50 ms a request, a cap of 1000/s: each sends 20 a second, one at a time.
        let (started, per_client, total) = closed(4, MS, 50 * MS).await;
        assert_eq!(started, 4 * 20, "back to back");
        assert_eq!(per_client, 1, "a client waits for its answer");
        assert_eq!(total, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_clients_together_stay_under_the_rate() {
        // 8 clients, 1 ms a request, a cap of 100/s: the cap binds, over all clients.
        let (started, per_client, _) = closed(8, 10 * MS, MS).await;
        assert!(
            (99..=101).contains(&started),
            "{started} starts in 1 s at 100/s"
        );
        assert_eq!(per_client, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_open_loop_does_not_wait_for_answers() {
        // 100/s of requests that take 45 ms: arrivals keep their schedule, 5 in flight at once.
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (in_flight, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let mut started = 0;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let arrivals = async {
                    // As `Dispatcher::open` does, with a sleep for `client::one`.
                    let mut pacer = Pacer::new(Instant::now(), 10 * MS);
                    while arrival(&mut pacer, &stop).await {
                        started += 1;
                        let (in_flight, most) = (Rc::clone(&in_flight), Rc::clone(&most));
                        tracker.spawn_local(async move {
                            in_flight.set(in_flight.get() + 1);
                            most.set(most.get().max(in_flight.get()));
                            tokio::time::sleep(45 * MS).await;
                            in_flight.set(in_flight.get() - 1);
                        });
                    }
                };
                let stopper = async {
                    tokio::time::sleep(995 * MS).await;
                    stop.cancel();
                };
                tokio::join!(arrivals, stopper);
                tracker.close();
                tracker.wait().await;
            })
            .await;
        assert_eq!(started, 100);
        assert_eq!(most.get(), 5);
    }
}
