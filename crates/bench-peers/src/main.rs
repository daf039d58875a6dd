//! `bare-proxy`: the smallest proxies, as reference points for `bench/run/bench.sh`.
//!
//! lameduck's drain proxy runs on tokio. Where it trails HAProxy, three questions decide what
//! to do: does a bare tokio splice trail by as much (then the gap is the runtime's, not
//! lameduck's code); does a bare event loop making the same system calls (then it is not the
//! kernel's or the machine's); and, in HTTP mode, does a first hyper proxy? These answer them in
//! the same run.
//!
//! They are for request/response benchmarks on loopback, not proxies to deploy: the splices
//! dial the upstream with a blocking connect and close both sides at the first end of stream,
//! and the hyper proxy passes hop-by-hop fields through.

mod epoll_splice;
mod hyper_proxy;
mod tokio_splice;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// A reference proxy for benchmarks (not a proxy to deploy).
#[derive(Debug, Parser)]
#[command(name = "bare-proxy")]
struct Args {
    /// The proxy to run.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Address to accept connections on (port 0: any free port; the bound address is printed
    /// as `listening on ADDR`).
    #[arg(long)]
    listen: SocketAddr,
    /// Address each accepted connection (or request) is forwarded to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Threads, each with its own event loop (tokio: worker threads of one runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// TCP: `tokio::io::copy_bidirectional` per connection on a multi-threaded runtime, as a
    /// first tokio proxy would be written.
    TokioSplice,
    /// TCP: one level-triggered epoll loop per thread that reads and writes as events arrive,
    /// as HAProxy's does, with none of a task runtime's scheduling.
    EpollSplice,
    /// HTTP/1: hyper's server per connection, each request forwarded over hyper-util's pooled
    /// client with `X-Forwarded-For` appended, on a multi-threaded tokio runtime.
    HyperHttp,
}

/// Tells whoever started the proxy where it listens (with port 0, only this says).
fn announce(listening: std::io::Result<SocketAddr>) {
    if let Ok(address) = listening {
        println!("listening on {address}");
    }
}

/// Runs a tokio-based peer until the process is killed: binds and announces `listen` on a
/// multi-threaded runtime of `threads` workers (as `#[tokio::main]` gives a first tokio
/// program), then hands each accepted connection to `serve`, which spawns its task. A failed
/// accept (out of descriptors, say) drops that one client, as proxies do.
fn serve_on_tokio(
    listen: SocketAddr,
    threads: usize,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr),
) -> Result<(), PeerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(PeerError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| PeerError::Listen(listen, e))?;
        announce(listener.local_addr());
        loop {
            if let Ok((stream, peer)) = listener.accept().await {
                serve(stream, peer);
            }
        }
    })
}

/// Why a proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start an event loop thread: {0}")]
    Thread(std::io::Error),
    #[error("epoll failed: {0}")]
    Epoll(nix::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (listen, upstream, threads) = (args.listen, args.upstream, args.threads.into());
    let result = match args.kind {
        Kind::TokioSplice => tokio_splice::run(listen, upstream, threads),
        Kind::EpollSplice => epoll_splice::run(listen, upstream, threads),
        Kind::HyperHttp => hyper_proxy::run(listen, upstream, threads),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare-proxy: {error}");
            ExitCode::FAILURE
        }
    }
}
