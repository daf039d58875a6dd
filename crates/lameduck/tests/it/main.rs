//! Behaviour of the lameduck library in real processes: the examples run as children, get real
//! signals, and are exercised over real loopback sockets.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod budget;
mod config;
mod connections;
mod gate_drain;
#[cfg(feature = "tonic")]
mod grpc;
mod probes;
mod streams;
mod tasks;

use std::net::SocketAddr;
use std::time::Duration;

use lameduck_testkit::{Child, example_path, get_once, poll_until};

/// Short drain settings so each test takes a few seconds.
const FAST: [(&str, &str); 6] = [
    ("LAMEDUCK_GRACE_SECONDS", "10"),
    ("LAMEDUCK_SAFETY_MARGIN", "1s"),
    ("LAMEDUCK_MIN_WAIT", "1s"),
    ("LAMEDUCK_QUIET_WINDOW", "500ms"),
    ("LAMEDUCK_MAX_WAIT", "5s"),
    ("LAMEDUCK_CLOSE_TIMEOUT", "3s"),
];

/// A running example with its app and admin addresses.
pub struct App {
    /// The example process.
    pub child: Child,
    /// Its app listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
}

/// Starts `example` and waits until it is ready, on ephemeral loopback ports with [`FAST`] settings overridden by `env`.
pub async fn start(example: &str, env: &[(&str, &str)]) -> App {
    let mut all: Vec<(&str, &str)> = vec![
        ("LISTEN", "127.0.0.1:0"),
        ("LAMEDUCK_ADMIN_ADDR", "127.0.0.1:0"),
    ];
    all.extend(
        FAST.iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k)),
    );
    all.extend(env);
    let mut child = Child::spawn(example_path(example), &[], &all).expect("spawn example");
    let addr = child.wait_for_addr("listening on ");
    let admin = child.wait_for_addr("admin on ");
    let app = App { child, addr, admin };
    // Like a kubelet, wait for readiness before sending traffic.
    assert!(
        app.wait_phase("serving", Duration::from_secs(10)).await,
        "never became ready"
    );
    app
}

impl App {
    /// The body of an admin endpoint and its status.
    pub async fn admin(&self, path: &str) -> (u16, String) {
        let reply = get_once(self.admin, path).await.expect("admin answers");
        (
            reply.status.as_u16(),
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    }

    /// Waits until `/livez` reports `phase` (livez answers in every phase).
    pub async fn wait_phase(&self, phase: &str, limit: Duration) -> bool {
        poll_until(limit, Duration::from_millis(10), || async {
            let (_, body) = self.admin("/livez").await;
            (body.trim() == phase).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn exit_code(&mut self, limit: Duration) -> i32 {
        let status = self
            .child
            .wait_exit(limit)
            .unwrap_or_else(|| panic!("still running; stderr:\n{}", self.child.stderr()));
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}"))
    }

    /// The `stopped: ...` line the example prints on its way out.
    pub fn stopped_line(&mut self) -> String {
        self.child
            .wait_for_line("stopped: ", Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no stopped line; stderr:\n{}", self.child.stderr()))
    }
}

/// `METHOD path` on a new connection: the status and body.
pub async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(15),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, body.to_owned())
}
