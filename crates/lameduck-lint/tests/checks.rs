//! Every check has a fixture that must trigger it and one that must be clean.
//!
//! `tests/fixtures/checks/<id>/fail.yaml` must report `<id>` and nothing else except the checks
//! named on its `# also:` line; `pass.yaml` must report nothing at all.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use lameduck_lint::{CHECKS, Config, Finding, lint, load};

fn fixture(id: &str, name: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checks")
        .join(id)
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (format!("{id}/{name}"), text)
}

fn active(name: &str, text: &str) -> Vec<Finding> {
    let loaded = load(name, text);
    assert!(loaded.errors.is_empty(), "{name}: {:?}", loaded.errors);
    assert!(!loaded.objects.is_empty(), "{name}: no objects");
    lint(&loaded.objects, &Config::default())
        .into_iter()
        .filter(|f| f.suppressed.is_none())
        .collect()
}

#[test]
fn every_check_fires_on_its_failing_fixture_and_only_there() {
    for check in CHECKS {
        let (name, text) = fixture(check.id, "fail.yaml");
        let also: BTreeSet<&str> = text
            .lines()
            .find_map(|l| l.strip_prefix("# also:"))
            .map(|l| l.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let findings = active(&name, &text);
        assert!(
            findings.iter().any(|f| f.check == check.id),
            "{name}: {} not reported; got {findings:#?}",
            check.id
        );
        let unexpected: Vec<_> = findings
            .iter()
            .filter(|f| f.check != check.id && !also.contains(f.check))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{name}: unexpected findings {unexpected:#?}"
        );
        for also in &also {
            assert!(
                findings.iter().any(|f| f.check == *also),
                "{name}: `# also: {also}` not reported"
            );
        }
        for f in &findings {
            assert!(
                f.pos.line >= 2 && f.pos.column >= 1,
                "{name}: position {:?} of {}",
                f.pos,
                f.check
            );
        }
    }
}

#[test]
fn every_check_is_quiet_on_its_passing_fixture() {
    for check in CHECKS {
        let (name, text) = fixture(check.id, "pass.yaml");
        let findings = active(&name, &text);
        assert!(
            findings.is_empty(),
            "{name}: expected no findings, got {findings:#?}"
        );
    }
}

#[test]
fn check_ids_are_unique_kebab_case_and_documented() {
    let ids: BTreeSet<&str> = CHECKS.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), CHECKS.len());
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/lint.md"))
        .unwrap_or_default();
    for c in CHECKS {
        assert!(
            c.id.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
            "{}",
            c.id
        );
        assert!(
            !c.summary.is_empty() && !c.explanation.is_empty() && !c.fix.is_empty(),
            "{}",
            c.id
        );
        assert!(
            guide.contains(&format!("`{}`", c.id)),
            "docs/lint.md does not list {}",
            c.id
        );
    }
}
