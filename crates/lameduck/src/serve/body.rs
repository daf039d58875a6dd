//! The response body wrapper: a request counts as in flight until its body is done.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use lameduck_core::InFlightGuard;
use pin_project_lite::pin_project;

use super::io::ConnState;

/// Ends one request when dropped: with the response body, or with the future if it failed.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    _in_flight: InFlightGuard,
    conn: Arc<ConnState>,
}

impl RequestGuard {
    pub(crate) fn new(in_flight: InFlightGuard, conn: Arc<ConnState>) -> Self {
        conn.request_started();
        Self {
            _in_flight: in_flight,
            conn,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.conn.request_ended();
    }
}

pin_project! {
    /// A response body that holds its request's [`RequestGuard`]. Streaming bodies (SSE) keep
    /// the request in flight until they end or the connection is closed.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: RequestGuard,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, guard: RequestGuard) -> Self {
        Self { inner, guard }
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
