//! The drain wait follows the traffic: quiet ends it, steady traffic holds it until max_wait.

use std::time::{Duration, Instant};

use lameduck_testkit::{Signal, get_once};

use crate::start;

fn waited(stopped: &str) -> f64 {
    stopped
        .split(" after ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_traffic_the_wait_is_the_larger_of_min_wait_and_quiet_window() {
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_QUIET_WINDOW", "1500ms"),
        ],
    )
    .await;
    app.child.signal(Signal::SIGTERM);
    let stopped = app.stopped_line();
    assert!(stopped.starts_with("drain ended by quiet"), "{stopped}");
    let waited = waited(&stopped);
    // Not cut at min_wait (0.5 s): the quiet window, counted from the drain start, decides;
    // and it ended by quiet (above), not at max_wait.
    assert!(
        waited >= 1.5,
        "waited {waited}s, less than the quiet window"
    );
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_holds_the_drain_until_it_stops() {
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_QUIET_WINDOW", "500ms"),
        ],
    )
    .await;
    app.child.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let mut sent = 0;
    while signalled.elapsed() < Duration::from_millis(2500) && sent < 200 {
        assert_eq!(get_once(app.addr, "/").await.unwrap().status, 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = app.stopped_line();
    assert!(stopped.starts_with("drain ended by quiet"), "{stopped}");
    assert!(
        waited(&stopped) >= 2.4,
        "the drain ended while traffic still arrived: {stopped}"
    );
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_ends_the_wait_at_max_wait() {
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_MAX_WAIT", "1500ms"),
        ],
    )
    .await;
    app.child.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let mut served_after_closing = 0;
    // Keep sending until the listener is gone (Closing), at most 6 s.
    while signalled.elapsed() < Duration::from_secs(6) {
        match get_once(app.addr, "/").await {
            Ok(reply) => assert_eq!(reply.status, 200),
            Err(_) => {
                served_after_closing += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_after_closing, 1,
        "the listener closed once max_wait passed"
    );
    let stopped = app.stopped_line();
    assert!(stopped.starts_with("drain ended by max_wait"), "{stopped}");
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}
