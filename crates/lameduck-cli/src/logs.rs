//! Log lines of the long-running subcommands (`run`, `gate serve`): text or JSON, to stderr.

use std::io::IsTerminal;

pub use lameduck_settings::cli::LogFormat;

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
