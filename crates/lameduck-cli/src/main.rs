//! The `lameduck` binary: parses arguments and hands each subcommand to its crate.
//!
//! Every subcommand lives in its own module here, which only turns flags into the typed
//! configuration of a library crate and maps its result to an exit code.

#[cfg(feature = "demo-app")]
mod demo_app;
mod exit;
#[cfg(feature = "gate")]
mod gate;
#[cfg(feature = "lint")]
mod lint;
#[cfg(any(feature = "run", feature = "gate"))]
mod logs;
#[cfg(feature = "run")]
mod run;
#[cfg(feature = "verify")]
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Failure;

/// Zero-downtime pod termination for Kubernetes, with evidence.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Kubernetes manifests for zero-downtime pitfalls.
    #[cfg(feature = "lint")]
    Lint(lint::Args),
    /// Run a command as PID 1 with probes, drain policy and an optional drain proxy.
    #[cfg(feature = "run")]
    Run(Box<run::RunArgs>),
    /// Sleep for a duration (a preStop hook for images without a shell).
    #[cfg(feature = "run")]
    Sleep(run::SleepArgs),
    /// Ask the running wrapper to start draining and wait until its drain wait is over.
    #[cfg(feature = "run")]
    Wait(run::WaitArgs),
    /// Probe an HTTP URL or tcp://host:port and exit 0 when it answers.
    #[cfg(feature = "run")]
    Probe(run::ProbeArgs),
    /// The admission webhook that admits a pod's deletion only once it is safe.
    #[cfg(feature = "gate")]
    Gate(gate::Args),
    /// Run the app as replicas behind emulated routers, roll it, and count failed requests.
    #[cfg(feature = "verify")]
    Verify(verify::Args),
    /// Kills the app's process group if `lameduck run` dies (started by `lameduck run`).
    #[cfg(feature = "run")]
    #[command(name = lameduck_run::GUARD_SUBCOMMAND, hide = true)]
    GuardProcessGroup {
        /// The app's process group.
        pgid: String,
    },
    /// The built-in demo app (used by `verify --demo` and tests).
    #[cfg(feature = "demo-app")]
    #[command(hide = true)]
    DemoApp(demo_app::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        #[cfg(feature = "lint")]
        Command::Lint(args) => lint::main(args),
        #[cfg(feature = "run")]
        Command::Run(args) => run::run(*args),
        #[cfg(feature = "run")]
        Command::Sleep(args) => run::sleep(args),
        #[cfg(feature = "run")]
        Command::Wait(args) => run::wait(args),
        #[cfg(feature = "run")]
        Command::Probe(args) => run::probe(args),
        #[cfg(feature = "run")]
        Command::GuardProcessGroup { pgid } => Ok(ExitCode::from(lameduck_run::guard_main(&pgid))),
        #[cfg(feature = "gate")]
        Command::Gate(args) => gate::main(args),
        #[cfg(feature = "verify")]
        Command::Verify(args) => verify::main(args),
        #[cfg(feature = "demo-app")]
        Command::DemoApp(args) => demo_app::main(args),
    }
}
