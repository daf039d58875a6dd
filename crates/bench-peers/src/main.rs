//! `bare-splice`: the smallest TCP splices, as reference points for `bench/run/bench.sh`.
//!
//! lameduck's drain proxy runs on tokio. When its TCP mode trails HAProxy's, two questions
//! decide what to do: does a bare tokio proxy trail by as much (then the gap is the runtime's,
//! not lameduck's code), and does a bare event loop on the same kernel calls (then the gap is
//! not the kernel's or the machine's)? These two splices answer them in the same run.
//!
//! Both are for request/response benchmarks on loopback, not general proxies: they dial the
//! upstream with a blocking connect and close both sides at the first end of stream.

mod epoll_splice;
mod tokio_splice;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// A reference TCP splice for benchmarks (not a proxy to deploy).
#[derive(Debug, Parser)]
#[command(name = "bare-splice")]
struct Args {
    /// The event loop to run.
    #[arg(long = "loop", value_enum)]
    event_loop: EventLoop,
    /// Address to accept connections on (port 0: any free port; the bound address is printed
    /// as `listening on ADDR`).
    #[arg(long)]
    listen: SocketAddr,
    /// Address each accepted connection is spliced to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Threads, each with its own event loop (tokio: worker threads of one runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EventLoop {
    /// `tokio::io::copy_bidirectional` per connection on a multi-threaded runtime, as a
    /// first tokio proxy would be written.
    Tokio,
    /// One level-triggered epoll loop per thread that reads and writes as events arrive, as
    /// HAProxy's does, with none of a task runtime's scheduling.
    Epoll,
}

/// Tells whoever started the splice where it listens (with port 0, only this says).
fn announce(listening: std::io::Result<SocketAddr>) {
    if let Ok(address) = listening {
        println!("listening on {address}");
    }
}

/// Why a splice could not start or stopped.
#[derive(Debug, thiserror::Error)]
enum SpliceError {
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
    let result = match args.event_loop {
        EventLoop::Tokio => tokio_splice::run(args.listen, args.upstream, args.threads.into()),
        EventLoop::Epoll => epoll_splice::run(args.listen, args.upstream, args.threads.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare-splice: {error}");
            ExitCode::FAILURE
        }
    }
}
