//! The drain the gate drives: held out of rotation, cancelled back into service, confirmed safe
//! so that the stop signal goes straight to Closing.

use std::time::Duration;

use lameduck_testkit::{Signal, get_once};

use crate::{call, start};

fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let start = json
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + name.len()
        + 3;
    let rest = &json[start..];
    &rest[..rest.find([',', '}']).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_drain_serves_fails_readiness_and_can_be_cancelled() {
    // A quiet window longer than the test: only the gate's calls can end this drain early.
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "1s"),
            ("LAMEDUCK_QUIET_WINDOW", "1s"),
            ("LAMEDUCK_MAX_WAIT", "20s"),
            ("LAMEDUCK_GRACE_SECONDS", "40"),
        ],
    )
    .await;
    assert_eq!(
        call(app.admin, "DELETE", "/drain").await.0,
        409,
        "nothing to cancel"
    );
    assert_eq!(
        call(app.admin, "POST", "/drain/safe").await.0,
        409,
        "not draining"
    );

    assert_eq!(
        call(app.admin, "POST", "/drain?hold").await,
        (200, "held; phase draining\n".to_owned())
    );
    assert_eq!(app.admin("/readyz").await, (503, "draining\n".to_owned()));
    let reply = get_once(app.addr, "/").await.expect("served while held");
    assert_eq!(reply.status, 200);
    assert!(
        reply.says_close(),
        "held like a drain: keep-alive clients reconnect"
    );
    let (status, json) = call(app.admin, "GET", "/drain").await;
    assert_eq!(status, 200);
    assert_eq!(field(&json, "held"), "true", "{json}");
    assert_eq!(field(&json, "trigger"), "\"gate (held)\"", "{json}");
    assert_eq!(field(&json, "in_flight"), "0", "{json}");
    assert_eq!(
        field(&json, "quiet"),
        "false",
        "a request arrived just now: {json}"
    );

    // Held well past min_wait and the quiet window, the process is still draining, not
    // closing: no drain wait runs until the stop signal.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, json) = call(app.admin, "GET", "/drain").await;
    assert_eq!(field(&json, "phase"), "\"draining\"", "{json}");
    assert_eq!(field(&json, "quiet"), "true", "{json}");
    assert!(get_once(app.addr, "/").await.is_ok(), "still accepting");

    assert_eq!(
        call(app.admin, "DELETE", "/drain").await,
        (200, "hold cancelled; phase serving\n".to_owned())
    );
    assert_eq!(app.admin("/readyz").await, (200, "serving\n".to_owned()));
    let reply = get_once(app.addr, "/").await.unwrap();
    assert!(!reply.says_close(), "serving again: keep-alive as before");

    // A signal-started drain cannot be cancelled.
    app.child.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = call(app.admin, "DELETE", "/drain").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("started by signal SIGTERM"), "{body}");
    assert!(app.stopped_line().starts_with("drain ended by quiet"));
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_confirmed_safe_the_stop_signal_goes_straight_to_closing() {
    // min_wait 15 s: without the gate's confirmation the drain would last at least that long.
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "15s"),
            ("LAMEDUCK_MAX_WAIT", "20s"),
            ("LAMEDUCK_GRACE_SECONDS", "40"),
        ],
    )
    .await;
    assert_eq!(call(app.admin, "POST", "/drain?hold=true").await.0, 200);
    assert_eq!(
        call(app.admin, "POST", "/drain/safe").await,
        (
            200,
            "confirmed safe; the drain wait ends at once\n".to_owned()
        )
    );
    let (_, json) = call(app.admin, "GET", "/drain").await;
    assert_eq!(field(&json, "confirmed_safe"), "true", "{json}");
    assert_eq!(
        field(&json, "phase"),
        "\"draining\"",
        "held until the signal: {json}"
    );

    app.child.signal(Signal::SIGTERM);
    assert!(
        app.stopped_line().starts_with("drain ended by confirmed"),
        "the drain wait ended on the gate's confirmation"
    );
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}
