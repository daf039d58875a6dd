//! `--protocol auto`: each connection's first bytes choose the HTTP path or the TCP splice.
//! Real HAProxy in TCP mode (kube-proxy's role) in front, real child processes, loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::LAMEDUCK;
use lameduck_testkit::blocking_http::{Conn, get};
use lameduck_testkit::process::{Killed, TempDir, wait_for};
use lameduck_testkit::wrapper::{Wrapper, app_addr};

/// Busy keep-alive clients, as wrk runs them: each sends its next request as soon as the
/// previous answer arrived.
const CLIENTS: usize = 8;

/// What the clients saw.
#[derive(Debug)]
struct Outcome {
    ok: usize,
    failed: usize,
    /// The wrapper's log, for the assertion messages.
    log: String,
}

fn spawn_quiet(command: &mut Command) -> Killed {
    Killed(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a child process"),
    )
}

/// One pod being deleted (`lameduck run --protocol PROTOCOL` in front of a naive app that exits
/// at once on SIGTERM) and one that stays (the demo app), behind HAProxy in TCP mode, which
/// health-checks the deleted pod's `/readyz` every 100 ms and so stops sending it new
/// connections once it drains. Connections already open stay pinned to it, as conntrack keeps
/// them on a deleted pod. Returns what busy keep-alive clients saw through the rollout.
fn roll_one_pod_behind_a_tcp_balancer(haproxy: &str, protocol: &str) -> Outcome {
    let dir = TempDir::new(&format!("detect-haproxy-{protocol}"));
    let (upstream, stays) = (app_addr(), app_addr());
    let _stays = spawn_quiet(
        Command::new(LAMEDUCK)
            .args(["demo-app", "--listen"])
            .arg(stays.to_string()),
    );
    let proxy = format!("127.0.0.1:0={upstream}");
    let up = upstream.to_string();
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--proxy",
            &proxy,
            "--protocol",
            protocol,
            "--grace",
            "12",
            "--min-wait",
            "500ms",
            "--quiet-window",
            "300ms",
            "--max-wait",
            "3s",
            "--close-timeout",
            "3s",
            "--",
            LAMEDUCK,
            "demo-app",
            "--listen",
            &up,
            "--on-sigterm",
            "exit",
        ],
    );
    let listen = wrapper.proxy_addr();
    wrapper.wait_ready();
    wait_for(Duration::from_secs(10), || get(stays, "/").ok()).expect("the staying pod serves");

    let front = app_addr();
    let config = dir.path("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 20s\n  \
             timeout server 20s\nfrontend front\n  bind {front}\n  default_backend pods\n\
             backend pods\n  balance roundrobin\n  option httpchk GET /readyz\n  \
             server deleted {listen} check port {admin_port} inter 100ms fall 1 rise 1\n  \
             server stays {stays}\n",
            admin_port = wrapper.admin.port(),
        ),
    )
    .unwrap();
    let _haproxy = spawn_quiet(Command::new(haproxy).args(["-db", "-f"]).arg(&config));
    wait_for(Duration::from_secs(10), || get(front, "/").ok()).expect("HAProxy forwards");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            std::thread::spawn(move || busy_client(front, &stop, &ok, &failed))
        })
        .collect();
    // Every client has answers on its first connection, half of them pinned to the deleted pod.
    wait_for(Duration::from_secs(10), || {
        (ok.load(Ordering::Relaxed) >= 40 * CLIENTS).then_some(())
    })
    .expect("the clients are served");
    wrapper.signal(Signal::SIGTERM);
    wrapper.wait_exit(Duration::from_secs(20));
    // Requests still reach the staying pod after the deleted one is gone.
    let after_exit = ok.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(10), || {
        (ok.load(Ordering::Relaxed) >= after_exit + 10 * CLIENTS).then_some(())
    })
    .expect("the clients are served after the rollout");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    Outcome {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        log: wrapper.log_text(),
    }
}

/// Requests back to back on one keep-alive connection, a new one after `Connection: close` or
/// a failure; a request that gets no whole answer is counted failed and not retried.
fn busy_client(front: SocketAddr, stop: &AtomicBool, ok: &AtomicUsize, failed: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let c = match &mut conn {
            Some(c) => c,
            None => match Conn::open(front) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        match c.get("/") {
            Ok(response) if response.status == 200 => {
                ok.fetch_add(1, Ordering::Relaxed);
                if response.header("connection") == Some("close") {
                    conn = None;
                }
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

/// The case that made `auto` the default: behind a TCP balancer, a TCP-mode proxy can end a
/// keep-alive connection pinned to a deleted pod only by closing it, which loses the request
/// the busy client sends on it; `auto` sees HTTP and asks each client to reconnect with
/// `Connection: close`, so none is lost.
#[test]
fn behind_a_tcp_balancer_tcp_mode_loses_busy_keep_alive_requests_and_auto_loses_none() {
    let Some(haproxy) = crate::haproxy() else {
        return;
    };
    let haproxy = haproxy.to_str().expect("utf-8 path").to_owned();

    let tcp = roll_one_pod_behind_a_tcp_balancer(&haproxy, "tcp");
    assert!(
        tcp.failed > 0,
        "pinned busy connections lose requests in TCP mode: {tcp:?}"
    );
    assert!(
        tcp.log.contains("a TCP proxy is splicing HTTP"),
        "TCP mode says HTTP would drain better:\n{}",
        tcp.log
    );

    let auto = roll_one_pod_behind_a_tcp_balancer(&haproxy, "auto");
    assert_eq!(auto.failed, 0, "auto drains HTTP without loss: {auto:?}");
    assert!(
        auto.log.contains("protocol=\"http1\""),
        "each connection's protocol is debug-logged:\n{}",
        auto.log
    );
    eprintln!(
        "failed requests of {CLIENTS} busy keep-alive clients: tcp {} of {}, auto {} of {}",
        tcp.failed,
        tcp.ok + tcp.failed,
        auto.failed,
        auto.ok + auto.failed
    );
}

/// An app that greets first (as SMTP and MySQL servers do), then echoes every byte.
fn serve_greeting_echo(app: TcpListener, connections: usize) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(connections).flatten() {
            std::thread::spawn(move || {
                let mut writer = stream;
                if writer
                    .write_all(b"220 test.example ESMTP ready\r\n")
                    .is_err()
                {
                    return;
                }
                let Ok(mut reader) = writer.try_clone() else {
                    return;
                };
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
}

/// Sends `bytes` and reads the greeting and their echo back.
fn greeted_echo(listen: SocketAddr, bytes: &[u8]) -> (String, Vec<u8>) {
    let stream = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream).write_all(bytes).unwrap();
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    let mut echoed = vec![0; bytes.len()];
    reader.read_exact(&mut echoed).unwrap();
    (greeting, echoed)
}

/// `auto` passes what it cannot drain as HTTP untouched: a server-first protocol (spliced
/// once the client stayed silent for the detection timeout), a TLS stream and a client-first
/// binary protocol (spliced at their first bytes); each choice is counted on `/metrics`.
#[test]
fn auto_passes_server_first_tls_and_binary_protocols_through_untouched() {
    let dir = TempDir::new("detect-opaque");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    // Readiness checks connect to the app too.
    serve_greeting_echo(app, 200);
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--detect-timeout", "200ms"]);
    let listen = wrapper.proxy_addr();

    // Server-first: the client waits for the greeting before it says anything.
    let stream = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert_eq!(greeting, "220 test.example ESMTP ready\r\n");
    (&stream).write_all(b"EHLO client.example\r\n").unwrap();
    let mut echoed = String::new();
    reader.read_line(&mut echoed).unwrap();
    assert_eq!(echoed, "EHLO client.example\r\n");

    // A TLS ClientHello record header, then bytes of every value.
    let mut tls = vec![0x16, 0x03, 0x01, 0x01, 0x00];
    tls.extend((0..=255_u8).cycle().take(4096));
    let (greeting, echoed) = greeted_echo(listen, &tls);
    assert_eq!(greeting, "220 test.example ESMTP ready\r\n");
    assert!(echoed == tls, "the TLS bytes pass unchanged");

    // PostgreSQL's SSLRequest: a length, then a code; binary from the first byte.
    let postgres = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let (_, echoed) = greeted_echo(listen, &postgres);
    assert_eq!(echoed, postgres);

    let metrics = get(wrapper.admin, "/metrics").unwrap().body;
    for (protocol, count) in [("silent", 1), ("tls", 1), ("other", 1), ("http1", 0)] {
        let series = format!(
            "lameduck_proxy_detected_total{{listen=\"{listen}\",protocol=\"{protocol}\"}} {count}"
        );
        assert!(metrics.contains(&series), "{series} in:\n{metrics}");
    }
    wrapper.stop_at_once();
}
