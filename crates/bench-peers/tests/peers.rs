//! The reference proxies forward what they are given: both splices pass bytes both ways
//! unchanged, over several connections at once, and hold data back (instead of losing it) when
//! the receiving side reads slower than it arrives; the hyper proxy forwards requests on kept
//! connections with `X-Forwarded-For` appended.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use lameduck_testkit::{Child, Http1Conn};

/// More than the kernel holds for a socket whose reader is not reading (the proxy's send buffer
/// grows to at most 4 MiB here, the reader's receive buffer only grows as it reads), so the
/// echo's replies back up in the splice while the client holds off reading.
const LARGE: usize = 8 * 1024 * 1024;
/// How long the client of the large payload holds off reading: time for the replies to fill the
/// path back to it, so the splice finds its client-side socket full and must hold data back.
/// Checked by hand with a build that logs when it does; reading at once, it did not.
const HOLD_READS: Duration = Duration::from_millis(300);

/// An echo server on loopback that serves `connections` connections, then stops.
fn echo_server(connections: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let address = listener.local_addr().expect("echo address");
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buffer = [0_u8; 64 * 1024];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

fn start(kind: &str, upstream: SocketAddr) -> (Child, SocketAddr) {
    let upstream = upstream.to_string();
    let args = [
        "--kind",
        kind,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--threads",
        "2",
    ];
    let mut child =
        Child::spawn(env!("CARGO_BIN_EXE_bare-proxy"), &args, &[]).expect("spawn bare-proxy");
    let address = child.wait_for_addr("listening on ");
    (child, address)
}

/// Sends `payload` through `address` and returns what came back, reading while it sends (after
/// `hold_reads`).
fn round_trip(address: SocketAddr, payload: Vec<u8>, hold_reads: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect to the splice");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let expected = payload.len();
    let sender = thread::spawn(move || writer.write_all(&payload));
    thread::sleep(hold_reads);
    let mut received = Vec::with_capacity(expected);
    let mut buffer = [0_u8; 64 * 1024];
    while received.len() < expected {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
    sender.join().expect("sender thread").expect("send payload");
    let _ = stream.shutdown(Shutdown::Both);
    received
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn passes_bytes_unchanged(kind: &str) {
    let connections = 4;
    let (_splice, address) = start(kind, echo_server(connections));
    let clients: Vec<_> = (0..connections)
        .map(|n| {
            let seed = u8::try_from(n).expect("few connections");
            // The first carries a large payload and reads late, the others small ones at the
            // same time.
            let (len, hold) = if n == 0 {
                (LARGE, HOLD_READS)
            } else {
                (1000, Duration::ZERO)
            };
            thread::spawn(move || {
                let sent = payload(len, seed);
                (round_trip(address, sent.clone(), hold), sent)
            })
        })
        .collect();
    for (n, client) in clients.into_iter().enumerate() {
        let (received, sent) = client.join().expect("client thread");
        assert_eq!(received.len(), sent.len(), "connection {n}: bytes echoed");
        assert!(received == sent, "connection {n}: echoed bytes differ");
    }
}

#[test]
fn epoll_loop_passes_bytes_unchanged() {
    passes_bytes_unchanged("epoll-splice");
}

#[test]
fn tokio_splice_passes_bytes_unchanged() {
    passes_bytes_unchanged("tokio-splice");
}

#[test]
fn an_address_in_use_is_one_message_and_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    for kind in ["epoll-splice", "tokio-splice", "hyper-http"] {
        let args = ["--kind", kind, "--listen", &address, "--upstream", &address];
        let mut child =
            Child::spawn(env!("CARGO_BIN_EXE_bare-proxy"), &args, &[]).expect("spawn bare-proxy");
        let status = child
            .wait_exit(Duration::from_secs(20))
            .expect("bare-proxy exits");
        assert_eq!(status.code(), Some(1), "{kind}: exit code");
        // The reader of the child's stderr may still be copying the last of it.
        let mut stderr = child.stderr();
        for _ in 0..100 {
            if !stderr.is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
            stderr = child.stderr();
        }
        assert!(
            stderr.contains(&format!("cannot listen on {address}")),
            "{kind}: {stderr}"
        );
    }
}

/// An HTTP/1 app on loopback that answers every request on a kept connection with its path and
/// the `X-Forwarded-For` it received.
fn http_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind app");
    let address = listener.local_addr().expect("app address");
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { return };
            thread::spawn(move || answer_requests(stream));
        }
    });
    address
}

fn answer_requests(mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut buffer = [0_u8; 4096];
    // Bounded: a test sends a handful of requests per connection.
    for _ in 0..1000 {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("?").to_owned();
        let forwarded = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|(_, value)| value.trim().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        let body = format!("{path} {forwarded}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn hyper_proxy_forwards_requests_on_a_kept_connection() {
    let (_proxy, address) = start("hyper-http", http_app());
    let mut connection = Http1Conn::connect(address)
        .await
        .expect("connect to the proxy");
    for path in ["/first", "/second?x=1"] {
        let reply = connection.get(path).await.expect("a reply");
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, format!("{path} 127.0.0.1"), "{path}");
    }
    assert!(!connection.is_closed(), "the client connection is kept");
}
