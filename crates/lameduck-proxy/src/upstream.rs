//! HTTP/1 upstream connections driven by the task of the request that uses them.
//!
//! Two pools: [`RawPool`] (module `raw`) for requests without a body, which the proxy writes
//! and whose responses it parses itself, and [`Pool`] below for requests with a body, through
//! hyper's client connection. Both keep idle connections on an [`IdleStack`].
//!
//! hyper-util's pooled client runs every upstream connection in a task of its own, so each
//! request crosses tasks (and, on a multi-threaded runtime, threads) several times: request to
//! the connection task, response head back, body chunks back. Profiles of the proxy showed that
//! hand-over (wakes, channels, pool bookkeeping) as most of its user-space time.
//!
//! Here a request takes an idle connection off a stack (or dials one) and its own future — then
//! its response body — polls that connection, so the downstream connection's task does all the
//! work and no other task is woken. hyper's hand-overs between the connection and its handles
//! still wake that task while it runs; `wake_filter` absorbs those wakes. The connection goes
//! back on the stack once the response body has been read to its end; a body dropped before its
//! end closes the connection (its state is unknown).
//!
//! # Caveats
//! - An idle connection is not polled while it sits on the stack: a close by the app is noticed
//!   when the connection is next taken (it is then dropped and the next one is tried). A
//!   request the app never saw because its connection had just closed is retried on another
//!   connection, as hyper reports it unsent.
//! - Connections idle longer than [`IDLE_TIMEOUT`] are not reused (apps close idle keep-alive
//!   connections after a few seconds; reusing one just then would race that close).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

mod raw;
mod wake_filter;

#[cfg(feature = "fuzzing")]
pub(crate) use raw::fuzz as raw_fuzz;

pub(crate) use raw::{RawBody, RawPool};
use wake_filter::WakeFilter;

/// Idle connections older than this are closed instead of reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// At most this many idle connections are kept; more are closed when they go idle.
const MAX_IDLE: usize = 1024;
/// How often one request is sent again after a connection closed under it before it was written.
/// Pooled connections found closed before sending do not count: the pool is bounded.
const MAX_ATTEMPTS: usize = 4;

/// Idle connections, most recently used on top; older than [`IDLE_TIMEOUT`] they are dropped.
struct IdleStack<C> {
    idle: Mutex<VecDeque<Idle<C>>>,
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

impl<C> Default for IdleStack<C> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
        }
    }
}

impl<C> IdleStack<C> {
    fn take(&self) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = idle.pop_back()?;
        if entry.since.elapsed() > IDLE_TIMEOUT {
            // The newest is too old, so all are.
            idle.clear();
            return None;
        }
        Some(entry.conn)
    }

    fn put(&self, conn: C) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }
}

/// Idle HTTP/1 connections to one upstream address, driven by hyper.
pub(crate) struct Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: IdleStack<Box<Upstream>>,
}

/// One HTTP/1 connection to the app: the handle that sends requests and the future that does
/// the connection's I/O, polled by whoever holds it. Boxed once per connection: the
/// connection's state is large and would otherwise be moved with every response.
struct Upstream {
    sender: SendRequest<Incoming>,
    /// `None` once the connection has ended.
    conn: Option<Connection<TokioIo<TcpStream>, Incoming>>,
    /// The waker the connection and its handles are polled with.
    wakes: WakeFilter,
}

/// Does the connection's pending I/O; false once the connection has ended.
fn poll_conn(
    conn: &mut Option<Connection<TokioIo<TcpStream>, Incoming>>,
    cx: &mut Context<'_>,
) -> bool {
    let Some(polled) = conn.as_mut() else {
        return false;
    };
    match Pin::new(polled).poll(cx) {
        Poll::Pending => true,
        Poll::Ready(result) => {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
            *conn = None;
            false
        }
    }
}

/// A new connection to the app, with Nagle off (a request head goes out at once). Both pools,
/// hyper's clients (for h2c and upgrades) and TCP mode dial with it.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connecting: {0}")]
    Connect(#[source] io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("connections closed before the request could be sent, {MAX_ATTEMPTS} times")]
    Exhausted,
    #[error("a new connection closed at once")]
    NotReady,
    #[error(transparent)]
    Raw(std::io::Error),
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        Self {
            addr,
            connect_timeout,
            idle: IdleStack::default(),
        }
    }

    /// Sends `req` (origin-form target, `Host` set) and returns the response, whose body keeps
    /// driving the connection until it is read.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut attempts = 0;
        // Bounded: each turn drops a pooled connection (at most MAX_IDLE) or counts an attempt.
        for _ in 0..MAX_IDLE + MAX_ATTEMPTS {
            let (mut upstream, fresh) = match self.idle.take() {
                Some(upstream) => (upstream, false),
                // Boxed: a rare path, whose state would enlarge every request's future.
                None => (Box::pin(self.connect()).await?, true),
            };
            // A pooled connection is ready at once or not at all (it ended, or is in a state
            // the last response left it in); a fresh one becomes ready on its first poll.
            let Upstream {
                sender,
                conn,
                wakes,
            } = &mut *upstream;
            let ready = poll_fn(|cx| {
                wakes.poll(cx, |cx| {
                    let alive = poll_conn(conn, cx);
                    match sender.poll_ready(cx) {
                        Poll::Ready(result) => Poll::Ready(alive && result.is_ok()),
                        Poll::Pending if fresh && alive => Poll::Pending,
                        Poll::Pending => Poll::Ready(false),
                    }
                })
            })
            .await;
            if !ready {
                if fresh {
                    return Err(UpstreamError::NotReady);
                }
                continue;
            }
            // Handing the request over wakes the connection, which is this task; it is polled
            // just below.
            let sent = wakes.quietly(|| sender.try_send_request(req));
            tokio::pin!(sent);
            let result = poll_fn(|cx| {
                wakes.poll(cx, |cx| {
                    poll_conn(conn, cx);
                    sent.as_mut().poll(cx)
                })
            })
            .await;
            match result {
                Ok(response) => {
                    // After a 101 the connection speaks something else: never reuse it.
                    let lease = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| (upstream, Arc::clone(self)));
                    return Ok(response.map(|body| PooledBody {
                        body,
                        lease,
                        ended: false,
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Not sent: the connection had closed under it. Try another.
                    Some(unsent) if attempts + 1 < MAX_ATTEMPTS => {
                        attempts += 1;
                        req = unsent;
                    }
                    Some(_) => return Err(UpstreamError::Exhausted),
                    None => return Err(error.into_error().into()),
                },
            }
        }
        Err(UpstreamError::Exhausted)
    }

    async fn connect(&self) -> Result<Box<Upstream>, UpstreamError> {
        let stream = dial(self.addr, self.connect_timeout)
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Box::new(Upstream {
            sender,
            conn: Some(conn),
            wakes: WakeFilter::default(),
        }))
    }
}

/// A response body from a pooled connection: reading it drives the connection, and reading it
/// to its end puts the connection back in the pool.
pub(crate) struct PooledBody {
    body: Incoming,
    lease: Option<(Box<Upstream>, Arc<Pool>)>,
    ended: bool,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let body = &mut this.body;
        let polled = match this.lease.as_mut() {
            // The body is fed by the connection: let it read, then look again.
            Some((upstream, _)) => {
                let Upstream { conn, wakes, .. } = &mut **upstream;
                wakes.poll(cx, |cx| match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(frame) => Poll::Ready(frame),
                    Poll::Pending => {
                        poll_conn(conn, cx);
                        Pin::new(&mut *body).poll_frame(cx)
                    }
                })
            }
            None => Pin::new(body).poll_frame(cx),
        };
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some((upstream, pool)) = self.lease.take() {
            // Read to its end: the connection is between messages and can carry the next one.
            if (self.ended || self.body.is_end_stream()) && upstream.conn.is_some() {
                pool.idle.put(upstream);
            }
        }
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
