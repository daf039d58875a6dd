//! Probes: readiness fails at once on SIGTERM while the app keeps serving.

use std::time::{Duration, Instant};

use lameduck_testkit::Signal;
use lameduck_testkit::get_once;

use crate::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_at_once_while_requests_still_succeed() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "2s")]).await;
    assert_eq!(app.admin("/readyz").await, (200, "serving\n".to_owned()));
    assert_eq!(app.admin("/startupz").await.0, 200);

    app.child.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    let mut first_503 = None;
    for _ in 0..400 {
        let (status, body) = app.admin("/readyz").await;
        if status == 503 {
            assert_eq!(body, "draining\n");
            first_503 = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // "At once" is an order, not a time: readiness reports `draining` (not `closing`), and every
    // request after it is still served. How long the signal takes to land is not asserted: a
    // loaded 2-core machine can delay any process by more than a fixed bound.
    let first_503 = first_503.expect("readyz never failed");
    eprintln!("readyz failed {first_503:?} after SIGTERM");

    // The drain wait (min 2 s) is not over: every request on a new connection succeeds.
    let mut served = 0;
    while signalled.elapsed() < Duration::from_millis(1500) {
        let reply = get_once(app.addr, "/")
            .await
            .expect("served while draining");
        assert_eq!(reply.status, 200);
        assert!(
            reply.says_close(),
            "responses while draining ask the client to close"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 10, "only {served} requests sent");
    assert_eq!(
        app.admin("/livez").await.0,
        200,
        "liveness never fails during the drain"
    );
    assert_eq!(app.admin("/startupz").await.0, 200);

    assert!(app.stopped_line().starts_with("drain ended by quiet"));
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_endpoint_starts_the_drain_and_a_later_sigterm_is_not_a_forced_stop() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "1s")]).await;
    let mut conn = lameduck_testkit::Http1Conn::connect(app.admin)
        .await
        .unwrap();
    let status = conn.get("/drain").await.unwrap();
    assert_eq!(status.status, 200, "GET /drain reports the drain status");
    assert!(
        String::from_utf8_lossy(&status.body).starts_with("{\"phase\":\"serving\""),
        "{status:?}"
    );
    assert_eq!(app.admin("/readyz").await.0, 200, "GET must not drain");

    assert_eq!(
        post(app.admin, "/drain").await,
        "drain started; phase draining\n"
    );
    assert_eq!(app.admin("/readyz").await, (503, "draining\n".to_owned()));
    // The kubelet's SIGTERM after a preStop `lameduck wait` is a first signal: no forced stop.
    app.child.signal(Signal::SIGTERM);
    assert!(app.stopped_line().starts_with("drain ended by quiet"));
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_with_wait_answers_once_the_drain_wait_is_over() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "1s")]).await;
    // A slow request keeps the process in Closing long enough for the admin answer to go out
    // before the example exits.
    let mut busy = lameduck_testkit::Http1Conn::connect(app.addr)
        .await
        .unwrap();
    let slow = tokio::spawn(async move { busy.get("/slow?ms=2500").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let body = post(app.admin, "/drain?wait=true").await;
    assert_eq!(body, "drain started; phase closing\n");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before min_wait"
    );
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    assert!(app.stopped_line().starts_with("drain ended by quiet"));
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

async fn post(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = crate::call(addr, "POST", path).await;
    assert_eq!(status, 200, "{body}");
    body
}
