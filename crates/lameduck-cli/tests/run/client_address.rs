//! How the app behind `lameduck run --proxy` learns the client's address: `X-Forwarded-For`
//! (HTTP), a PROXY protocol header it sends (TCP), and a PROXY protocol header it reads from a
//! load balancer in front (`--accept-proxy-protocol`, both modes; one test with a real HAProxy
//! sending it, skipped with a notice when HAProxy is missing, except under `CI=true`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use lameduck_testkit::apps::serve_forwarded_for_echo;
use lameduck_testkit::blocking_http::Conn;
use lameduck_testkit::process::{Killed, TempDir, wait_for};
use lameduck_testkit::wrapper::{Wrapper, app_addr};

/// The v2 (binary) PROXY protocol header of a TCP-over-IPv4 connection from `client` to
/// `destination`, as an AWS NLB sends it (without its optional fields).
fn v2_header(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(client), SocketAddr::V4(destination)) = (client, destination) else {
        panic!("IPv4 addresses only");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    // Version 2, PROXY command; TCP over IPv4; 12 bytes of addresses follow.
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&destination.ip().octets());
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

/// A TCP app on `app` that reports the first line of the first connection that sends one
/// (readiness checks connect without a byte), then echoes that connection's bytes.
fn first_line_echo_app(app: TcpListener) -> Receiver<String> {
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in app.incoming().take(100).flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let _ = line_tx.send(line);
            let mut writer = stream;
            let _ = std::io::copy(&mut reader, &mut writer);
            return;
        }
    });
    line_rx
}

/// `lameduck run --proxy LISTEN=<a first-line echo app> --protocol tcp FLAGS...`: sends
/// `preface` then `PING 1\r\n` lines through it, checks the echo, and returns the app's first line,
/// with the client's and the proxy's end of the client connection.
fn first_line_through_tcp_proxy(
    name: &str,
    flags: &[&str],
    preface: &[u8],
) -> (String, SocketAddr, SocketAddr) {
    let dir = TempDir::new(name);
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    let first_line = first_line_echo_app(app);
    let mut args = vec!["--protocol", "tcp"];
    args.extend_from_slice(flags);
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &args);
    let listen = wrapper.proxy_addr();
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(preface).unwrap();
    // Twice: the app echoes what follows its first line, which is this without a header.
    client.write_all(b"PING 1\r\nPING 1\r\n").unwrap();
    let mut echoed = [0_u8; 8];
    if let Err(error) = client.read_exact(&mut echoed) {
        wrapper.stop_at_once();
        panic!("no echo through the proxy: {error}: {}", wrapper.log_text());
    }
    assert_eq!(&echoed, b"PING 1\r\n");
    let line = first_line
        .recv_timeout(Duration::from_secs(5))
        .expect("the app read a first line");
    wrapper.stop_at_once();
    (line, client.local_addr().unwrap(), listen)
}

/// `--client-address none`: the proxy adds no `X-Forwarded-For`.
#[test]
fn http_mode_can_leave_the_client_address_out() {
    let dir = TempDir::new("xff-none");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    serve_forwarded_for_echo(app, Arc::new(AtomicUsize::new(0)));
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--client-address", "none"]);
    let listen = wrapper.proxy_addr();
    let response = Conn::open(listen).unwrap().get("/").unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.body.ends_with(" for="),
        "no X-Forwarded-For reached the app: {}",
        response.body
    );
    wrapper.stop_at_once();
}

/// `--client-address proxy-v1` in TCP mode: the app connection starts with a PROXY protocol
/// line naming the client and the proxy's listening end; the client's bytes follow unchanged.
#[test]
fn tcp_mode_names_the_client_in_a_proxy_protocol_header() {
    let (line, client, listen) =
        first_line_through_tcp_proxy("proxy-v1", &["--client-address", "proxy-v1"], b"");
    assert_eq!(
        line,
        format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            client.ip(),
            listen.ip(),
            client.port(),
            listen.port()
        )
    );
}

/// `--accept-proxy-protocol` in HTTP mode: `X-Forwarded-For` names the client of the
/// balancer's header, not the balancer; a connection without a header is closed unanswered.
#[test]
fn http_mode_takes_the_client_from_a_balancers_proxy_protocol_header() {
    let dir = TempDir::new("accept-proxy-http");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    serve_forwarded_for_echo(app, Arc::clone(&served));
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--accept-proxy-protocol"]);
    let listen = wrapper.proxy_addr();

    for (header, client) in [
        (
            b"PROXY TCP4 203.0.113.9 192.0.2.1 51000 443\r\n".to_vec(),
            "203.0.113.9",
        ),
        (
            v2_header(
                "198.51.100.4:40000".parse().unwrap(),
                "192.0.2.1:443".parse().unwrap(),
            ),
            "198.51.100.4",
        ),
    ] {
        let mut stream = TcpStream::connect(listen).unwrap();
        stream.write_all(&header).unwrap();
        let mut conn = Conn::from_stream(stream).unwrap();
        for _ in 0..2 {
            let response = conn.get("/").unwrap();
            assert_eq!(response.status, 200, "{}", response.body);
            assert!(
                response.body.ends_with(&format!(" for={client}")),
                "the app sees the balancer's client, on every request of the connection: {}",
                response.body
            );
        }
    }

    let before = served.load(std::sync::atomic::Ordering::SeqCst);
    let mut direct = Conn::open(listen).unwrap();
    assert!(
        direct.get("/").is_err(),
        "a request without the header is not answered"
    );
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "and does not reach the app"
    );
    let metrics = lameduck_testkit::blocking_http::get(wrapper.admin, "/metrics")
        .unwrap()
        .body;
    assert!(
        metrics.contains("\nlameduck_proxy_protocol_refused_total 1\n"),
        "the refusal is counted: {metrics}"
    );
    wrapper.stop_at_once();
    let log = wrapper.log_text();
    assert!(
        log.contains("closing a connection without a PROXY protocol header"),
        "the refusal is logged: {log}"
    );
}

/// `--accept-proxy-protocol PORT`: only the proxy on that port (the one a balancer reaches)
/// takes a header; in-cluster clients, which send none, use the other port.
#[test]
fn the_proxy_protocol_can_be_required_on_one_port_only() {
    let dir = TempDir::new("accept-proxy-port");
    let (plain, balanced) = (app_addr(), app_addr());
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    serve_forwarded_for_echo(app, Arc::new(AtomicUsize::new(0)));
    let proxies = [plain, balanced].map(|listen| format!("{listen}={upstream}"));
    // The ports from the environment variable (the flag alone is in the tests above).
    let port = balanced.port().to_string();
    let mut wrapper = Wrapper::start_with_env(
        &dir,
        &[
            "--proxy",
            &proxies[0],
            "--proxy",
            &proxies[1],
            "--",
            "sleep",
            "30",
        ],
        &[("LAMEDUCK_ACCEPT_PROXY_PROTOCOL", &port)],
    );
    wrapper.wait_ready();

    let response = Conn::open(plain).unwrap().get("/").unwrap();
    assert!(
        response.body.ends_with(" for=127.0.0.1"),
        "the in-cluster port takes no header: {}",
        response.body
    );
    let mut stream = TcpStream::connect(balanced).unwrap();
    stream
        .write_all(b"PROXY TCP4 203.0.113.9 192.0.2.1 51000 443\r\n")
        .unwrap();
    let response = Conn::from_stream(stream).unwrap().get("/").unwrap();
    assert!(
        response.body.ends_with(" for=203.0.113.9"),
        "the balanced port reads one: {}",
        response.body
    );
    assert!(
        Conn::open(balanced).unwrap().get("/").is_err(),
        "and requires it"
    );
    wrapper.stop_at_once();
}

/// `--accept-proxy-protocol` in TCP mode: the balancer's header is consumed; the app gets the
/// client it names in a header of its own (here v1 from a v2 one), or no header at all.
#[test]
fn tcp_mode_passes_on_or_strips_a_balancers_proxy_protocol_header() {
    let header = v2_header(
        "203.0.113.9:51000".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
    );
    let (line, _, _) = first_line_through_tcp_proxy(
        "accept-proxy-tcp-v1",
        &["--accept-proxy-protocol", "--client-address", "proxy-v1"],
        &header,
    );
    assert_eq!(line, "PROXY TCP4 203.0.113.9 192.0.2.1 51000 443\r\n");

    let (line, _, _) = first_line_through_tcp_proxy(
        "accept-proxy-tcp-none",
        &["--accept-proxy-protocol"],
        &header,
    );
    assert_eq!(line, "PING 1\r\n", "the header is not passed on");
}

/// HAProxy in TCP mode (as an NLB is) with `send-proxy-v2`, in front of `lameduck run --proxy
/// --accept-proxy-protocol`. HAProxy connects to lameduck from 127.0.0.9; the app must see
/// the client's 127.0.0.1 instead.
#[test]
fn a_real_haproxy_sending_the_proxy_protocol_is_understood() {
    let Some(haproxy) = crate::haproxy() else {
        return;
    };
    let dir = TempDir::new("accept-proxy-haproxy");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    serve_forwarded_for_echo(app, Arc::new(AtomicUsize::new(0)));
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--accept-proxy-protocol"]);
    let listen = wrapper.proxy_addr();

    let front = app_addr();
    let config = dir.path("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  \
             timeout server 10s\nfrontend front\n  bind {front}\n  default_backend sidecar\n\
             backend sidecar\n  server lameduck {listen} send-proxy-v2 source 127.0.0.9\n"
        ),
    )
    .unwrap();
    let haproxy = Killed(
        Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    let mut conn =
        wait_for(Duration::from_secs(10), || Conn::open(front).ok()).expect("HAProxy listening");
    let response = conn.get("/").unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.body.ends_with(" for=127.0.0.1"),
        "the client's address, not HAProxy's 127.0.0.9: {}",
        response.body
    );
    drop(haproxy);
    wrapper.stop_at_once();
}
