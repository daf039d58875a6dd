//! The real routers (HAProxy via its runtime API, nginx via reloads) give the same verdicts as
//! the embedded L7 router on the cases of `verify.rs`. Router 0 is HAProxy, router 1 nginx.
//! Needs Debian's `haproxy` and `nginx` packages: skipped with a notice when they are missing,
//! except under `CI=true`.

use lameduck_testkit::process::TempDir;

use crate::util::*;

const REAL: &str = "routers:\n  - kind: haproxy\n  - kind: nginx\n";

fn real_routers_installed() -> bool {
    let missing: Vec<&str> = ["haproxy", "nginx"]
        .into_iter()
        .filter(|program| lameduck_testkit::installed(program).is_none())
        .collect();
    let found = missing.is_empty().then_some(());
    let what = format!("{missing:?}");
    lameduck_testkit::needed_or_skip(found, &what, "apt-get install haproxy nginx").is_some()
}

#[test]
fn real_routers_naive_app_loses_requests() {
    let _serial = serial();
    if !real_routers_installed() {
        return;
    }
    let tmp = TempDir::new("verify-real-naive");
    let dir = tmp.root();
    let yaml = scenario(&naive(), REAL, "uniform: {min: 0.5s, max: 3s}", "", 1);
    let r = verify_file(dir, "naive.yaml", &yaml, &[]);
    let rep = &r.reports[0];
    assert_eq!(r.code, 1);
    assert!(router_failures(rep, 0) > 0, "haproxy: {}", summary(rep));
    assert!(router_failures(rep, 1) > 0, "nginx: {}", summary(rep));
}

#[test]
fn real_routers_prestop_sleep_5_loses_none_at_3s_and_many_at_8s() {
    let _serial = serial();
    if !real_routers_installed() {
        return;
    }
    let tmp = TempDir::new("verify-real-sleep5");
    let dir = tmp.root();
    let yaml = scenario(
        &naive(),
        REAL,
        "uniform: {min: 0.5s, max: 3s}",
        "preStop:\n  sleep: 5s\n",
        1,
    );
    let r = verify_file(dir, "sleep5.yaml", &yaml, &[]);
    let rep = &r.reports[0];
    assert_eq!(rep["load"]["failed"].as_u64(), Some(0), "{}", summary(rep));
    assert_eq!(r.code, 0);

    // Seed 4 draws withdrawals later than the sleep (as in verify.rs).
    let yaml = scenario(
        &naive(),
        REAL,
        "uniform: {min: 0.5s, max: 8s}",
        "preStop:\n  sleep: 5s\n",
        4,
    );
    let r = verify_file(dir, "tail.yaml", &yaml, &[]);
    let rep = &r.reports[0];
    assert!(
        rep["load"]["failed"].as_u64().unwrap() >= 50,
        "{}",
        summary(rep)
    );
}

#[test]
fn real_routers_wrapped_app_loses_nothing() {
    let _serial = serial();
    if !real_routers_installed() || !run_available() {
        return;
    }
    let tmp = TempDir::new("verify-real-wrapped");
    let dir = tmp.root();
    let runs: Vec<_> = [
        ("uniform: {min: 0.5s, max: 3s}", 1),
        ("uniform: {min: 0.5s, max: 8s}", 2),
    ]
    .into_iter()
    .map(|(dist, seed)| {
        let yaml = scenario(
            &wrapped(),
            REAL,
            dist,
            "readinessProbe:\n  path: /readyz\n  port: admin\nload:\n  rate: 100\n",
            seed,
        );
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            (
                dist,
                verify_file(&dir, &format!("w{seed}.yaml"), &yaml, &[]),
            )
        })
    })
    .collect();
    for run in runs {
        let (dist, r) = run.join().unwrap();
        let rep = &r.reports[0];
        assert_eq!(
            rep["load"]["failed"].as_u64(),
            Some(0),
            "{dist}: {}",
            summary(rep)
        );
    }
}
