//! A realistic multi-service set (Deployment + Service + PDB + HPA + Ingress, a `kind: List` in
//! JSON with `lameduck run`, a StatefulSet, an Argo Rollout, a CronJob, a DaemonSet behind
//! `externalTrafficPolicy: Local`, a legacy app) linted as one run: the findings must be exactly
//! the expected ones, and the three output formats are snapshotted. The SARIF output is
//! validated against the SARIF 2.1.0 JSON schema (vendored from the npm package
//! @microsoft/jest-sarif, MIT).

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use lameduck_lint::output::{self, Report};
use lameduck_lint::{Config, Finding, Loaded, lint, load_all};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/realistic");

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Loads every fixture with paths relative to the fixture directory, as a CLI run would show.
fn run() -> (Loaded, Vec<Finding>, usize) {
    let mut paths = Vec::new();
    files(Path::new(DIR), &mut paths);
    let texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            (
                p.strip_prefix(DIR).unwrap().display().to_string(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let loaded = load_all(&borrowed);
    let findings = lint(&loaded.objects, &Config::default());
    (loaded, findings, texts.len())
}

#[test]
fn findings_are_exactly_the_expected_ones() {
    let (loaded, findings, _) = run();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.objects.len(), 20);
    let got: Vec<String> = findings
        .iter()
        .map(|f| {
            let state = if f.suppressed.is_some() {
                " (suppressed)"
            } else {
                ""
            };
            format!(
                "{}:{}:{} {}{state}",
                f.file, f.pos.line, f.pos.column, f.check
            )
        })
        .collect();
    let expected = [
        "data/postgres.yaml:56:3 pdb-blocks-eviction",
        "edge/ingress.yaml:48:3 external-traffic-local-no-surge",
        "legacy/admin.yaml:9:1 min-ready-seconds-unset",
        "legacy/admin.yaml:9:1 progress-deadline-unset",
        "legacy/admin.yaml:10:3 single-replica",
        "legacy/admin.yaml:12:11 recreate-strategy (suppressed)",
        "legacy/admin.yaml:20:9 no-shutdown-delay",
        "legacy/admin.yaml:26:9 liveness-equals-readiness",
        "legacy/admin.yaml:26:9 liveness-without-startup-probe",
        "rollouts/checkout.yaml:27:7 grace-period-too-short",
    ];
    assert_eq!(got, expected);
}

#[test]
fn snapshots_of_every_format() {
    let (loaded, findings, sources) = run();
    let report = Report {
        findings: &findings,
        errors: &loaded.errors,
        objects: loaded.objects.len(),
        files: sources,
    };
    insta::assert_snapshot!("human", output::human(&report, false));
    insta::assert_snapshot!("json", output::json(&report));
    insta::assert_snapshot!("sarif", output::sarif(&report));
}

#[test]
fn human_output_is_coloured_only_when_asked() {
    let (loaded, findings, sources) = run();
    let report = Report {
        findings: &findings,
        errors: &loaded.errors,
        objects: loaded.objects.len(),
        files: sources,
    };
    assert!(!output::human(&report, false).contains('\x1b'));
    assert!(output::human(&report, true).contains("\x1b[1;31merror"));
}

fn sarif_validator() -> jsonschema::Validator {
    // The published rtm.5 schema has a stray `]` in the `language` patterns, which a strict
    // regex engine rejects; use the pattern they mean (two letters, optional region). We emit
    // no `language`, so this loosens nothing we produce.
    let raw = include_str!("schema/sarif-2.1.0-rtm.5.json");
    let broken = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert_eq!(raw.matches(broken).count(), 2, "vendored schema changed");
    let fixed = raw.replace(broken, r#""^[a-zA-Z]{2}(-[a-zA-Z]{2})?$""#);
    let schema: serde_json::Value = serde_json::from_str(&fixed).expect("schema is JSON");
    jsonschema::options()
        .build(&schema)
        .expect("schema compiles")
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let validator = sarif_validator();
    let (loaded, findings, sources) = run();
    let report = Report {
        findings: &findings,
        errors: &loaded.errors,
        objects: loaded.objects.len(),
        files: sources,
    };
    let sarif: serde_json::Value = serde_json::from_str(&output::sarif(&report)).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Input errors become tool notifications; that log must validate too.
    let broken = load_all(&[("bad.yaml", "kind: Pod\nmetadata: {name: [\n")]);
    let report = Report {
        findings: &[],
        errors: &broken.errors,
        objects: 0,
        files: 1,
    };
    let sarif: serde_json::Value = serde_json::from_str(&output::sarif(&report)).unwrap();
    assert!(validator.is_valid(&sarif));
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
    // The validator is not vacuous: a result without a message is rejected.
    let mut invalid = serde_json::from_str::<serde_json::Value>(&output::sarif(&Report {
        findings: &findings,
        errors: &[],
        objects: 0,
        files: 0,
    }))
    .unwrap();
    invalid["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    assert!(!validator.is_valid(&invalid));
}
