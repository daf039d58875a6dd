//! `lameduck run`, `sleep`, `wait` and `probe`: wiring for the lameduck-run crate (not built yet).

use std::process::ExitCode;

use crate::exit::Failure;

/// Flags of `lameduck run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Flags of `lameduck sleep`.
#[derive(Debug, clap::Args)]
pub struct SleepArgs {}

/// Flags of `lameduck wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {}

/// Flags of `lameduck probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {}

fn not_built() -> Failure {
    Failure::usage(anyhow::anyhow!("`lameduck run` and its helpers are not built yet"))
}

/// Runs `lameduck run`.
pub fn run(_args: RunArgs) -> Result<ExitCode, Failure> {
    Err(not_built())
}

/// Runs `lameduck sleep`.
pub fn sleep(_args: SleepArgs) -> Result<ExitCode, Failure> {
    Err(not_built())
}

/// Runs `lameduck wait`.
pub fn wait(_args: WaitArgs) -> Result<ExitCode, Failure> {
    Err(not_built())
}

/// Runs `lameduck probe`.
pub fn probe(_args: ProbeArgs) -> Result<ExitCode, Failure> {
    Err(not_built())
}
