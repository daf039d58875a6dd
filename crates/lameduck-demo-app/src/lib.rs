//! The built-in demo app used by `lameduck verify --demo` and by the tests.
//!
//! It serves HTTP/1.1 and h2c and reacts to SIGTERM the way real apps do, so the testbed can
//! show what each behaviour costs:
//! - [`OnSigterm::Exit`]: the naive app. No handler; the default disposition kills it at once.
//! - [`OnSigterm::Graceful`]: `axum::serve(..).with_graceful_shutdown(SIGTERM)`: stops accepting
//!   at once, finishes in-flight requests (DESIGN.md: this alone does not help).
//! - [`OnSigterm::Ignore`]: ignores SIGTERM; only SIGKILL stops it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// What the app does on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSigterm {
    /// Die at once (default disposition).
    Exit,
    /// Stop accepting at once, finish in-flight requests, exit.
    Graceful,
    /// Keep running.
    Ignore,
}

impl std::str::FromStr for OnSigterm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exit" => Ok(Self::Exit),
            "graceful" => Ok(Self::Graceful),
            "ignore" => Ok(Self::Ignore),
            other => Err(format!("{other:?} is not one of exit, graceful, ignore")),
        }
    }
}

/// Why the app could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving or signal setup failed.
    #[error("demo app failed")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, serde::Deserialize)]
struct Timing {
    ms: Option<u64>,
    n: Option<u32>,
}

/// The app's routes: `/`, `/healthz`, `/slow?ms=N`, `/stream?ms=N&n=K`, `/ws` (echo).
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/slow", get(slow))
        .route("/stream", get(stream_chunks))
        .route("/ws", get(ws))
}

async fn slow(Query(t): Query<Timing>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(t.ms.unwrap_or(1000).min(600_000))).await;
    "ok\n"
}

async fn stream_chunks(Query(t): Query<Timing>) -> Response {
    let every = Duration::from_millis(t.ms.unwrap_or(100).min(60_000));
    let count = t.n.unwrap_or(10).min(100_000);
    let chunks = stream::unfold(0_u32, move |i| async move {
        if i >= count {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(format!("chunk {i}\n")), i + 1))
    });
    Body::from_stream(chunks).into_response()
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// Serves the demo app on `addr` until SIGTERM does what `on_sigterm` says.
pub async fn run(addr: SocketAddr, on_sigterm: OnSigterm) -> Result<(), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let app = router();
    match on_sigterm {
        OnSigterm::Exit => axum::serve(listener, app).await?,
        OnSigterm::Ignore => {
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move { while term.recv().await.is_some() {} });
            axum::serve(listener, app).await?;
        }
        OnSigterm::Graceful => {
            let mut term = signal(SignalKind::terminate())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    term.recv().await;
                })
                .await?;
        }
    }
    Ok(())
}
