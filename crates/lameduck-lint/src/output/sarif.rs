//! SARIF 2.1.0, for GitHub code scanning and other SARIF consumers.

use serde_json::{Value, json};

use super::Report;
use crate::checks::CHECKS;
use crate::finding::Severity;
use crate::yaml::Pos;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// The artifact URI for a path as given: relative paths stay relative (to the working
/// directory, which CI sets to the repository root), `\` becomes `/`, unsafe characters are
/// percent-encoded, standard input is `stdin`.
fn uri(path: &str) -> String {
    if path == "<stdin>" {
        return "stdin".to_owned();
    }
    let path = path.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path);
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn location(file: &str, pos: Pos) -> Value {
    let mut region = json!({"startLine": pos.line.max(1)});
    if pos.column > 0 {
        region["startColumn"] = json!(pos.column);
    }
    json!({"physicalLocation": {"artifactLocation": {"uri": uri(file)}, "region": region}})
}

/// Renders the run as a SARIF 2.1.0 log with one run, every check as a rule, suppressed
/// findings as results with an `inSource` suppression, and input errors as tool notifications.
pub fn sarif(report: &Report<'_>) -> String {
    let rules: Vec<Value> = CHECKS
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.id,
                "shortDescription": {"text": c.summary},
                "fullDescription": {"text": c.explanation},
                "help": {"text": format!("{}\n\nFix: {}", c.explanation, c.fix)},
                "defaultConfiguration": {"level": level(c.severity)},
                "properties": {"tags": ["kubernetes", "zero-downtime"]},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut loc = location(&f.file, f.pos);
            loc["logicalLocations"] =
                json!([{"fullyQualifiedName": f.object.to_string(), "kind": "object"}]);
            let mut result = json!({
                "ruleId": f.check,
                "ruleIndex": CHECKS.iter().position(|c| c.id == f.check).unwrap_or(0),
                "level": level(f.severity),
                "message": {"text": format!("{}: {}", f.object, f.message)},
                "locations": [loc],
            });
            if let Some(reason) = &f.suppressed {
                result["suppressions"] = json!([{"kind": "inSource", "justification": reason}]);
            }
            result
        })
        .collect();
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({"level": "error", "message": {"text": e.message}, "locations": [location(&e.file, e.pos)]}))
        .collect();
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "lameduck",
                "informationUri": "https://github.com/lameduck-dev/lameduck",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn uris() {
        assert_eq!(uri("./k8s/web app.yaml"), "k8s/web%20app.yaml");
        assert_eq!(uri("/abs/x.yaml"), "file:///abs/x.yaml");
        assert_eq!(uri("<stdin>"), "stdin");
        assert_eq!(uri("a\\b.yaml"), "a/b.yaml");
    }
}
