//! Keep-alive HTTP/1.1 connections from the L7 router to the pods, pooled per endpoint.
//!
//! A connection goes back to the pool when the response body it carried has been read to the
//! end (not when it is dropped early, nor when the pod said `Connection: close`). A request
//! that finds a pooled connection already closed by the pod is sent on a new connection, as
//! ingress proxies do; a request written and then lost is an upstream failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// Why a request could not be forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// The connect failed (refused, or no answer within 1 s).
    Connect,
    /// The connection was lost after the request was written.
    Reset,
}

impl UpstreamError {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Reset => "upstream-reset",
        }
    }
}

/// The pool.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Sender>>>,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE {
            list.push(s);
        }
    }

    async fn connect(addr: SocketAddr) -> Result<Sender, UpstreamError> {
        let stream =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| UpstreamError::Connect)?
                .map_err(|_| UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| UpstreamError::Connect)?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Sends `req` to `addr` on a pooled connection (or a new one).
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        // Stale pooled connections are skipped; at most a few, then a new connection.
        for _ in 0..4 {
            let (mut sender, reused) = match self.take(addr) {
                Some(s) => (s, true),
                None => (Self::connect(addr).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Reset);
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = PooledBody::new(body, Arc::clone(self), addr, sender);
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(UpstreamError::Reset),
                },
            }
        }
        let sender = Self::connect(addr).await?;
        let mut sender = sender;
        sender.ready().await.map_err(|_| UpstreamError::Reset)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| UpstreamError::Reset)?;
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            PooledBody::new(body, Arc::clone(self), addr, sender),
        ))
    }
}

/// A response body that returns its connection to the pool once read to the end.
pub(crate) struct PooledBody {
    body: Incoming,
    back: Option<(Arc<Pool>, SocketAddr, Sender)>,
}

impl PooledBody {
    fn new(body: Incoming, pool: Arc<Pool>, addr: SocketAddr, sender: Sender) -> Self {
        let mut b = Self {
            body,
            back: Some((pool, addr, sender)),
        };
        // An empty body (HEAD, 204, 304) is never polled: the connection is free already.
        if b.body.is_end_stream() {
            b.release();
        }
        b
    }

    fn release(&mut self) {
        if let Some((pool, addr, sender)) = self.back.take() {
            pool.put(addr, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            _ => {}
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
