//! Rendering a run: human text, JSON and SARIF 2.1.0.

mod human;
mod json;
mod sarif;

pub use human::human;
pub use json::json;
pub use sarif::sarif;

use crate::finding::{Finding, Severity};
use crate::source::InputError;

/// Everything one run produced, as the renderers need it.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Findings, suppressed ones included.
    pub findings: &'a [Finding],
    /// Input errors.
    pub errors: &'a [InputError],
    /// Number of objects linted.
    pub objects: usize,
    /// Number of sources read.
    pub files: usize,
}

impl Report<'_> {
    /// Findings not suppressed by an ignore annotation.
    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.suppressed.is_none())
    }

    /// Number of active findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.active().filter(|f| f.severity == severity).count()
    }

    /// Number of suppressed findings.
    pub fn suppressed(&self) -> usize {
        self.findings.len() - self.active().count()
    }

    /// Whether an active finding is at or above `threshold`.
    pub fn fails(&self, threshold: Severity) -> bool {
        self.active().any(|f| f.severity >= threshold)
    }
}
