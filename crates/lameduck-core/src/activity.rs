//! Evidence of traffic: arrivals of connections and requests, and work in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Counts arrivals and in-flight requests; the drain wait reads it to decide traffic stopped.
///
/// Lock-free: recording an arrival is one atomic store, cheap enough for every request.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Nanoseconds after `base` of the last arrival, plus one (0 = none yet).
    last_arrival: AtomicU64,
    arrivals: AtomicU64,
    in_flight: AtomicI64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A tracker with no arrivals.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            last_arrival: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
        }
    }

    /// Records that a connection or request arrived now.
    pub fn record_arrival(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_arrival.fetch_max(nanos + 1, Ordering::Relaxed);
        self.arrivals.fetch_add(1, Ordering::Relaxed);
    }

    /// When the last connection or request arrived, if any did.
    pub fn last_arrival(&self) -> Option<Instant> {
        match self.last_arrival.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }

    /// Since when nothing arrived, counting from `start` at the earliest: arrivals before a
    /// drain began prove nothing about the routers after it. The drain wait and the pod's
    /// `GET /drain` evidence both read quiet this way.
    pub fn quiet_since(&self, start: Instant) -> Instant {
        self.last_arrival().map_or(start, |last| last.max(start))
    }

    /// How many connections and requests arrived so far.
    pub fn arrivals(&self) -> u64 {
        self.arrivals.load(Ordering::Relaxed)
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Records a request arrival and counts it in flight until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.record_arrival();
        self.start_pending()
    }

    /// Counts work in flight that is not (yet) an arrival, such as a connection whose protocol
    /// the drain proxy is still detecting: the drain wait must not end under it, and the
    /// arrival is recorded once the connection reaches the server that handles it.
    pub fn start_pending(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            activity: Arc::clone(self),
        }
    }
}

/// Counts one request as in flight while it lives.
#[derive(Debug)]
pub struct InFlightGuard {
    activity: Arc<Activity>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn arrivals_and_in_flight_are_counted() {
        let activity = Arc::new(Activity::new());
        assert_eq!(activity.last_arrival(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        let guard = activity.start_request();
        assert_eq!(activity.in_flight(), 1);
        assert_eq!(activity.arrivals(), 1);
        assert_eq!(activity.last_arrival(), Some(Instant::now()));
        drop(guard);
        assert_eq!(activity.in_flight(), 0);
    }
}
