//! Both reference splices pass bytes both ways unchanged, over several connections at once, and
//! hold data back (instead of losing it) when the receiving side reads slower than it arrives.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use lameduck_testkit::Child;

/// More than the splices' buffers and the sockets' kernel buffers together, so the echo's
/// replies back up while the client is still sending.
const LARGE: usize = 8 * 1024 * 1024;

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

fn start(event_loop: &str, upstream: SocketAddr) -> (Child, SocketAddr) {
    let upstream = upstream.to_string();
    let args = [
        "--loop",
        event_loop,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--threads",
        "2",
    ];
    let mut child =
        Child::spawn(env!("CARGO_BIN_EXE_bare-splice"), &args, &[]).expect("spawn bare-splice");
    let address = child.wait_for_addr("listening on ");
    (child, address)
}

/// Sends `payload` through `address` and returns what came back, reading while it sends.
fn round_trip(address: SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect to the splice");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let expected = payload.len();
    let sender = thread::spawn(move || writer.write_all(&payload));
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

fn passes_bytes_unchanged(event_loop: &str) {
    let connections = 4;
    let (_splice, address) = start(event_loop, echo_server(connections));
    let clients: Vec<_> = (0..connections)
        .map(|n| {
            let seed = u8::try_from(n).expect("few connections");
            // The first carries a large payload, the others small ones at the same time.
            let len = if n == 0 { LARGE } else { 1000 };
            thread::spawn(move || {
                let sent = payload(len, seed);
                (round_trip(address, sent.clone()), sent)
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
    passes_bytes_unchanged("epoll");
}

#[test]
fn tokio_splice_passes_bytes_unchanged() {
    passes_bytes_unchanged("tokio");
}

#[test]
fn an_address_in_use_is_one_message_and_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    for event_loop in ["epoll", "tokio"] {
        let args = [
            "--loop",
            event_loop,
            "--listen",
            &address,
            "--upstream",
            &address,
        ];
        let mut child =
            Child::spawn(env!("CARGO_BIN_EXE_bare-splice"), &args, &[]).expect("spawn bare-splice");
        let status = child
            .wait_exit(Duration::from_secs(20))
            .expect("bare-splice exits");
        assert_eq!(status.code(), Some(1), "{event_loop}: exit code");
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
            "{event_loop}: {stderr}"
        );
    }
}
