//! The keep-alive connections a router's clients share, and the handle on one connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper::body::Incoming;

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
    pub(super) open: Arc<AtomicUsize>,
    pub(super) size: usize,
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
    pub(super) async fn extra_permit(
        &self,
        conn: &Option<Conn>,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if conn.is_some() || self.open.load(Ordering::SeqCst) < self.size {
            return None;
        }
        Arc::clone(&self.extra).acquire_owned().await.ok()
    }

    pub(super) fn checkout(&self) -> Option<Conn> {
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

    pub(super) fn checkin(&self, c: Conn) {
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
pub(super) struct OpenGuard(pub(super) Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub(super) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) sender: Sender,
    pub(super) local: SocketAddr,
    pub(super) _open: Option<Arc<OpenGuard>>,
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

    pub(super) fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub(super) async fn ready(&mut self) -> bool {
        match &mut self.sender {
            Sender::H1(s) => s.ready().await.is_ok(),
            Sender::H2(s) => s.ready().await.is_ok(),
        }
    }

    pub(super) async fn send(
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
