//! Behaviour beyond single fixtures: ignores, configuration, cross-object lookups, the
//! grace arithmetic's numbers, and input errors.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use lameduck_lint::{Config, Finding, Severity, lint, load, load_all};

fn findings(text: &str, config: &Config) -> Vec<Finding> {
    let loaded = load("t.yaml", text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    lint(&loaded.objects, config)
}

const WEB: &str = include_str!("fixtures/checks/no-shutdown-delay/fail.yaml");

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.suppressed.is_none())
        .map(|f| f.check)
        .collect()
}

#[test]
fn ignore_annotation_with_reason_suppresses_and_keeps_the_reason() {
    let text = WEB.replacen("  namespace: shop\n", "  namespace: shop\n  annotations:\n    lameduck.dev/ignore: \"no-shutdown-delay: the app drains itself for 10s\"\n", 1);
    let all = findings(&text, &Config::default());
    assert!(ids(&all).is_empty(), "{all:#?}");
    let suppressed: Vec<_> = all.iter().filter_map(|f| f.suppressed.as_deref()).collect();
    assert_eq!(suppressed, ["the app drains itself for 10s"]);
}

#[test]
fn ignore_without_reason_is_not_applied_and_is_reported() {
    let text = WEB.replacen(
        "  namespace: shop\n",
        "  namespace: shop\n  annotations:\n    lameduck.dev/ignore: no-shutdown-delay\n",
        1,
    );
    let all = findings(&text, &Config::default());
    assert_eq!(ids(&all), ["invalid-ignore", "no-shutdown-delay"]);
}

#[test]
fn config_disables_and_changes_severities() {
    let config = Config::parse("lint:\n  severity:\n    no-shutdown-delay: info\n").unwrap();
    let all = findings(WEB, &config);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].severity, Severity::Info);
    let config = Config::parse("lint:\n  disable: [no-shutdown-delay]\n").unwrap();
    assert!(findings(WEB, &config).is_empty());
}

#[test]
fn grace_margin_is_configurable_and_the_message_shows_the_arithmetic() {
    let text = include_str!("fixtures/checks/grace-period-too-short/pass.yaml");
    // preStop 5 + drain 25 = 30 of 40: fits with the default 2 s margin, not with 12 s.
    assert!(findings(text, &Config::default()).is_empty());
    let config = Config::parse("lint:\n  graceMarginSeconds: 12\n").unwrap();
    let all = findings(text, &config);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].message,
        "container \"app\": preStop 5s (sleep action) + drain 25s (lameduck.dev/drain-seconds) + margin 12s = 42s, more than terminationGracePeriodSeconds 40s"
    );
}

#[test]
fn lameduck_run_drain_settings_enter_the_arithmetic() {
    let text = include_str!("fixtures/checks/no-shutdown-delay/pass.yaml")
        .replace("--min-wait, 2s", "--max-wait, 30s");
    let all = findings(&text, &Config::default());
    let grace: Vec<_> = all
        .iter()
        .filter(|f| f.check == "grace-period-too-short")
        .collect();
    assert_eq!(grace.len(), 1, "{all:#?}");
    assert!(
        grace[0]
            .message
            .contains("`lameduck run` max-wait 30s --max-wait + close 5s default"),
        "{}",
        grace[0].message
    );
}

#[test]
fn cross_object_checks_see_every_file_of_the_run() {
    let text = include_str!("fixtures/checks/pdb-missing/pass.yaml");
    let (deploy, rest) = text.split_once("\n---\n").unwrap();
    let separate = load_all(&[("deploy.yaml", deploy), ("rest.yaml", rest)]);
    assert!(separate.errors.is_empty());
    assert!(lint(&separate.objects, &Config::default()).is_empty());
    let alone = load("deploy.yaml", deploy);
    let all = lint(&alone.objects, &Config::default());
    assert_eq!(
        ids(&all),
        ["pdb-missing"],
        "without the Service and PDB files: {all:#?}"
    );
}

#[test]
fn objects_in_other_namespaces_do_not_match() {
    let text = include_str!("fixtures/checks/pdb-missing/pass.yaml").replace(
        "kind: PodDisruptionBudget\nmetadata:\n  name: web\n  namespace: shop",
        "kind: PodDisruptionBudget\nmetadata:\n  name: web\n  namespace: other",
    );
    assert_eq!(ids(&findings(&text, &Config::default())), ["pdb-missing"]);
}

#[test]
fn malformed_documents_are_input_errors_and_the_rest_is_linted() {
    let text = format!("{WEB}\n---\nkind: Deployment\nmetadata: {{name: [oops\n");
    let loaded = load("t.yaml", &text);
    assert_eq!(loaded.errors.len(), 1);
    let err = &loaded.errors[0];
    let broken_doc_line = text
        .lines()
        .position(|l| l.starts_with("metadata: {name: [oops"))
        .unwrap()
        + 1;
    assert!(err.pos.line >= broken_doc_line, "{err}");
    assert!(err.to_string().starts_with("t.yaml:"), "{err}");
    assert_eq!(
        ids(&lint(&loaded.objects, &Config::default())),
        ["no-shutdown-delay"]
    );
}

/// A slow readiness probe matters only where readiness still routes traffic once the pod is
/// deleted (kube-proxy's fallback to serving-terminating endpoints: one replica, or
/// externalTrafficPolicy Local) or where lameduck drains a pod that is not deleted.
#[test]
fn a_slow_readiness_probe_is_reported_only_where_readiness_still_routes() {
    const SLOW: &str = include_str!("fixtures/checks/readiness-slower-than-prestop/fail.yaml");
    let reported = |text: &str| {
        let all = findings(text, &Config::default());
        all.into_iter()
            .filter(|f| f.check == "readiness-slower-than-prestop")
            .map(|f| f.message)
            .collect::<Vec<_>>()
    };
    let local = reported(SLOW);
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(
        local[0].contains("externalTrafficPolicy Local"),
        "{local:?}"
    );

    // A ClusterIP Service over 3 replicas: deletion makes the endpoint not ready at once.
    let cluster = SLOW
        .replace("  type: LoadBalancer\n", "")
        .replace("  externalTrafficPolicy: Local\n", "");
    assert_eq!(reported(&cluster), Vec::<String>::new());

    // One replica: no other ready endpoint, so kube-proxy falls back to the terminating pod.
    let single = cluster.replace("replicas: 3", "replicas: 1");
    let single = reported(&single);
    assert!(
        single.len() == 1 && single[0].contains("replicas: 1"),
        "{single:?}"
    );

    // lameduck run with max-wait 5 s under a 30 s probe: a drain without deletion outlasts it.
    let lameduck = cluster.replace(
        "        image: example/web:1.0\n",
        "        image: example/web:1.0\n        command: [lameduck, run, --max-wait, 5s, --, /web]\n",
    );
    let drained = reported(&lameduck);
    assert!(
        drained.len() == 1 && drained[0].contains("drained without being deleted"),
        "{drained:?}"
    );
}
