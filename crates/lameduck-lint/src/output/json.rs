//! A stable JSON document for scripts: `{"version": 1, "summary", "findings", "errors"}`.

use serde_json::{Value, json};

use super::Report;
use crate::finding::Severity;

/// Renders the run as pretty-printed JSON. Suppressed findings are listed with their reason
/// and not counted in the summary.
pub fn json(report: &Report<'_>) -> String {
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "check": f.check,
                "severity": f.severity.as_str(),
                "message": f.message,
                "file": &*f.file,
                "line": f.pos.line,
                "column": f.pos.column,
                "object": {
                    "apiVersion": f.object.api_version,
                    "kind": f.object.kind,
                    "namespace": f.object.namespace,
                    "name": f.object.name,
                },
                "suppressed": f.suppressed,
            })
        })
        .collect();
    let errors: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({"file": &*e.file, "line": e.pos.line, "column": e.pos.column, "message": e.message}))
        .collect();
    let doc = json!({
        "version": 1,
        "summary": {
            "objects": report.objects,
            "sources": report.files,
            "error": report.count(Severity::Error),
            "warning": report.count(Severity::Warning),
            "info": report.count(Severity::Info),
            "suppressed": report.suppressed(),
            "inputErrors": report.errors.len(),
        },
        "findings": findings,
        "errors": errors,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}
