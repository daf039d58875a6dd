//! What can stop `lameduck run` before or while it runs the app.

use std::net::SocketAddr;

/// Exit code when `lameduck run` itself fails to set up (as `docker run` and `env` use).
pub const SETUP_FAILED: u8 = 125;
/// Exit code for a command that exists but cannot be run (as shells use).
pub const NOT_EXECUTABLE: u8 = 126;
/// Exit code for a command that does not exist (as shells use).
pub const NOT_FOUND: u8 = 127;
/// Exit code for an invalid setting (as clap uses for usage errors).
pub const USAGE: u8 = 2;

/// Why `lameduck run` could not run the app.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No command after `--`.
    #[error(
        "no command to run: give it after `--`, e.g. `lameduck run -- /app/server --port 8080`"
    )]
    NoCommand,
    /// A setting is invalid, or the admin listener cannot bind.
    #[error(transparent)]
    Setup(#[from] lameduck::Error),
    /// The proxy's listener cannot bind (port in use, say).
    #[error("cannot listen for the drain proxy on {addr}")]
    ProxyBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread of the drain proxy could not be started.
    #[error("cannot start a drain proxy thread")]
    ProxyThread(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The command does not exist.
    #[error("cannot run {program:?}: command not found")]
    NotFound {
        /// The command as given.
        program: String,
    },
    /// The command exists but cannot be executed.
    #[error("cannot run {program:?}: not executable")]
    NotExecutable {
        /// The command as given.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting the command failed otherwise.
    #[error("cannot start {program:?}")]
    Spawn {
        /// The command as given.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code `lameduck run` ends with for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoCommand
            | Self::Setup(lameduck::Error::Config(_) | lameduck::Error::AdminAddr { .. }) => USAGE,
            Self::NotFound { .. } => NOT_FOUND,
            Self::NotExecutable { .. } | Self::Spawn { .. } => NOT_EXECUTABLE,
            Self::Setup(_) | Self::ProxyBind { .. } | Self::ProxyThread(_) | Self::Signals(_) => {
                SETUP_FAILED
            }
        }
    }
}
