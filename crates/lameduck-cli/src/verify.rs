//! `lameduck verify`: wiring for the lameduck-verify crate (not built yet).

use std::process::ExitCode;

use crate::exit::Failure;

/// Flags of `lameduck verify`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `lameduck verify`.
pub fn main(_args: Args) -> Result<ExitCode, Failure> {
    Err(Failure::usage(anyhow::anyhow!("`lameduck verify` is not built yet")))
}
