//! `lameduck demo-app` (hidden): the built-in app `verify --demo` and the tests run.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use lameduck_demo_app::OnSigterm;

use crate::exit::Failure;

/// Flags of `lameduck demo-app`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// What to do on SIGTERM: exit (at once, like a naive app), graceful (stop accepting, finish
    /// in-flight requests), ignore.
    #[arg(long, default_value = "exit")]
    on_sigterm: OnSigterm,
}

/// Runs the demo app until SIGTERM does what `--on-sigterm` says.
pub fn main(args: Args) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime
        .block_on(lameduck_demo_app::run(args.listen, args.on_sigterm))
        .map_err(|e| Failure::with_code(1, e))?;
    Ok(ExitCode::SUCCESS)
}
