//! `--json`: the reports as one JSON document.

use crate::accounting::Report;

/// Renders the reports as a JSON array (one element per run), pretty-printed.
#[must_use]
pub fn render_json(reports: &[Report]) -> String {
    serde_json::to_string_pretty(reports).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
