//! Per-connection state and the socket wrapper that feeds it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::broadcast::{Doorbell, Ring};
use super::{ConnStats, Protocol};

/// What the connection driver needs to know about one connection: protocol, whether it is idle
/// and since when. Written by the socket wrapper and the request wrapper with relaxed atomics.
#[derive(Debug)]
pub(crate) struct ConnState {
    stats: Arc<ConnStats>,
    protocol: AtomicU8,
    base: Instant,
    /// Nanoseconds after `base` (+1; 0 = never) of the last read that returned data.
    last_read: AtomicU64,
    /// Nanoseconds after `base` (+1; 0 = never) of the last response body end.
    last_response_end: AtomicU64,
    in_flight: AtomicUsize,
    /// Rung by [`ConnState::poke`] and by the server's phase broadcast.
    doorbell: Doorbell,
    /// Whether request starts and ends should wake the driver (only from Draining on).
    watch_requests: AtomicBool,
    io_dropped: AtomicBool,
}

impl ConnState {
    pub(crate) fn new(stats: Arc<ConnStats>) -> Self {
        stats.opened(Protocol::Pending);
        Self {
            stats,
            protocol: AtomicU8::new(Protocol::Pending as u8),
            base: Instant::now(),
            last_read: AtomicU64::new(0),
            last_response_end: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            doorbell: Doorbell::default(),
            watch_requests: AtomicBool::new(false),
            io_dropped: AtomicBool::new(false),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        Protocol::from_u8(self.protocol.load(Ordering::Relaxed))
    }

    /// Moves the connection from `from` to `to` (once), keeping the open-connection gauges right.
    pub(crate) fn set_protocol(&self, from: Protocol, to: Protocol) {
        if self
            .protocol
            .compare_exchange(from as u8, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.stats.closed(from);
            self.stats.opened(to);
            self.poke_if_watching();
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Option<Instant> {
        (stamp != 0).then(|| self.base + Duration::from_nanos(stamp - 1))
    }

    pub(crate) fn has_read(&self) -> bool {
        self.last_read.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.poke_if_watching();
    }

    pub(crate) fn request_ended(&self) {
        self.last_response_end
            .store(self.stamp(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.poke_if_watching();
    }

    /// Since when the connection has been idle: no request in flight and nothing read since the
    /// last response ended. `None` while busy.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let read = self.last_read.load(Ordering::Relaxed);
        let ended = self.last_response_end.load(Ordering::Relaxed);
        if read > ended {
            // Bytes of a next request arrived; hyper has not handed it to us yet.
            return None;
        }
        self.at(ended.max(read))
    }

    /// Wakes the driver: something it decides on may have changed.
    pub(crate) fn poke(&self) {
        self.doorbell.ring();
    }

    fn poke_if_watching(&self) {
        if self.watch_requests.load(Ordering::Relaxed) {
            self.poke();
        }
    }

    /// From now on, request starts and ends wake the driver.
    pub(crate) fn watch_requests(&self) {
        self.watch_requests.store(true, Ordering::Relaxed);
    }

    /// Registers the driver's waker and returns the event count; a driver that saw a count
    /// and registers again gets woken by any later [`ConnState::poke`] or phase change.
    pub(crate) fn register(&self, waker: &std::task::Waker) -> u64 {
        self.doorbell.register(waker)
    }

    /// Whether the socket is gone (also after an upgrade handed it to a handler).
    pub(crate) fn io_dropped(&self) -> bool {
        self.io_dropped.load(Ordering::Relaxed)
    }
}

impl Ring for ConnState {
    fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.stats.closed(self.protocol());
    }
}

pin_project! {
    /// The accepted socket, recording reads for idle detection. It also keeps the connection
    /// counted by the shutdown's connection tracker for as long as it lives, which includes the
    /// time after an upgrade, when hyper has handed it to a WebSocket handler.
    #[derive(Debug)]
    pub(crate) struct ConnIo {
        #[pin]
        stream: TcpStream,
        state: Arc<ConnState>,
        _tracked: TaskTrackerToken,
        _guard: ListenerGuard,
        _dropped: IoDropped,
    }
}

/// The [`Listener::Guard`](super::Listener::Guard) of the connection (boxing a `()` does not
/// allocate).
struct ListenerGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl std::fmt::Debug for ListenerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerGuard")
    }
}

/// Tells the driver the socket is gone, when the wrapper is dropped.
#[derive(Debug)]
struct IoDropped(Arc<ConnState>);

impl Drop for IoDropped {
    fn drop(&mut self) {
        self.0.io_dropped.store(true, Ordering::Relaxed);
        self.0.poke();
    }
}

impl ConnIo {
    pub(crate) fn new<G: Send + Sync + 'static>(
        stream: TcpStream,
        state: Arc<ConnState>,
        (tracked, guard): (TaskTrackerToken, G),
    ) -> Self {
        let dropped = IoDropped(Arc::clone(&state));
        Self {
            stream,
            state,
            _tracked: tracked,
            _guard: ListenerGuard(Box::new(guard)),
            _dropped: dropped,
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.stream.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.state
                .last_read
                .store(this.state.stamp(), Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().stream.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().stream.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().stream.poll_shutdown(cx)
    }
}
