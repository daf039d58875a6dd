//! An axum service served by lameduck, with a streaming (SSE) and a WebSocket handler that end
//! when Closing starts.
//!
//! Run it:
//! ```sh
//! LISTEN=127.0.0.1:3000 LAMEDUCK_ADMIN_ADDR=127.0.0.1:8686 cargo run -p lameduck --example axum
//! curl -i localhost:3000/            # hello
//! curl -i localhost:8686/readyz      # 200 serving
//! kill -TERM <pid>                   # readyz turns 503 at once; requests still succeed
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use futures_util::Stream;
use lameduck::{ClosingSignal, Lameduck};

#[derive(serde::Deserialize)]
struct Slow {
    ms: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(env_filter())
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let lameduck = Lameduck::from_env()?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let admin = lameduck.bind_admin().await?;
    lameduck.handle_signals()?;
    println!("listening on {}", listener.local_addr()?);
    if let Some(admin) = admin {
        println!("admin on {admin}");
    }

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow))
        .route("/sse", get(sse))
        .route("/ws", get(ws));
    let report = lameduck.serve(listener, app).await?;
    println!(
        "stopped: drain ended by {} after {:.2}s, closing took {:.2}s, forced connections {}",
        report.drain.reason,
        report.drain.waited.as_secs_f64(),
        report.closing.as_secs_f64(),
        report.forced_connections
    );
    Ok(())
}

async fn slow(Query(slow): Query<Slow>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(slow.ms.unwrap_or(2000))).await;
    "slow done\n"
}

/// Ticks every 100 ms; ends with a `bye` event when Closing starts.
async fn sse(
    Extension(closing): Extension<ClosingSignal>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures_util::stream::unfold(Some(0_u64), move |state| {
        let closing = closing.clone();
        async move {
            let n = state?;
            tokio::select! {
                () = closing.closing() => {
                    tracing::info!("sse handler saw the closing signal; ending the stream");
                    Some((Ok(Event::default().event("bye").data("closing")), None))
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    Some((Ok(Event::default().data(n.to_string())), Some(n + 1)))
                }
            }
        }
    });
    Sse::new(ticks)
}

async fn ws(upgrade: WebSocketUpgrade, Extension(closing): Extension<ClosingSignal>) -> Response {
    upgrade.on_upgrade(move |socket| echo_until_closing(socket, closing))
}

/// Echoes messages; at Closing sends a close frame (code 1001, going away).
async fn echo_until_closing(mut socket: WebSocket, closing: ClosingSignal) {
    loop {
        tokio::select! {
            () = closing.closing() => {
                tracing::info!("websocket handler saw the closing signal; sending close");
                let frame = axum::extract::ws::CloseFrame { code: 1001, reason: "server closing".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}
