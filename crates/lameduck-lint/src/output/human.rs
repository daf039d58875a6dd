//! `file:line:column: severity[check] object: message`, for people.

use std::fmt::Write as _;

use super::Report;
use crate::checks::find;
use crate::finding::Severity;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";

fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "\x1b[1;31m",
        Severity::Warning => "\x1b[1;33m",
        Severity::Info => "\x1b[1;36m",
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Renders findings one per line with the fix under each, then input errors and a summary.
/// `color` adds ANSI colours (the CLI passes true only when stdout is a terminal).
pub fn human(report: &Report<'_>, color: bool) -> String {
    let paint = |code: &'static str| if color { code } else { "" };
    let mut out = String::new();
    for f in report.active() {
        let _ = writeln!(
            out,
            "{}{}:{}:{}{}: {}{}[{}]{} {}: {}",
            paint(BOLD),
            f.file,
            f.pos.line,
            f.pos.column,
            paint(RESET),
            paint(colour(f.severity)),
            f.severity,
            f.check,
            paint(RESET),
            f.object,
            f.message
        );
        if let Some(check) = find(f.check) {
            let _ = writeln!(out, "  {}fix:{} {}", paint(DIM), paint(RESET), check.fix);
        }
    }
    for e in report.errors {
        let _ = writeln!(
            out,
            "{}{}:{}:{}{}: {}input error{}: {}",
            paint(BOLD),
            e.file,
            e.pos.line,
            e.pos.column,
            paint(RESET),
            paint(colour(Severity::Error)),
            paint(RESET),
            e.message
        );
    }
    let counts = [Severity::Error, Severity::Warning, Severity::Info].map(|s| report.count(s));
    let mut summary = if counts.iter().all(|c| *c == 0) {
        "no findings".to_owned()
    } else {
        format!(
            "{}, {}, {} info",
            plural(counts[0], "error"),
            plural(counts[1], "warning"),
            counts[2]
        )
    };
    if report.suppressed() > 0 {
        let _ = write!(summary, " ({} suppressed)", report.suppressed());
    }
    if !report.errors.is_empty() {
        let _ = write!(summary, ", {}", plural(report.errors.len(), "input error"));
    }
    let _ = writeln!(
        out,
        "{summary} in {} from {}",
        plural(report.objects, "object"),
        plural(report.files, "source")
    );
    out
}
