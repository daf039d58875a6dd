//! Small apps a test serves itself on a listener it bound, behind a drain proxy.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An HTTP/1.1 app on `app` that answers every request with `n<count> for=<X-Forwarded-For>`,
/// counting requests in `served`. Its keep-alive timeout is short: it closes a connection idle
/// for 200ms, so pooled connections go stale while a proxy still holds them.
pub fn serve_forwarded_for_echo(app: TcpListener, counter: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut pending = Vec::new();
                let mut buf = [0_u8; 1024];
                for _ in 0..1000 {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return, // closed, or idle for 200ms
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    let forwarded_for = head
                        .lines()
                        .find_map(|line| line.strip_prefix("x-forwarded-for:"))
                        .map(|value| value.trim().to_owned())
                        .unwrap_or_default();
                    pending.drain(..end + 4);
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let body = format!("n{n} for={forwarded_for}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A TCP app on `app` that echoes the bytes of its first `connections` connections.
pub fn serve_echo(app: TcpListener, connections: usize) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(connections).flatten() {
            std::thread::spawn(move || {
                let Ok(mut reader) = stream.try_clone() else {
                    return;
                };
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
}
