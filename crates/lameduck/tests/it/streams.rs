//! Streams and upgraded connections: handlers see the closing signal first; stubborn ones are
//! cut at the deadline.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lameduck_testkit::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::start;

/// Opens `GET /sse` and returns the socket after the response head.
async fn open_sse(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0_u8; 512];
    let n = stream.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    stream
}

/// Reads until EOF or error (bounded), returning what arrived.
async fn read_to_end(mut stream: tokio::net::TcpStream, limit: Duration) -> String {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut all))
        .await
        .expect("stream ended in time");
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_websocket_handlers_see_the_closing_signal_and_finish() {
    let mut app = start("axum", &[("LAMEDUCK_MIN_WAIT", "500ms")]).await;
    let sse = open_sse(app.addr).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let metrics = app.admin("/metrics").await.1;
    assert!(
        metrics.contains("lameduck_open_connections{protocol=\"upgraded\"} 1"),
        "{metrics}"
    );

    app.child.signal(Signal::SIGTERM);
    let sse_text = read_to_end(sse, Duration::from_secs(8)).await;
    assert!(
        sse_text.contains("event: bye"),
        "the stream ended with its goodbye: {sse_text}"
    );
    let mut close = None;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(8), ws.next())
            .await
            .expect("ws message in time")
        {
            Some(Ok(Message::Close(frame))) => {
                close = frame;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(
        close.map(|f| u16::from(f.code)),
        Some(1001),
        "websocket closed with going-away"
    );

    let stopped = app.stopped_line();
    assert!(stopped.ends_with("forced connections 0"), "{stopped}");
    assert_eq!(app.exit_code(Duration::from_secs(10)), 0);
    let stderr = app.child.stderr();
    assert!(
        stderr.contains("sse handler saw the closing signal"),
        "{stderr}"
    );
    assert!(
        stderr.contains("websocket handler saw the closing signal"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stubborn_streams_websockets_handlers_and_tasks_are_cut_before_the_grace_ends() {
    // grace 6 s, margin 1 s: the process must be gone 5 s (+ watchdog slack) after SIGTERM.
    let mut app = start(
        "stubborn",
        &[
            ("LAMEDUCK_GRACE_SECONDS", "6"),
            ("LAMEDUCK_MIN_WAIT", "500ms"),
            ("LAMEDUCK_CLOSE_TIMEOUT", "2s"),
        ],
    )
    .await;
    let sse = open_sse(app.addr).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .unwrap();
    ws.send(Message::text("anyone?")).await.unwrap();
    let mut hang = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    hang.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    app.child.signal(Signal::SIGTERM);
    let status = app
        .child
        .wait_exit(Duration::from_secs(6))
        .expect("exited before the grace period ran out");
    let exited = signalled.elapsed();
    assert!(
        exited < Duration::from_secs(6),
        "exited {exited:?} after SIGTERM, at or past SIGKILL time"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "stopped by its own shutdown, not by the watchdog"
    );
    let stopped = app.stopped_line();
    assert!(stopped.contains("forced connections 3"), "{stopped}");
    assert!(
        stopped.contains("abandoned tasks [\"ignores-its-token\"]"),
        "{stopped}"
    );
    // Every stubborn connection was shut by the server.
    let _ = read_to_end(sse, Duration::from_secs(2)).await;
    let _ = read_to_end(hang, Duration::from_secs(2)).await;
    let ws_end = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("websocket cut");
    assert!(!matches!(ws_end, Some(Ok(Message::Text(_)))), "{ws_end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let mut app = start(
        "stubborn",
        &[
            ("LAMEDUCK_MIN_WAIT", "20s"),
            ("LAMEDUCK_MAX_WAIT", "20s"),
            ("LAMEDUCK_GRACE_SECONDS", "30"),
        ],
    )
    .await;
    app.child.signal(Signal::SIGTERM);
    assert!(app.wait_phase("draining", Duration::from_secs(2)).await);
    app.child.signal(Signal::SIGINT);
    // 128 + SIGINT, long before the 20 s drain wait would have ended.
    assert_eq!(app.exit_code(Duration::from_secs(5)), 130);
}
