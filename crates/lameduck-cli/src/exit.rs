//! Exit codes and the one place errors are printed.

use std::process::ExitCode;

/// Exit code for usage and input errors (bad flags, files, environment), as clap uses.
pub const USAGE: u8 = 2;

/// A subcommand that could not do its job: the message to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code of the process.
    pub code: u8,
    /// What went wrong, with its context chain.
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or input error (exit code 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: USAGE,
            error: error.into(),
        }
    }

    /// An error with a specific exit code.
    pub fn with_code(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }

    /// Prints the error as one line (with its causes) and returns the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("lameduck: error: {:#}", self.error);
        ExitCode::from(self.code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::usage(error)
    }
}
