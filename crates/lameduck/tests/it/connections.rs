//! Connections through the phases: Connection: close, GOAWAY, slow requests, idle and silent
//! connections.

use std::time::Duration;

use bytes::Bytes;
use lameduck_testkit::{Http1Conn, Signal, poll_until, raw_connect};

use crate::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_is_told_to_close_while_draining() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "2s")]).await;
    let mut conn = Http1Conn::connect(app.addr).await.unwrap();
    let before = conn.get("/").await.unwrap();
    assert!(!before.says_close(), "no Connection: close while serving");
    assert!(!conn.is_closed());

    app.child.signal(Signal::SIGTERM);
    assert!(app.wait_phase("draining", Duration::from_secs(2)).await);
    let during = conn.get("/").await.unwrap();
    assert_eq!(during.status, 200);
    assert!(
        during.says_close(),
        "draining responses carry Connection: close"
    );
    let closed = poll_until(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async { conn.is_closed().then_some(()) },
    );
    assert!(
        closed.await.is_some(),
        "the server closes the connection after that response"
    );
    assert_eq!(
        app.admin("/livez").await.1,
        "draining\n",
        "and it did so before Closing"
    );
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_gets_goaway_and_its_open_stream_completes() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "1s")]).await;
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);

    let request = || {
        http::Request::get(format!("http://{}/slow?ms=1500", app.addr))
            .body(())
            .unwrap()
    };
    client = client.ready().await.unwrap();
    let (slow, _) = client.send_request(request(), true).unwrap();

    tokio::time::sleep(Duration::from_millis(200)).await;
    app.child.signal(Signal::SIGTERM);

    // The connection ends cleanly (GOAWAY, not a reset) once the open stream is done...
    let response = slow.await.expect("the in-flight stream completes");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Bytes::from(bytes), "slow done\n");
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("connection ends")
        .unwrap();
    assert!(
        ended.is_ok(),
        "the server ended the connection gracefully: {ended:?}"
    );
    // ...and no new stream may be opened on it.
    let refused = match client.ready().await {
        Err(error) => Some(error),
        Ok(mut ready) => ready.send_request(request(), true).err(),
    };
    assert!(refused.is_some(), "new streams are refused after GOAWAY");
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_finishes_and_idle_connections_close_at_closing() {
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_QUIET_WINDOW", "300ms"),
        ],
    )
    .await;
    let mut idle = Http1Conn::connect(app.addr).await.unwrap();
    idle.get("/").await.unwrap();
    let mut busy = Http1Conn::connect(app.addr).await.unwrap();
    let slow = tokio::spawn(async move { busy.get("/slow?ms=2000").await });

    tokio::time::sleep(Duration::from_millis(100)).await;
    app.child.signal(Signal::SIGTERM);
    assert!(
        app.wait_phase("closing", Duration::from_secs(3)).await,
        "closing starts while the slow request runs"
    );
    assert!(!slow.is_finished());

    let closed = poll_until(
        Duration::from_secs(3),
        Duration::from_millis(10),
        || async { idle.is_closed().then_some(()) },
    );
    assert!(
        closed.await.is_some(),
        "the idle connection is closed at Closing"
    );
    let reply = slow.await.unwrap().expect("the slow request completes");
    assert_eq!(
        (reply.status.as_u16(), &reply.body),
        (200, &Bytes::from("slow done\n"))
    );
    assert!(reply.says_close());
    let stopped = app.stopped_line();
    assert!(stopped.ends_with("forced connections 0"), "{stopped}");
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_that_never_sends_a_byte_is_closed_after_its_grace() {
    let mut app = start(
        "axum",
        &[
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_FIRST_BYTE_GRACE", "300ms"),
            ("LAMEDUCK_CLOSE_TIMEOUT", "8s"),
        ],
    )
    .await;
    let mut silent = raw_connect(app.addr).await.unwrap();
    app.child.signal(Signal::SIGTERM);
    let stopped = app.stopped_line();
    // Closed by the first-byte grace, not by the forced close at the deadline.
    assert!(stopped.ends_with("forced connections 0"), "{stopped}");
    use tokio::io::AsyncReadExt;
    let mut buf = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server closed the silent connection"
    );
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}
