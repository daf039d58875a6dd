//! A tonic gRPC server served by lameduck: HTTP/2 clients get a two-step GOAWAY while draining,
//! and the standard gRPC health service turns NOT_SERVING at once on SIGTERM.
//!
//! ```sh
//! LISTEN=127.0.0.1:50051 cargo run -p lameduck --features tonic --example tonic
//! grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check   # SERVING
//! ```

use std::process::ExitCode;

use lameduck::Lameduck;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let admin = lameduck.bind_admin().await?;
    lameduck.handle_signals()?;
    println!("listening on {}", listener.local_addr()?);
    if let Some(admin) = admin {
        println!("admin on {admin}");
    }
    // Add your own services with `.add_service(..)`; health is enough to show the drain.
    let routes = tonic::service::Routes::new(lameduck::grpc::health_service(&lameduck, &[]));
    let report = lameduck.serve(listener, routes).await?;
    println!("stopped: drain ended by {}", report.drain.reason);
    Ok(())
}
