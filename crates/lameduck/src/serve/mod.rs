//! HTTP serving with protocol-complete connection draining (HTTP/1.1, h2c, upgrades).
//!
//! What each phase means for a connection:
//! - **Draining**: requests are served; HTTP/1 responses carry `Connection: close`, so keep-alive
//!   clients reconnect (through routers that by then route elsewhere); HTTP/2 connections get a
//!   graceful two-step GOAWAY and their open streams complete.
//! - **Closing**: the listener is dropped. A connection idle for `idle_grace` is closed (closing a
//!   connection the instant it goes idle races with the client's next request); a connection
//!   that never sent a byte is closed after `first_byte_grace`; in-flight requests finish;
//!   handlers of streams and upgraded connections see [`ClosingSignal`] fire.
//! - **Forced close** (budget deadline): every connection left, upgraded ones included, is shut.

mod body;
mod broadcast;
mod conn;
mod io;
mod listener;
mod service;
mod stats;
#[cfg(test)]
mod tests;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use lameduck_core::{Phase, ShutdownReport};
use tokio_util::sync::CancellationToken;

pub use broadcast::{PhaseBell, PhaseBroadcast};
pub use listener::{Listener, is_per_connection};
pub(crate) use stats::ConnStats;
pub use stats::Protocol;

use crate::{Error, Lameduck};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service that can answer HTTP requests on a lameduck server (an axum `Router`, a tonic
/// `Routes`, a `tower::service_fn`, ...).
pub trait HttpService<B>:
    tower::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A response body a lameduck server can send.
pub trait ResponseBody:
    http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

/// Put in every request's extensions: fires when Closing starts.
///
/// Handlers of long-lived responses (SSE, streams, WebSockets) should watch it and finish: at
/// the forced close their connection is shut regardless. With axum:
/// `Extension(closing): Extension<lameduck::ClosingSignal>`.
#[derive(Debug, Clone)]
pub struct ClosingSignal(CancellationToken);

impl ClosingSignal {
    /// Completes when Closing starts.
    pub async fn closing(&self) {
        self.0.cancelled().await
    }

    /// Whether Closing has started.
    pub fn is_closing(&self) -> bool {
        self.0.is_cancelled()
    }

    /// The underlying token.
    pub fn token(&self) -> &CancellationToken {
        &self.0
    }
}

/// Put in every request's extensions: the address of the client's end of the connection.
///
/// With axum: `Extension(lameduck::PeerAddr(addr)): Extension<lameduck::PeerAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// What a server knows of one accepted connection, for [`Serve::per_connection`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's end of the connection (`None` if the socket could not tell).
    pub peer: Option<std::net::SocketAddr>,
    /// Fires when Closing starts, as the request extension of that name does.
    pub closing: ClosingSignal,
}

/// Derives one connection's service from the server's (see [`Serve::per_connection`]).
pub(crate) type MakeConnectionService<S> = Arc<dyn Fn(&S, &ConnectionInfo) -> S + Send + Sync>;

/// The future returned by [`Lameduck::serve`]: accepts until Closing, resolves once stopped.
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve<S, B, L = tokio::net::TcpListener> {
    body: std::marker::PhantomData<fn() -> B>,
    lameduck: Lameduck,
    listener: L,
    service: S,
    auto_ready: bool,
    per_connection: Option<MakeConnectionService<S>>,
    proxy_protocol: bool,
}

impl<S, B, L> std::fmt::Debug for Serve<S, B, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("auto_ready", &self.auto_ready)
            .field("per_connection", &self.per_connection.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish_non_exhaustive()
    }
}

impl<S, B, L> Serve<S, B, L> {
    pub(crate) fn new(lameduck: Lameduck, listener: L, service: S) -> Self {
        Self {
            body: std::marker::PhantomData,
            lameduck,
            listener,
            service,
            auto_ready: true,
            per_connection: None,
            proxy_protocol: false,
        }
    }

    /// Gives each connection a service of its own, made from the server's by `make` when the
    /// connection is accepted, with what is known of the connection; requests then carry no
    /// [`ClosingSignal`] or [`PeerAddr`] extension. Inserting those two allocates a map and a
    /// box per value on every request, which a service that needs the client's address on
    /// every request (the drain proxy's `X-Forwarded-For`) can do without.
    pub fn per_connection<F>(mut self, make: F) -> Self
    where
        F: Fn(&S, &ConnectionInfo) -> S + Send + Sync + 'static,
    {
        self.per_connection = Some(Arc::new(make));
        self
    }

    /// Expects every connection to start with a PROXY protocol header (v1 or v2), as a load
    /// balancer with the proxy protocol on sends one (an AWS NLB, HAProxy's `send-proxy`): the
    /// client it names becomes the connection's [`PeerAddr`] and [`ConnectionInfo::peer`].
    /// A connection without a valid header is closed unanswered (see
    /// [`proxy_protocol::read_header`](crate::proxy_protocol::read_header)), so turn it on only
    /// where every connection comes through such a balancer.
    pub fn accept_proxy_protocol(mut self) -> Self {
        self.proxy_protocol = true;
        self
    }

    /// Do not mark the process ready when accepting starts; call [`Lameduck::mark_ready`] once
    /// the app is ready (caches warm, dependencies reachable).
    pub fn manual_ready(mut self) -> Self {
        self.auto_ready = false;
        self
    }
}

/// Shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) lameduck: Lameduck,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) closing: ClosingSignal,
    pub(crate) broadcast: Arc<broadcast::Broadcast>,
    /// Every connection starts with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
}

impl<S, B, L> IntoFuture for Serve<S, B, L>
where
    S: HttpService<B>,
    B: ResponseBody,
    L: Listener,
{
    type Output = Result<ShutdownReport, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, B, L: Listener> Serve<S, B, L> {
    async fn run(self) -> Result<ShutdownReport, Error>
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let Serve {
            lameduck,
            mut listener,
            service,
            auto_ready,
            per_connection,
            proxy_protocol,
            ..
        } = self;
        let shared = Arc::new(Shared {
            closing: ClosingSignal(lameduck.closing_token()),
            builder: {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().writev(false);
                builder
            },
            lameduck: lameduck.clone(),
            broadcast: Arc::default(),
            proxy_protocol,
        });
        tokio::spawn(Arc::clone(&shared.broadcast).run(
            lameduck.lifecycle().clone(),
            lameduck.shutdown().force_close().clone(),
        ));
        if auto_ready {
            lameduck.mark_ready();
        }
        let shutdown = lameduck.shutdown();
        let closing = lameduck.lifecycle().reached(Phase::Closing);
        tokio::pin!(closing);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut closing => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, guard)) => {
                    shutdown.activity().record_arrival();
                    // The token (not the task) is what Closing waits for: it lives in the
                    // socket wrapper, so an upgraded connection stays counted after hyper
                    // hands it over.
                    let tracked = shutdown.connections().token();
                    tokio::spawn(conn::drive(
                        Arc::clone(&shared),
                        stream,
                        (tracked, guard),
                        service.clone(),
                        per_connection.clone(),
                    ));
                }
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed; retrying in 50ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        Ok(lameduck.stopped().await)
    }
}
