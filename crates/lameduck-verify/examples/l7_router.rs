//! The embedded L7 router alone, in front of fixed backends, for throughput benchmarks
//! (bench/verify/run.sh drives it with wrk next to HAProxy in the same role).
//!
//! Run: `cargo run --release -p lameduck-verify --example l7_router -- 127.0.0.1:8081,127.0.0.1:8082`
//! It prints its listen address on stdout and serves until killed.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends: Vec<SocketAddr> = std::env::args()
        .nth(1)
        .ok_or("usage: l7_router ADDR[,ADDR...]")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let addr = lameduck_verify::bench::serve_l7(&backends).await?;
    println!("{addr}");
    std::future::pending::<()>().await;
    Ok(())
}
