//! The open-loop schedule: each arrival of a router is sent when it is due, on its own task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::one;
use super::{Ctx, RequestKind, Target};

/// Sends the arrivals of one router: each is a task that takes a connection from the pool.
pub(super) struct Dispatcher {
    pub(super) ctx: Ctx,
    pub(super) target: Target,
    pub(super) path: Arc<str>,
    pub(super) slow_path: Arc<str>,
    pub(super) slow_share: f64,
    pub(super) rng: StdRng,
    pub(super) tracker: TaskTracker,
}

impl Dispatcher {
    pub(super) async fn run(mut self, first: Instant, interval: Duration, stop: CancellationToken) {
        let mut next = first;
        loop {
            // Arrivals already due are sent even when the stop came meanwhile: a dispatcher that
            // was starved of CPU catches up instead of silently dropping them.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(next) => {}
                () = stop.cancelled() => return,
            }
            next += interval;
            let (path, kind) =
                if self.slow_share > 0.0 && self.rng.random::<f64>() < self.slow_share {
                    (Arc::clone(&self.slow_path), RequestKind::Slow)
                } else {
                    (Arc::clone(&self.path), RequestKind::Plain)
                };
            self.ctx.stats.started.fetch_add(1, Ordering::SeqCst);
            let (ctx, target) = (self.ctx.clone(), self.target.clone());
            self.tracker.spawn(async move {
                let mut conn = target.pool.checkout();
                let _permit = target.pool.extra_permit(&conn).await;
                one(&ctx, &target, &mut conn, &path, kind, true).await;
                if let Some(c) = conn {
                    target.pool.checkin(c);
                }
            });
        }
    }
}
