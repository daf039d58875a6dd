//! `--protocol auto`: each connection takes the HTTP path or the TCP splice, by its first bytes.
//!
//! A TCP splice cannot drain HTTP keep-alive connections without loss: closing an idle one races
//! with the client's next request, and only HTTP's own signals (`Connection: close`, GOAWAY)
//! avoid that. So a connection whose first bytes are an HTTP/1 request line or the h2c preface
//! goes to the HTTP server; anything else (a TLS ClientHello, a database's startup message) is
//! spliced as it is. Server-first protocols (SMTP, MySQL) send nothing until the server greets
//! them, so a connection silent for the detection timeout is spliced too: the timeout is what
//! such a protocol's greeting is delayed by, so it stays short.
//!
//! Detection peeks, never reads: whichever path a connection takes gets every byte, a PROXY
//! protocol header included. The peek is bounded in bytes (a request line longer than
//! [`REQUEST_LINE_LIMIT`] is not taken for HTTP) and in time, as Linkerd's proxy bounds its
//! own detection.
//!
//! An HTTP client sends its request as soon as it connected, so by the time the proxy accepts,
//! the request line is usually there already: the accept loop first peeks without waiting and
//! hands such a connection on at once. Only a connection whose first bytes have not arrived
//! (or not decided) gets a task that waits for them under the timeout.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use lameduck::{Listener, proxy_protocol};
use lameduck_core::Shutdown;
use nix::sys::socket::{MsgFlags, recv};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::metrics::DetectedCounters;

pub use lameduck_settings::proxy_config::DEFAULT_DETECT_TIMEOUT;

/// The longest HTTP/1 request line taken for HTTP (hyper's and Linkerd's buffers are 8 KiB).
pub const REQUEST_LINE_LIMIT: usize = 8 * 1024;

/// Methods are short tokens; a longer first word is not HTTP.
const METHOD_LIMIT: usize = 32;

/// What the accept loop's first look peeks at (on the stack): a request line up to its version
/// mostly fits. The waiting peek starts at twice this and grows to the limits.
const FIRST_PEEK: usize = 512;

/// Pause before peeking again at bytes that did not decide yet (a peek at the same bytes would
/// return at once).
const PARTIAL_RETRY: Duration = Duration::from_millis(2);

/// The h2c connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detected {
    /// An HTTP/1.x request line: the HTTP path.
    Http1,
    /// The HTTP/2 prior-knowledge preface: the HTTP path.
    H2c,
    /// A TLS record (a ClientHello): spliced; the proxy cannot read inside it.
    Tls,
    /// Bytes of another protocol: spliced.
    Other,
    /// Nothing within the detection timeout (a server-first protocol, or an idle client):
    /// spliced.
    Silent,
    /// Closed (or failed) before sending a byte: nothing to forward.
    Closed,
}

impl Detected {
    /// Every value, for metrics that render each from the start.
    pub const ALL: [Self; 6] = [
        Self::Http1,
        Self::H2c,
        Self::Tls,
        Self::Other,
        Self::Silent,
        Self::Closed,
    ];

    /// Its `protocol` label on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
            Self::Tls => "tls",
            Self::Other => "other",
            Self::Silent => "silent",
            Self::Closed => "closed",
        }
    }

    /// Whether the connection goes to the HTTP server.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http1 | Self::H2c)
    }
}

/// What the first bytes of a connection (past any PROXY header) say so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Decided.
    Is(Detected),
    /// Consistent with HTTP so far: more bytes are needed.
    NeedMore,
}

/// Classifies the first bytes a client sent. Pure, and decides as early as it can: a byte
/// that no request line has at its place makes the connection non-HTTP at once, so a
/// client-first binary protocol is spliced without waiting for the timeout.
pub(crate) fn classify(bytes: &[u8]) -> Verdict {
    let Some(&first) = bytes.first() else {
        return Verdict::NeedMore;
    };
    // The preface's first line looks like a request line of method PRI: test it first.
    let preface = bytes.len().min(H2_PREFACE.len());
    if bytes[..preface] == H2_PREFACE[..preface] {
        return if preface == H2_PREFACE.len() {
            Verdict::Is(Detected::H2c)
        } else {
            Verdict::NeedMore
        };
    }
    // A TLS handshake record.
    if first == 0x16 {
        return Verdict::Is(Detected::Tls);
    }
    request_line(bytes)
}

/// Follows `METHOD SP TARGET SP HTTP/1.d` (RFC 9112 §3) as far as `bytes` go.
fn request_line(bytes: &[u8]) -> Verdict {
    const VERSION: &[u8] = b"HTTP/1.";
    let not_http = Verdict::Is(Detected::Other);
    let method = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    if method == bytes.len() {
        return if method <= METHOD_LIMIT {
            Verdict::NeedMore
        } else {
            not_http
        };
    }
    if method == 0 || method > METHOD_LIMIT || bytes[method] != b' ' {
        return not_http;
    }
    let rest = &bytes[method + 1..];
    // The target: visible ASCII or obs-text, up to the next space.
    let target = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    if method + 1 + target > REQUEST_LINE_LIMIT {
        return not_http;
    }
    if target == rest.len() {
        return Verdict::NeedMore;
    }
    if target == 0 || rest[target] != b' ' {
        return not_http;
    }
    let version = &rest[target + 1..];
    let known = version.len().min(VERSION.len());
    if version[..known] != VERSION[..known] {
        return not_http;
    }
    match version.get(VERSION.len()) {
        None => Verdict::NeedMore,
        Some(digit) if digit.is_ascii_digit() => Verdict::Is(Detected::Http1),
        Some(_) => not_http,
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Classifies a connection's first bytes, looking past a PROXY protocol header first when
/// `proxy_header`.
fn decide(bytes: &[u8], proxy_header: bool) -> Verdict {
    if !proxy_header {
        return classify(bytes);
    }
    match proxy_protocol::parse_prefix(bytes) {
        Ok(proxy_protocol::HeaderPrefix::Complete { length, .. }) => classify(&bytes[length..]),
        Ok(proxy_protocol::HeaderPrefix::Incomplete) => Verdict::NeedMore,
        // The TCP path refuses (and counts) a connection with a bad header.
        Err(_) => Verdict::Is(Detected::Other),
    }
}

/// The accept loop's first look: what the bytes already received say, without waiting.
/// `None` when they do not decide yet (or none arrived).
fn decide_now(stream: &TcpStream, proxy_header: bool) -> Option<Detected> {
    let mut buf = [0_u8; FIRST_PEEK];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match recv(stream.as_raw_fd(), &mut buf, flags) {
        Ok(0) => Some(Detected::Closed),
        Ok(peeked) => match decide(&buf[..peeked], proxy_header) {
            Verdict::Is(detected) => Some(detected),
            Verdict::NeedMore => None,
        },
        // Nothing yet (EAGAIN), or an error the waiting peek will meet again.
        Err(_) => None,
    }
}

/// Peeks at `stream` until its first bytes (past a PROXY protocol header when
/// `proxy_header`) decide, or the client closes. The caller bounds the time.
async fn peek_until_decided(stream: &TcpStream, proxy_header: bool) -> Detected {
    let mut buf = vec![0_u8; 2 * FIRST_PEEK];
    let header_limit = if proxy_header {
        proxy_protocol::MAX_HEADER
    } else {
        0
    };
    let limit = REQUEST_LINE_LIMIT + header_limit;
    let mut seen = 0;
    // Ends by a verdict, the client's end, or the caller's timeout.
    loop {
        let peeked = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return Detected::Closed,
            Ok(peeked) => peeked,
        };
        match decide(&buf[..peeked], proxy_header) {
            Verdict::Is(detected) => return detected,
            Verdict::NeedMore if peeked == buf.len() => {
                if buf.len() >= limit {
                    return Detected::Other;
                }
                buf.resize(limit, 0);
            }
            Verdict::NeedMore => {
                if peeked == seen {
                    tokio::time::sleep(PARTIAL_RETRY).await;
                }
                seen = peeked;
            }
        }
    }
}

/// How one `auto` proxy detects.
#[derive(Debug, Clone)]
pub struct Detection {
    /// How long a connection may stay silent before it is spliced.
    pub timeout: Duration,
    /// Connections start with a PROXY protocol header: detection looks past it (and leaves it
    /// for the path the connection takes, which reads it).
    pub accept_proxy_protocol: bool,
    /// Where each connection's protocol is counted (`ProxyMetrics::detects`).
    pub counters: DetectedCounters,
}

/// The TCP splice's side of a split listener: the connections detection found not to be HTTP.
#[derive(Debug)]
pub struct SplicedListener<G> {
    connections: mpsc::UnboundedReceiver<(TcpStream, G)>,
}

impl<G: Send + Sync + 'static> Listener for SplicedListener<G> {
    type Guard = G;

    async fn accept(&mut self) -> io::Result<(TcpStream, G)> {
        match self.connections.recv().await {
            Some(connection) => Ok(connection),
            // The HTTP side is gone: it stopped accepting at Closing, as this server does.
            None => std::future::pending().await,
        }
    }
}

/// The HTTP server's side of a split listener. It accepts from the socket itself, so an HTTP
/// connection whose first bytes are there at once (most) reaches the server with no hop
/// through another task; others go to the splice, or to a detection task that waits for
/// their first bytes and sends them back here or to the splice.
#[derive(Debug)]
pub struct HttpListener<L: Listener> {
    listener: L,
    shutdown: Shutdown,
    detection: Detection,
    /// HTTP connections found by detection tasks.
    detected: mpsc::UnboundedReceiver<(TcpStream, L::Guard)>,
    to_http: mpsc::UnboundedSender<(TcpStream, L::Guard)>,
    to_tcp: mpsc::UnboundedSender<(TcpStream, L::Guard)>,
}

impl<L: Listener> Listener for HttpListener<L> {
    type Guard = L::Guard;

    /// Cancel-safe: between its awaits (the socket's accept, the channel's receive, both
    /// cancel-safe) nothing else is awaited, so a connection is never held and dropped.
    async fn accept(&mut self) -> io::Result<(TcpStream, L::Guard)> {
        // Ends by a connection for HTTP or an error; every round takes one connection.
        loop {
            let (stream, guard) = tokio::select! {
                biased;
                Some(connection) = self.detected.recv() => return Ok(connection),
                accepted = self.listener.accept() => accepted?,
            };
            match decide_now(&stream, self.detection.accept_proxy_protocol) {
                Some(detected) if detected.is_http() => {
                    note(detected, &stream, &self.detection);
                    return Ok((stream, guard));
                }
                Some(detected) => route(detected, stream, guard, &self.detection, &self.to_tcp),
                None => self.detect_later(stream, guard),
            }
        }
    }
}

impl<L: Listener> HttpListener<L> {
    /// Waits for a connection's first bytes in a task of its own, bounded by the timeout.
    fn detect_later(&self, stream: TcpStream, guard: L::Guard) {
        let pending = self.shutdown.activity().start_pending();
        let forced = self.shutdown.force_close().clone();
        let (to_http, to_tcp) = (self.to_http.clone(), self.to_tcp.clone());
        let detection = self.detection.clone();
        self.shutdown.connections().spawn(async move {
            let detect = tokio::time::timeout(
                detection.timeout,
                peek_until_decided(&stream, detection.accept_proxy_protocol),
            );
            let detected = tokio::select! {
                detected = detect => detected.unwrap_or(Detected::Silent),
                () = forced.cancelled() => return,
            };
            if detected.is_http() {
                note(detected, &stream, &detection);
                // Fails only once the server stopped accepting: the connection closes.
                let _ = to_http.send((stream, guard));
            } else {
                route(detected, stream, guard, &detection, &to_tcp);
            }
            drop(pending);
        });
    }
}

/// Splits `listener` into the side the HTTP server accepts from and the side the TCP splice
/// accepts from; run both servers.
///
/// # Guarantees
/// - Both sides stop accepting when their servers do, at Closing; a connection still being
///   detected then is closed if its server no longer accepts (as one in a closed listener's
///   backlog).
/// - A connection being detected counts as in flight, so the drain wait does not end under it.
/// - At the forced close, detection stops and the connection is dropped.
pub fn split<L: Listener>(
    shutdown: Shutdown,
    listener: L,
    detection: Detection,
) -> (HttpListener<L>, SplicedListener<L::Guard>) {
    let (to_http, detected) = mpsc::unbounded_channel();
    let (to_tcp, spliced) = mpsc::unbounded_channel();
    (
        HttpListener {
            listener,
            shutdown,
            detection,
            detected,
            to_http,
            to_tcp,
        },
        SplicedListener {
            connections: spliced,
        },
    )
}

/// Counts and debug-logs what a connection showed.
fn note(detected: Detected, stream: &TcpStream, detection: &Detection) {
    detection.counters.count(detected);
    tracing::debug!(
        peer = ?stream.peer_addr().ok(),
        protocol = detected.as_str(),
        "detected a connection's protocol"
    );
}

/// Counts and logs a connection that is not HTTP and passes it to the splice (or drops it, if
/// it closed before sending anything).
fn route<G>(
    detected: Detected,
    stream: TcpStream,
    guard: G,
    detection: &Detection,
    to_tcp: &mpsc::UnboundedSender<(TcpStream, G)>,
) {
    note(detected, &stream, detection);
    if detected != Detected::Closed {
        // Fails only once the splice stopped accepting: the connection closes.
        let _ = to_tcp.send((stream, guard));
    }
}

#[cfg(test)]
mod tests;
