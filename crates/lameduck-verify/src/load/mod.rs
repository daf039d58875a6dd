//! The load generator, in one of two client models ([`Clients`](crate::scenario::Clients)):
//!
//! - open loop (default): requests arrive at a fixed rate, spread evenly over `connections`
//!   keep-alive connections per router; an arrival is sent when it is due, whatever happened to
//!   the previous one (a refused connection costs one failed request, not a tight reconnect
//!   loop as with wrk);
//! - closed loop: `connections` busy clients per router, each on its own keep-alive connection,
//!   send their next request as soon as the previous one ended, at most `rate` in total. Their
//!   connections are never idle, so a server's close races a request, as with wrk or a
//!   production client at high load. A failing endpoint is retried as fast as it fails, so
//!   there the rate is what bounds the failures.
//!
//! Both send every request through the same client, which behaves like a real one:
//! - a connection the server closed (or answered with `Connection: close`, or a GOAWAY) is
//!   replaced by a new one before the next request;
//! - a request that hyper reports as *not sent* (the connection was already closed) is sent again
//!   on a new connection; a request that was written and then lost its connection is a failure.
//!
//! Every request started ends in exactly one [`Record`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::{Clock, PodId, RouterId};
use crate::routers::PodDirectory;
use crate::routers::l4::L4Router;
use crate::scenario::{Load, Protocol};

mod client;
mod dispatch;
mod pool;
mod sessions;

pub(crate) use pool::ClientPool;

use dispatch::{Dispatcher, Mix, Pacer};
use sessions::{stream_session, websocket_session};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A complete 1xx–4xx... response (2xx/3xx).
    Ok,
    /// The connection to the pod was refused (directly, or by an L4 router's failed connect).
    Refused,
    /// The connection was reset or closed after the request was sent, before a full response.
    Reset,
    /// No full response within the request timeout.
    Timeout,
    /// A 5xx response (from a router: 502/503/504 on upstream failure).
    #[serde(rename = "5xx")]
    Status5xx,
    /// Anything else unexpected: unparseable response, 4xx, HTTP/2 protocol error.
    Protocol,
}

impl Outcome {
    /// Every failure class, in report order.
    pub const FAILURES: [Self; 5] = [
        Self::Refused,
        Self::Reset,
        Self::Timeout,
        Self::Status5xx,
        Self::Protocol,
    ];

    /// Name as in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Status5xx => "5xx",
            Self::Protocol => "protocol",
        }
    }
}

/// What kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// An ordinary request.
    Plain,
    /// A slow request (long response time).
    Slow,
    /// One message round trip of a WebSocket session.
    Websocket,
    /// A whole streaming response.
    Stream,
}

/// One request, started and ended.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Start, in seconds since the start of the run.
    pub t: f64,
    /// Seconds until it ended.
    pub latency: f32,
    /// How it ended.
    pub outcome: Outcome,
    /// The router it went through.
    pub router: RouterId,
    /// The pod that served or failed it, when known.
    pub pod: Option<PodId>,
    /// The L7 router retried it once on another pod.
    pub retried: bool,
    /// Kind.
    pub kind: RequestKind,
    /// What the embedded L7 router said went wrong upstream (`connect`, `upstream-reset`,
    /// `no-endpoint`), for its 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

/// Live counters for the progress bar.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Requests started.
    pub started: AtomicU64,
    /// Requests ended in success.
    pub ok: AtomicU64,
    /// Requests ended in failure.
    pub failed: AtomicU64,
}

/// A router to send load through.
#[derive(Clone)]
pub(crate) struct Target {
    pub router: RouterId,
    pub addr: SocketAddr,
    pub l4: Option<Arc<L4Router>>,
    pub pool: Arc<ClientPool>,
}

/// Context shared by every client task.
#[derive(Clone)]
struct Ctx {
    clock: Clock,
    stats: Arc<LoadStats>,
    records: mpsc::UnboundedSender<Record>,
    directory: Arc<PodDirectory>,
    timeout: Duration,
    protocol: Protocol,
}

impl Ctx {
    fn finish(&self, rec: Record) {
        if rec.outcome == Outcome::Ok {
            self.stats.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        // The receiver lives until every client task ended; a send error cannot lose a count
        // that matters because `started` is compared with the records received.
        let _ = self.records.send(rec);
    }
}

/// The running load.
pub(crate) struct LoadHandle {
    stop: CancellationToken,
    tracker: TaskTracker,
    records: mpsc::UnboundedReceiver<Record>,
    stats: Arc<LoadStats>,
}

impl LoadHandle {
    pub fn stats(&self) -> Arc<LoadStats> {
        Arc::clone(&self.stats)
    }

    /// Stops sending new requests (those in flight go on).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops sending new requests, waits for those in flight (bounded by the request timeout)
    /// and returns every record.
    pub async fn finish(mut self) -> (u64, Vec<Record>) {
        self.stop();
        self.tracker.close();
        self.tracker.wait().await;
        let mut out = Vec::new();
        while let Ok(r) = self.records.try_recv() {
            out.push(r);
        }
        (self.stats.started.load(Ordering::SeqCst), out)
    }
}

/// Starts the load over `targets`.
pub(crate) fn start(
    targets: &[Target],
    load: &Load,
    seed: u64,
    clock: Clock,
    directory: Arc<PodDirectory>,
) -> LoadHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(LoadStats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ctx = Ctx {
        clock,
        stats: Arc::clone(&stats),
        records: tx,
        directory,
        timeout: load.timeout.0,
        protocol: load.protocol,
    };
    let routers = targets.len().max(1);
    let per_router = load.rate / routers as f64;
    let interval = Duration::from_secs_f64((1.0 / per_router).min(3600.0));
    let now = Instant::now();
    for (i, target) in targets.iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / routers as f64);
        let dispatcher = Dispatcher {
            ctx: ctx.clone(),
            target: target.clone(),
            mix: Mix {
                path: Arc::from(load.path.as_str()),
                slow_path: Arc::from(load.slow_path.as_str()),
                slow_share: load.slow_share,
                rng: StdRng::seed_from_u64(
                    seed ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
                ),
            },
            pacer: Pacer::new(now + offset, interval),
            tracker: tracker.clone(),
        };
        dispatcher.spawn(load.clients, load.connections as usize, stop.clone());
    }
    for i in 0..load.websockets as usize {
        let target = targets[i % targets.len()].clone();
        tracker.spawn(websocket_session(
            ctx.clone(),
            target,
            load.websocket_path.clone(),
            stop.clone(),
        ));
    }
    for i in 0..load.streams as usize {
        let target = targets[i % targets.len()].clone();
        tracker.spawn(stream_session(
            ctx.clone(),
            target,
            load.stream_path.clone(),
            stop.clone(),
        ));
    }
    LoadHandle {
        stop,
        tracker,
        records: rx,
        stats,
    }
}
