//! The per-request wrapper around the app's service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use lameduck_core::Phase;
use tower::ServiceExt;

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
    pub(crate) peer: Option<PeerAddr>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S, B>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

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
        req.extensions_mut().insert(self.shared.closing.clone());
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        let shared = Arc::clone(&self.shared);
        let conn = Arc::clone(&self.conn);
        let response = self.inner.clone().oneshot(req);
        Box::pin(async move {
            let mut response = response.await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                conn.set_protocol(Protocol::Http1, Protocol::Upgraded);
            } else if http1 && shared.broadcast.phase() >= Phase::Draining {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| TrackedBody::new(body, guard)))
        })
    }
}

impl<S: Clone, B> Clone for Tracked<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            body: PhantomData,
            conn: Arc::clone(&self.conn),
            shared: Arc::clone(&self.shared),
            peer: self.peer,
        }
    }
}
