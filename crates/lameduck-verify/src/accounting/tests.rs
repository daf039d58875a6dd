//! The accounting as the pure function it is: hand-made events and request records in, counts
//! out, without starting a replica or a router.

use super::*;

fn event(t: f64, pod: PodId, kind: EventKind) -> Event {
    Event {
        t,
        pod: Some(pod),
        router: None,
        kind,
    }
}

fn withdrawn(t: f64, pod: PodId, router: RouterId) -> Event {
    Event {
        router: Some(router),
        ..event(t, pod, EventKind::RouterWithdrew)
    }
}

fn record(t: f64, pod: PodId, router: RouterId, outcome: Outcome) -> Record {
    Record {
        t,
        latency: 0.002,
        outcome,
        router,
        pod: Some(pod),
        retried: false,
        kind: RequestKind::Plain,
        detail: None,
    }
}

fn router(id: RouterId) -> RouterInfo {
    RouterInfo {
        id,
        kind: RouterKind::L4,
        addr: format!("127.0.0.1:{}", 9000 + id),
        propagation: "fixed:1s".to_owned(),
    }
}

/// Pod 1 is deleted at 10 s: preStop 10–12 s, the stop signal at 12 s, exit at 12.5 s; router 0
/// withdraws it at 11 s, router 1 only at 13 s. Pod 2 serves throughout.
fn rollout(records: Vec<Record>, started: u64, load_end: f64) -> Report {
    let events = vec![
        event(
            0.0,
            1,
            EventKind::PodStarted {
                pid: 101,
                revision: 0,
            },
        ),
        event(1.0, 1, EventKind::PodReady),
        event(
            0.0,
            2,
            EventKind::PodStarted {
                pid: 102,
                revision: 1,
            },
        ),
        event(1.0, 2, EventKind::PodReady),
        event(10.0, 1, EventKind::PodDeleted),
        event(10.0, 1, EventKind::PreStopStarted),
        withdrawn(11.0, 1, 0),
        event(12.0, 1, EventKind::PreStopFinished { ok: true }),
        event(
            12.0,
            1,
            EventKind::StopSignal {
                signal: "SIGTERM".to_owned(),
            },
        ),
        event(
            12.5,
            1,
            EventKind::Exited {
                code: None,
                signal: Some(15),
            },
        ),
        withdrawn(13.0, 1, 1),
    ];
    account(Inputs {
        scenario: Scenario::default(),
        label: "test".to_owned(),
        started,
        records,
        events,
        routers: vec![router(0), router(1)],
        pods: vec![(1, 0, 8001, 101), (2, 1, 8002, 102)],
        router_errors: Vec::new(),
        load_window: (0.0, load_end),
    })
}

#[test]
fn failures_are_counted_by_class_phase_router_and_pod() {
    let records = vec![
        record(5.0, 1, 0, Outcome::Ok),
        // Sent during preStop through router 1, which still routes to the pod.
        record(11.5, 1, 1, Outcome::Reset),
        record(12.2, 1, 1, Outcome::Refused),
        record(12.8, 1, 1, Outcome::Refused),
        record(14.0, 2, 0, Outcome::Ok),
    ];
    let report = rollout(records, 5, 20.0);
    assert!(report.invariant_holds, "every started request has a record");
    assert_eq!((report.load.ok, report.load.failed), (2, 3));
    assert!(!report.passed, "max_failures is 0");
    assert_eq!(
        report.failures_by_class,
        BTreeMap::from([("refused", 2), ("reset", 1)])
    );
    assert_eq!(
        report.failures_by_phase,
        BTreeMap::from([("gone", 1), ("pre_stop", 1), ("stopping", 1)])
    );
    assert_eq!(report.failures_by_router, BTreeMap::from([(1, 3)]));
    let pod = &report.pods[0];
    assert_eq!(pod.failures, 3);
    assert_eq!(pod.termination_seconds, Some(2.5));
    assert_eq!(pod.last_withdrawal, Some(13.0));
    assert_eq!(
        pod.exit_after_last_withdrawal,
        Some(-0.5),
        "it exited half a second before router 1 let go of it"
    );
    // Broken from the first reset after deletion (11.5 s) until each router withdrew it:
    // router 0 had by then (0 s), router 1 withdrew at 13 s (1.5 s).
    assert!((report.exposure - 1.5).abs() < 1e-9, "{}", report.exposure);
    assert_eq!(report.exposure_by_router[&0], 0.0);
    assert_eq!(report.pods[1].failures, 0);
}

#[test]
fn a_request_without_a_record_breaks_the_invariant_and_fails_the_run() {
    let report = rollout(vec![record(5.0, 2, 0, Outcome::Ok)], 2, 20.0);
    assert!(!report.invariant_holds);
    assert!(!report.passed);
    assert_eq!(
        report.load.failed, 0,
        "no failure was recorded, yet one is missing"
    );
}

#[test]
fn a_clean_rollout_passes_and_an_exit_after_the_load_exposes_nothing() {
    let report = rollout(
        vec![
            record(5.0, 1, 0, Outcome::Ok),
            record(14.0, 2, 1, Outcome::Ok),
        ],
        2,
        20.0,
    );
    assert!(report.passed && report.invariant_holds);
    // The pod exited during the load while router 1 still routed to it: 0.5 s of exposure,
    // though no request happened to hit it.
    assert!((report.exposure - 0.5).abs() < 1e-9, "{}", report.exposure);
    // The same exit after the load ended (the teardown) is no exposure.
    let teardown = rollout(vec![record(5.0, 1, 0, Outcome::Ok)], 1, 12.0);
    assert_eq!(teardown.exposure, 0.0);
    assert_eq!(teardown.load.achieved_rate, 1.0 / 12.0);
}

/// The report's JSON follows the published schema (docs/schema/verify-report.schema.json),
/// and reads like Kubernetes: camelCase keys, `maxSurge: "25%"`, events by reason.
#[test]
fn the_json_report_follows_its_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../docs/schema/verify-report.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::options().build(&schema).unwrap();
    let records = vec![
        record(5.0, 1, 0, Outcome::Ok),
        record(11.5, 1, 1, Outcome::Reset),
        record(12.2, 1, 1, Outcome::Refused),
    ];
    let report = rollout(records, 3, 20.0);
    let json: serde_json::Value =
        serde_json::from_str(&crate::report::render_json(&[report])).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{json:#}");
    let report = &json[0];
    assert_eq!(report["scenario"]["strategy"]["maxSurge"], "25%");
    assert!(report["failuresByClass"]["reset"].is_u64());
    assert!(
        report["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "PodDeleted")
    );
    // A schema that lets anything through would prove nothing: a Rust-shaped field fails it.
    let mut rusty = json.clone();
    rusty[0]["scenario"]["strategy"]["maxSurge"] = serde_json::json!({"Int": 1});
    assert!(!validator.is_valid(&rusty));
}
