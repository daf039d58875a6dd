//! Log lines of the long-running subcommands (`run`, `gate serve`): text or JSON, to stderr.

use std::io::IsTerminal;

/// How log lines are written (to stderr, beside the app's).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-29T13:31:39.068748Z  INFO started the app ... pid=1999`.
    Text,
    /// `{"timestamp":"...","level":"INFO","message":"started the app ...","pid":"1999"}`.
    Json,
}

/// Installs the global subscriber.
pub fn init(level: tracing_subscriber::filter::LevelFilter, format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}
