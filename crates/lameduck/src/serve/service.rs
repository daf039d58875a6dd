//! The per-request wrapper around the app's service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use lameduck_core::Phase;
use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::body::{RequestGuard, TrackedBody};
use super::io::ConnState;
use super::{HttpService, PeerAddr, Protocol, ResponseBody, Shared};

/// Counts the request, hands the handler its [`super::ClosingSignal`] and [`PeerAddr`], and from
/// Draining on asks HTTP/1 clients to close the connection after the response.
pub(crate) struct Tracked<S, B> {
    pub(crate) inner: S,
    pub(crate) body: PhantomData<fn() -> B>,
    pub(crate) conn: Arc<ConnState>,
    pub(crate) shared: Arc<Shared>,
    /// Whether requests get the closing signal and the peer as extensions (not when the
    /// connection's service was made for it, per [`super::Serve::per_connection`]).
    pub(crate) extensions: bool,
    pub(crate) peer: Option<PeerAddr>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S, B>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S, B>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let lameduck = &self.shared.lameduck;
        let guard = RequestGuard::new(
            lameduck.shutdown().activity().start_request(),
            Arc::clone(&self.conn),
        );
        lameduck.stats().request();
        let http1 = req.version() < Version::HTTP_2;
        let protocol = if http1 {
            Protocol::Http1
        } else {
            Protocol::Http2
        };
        self.conn.set_protocol(Protocol::Pending, protocol);
        if self.extensions {
            req.extensions_mut().insert(self.shared.closing.clone());
            if let Some(peer) = self.peer {
                req.extensions_mut().insert(peer);
            }
        }
        TrackedFuture {
            response: self.inner.clone().oneshot(req),
            guard: Some(guard),
            http1,
            conn: Arc::clone(&self.conn),
            shared: Arc::clone(&self.shared),
            body: PhantomData,
        }
    }
}

pin_project! {
    /// The app's response, with the request's guard moved into its body.
    ///
    /// A named type rather than a boxed `async` block: hyper keeps it in the connection's
    /// in-flight slot, allocated once per connection, so a request costs no allocation here.
    pub(crate) struct TrackedFuture<S, B>
    where
        S: HttpService<B>,
    {
        #[pin]
        response: Oneshot<S, Request<Incoming>>,
        guard: Option<RequestGuard>,
        http1: bool,
        conn: Arc<ConnState>,
        shared: Arc<Shared>,
        body: PhantomData<fn() -> B>,
    }
}

impl<S, B> Future for TrackedFuture<S, B>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    type Output = Result<Response<TrackedBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.response.poll(cx))?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            this.conn.set_protocol(Protocol::Http1, Protocol::Upgraded);
        } else if *this.http1 && this.shared.broadcast.phase() >= Phase::Draining {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let Some(guard) = this.guard.take() else {
            // Like an `async` block's: polling a finished future is the caller's bug.
            panic!("TrackedFuture polled after it completed");
        };
        Poll::Ready(Ok(response.map(|body| TrackedBody::new(body, guard))))
    }
}

impl<S: Clone, B> Clone for Tracked<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            body: PhantomData,
            conn: Arc::clone(&self.conn),
            shared: Arc::clone(&self.shared),
            extensions: self.extensions,
            peer: self.peer,
        }
    }
}
