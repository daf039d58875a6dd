//! Bad configuration is one clear message naming the setting, and exit code 2.

use std::time::Duration;

use lameduck_testkit::{Child, example_path};

#[test]
fn bad_settings_are_named_in_one_message() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("LAMEDUCK_MIN_WAIT", "soon")],
            "LAMEDUCK_MIN_WAIT: \"soon\" is not a duration",
        ),
        (
            &[("LAMEDUCK_GRACE_SECONDS", "-5")],
            "LAMEDUCK_GRACE_SECONDS: \"-5\" is negative",
        ),
        (
            &[("LAMEDUCK_QUIET_WINDOW", "5 parsecs")],
            "LAMEDUCK_QUIET_WINDOW",
        ),
        (
            &[("LAMEDUCK_MIN_WAIT", "30s"), ("LAMEDUCK_MAX_WAIT", "10s")],
            "LAMEDUCK_MIN_WAIT must be <= LAMEDUCK_MAX_WAIT",
        ),
        (
            &[("LAMEDUCK_GRACE_SECONDS", "5")],
            "grace period too small (LAMEDUCK_GRACE_SECONDS)",
        ),
        (
            &[("LAMEDUCK_ADMIN_ADDR", "localhost")],
            "LAMEDUCK_ADMIN_ADDR: \"localhost\" is not an address",
        ),
    ];
    for (env, expected) in cases {
        let mut env = env.to_vec();
        env.push(("LISTEN", "127.0.0.1:0"));
        let mut child = Child::spawn(example_path("axum"), &[], &env).unwrap();
        let status = child.wait_exit(Duration::from_secs(10)).expect("exits");
        let stderr = child.stderr();
        assert_eq!(status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
