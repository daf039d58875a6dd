//! A hello-world server for the benchmark in `bench/library.sh`: the same axum app served by
//! `lameduck::serve` or, with `MODE=axum`, by plain `axum::serve`.
//!
//! ```sh
//! LISTEN=127.0.0.1:3000 MODE=lameduck cargo run --release -p lameduck --example hello
//! ```

use std::process::ExitCode;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> ExitCode {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let Ok(listener) = tokio::net::TcpListener::bind(&listen).await else {
        eprintln!("error: cannot listen on {listen}");
        return ExitCode::from(2);
    };
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let served = match std::env::var("MODE").as_deref() {
        Ok("axum") => axum::serve(listener, app).await.map_err(|e| e.to_string()),
        Ok("lameduck") | Err(_) => lameduck::serve(listener, app)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Ok(other) => Err(format!("MODE={other:?}: expected lameduck or axum")),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
