//! The drain proxy of `lameduck run --proxy`: HTTP/1.1 keep-alive, h2c, WebSocket and TCP
//! traffic through it while the wrapper drains, with real child processes, real signals (sent
//! only to processes these tests started) and real loopback sockets.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::LAMEDUCK;
use lameduck_testkit::apps::{serve_echo, serve_forwarded_for_echo};
use lameduck_testkit::blocking_http::{Conn, get};
use lameduck_testkit::process::{TempDir, event, events, wait_for};
use lameduck_testkit::wrapper::{
    NAIVE_APP_LOGGING_STOP, Wrapper, app_addr, start_proxied_demo_app,
};

#[test]
fn keep_alive_clients_get_connection_close_while_draining() {
    let dir = TempDir::new("keepalive");
    let (mut wrapper, listen) = start_proxied_demo_app(&dir);
    let mut conn = Conn::open(listen).unwrap();
    let before = conn.get("/").unwrap();
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("connection"),
        None,
        "keep-alive while serving"
    );
    assert_eq!(
        conn.get("/").unwrap().status,
        200,
        "the connection is reused"
    );

    wrapper.signal(Signal::SIGTERM);
    wait_for(Duration::from_secs(2), || {
        (wrapper.readyz() == Some(503)).then_some(())
    })
    .expect("draining");
    let during = conn
        .get("/")
        .expect("the kept-alive connection is still served");
    assert_eq!(during.status, 200);
    assert_eq!(during.header("connection"), Some("close"));
    assert!(
        conn.closed_by_server(Duration::from_secs(2)),
        "closed after the response"
    );
    let status = wrapper.wait_exit(Duration::from_secs(8));
    assert_eq!(
        status.code(),
        Some(143),
        "the naive app died of the stop signal"
    );
}

/// A WebSocket to the demo app's `/ws` through the proxy, after one message was echoed.
async fn echoed_websocket(
    listen: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{listen}/ws"))
        .await
        .expect("WebSocket through the proxy");
    ws.send(Message::Text("hello through lameduck".into()))
        .await
        .expect("send through the proxy");
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(&echo, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "hello through lameduck"),
        "{echo:?}"
    );
    ws
}

#[test]
fn h2c_and_websocket_pass_through_and_h2_gets_goaway_while_draining() {
    let dir = TempDir::new("h2ws");
    let (mut wrapper, listen) = start_proxied_demo_app(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h2_closed = runtime.block_on(async {
        use http_body_util::{BodyExt, Empty};

        let mut ws = echoed_websocket(listen).await;
        ws.close(None).await.unwrap();

        let stream = tokio::net::TcpStream::connect(listen).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2c handshake");
        let conn = tokio::spawn(conn);
        let request = http::Request::get(format!("http://{listen}/"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("h2c request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok\n");

        wrapper.signal(Signal::SIGTERM);
        // GOAWAY: the idle h2 connection ends while the proxy is still draining.
        tokio::time::timeout(Duration::from_millis(1200), conn)
            .await
            .is_ok()
    });
    assert!(
        h2_closed,
        "the h2 connection got GOAWAY and closed during Draining"
    );
    assert_eq!(wrapper.readyz(), Some(503), "still draining when h2 closed");
    wrapper.wait_exit(Duration::from_secs(8));
}

#[test]
fn a_websocket_the_stopping_app_leaves_open_ends_with_going_away() {
    let dir = TempDir::new("ws-going-away");
    let (mut wrapper, listen) = start_proxied_demo_app(&dir);
    // The naive demo app dies of the stop signal without closing its WebSockets.
    assert_stop_ends_websocket_with_going_away(&mut wrapper, listen);
}

/// Opens a WebSocket through the proxy, sends the wrapper SIGTERM and asserts the client's
/// next message is a `1001 Going Away` close frame; then waits for the wrapper to exit.
fn assert_stop_ends_websocket_with_going_away(wrapper: &mut Wrapper, listen: std::net::SocketAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ending = runtime.block_on(async {
        use futures_util::StreamExt;

        let mut ws = echoed_websocket(listen).await;
        wrapper.signal(Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(8), ws.next()).await
    });
    let Ok(Some(Ok(Message::Close(Some(frame))))) = ending else {
        panic!("expected a close frame, got {ending:?}");
    };
    assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
    wrapper.wait_exit(Duration::from_secs(8));
}

/// An app that ignores the stop signal keeps its WebSocket open until the forced close; the
/// client still gets `1001 Going Away` then, not a cut connection.
#[test]
fn a_websocket_cut_at_the_forced_close_ends_with_going_away() {
    let dir = TempDir::new("ws-forced");
    let upstream = app_addr();
    let proxy = format!("127.0.0.1:0={upstream}");
    let up = upstream.to_string();
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--proxy",
            &proxy,
            "--grace",
            "5",
            "--min-wait",
            "300ms",
            "--quiet-window",
            "200ms",
            "--close-timeout",
            "1s",
            "--",
            LAMEDUCK,
            "demo-app",
            "--listen",
            &up,
            "--on-sigterm",
            "ignore",
        ],
    );
    let listen = wrapper.proxy_addr();
    wrapper.wait_ready();
    assert_stop_ends_websocket_with_going_away(&mut wrapper, listen);
    let log = wrapper.log_text();
    assert!(
        log.contains("forced close"),
        "the WebSocket was still open at the forced close: {log}"
    );
}

/// Also: the app learns the client's address from `X-Forwarded-For`.
#[test]
fn upstream_connections_the_app_closes_are_replaced_without_failing_a_request() {
    let dir = TempDir::new("upstream-close");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    serve_forwarded_for_echo(app, Arc::clone(&served));
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--proxy-threads", "1"]);
    let listen = wrapper.proxy_addr();
    let check = |response: std::io::Result<lameduck_testkit::blocking_http::Response>,
                 what: &str| {
        let response = response.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status, 200, "{what}: {}", response.body);
        assert!(response.body.starts_with('n'), "{what}: {}", response.body);
    };
    let mut conn = Conn::open(listen).unwrap();
    let first = conn.get("/").unwrap();
    assert!(
        first.body.ends_with(" for=127.0.0.1"),
        "the app sees the client's address in X-Forwarded-For: {}",
        first.body
    );
    for i in 1..20 {
        check(conn.get("/"), &format!("sequential request {i}"));
    }
    // Ten requests at once take ten upstream connections, which all go stale together: the
    // next request finds ten closed connections in the pool before it can send.
    let mut conns: Vec<Conn> = (0..10).map(|_| Conn::open(listen).unwrap()).collect();
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        for conn in &mut conns {
            conn.send("/").unwrap();
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            check(conn.receive(), &format!("round {round}, request {i}"));
        }
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        40,
        "each request reached the app once"
    );
    wrapper.stop_at_once();
}

#[test]
fn tcp_mode_passes_an_arbitrary_byte_stream() {
    use std::io::{Read, Write};

    let dir = TempDir::new("tcp");
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = echo.local_addr().unwrap();
    serve_echo(echo, 4);
    let proxy = format!("127.0.0.1:0={upstream}");
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--proxy",
            &proxy,
            "--protocol",
            "tcp",
            "--grace",
            "6",
            "--min-wait",
            "300ms",
            "--quiet-window",
            "200ms",
            "--close-timeout",
            "2s",
            "--",
            "sleep",
            "30",
        ],
    );
    let listen = wrapper.proxy_addr();
    wrapper.wait_ready();
    let payload: Vec<u8> = (0..300_000_u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut stream = std::net::TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("echo through the proxy");
    writing.join().unwrap();
    assert!(
        received == payload,
        "{} bytes back of {}",
        received.len(),
        payload.len()
    );
    wrapper.signal(Signal::SIGTERM);
    let status = wrapper.wait_exit(Duration::from_secs(8));
    assert_eq!(status.code(), Some(143), "sleep died of the stop signal");
}

#[test]
fn no_request_that_arrived_before_closing_fails() {
    let dir = TempDir::new("inflight");
    let log = dir.path("events");
    let upstream = app_addr();
    let proxy = format!("127.0.0.1:0={upstream}");
    let (log_s, up_s) = (log.to_str().unwrap().to_owned(), upstream.to_string());
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--proxy",
            &proxy,
            "--grace",
            "9",
            "--min-wait",
            "1s",
            "--quiet-window",
            "400ms",
            "--max-wait",
            "4s",
            "--close-timeout",
            "4s",
            "--",
            "sh",
            "-c",
            NAIVE_APP_LOGGING_STOP,
            &log_s,
            LAMEDUCK,
            &up_s,
        ],
    );
    let listen = wrapper.proxy_addr();
    wrapper.wait_ready();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Keep-alive clients: reconnect when told `Connection: close`.
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            std::thread::spawn(move || {
                let mut conn = None;
                for _ in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let c = match &mut conn {
                        Some(c) => c,
                        None => conn.insert(Conn::open(listen).expect("connect while draining")),
                    };
                    match c.get("/") {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if r.header("connection") == Some("close") {
                                conn = None;
                            }
                        }
                        other => failed.lock().unwrap().push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(5), || {
        (ok.load(Ordering::Relaxed) >= 6).then_some(())
    })
    .expect("the clients are served before the drain");
    event(&log, "sigterm-sent");
    wrapper.signal(Signal::SIGTERM);
    wait_for(Duration::from_secs(5), || {
        (wrapper.readyz() == Some(503)).then_some(())
    })
    .expect("the drain starts");
    // Slow requests that are still in flight when the drain wait ends.
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let response = get(listen, "/slow?ms=1500");
                if matches!(&response, Ok(r) if r.status == 200) {
                    event(&log, "slow-ok");
                }
                response.map(|r| r.status)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let admin = wrapper.admin;
    wait_for(Duration::from_secs(5), || {
        get(admin, "/readyz")
            .ok()
            .filter(|r| r.body.starts_with("closing"))
            .map(|_| ())
    })
    .expect("reaches Closing");
    event(&log, "closing");
    for s in slow {
        assert_eq!(s.join().unwrap().expect("slow request answered"), 200);
    }
    let status = wrapper.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", wrapper.log_text());
    assert!(
        failed.lock().unwrap().is_empty(),
        "failed: {:?}",
        failed.lock().unwrap()
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    // The naive app dies the instant it gets the stop signal, so the slow requests' 200s above
    // prove it was signalled only after they were answered. Which of "slow-ok" (written by the
    // client after reading its answer) and "stop-signal" lands first is a race of a few
    // microseconds, so only their count is asserted.
    let mut logged = events(&log);
    assert_eq!(
        logged[..2],
        ["sigterm-sent", "closing"],
        "the slow requests were in flight at Closing"
    );
    logged[2..].sort();
    assert_eq!(
        logged[2..],
        ["slow-ok", "slow-ok", "slow-ok", "stop-signal"],
        "every slow request answered; the app signalled once"
    );
}

/// What the proxy fails itself never reaches the app, so the app cannot count it: the 502s it
/// answers (HTTP) and the connections it closes for want of the app (TCP) are counted on
/// `/metrics` as `lameduck_proxy_failures_total`.
#[test]
fn the_proxys_own_failures_are_counted_on_metrics() {
    use std::io::{Read, Write};

    // Readiness asks a socket that is there; the app itself (UPSTREAM) is not.
    let ready = TcpListener::bind("127.0.0.1:0").unwrap();
    let ready_url = format!("tcp://{}", ready.local_addr().unwrap());
    let failures = |wrapper: &Wrapper, listen: std::net::SocketAddr| {
        let metrics = get(wrapper.admin, "/metrics").unwrap().body;
        ["bad_gateway", "upstream_unreachable"].map(|kind| {
            let series =
                format!("lameduck_proxy_failures_total{{listen=\"{listen}\",kind=\"{kind}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .unwrap_or_else(|| panic!("no {series}in {metrics}"))
                .parse::<u64>()
                .unwrap()
        })
    };

    let dir = TempDir::new("failures-http");
    let upstream = app_addr();
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--ready-url", &ready_url]);
    let listen = wrapper.proxy_addr();
    assert_eq!(failures(&wrapper, listen), [0, 0], "zero from the start");
    // Every drain setting and the supervisor's own timing rules are on /metrics too.
    let metrics = get(wrapper.admin, "/metrics").unwrap().body;
    for series in [
        "lameduck_config_seconds{name=\"first_byte_grace\"} 1.0",
        "lameduck_config_seconds{name=\"idle_grace\"} 0.5",
        "lameduck_run_rules_seconds{rule=\"tunnels_settled_after_closing\"} 0.55",
        "lameduck_run_rules_seconds{rule=\"stop_signal_by_after_closing\"} 2.5",
        "lameduck_run_rules_seconds{rule=\"leftovers_before_sigkill\"} 1.0",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    for _ in 0..2 {
        let response = get(listen, "/").unwrap();
        assert_eq!(response.status, 502, "{}", response.body);
    }
    assert_eq!(failures(&wrapper, listen), [2, 0]);
    wrapper.stop_at_once();

    let dir = TempDir::new("failures-tcp");
    let flags = ["--protocol", "tcp", "--ready-url", &ready_url];
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &flags);
    let listen = wrapper.proxy_addr();
    let mut client = std::net::TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = client.write_all(b"hello");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed without a byte");
    assert!(
        wait_for(Duration::from_secs(5), || (failures(&wrapper, listen)
            == [0, 1])
        .then_some(()))
        .is_some(),
        "{:?}",
        failures(&wrapper, listen)
    );
    wrapper.stop_at_once();
}

/// An app with two ports, each behind its own proxy (HTTP and TCP, from `LAMEDUCK_PROXY`): both
/// are served and both drain, traffic on either keeps the drain wait going, and `/readyz` asks
/// both upstreams.
#[test]
fn two_proxies_serve_and_drain_an_app_with_two_ports() {
    use std::io::{Read, Write};

    let dir = TempDir::new("two-proxies");
    let http_app = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_upstream = http_app.local_addr().unwrap();
    serve_forwarded_for_echo(http_app, Arc::new(AtomicUsize::new(0)));
    let tcp_upstream = app_addr();
    let tcp = format!("tcp:127.0.0.1:0={tcp_upstream}");
    let http = format!("127.0.0.1:0={http_upstream}");
    // Both in the environment variable, separated by a comma (repeated --proxy flags are in
    // client_address.rs).
    let proxies = format!("{http},{tcp}");
    let mut wrapper = Wrapper::start_with_env(
        &dir,
        &[
            "--min-wait",
            "1s",
            "--quiet-window",
            "1s",
            "--",
            "sleep",
            "30",
        ],
        &[("LAMEDUCK_PROXY", &proxies)],
    );
    // The TCP port's app is not listening yet: not ready, whatever the HTTP one says.
    let refused = wait_for(Duration::from_secs(10), || {
        let readyz = get(wrapper.admin, "/readyz").ok()?;
        (readyz.status == 503 && readyz.body.contains(&tcp_upstream.to_string())).then_some(())
    });
    assert!(refused.is_some(), "{}", wrapper.log_text());
    serve_echo(TcpListener::bind(tcp_upstream).unwrap(), 100);
    wrapper.wait_ready();
    let (http_listen, tcp_listen) = match wrapper.proxy_addrs()[..] {
        [http, tcp] => (http, tcp),
        ref other => panic!("two proxies, logged {other:?}"),
    };

    let tcp_round_trip = |bytes: &[u8]| {
        let mut stream = std::net::TcpStream::connect(tcp_listen)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(bytes)?;
        let mut back = vec![0; bytes.len()];
        stream.read_exact(&mut back)?;
        std::io::Result::Ok(back)
    };
    let mut conn = Conn::open(http_listen).unwrap();
    let response = conn.get("/").unwrap();
    assert!(
        response.body.ends_with(" for=127.0.0.1"),
        "{}",
        response.body
    );
    assert_eq!(tcp_round_trip(b"serving").unwrap(), b"serving");

    wrapper.signal(Signal::SIGTERM);
    let draining = wait_for(Duration::from_secs(5), || {
        (wrapper.readyz() == Some(503)).then_some(())
    });
    assert!(draining.is_some(), "{}", wrapper.log_text());
    let response = conn.get("/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "the HTTP port drains"
    );
    assert_eq!(
        tcp_round_trip(b"draining").unwrap(),
        b"draining",
        "the TCP port still serves while draining"
    );
    // New connections on the TCP port alone, 100 ms apart, for 2.5 s: past min-wait plus the
    // quiet window (2 s), so they are served only if that port's traffic keeps the drain going.
    for round in 0..25 {
        assert!(
            tcp_round_trip(b"still").is_ok(),
            "connection {round} while draining: {}",
            wrapper.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = wrapper.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(143), "sleep died of the stop signal");
    let log = wrapper.log_text();
    assert_eq!(log.matches("drain proxy").count(), 2, "{log}");
    assert!(
        std::net::TcpStream::connect(tcp_listen).is_err()
            && std::net::TcpStream::connect(http_listen).is_err(),
        "both ports closed"
    );
}
