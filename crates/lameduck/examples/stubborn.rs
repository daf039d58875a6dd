//! An app that ignores every shutdown hint: a handler that never answers, a stream and a
//! WebSocket that ignore the closing signal, and a task that ignores its token. lameduck still
//! exits before the budget runs out; this example exists to show (and test) that guarantee.
//!
//! ```sh
//! LAMEDUCK_GRACE_SECONDS=10 cargo run -p lameduck --example stubborn
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use futures_util::Stream;
use lameduck::Lameduck;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let lameduck = match Lameduck::from_env() {
        Ok(lameduck) => lameduck,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let Ok(listener) = tokio::net::TcpListener::bind(&listen).await else {
        eprintln!("error: cannot listen on {listen}");
        return ExitCode::from(2);
    };
    let Ok(Some(admin)) = lameduck.bind_admin().await else {
        eprintln!("error: cannot bind the admin listener");
        return ExitCode::from(2);
    };
    if lameduck.handle_signals().is_err() {
        return ExitCode::from(2);
    }
    if let Ok(addr) = listener.local_addr() {
        println!("listening on {addr}");
    }
    println!("admin on {admin}");
    lameduck.spawn_task("ignores-its-token", |_token| std::future::pending::<()>());

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route("/sse", get(endless_sse))
        .route("/ws", get(deaf_ws));
    match lameduck.serve(listener, app).await {
        Ok(report) => {
            println!(
                "stopped: forced connections {}, abandoned tasks {:?}",
                report.forced_connections, report.abandoned_tasks
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn endless_sse() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok(Event::default().data("tick")), ()))
    }))
}

async fn deaf_ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(_)) = socket.recv().await {}
    })
}
