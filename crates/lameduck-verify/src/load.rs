//! The open-loop load generator.
//!
//! Requests arrive at a fixed rate, spread evenly over `connections` keep-alive connections per
//! router; an arrival is sent when it is due, whatever happened to the previous one (a refused
//! connection costs one failed request, not a tight reconnect loop as with wrk). Clients behave
//! like real ones:
//! - a connection the server closed (or answered with `Connection: close`, or a GOAWAY) is
//!   replaced by a new one before the next request;
//! - a request that hyper reports as *not sent* (the connection was already closed) is sent again
//!   on a new connection; a request that was written and then lost its connection is a failure.
//!
//! Every request started ends in exactly one [`Record`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::{Clock, PodId, RouterId};
use crate::routers::l4::L4Router;
use crate::routers::{ERROR_HEADER, POD_HEADER, PodDirectory, RETRIED_HEADER};
use crate::scenario::{Load, Protocol};

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

fn router_error(v: &[u8]) -> Option<&'static str> {
    Some(match v {
        b"connect" => "connect",
        b"upstream-reset" => "upstream-reset",
        b"no-endpoint" => "no-endpoint",
        _ => "other",
    })
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

/// The keep-alive connections of the clients of one router: `size` long-lived connections,
/// opened as arrivals need them, reused in turn (FIFO) and replaced only when the server closes
/// them, so that requests spread over all of them (and an L4 router spreads those over pods,
/// pinned as with wrk or a browser). An arrival that finds none idle opens an extra connection,
/// closed after its request: a slow or stuck connection never holds up the schedule, which is
/// what keeps the load open-loop. Extra connections are bounded (3 × `size` at once): past
/// that, arrivals wait for one, so an overloaded machine (the testbed shares it with the app)
/// is not driven into a spiral of new connections.
#[derive(Debug)]
pub(crate) struct ClientPool {
    idle: std::sync::Mutex<std::collections::VecDeque<Conn>>,
    open: Arc<AtomicUsize>,
    size: usize,
    extra: Arc<tokio::sync::Semaphore>,
}

impl ClientPool {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            idle: std::sync::Mutex::default(),
            open: Arc::default(),
            size,
            extra: Arc::new(tokio::sync::Semaphore::new(3 * size)),
        }
    }

    /// A permit for an extra connection when every long-lived one is open and none is idle.
    async fn extra_permit(&self, conn: &Option<Conn>) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if conn.is_some() || self.open.load(Ordering::SeqCst) < self.size {
            return None;
        }
        Arc::clone(&self.extra).acquire_owned().await.ok()
    }

    fn checkout(&self) -> Option<Conn> {
        if self.open.load(Ordering::SeqCst) < self.size {
            return None;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(c) = idle.pop_front() {
            if c.is_closed() {
                continue;
            }
            // An HTTP/2 connection serves concurrent requests: it stays available.
            if let Some(shared) = c.share() {
                idle.push_back(shared);
            }
            return Some(c);
        }
        None
    }

    fn checkin(&self, c: Conn) {
        // Extra connections (no guard) are closed after their request.
        if c.is_closed() || c._open.is_none() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(c);
    }
}

/// Counts a pooled connection as open until its last handle is dropped.
#[derive(Debug)]
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        let dispatcher = Dispatcher {
            ctx: ctx.clone(),
            target: target.clone(),
            path: Arc::from(load.path.as_str()),
            slow_path: Arc::from(load.slow_path.as_str()),
            slow_share: load.slow_share,
            rng: StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            tracker: tracker.clone(),
        };
        let offset = interval.mul_f64(i as f64 / routers as f64);
        tracker.spawn(dispatcher.run(now + offset, interval, stop.clone()));
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

#[derive(Debug)]
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

#[derive(Debug)]
struct Conn {
    sender: Sender,
    local: SocketAddr,
    _open: Option<Arc<OpenGuard>>,
}

impl Conn {
    /// Another handle on an HTTP/2 connection (None for HTTP/1.1, which serves one at a time).
    fn share(&self) -> Option<Self> {
        match &self.sender {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Self {
                sender: Sender::H2(s.clone()),
                local: self.local,
                _open: self._open.clone(),
            }),
        }
    }

    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn ready(&mut self) -> bool {
        match &mut self.sender {
            Sender::H1(s) => s.ready().await.is_ok(),
            Sender::H2(s) => s.ready().await.is_ok(),
        }
    }

    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<http::Response<Incoming>, hyper::client::conn::TrySendError<Request<Empty<Bytes>>>>
    {
        match &mut self.sender {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

/// What one attempt produced: outcome, pod, retried.
struct Attempt {
    outcome: Outcome,
    pod: Option<PodId>,
    retried: bool,
    detail: Option<&'static str>,
}

/// Connects to the router from a port bound first, so that even a connection reset during the
/// handshake (an L4 router whose connect to the pod failed) can be looked up by its address.
async fn connect_tcp(target: &Target) -> Result<(TcpStream, SocketAddr), Attempt> {
    let fail = |outcome| Attempt {
        outcome,
        pod: None,
        retried: false,
        detail: None,
    };
    let sock = tokio::net::TcpSocket::new_v4().map_err(|_| fail(Outcome::Reset))?;
    sock.bind(([127, 0, 0, 1], 0).into())
        .map_err(|_| fail(Outcome::Reset))?;
    let local = sock.local_addr().map_err(|_| fail(Outcome::Reset))?;
    match tokio::time::timeout(Duration::from_secs(2), sock.connect(target.addr)).await {
        Ok(Ok(s)) => Ok((s, local)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(fail(Outcome::Refused))
        }
        Ok(Err(_)) => Err(unsent_failure(target, local)),
        Err(_) => Err(Attempt {
            outcome: Outcome::Timeout,
            pod: l4_info(target, Some(local)).0,
            retried: false,
            detail: None,
        }),
    }
}

/// A new HTTP connection (HTTP/1.1 or h2c) to the router.
async fn connect(ctx: &Ctx, target: &Target, pooled: bool) -> Result<Conn, Attempt> {
    let fail = |outcome| Attempt {
        outcome,
        pod: None,
        retried: false,
        detail: None,
    };
    let (stream, local) = connect_tcp(target).await?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let sender = match ctx.protocol {
        Protocol::Http1 => {
            let (s, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| fail(Outcome::Protocol))?;
            tokio::spawn(conn);
            Sender::H1(s)
        }
        Protocol::H2c => {
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| unsent_failure(target, local))?;
            tokio::spawn(conn);
            Sender::H2(s)
        }
    };
    // One of the pool's long-lived connections while there are fewer than `size`; an extra
    // one (closed after use) otherwise.
    let pool = &target.pool;
    let open = (pooled && pool.open.fetch_add(1, Ordering::SeqCst) < pool.size)
        .then(|| Arc::new(OpenGuard(Arc::clone(&pool.open))));
    if pooled && open.is_none() {
        pool.open.fetch_sub(1, Ordering::SeqCst);
    }
    Ok(Conn {
        sender,
        local,
        _open: open,
    })
}

fn l4_info(target: &Target, local: Option<SocketAddr>) -> (Option<PodId>, bool) {
    match (&target.l4, local) {
        (Some(r), Some(local)) => r
            .conn_info(local)
            .map_or((None, false), |i| (i.pod, i.refused)),
        _ => (None, false),
    }
}

fn classify(e: &hyper::Error) -> Outcome {
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        Outcome::Protocol
    } else if e.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Reset
    }
}

/// One request on `conn` (replaced when closed). `Err` only for the caller's timeout path.
async fn request(
    ctx: &Ctx,
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    pooled: bool,
) -> Attempt {
    for attempt in 0..3 {
        // A request that was never written is sent again on a new connection, as real clients
        // do, but only when the connection it found was an old keep-alive one: a fresh
        // connection that is closed before the request could be written is a failure (an L4
        // router's failed connect to the pod looks exactly like that).
        let mut fresh = false;
        if conn.as_ref().is_none_or(Conn::is_closed) {
            match connect(ctx, target, pooled).await {
                Ok(c) => *conn = Some(c),
                Err(attempt) => return attempt,
            }
            fresh = true;
        }
        let Some(c) = conn.as_mut() else { continue };
        if !c.ready().await {
            let local = c.local;
            *conn = None;
            if fresh {
                return unsent_failure(target, local);
            }
            continue;
        }
        let local = c.local;
        let req = Request::get(path)
            .header(http::header::HOST, "lameduck-verify")
            .body(Empty::new())
            .unwrap_or_default();
        let req = if ctx.protocol == Protocol::H2c {
            let (mut parts, body) = req.into_parts();
            parts.uri = format!("http://lameduck-verify{path}")
                .parse()
                .unwrap_or_default();
            Request::from_parts(parts, body)
        } else {
            req
        };
        match c.send(req).await {
            Ok(resp) => {
                let status = resp.status();
                let close = resp
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let retried = resp.headers().contains_key(RETRIED_HEADER);
                let pod = resp
                    .headers()
                    .get(POD_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| ctx.directory.resolve(v))
                    .or_else(|| l4_info(target, Some(local)).0);
                let detail = resp
                    .headers()
                    .get(ERROR_HEADER)
                    .and_then(|v| router_error(v.as_bytes()));
                let from_router = detail.is_some();
                let body = resp.into_body().collect().await;
                if close {
                    *conn = None;
                }
                let outcome = match body {
                    Err(e) => {
                        *conn = None;
                        classify(&e)
                    }
                    Ok(_) if status.is_server_error() || from_router => Outcome::Status5xx,
                    Ok(_) if status.is_client_error() || status.is_informational() => {
                        Outcome::Protocol
                    }
                    Ok(_) => Outcome::Ok,
                };
                return Attempt {
                    outcome,
                    pod,
                    retried,
                    detail,
                };
            }
            Err(mut e) => {
                *conn = None;
                if e.take_message().is_some() {
                    if fresh {
                        return unsent_failure(target, local);
                    }
                    if attempt < 2 {
                        continue; // never written on a stale connection: send it on a new one
                    }
                }
                let (pod, refused) = l4_info(target, Some(local));
                let outcome = if refused {
                    Outcome::Refused
                } else {
                    classify(e.error())
                };
                return Attempt {
                    outcome,
                    pod,
                    retried: false,
                    detail: None,
                };
            }
        }
    }
    Attempt {
        outcome: Outcome::Reset,
        pod: None,
        retried: false,
        detail: None,
    }
}

/// A fresh connection closed before the request was written: refused when an L4 router says
/// its connect to the pod failed, reset otherwise.
fn unsent_failure(target: &Target, local: SocketAddr) -> Attempt {
    let (pod, refused) = l4_info(target, Some(local));
    Attempt {
        outcome: if refused {
            Outcome::Refused
        } else {
            Outcome::Reset
        },
        pod,
        retried: false,
        detail: None,
    }
}

/// Sends the arrivals of one router: each is a task that takes a connection from the pool.
struct Dispatcher {
    ctx: Ctx,
    target: Target,
    path: Arc<str>,
    slow_path: Arc<str>,
    slow_share: f64,
    rng: StdRng,
    tracker: TaskTracker,
}

impl Dispatcher {
    async fn run(mut self, first: Instant, interval: Duration, stop: CancellationToken) {
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

/// Sends one request (already counted as started) and records how it ended.
async fn one(
    ctx: &Ctx,
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    kind: RequestKind,
    pooled: bool,
) {
    let t = ctx.clock.now();
    let started = Instant::now();
    let local = conn.as_ref().map(|c| c.local);
    let attempt =
        match tokio::time::timeout(ctx.timeout, request(ctx, target, conn, path, pooled)).await {
            Ok(a) => a,
            Err(_) => {
                let local = conn.as_ref().map(|c| c.local).or(local);
                *conn = None;
                Attempt {
                    outcome: Outcome::Timeout,
                    pod: l4_info(target, local).0,
                    retried: false,
                    detail: None,
                }
            }
        };
    ctx.finish(Record {
        t,
        latency: started.elapsed().as_secs_f32(),
        outcome: attempt.outcome,
        router: target.router,
        pod: attempt.pod,
        retried: attempt.retried,
        kind,
        detail: attempt.detail,
    });
}

/// Streaming responses, one after another on one keep-alive connection; each is one request.
async fn stream_session(ctx: Ctx, target: Target, path: String, stop: CancellationToken) {
    let mut conn = None;
    let ctx = Ctx {
        timeout: ctx.timeout.max(Duration::from_secs(30)),
        ..ctx
    };
    while !stop.is_cancelled() {
        ctx.stats.started.fetch_add(1, Ordering::SeqCst);
        one(&ctx, &target, &mut conn, &path, RequestKind::Stream, false).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A WebSocket session echoing a message every 100 ms; each round trip is one request. A
/// session the server closed cleanly (close frame) is reopened, as a real client does.
async fn websocket_session(ctx: Ctx, target: Target, path: String, stop: CancellationToken) {
    let url = format!("ws://{}{}", target.addr, path);
    let mut ws: Option<(
        tokio_tungstenite::WebSocketStream<TcpStream>,
        Option<PodId>,
        SocketAddr,
    )> = None;
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        ctx.stats.started.fetch_add(1, Ordering::SeqCst);
        let t = ctx.clock.now();
        let started = Instant::now();
        let outcome: Result<Option<PodId>, (Outcome, Option<PodId>)> = async {
            if ws.is_none() {
                let (stream, local) = connect_tcp(&target).await.map_err(|a| (a.outcome, a.pod))?;
                match tokio::time::timeout(
                    ctx.timeout,
                    tokio_tungstenite::client_async(url.as_str(), stream),
                )
                .await
                {
                    Ok(Ok((s, resp))) => {
                        let pod = resp
                            .headers()
                            .get(POD_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| ctx.directory.resolve(v))
                            .or_else(|| l4_info(&target, Some(local)).0);
                        ws = Some((s, pod, local));
                    }
                    Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r)))
                        if r.status().is_server_error() =>
                    {
                        let pod = r
                            .headers()
                            .get(POD_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| ctx.directory.resolve(v));
                        return Err((Outcome::Status5xx, pod));
                    }
                    Ok(Err(_)) => {
                        let (pod, refused) = l4_info(&target, Some(local));
                        return Err((
                            if refused {
                                Outcome::Refused
                            } else {
                                Outcome::Reset
                            },
                            pod,
                        ));
                    }
                    Err(_) => return Err((Outcome::Timeout, l4_info(&target, Some(local)).0)),
                }
            }
            let Some((s, pod, _)) = ws.as_mut() else {
                return Err((Outcome::Reset, None));
            };
            let pod = *pod;
            n += 1;
            let msg = format!("m{n}");
            let fut = async {
                s.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
                    .await
                    .map_err(|_| Outcome::Reset)?;
                loop {
                    match s.next().await {
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))
                            if t.as_str() == msg =>
                        {
                            return Ok(());
                        }
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                            return Err(Outcome::Ok);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return Err(Outcome::Reset),
                    }
                }
            };
            match tokio::time::timeout(ctx.timeout, fut).await {
                Ok(Ok(())) => Ok(pod),
                // The server closed the session cleanly: reopen it and send this message there.
                Ok(Err(Outcome::Ok)) => Err((Outcome::Ok, pod)),
                Ok(Err(o)) => Err((o, pod)),
                Err(_) => Err((Outcome::Timeout, pod)),
            }
        }
        .await;
        let (outcome, pod) = match outcome {
            Ok(pod) => (Outcome::Ok, pod),
            Err((Outcome::Ok, pod)) => {
                // Clean close: not a failure of this message, which a client would resend.
                ws = None;
                (Outcome::Ok, pod)
            }
            Err((o, pod)) => {
                ws = None;
                (o, pod)
            }
        };
        ctx.finish(Record {
            t,
            latency: started.elapsed().as_secs_f32(),
            outcome,
            router: target.router,
            pod,
            retried: false,
            kind: RequestKind::Websocket,
            detail: None,
        });
    }
    if let Some((mut s, _, _)) = ws {
        let _ = s.close(None).await;
    }
}
