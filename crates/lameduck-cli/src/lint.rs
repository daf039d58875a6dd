//! `lameduck lint`: wiring for the lameduck-lint crate (not built yet).

use std::process::ExitCode;

use crate::exit::Failure;

/// Flags of `lameduck lint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `lameduck lint`.
pub fn main(_args: Args) -> Result<ExitCode, Failure> {
    Err(Failure::usage(anyhow::anyhow!("`lameduck lint` is not built yet")))
}
