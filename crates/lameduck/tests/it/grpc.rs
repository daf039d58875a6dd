//! gRPC (feature `tonic`): the standard health service follows the lifecycle, and an HTTP/2
//! client of a tonic server gets GOAWAY while draining.

use std::time::Duration;

use bytes::Bytes;
use lameduck_testkit::Signal;

use crate::start;

/// `grpc.health.v1.Health/Check` for the overall status, over a raw h2 stream; returns the
/// status number (1 SERVING, 2 NOT_SERVING) or `None` if the stream was refused.
async fn check(
    client: &mut h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
) -> Option<u8> {
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.ok()?;
    let (response, mut body) = ready.send_request(request, false).ok()?;
    // An empty HealthCheckRequest: uncompressed, length 0.
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .ok()?;
    let mut stream = response.await.ok()?.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = stream.data().await {
        message.extend_from_slice(&chunk.ok()?);
    }
    // 5-byte prefix, then field 1 (varint): 0x08 <status>.
    match message.as_slice() {
        [0, _, _, _, _, 0x08, status, ..] => Some(*status),
        other => panic!("unexpected health response {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_turns_not_serving_on_sigterm_and_clients_get_goaway() {
    let mut app = start("tonic", &[("LAMEDUCK_MIN_WAIT", "1500ms")]).await;
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    assert_eq!(
        check(&mut client, app.addr).await,
        Some(1),
        "SERVING while ready"
    );

    app.child.signal(Signal::SIGTERM);
    assert!(app.wait_phase("draining", Duration::from_secs(2)).await);
    // The health service reports NOT_SERVING on a fresh connection during the drain.
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut fresh, fresh_conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(fresh_conn);
    let mut status = None;
    for _ in 0..50 {
        status = check(&mut fresh, app.addr).await;
        if status == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, Some(2), "NOT_SERVING while draining");
    // The first connection was sent GOAWAY: it ends gracefully.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("GOAWAY ends it")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(app.stopped_line().starts_with("drain ended by"));
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
}
