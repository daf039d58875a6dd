//! The HTML report (not built yet).

use crate::accounting::Report;

/// Renders a self-contained HTML page.
#[must_use]
pub fn render_html(_reports: &[Report]) -> String {
    String::new()
}
