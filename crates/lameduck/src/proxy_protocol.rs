//! Reading the PROXY protocol header a load balancer puts before a connection's own bytes.
//!
//! Behind an AWS NLB with proxy protocol on (or HAProxy's `send-proxy`), a connection's peer is
//! the balancer; the client's address comes first on the connection, in a v1 (text) or v2
//! (binary) header. A server told to expect the header must take no connection without one:
//! anyone reaching it directly could otherwise claim any address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lameduck_core::{Phase, Shutdown};
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a connection may take to send its header. A balancer sends it with the
/// connection's first bytes, so only a client that is not a balancer comes near this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest header taken. A v1 header is at most 107 bytes; v2 headers carry optional
/// fields (an NLB's VPC endpoint id, TLS details) that stay far below this.
pub const MAX_HEADER: usize = 4096;

/// Pause before looking again at a header that has arrived only in part (peeking at the same
/// bytes again would return at once).
const PARTIAL_RETRY: Duration = Duration::from_millis(2);

/// The addresses a header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddresses {
    /// The client, as the balancer saw it.
    pub client: SocketAddr,
    /// Where the client connected to (the balancer's address).
    pub destination: SocketAddr,
}

/// Why a connection's PROXY protocol header could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection ended without sending a byte. (One that ends after part of a header is
    /// given up on at [`HEADER_TIMEOUT`]: peeking cannot tell its end from a pause.)
    #[error("the connection closed before sending a PROXY protocol header")]
    Closed,
    /// The first bytes are not a PROXY protocol header.
    #[error("not a PROXY protocol header ({0})")]
    Invalid(String),
    /// The header does not fit in [`MAX_HEADER`] bytes.
    #[error("a PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// No complete header within [`HEADER_TIMEOUT`].
    #[error("no complete PROXY protocol header within {HEADER_TIMEOUT:?}")]
    TimedOut,
    /// The server was closing and the connection had sent no header within the first-byte grace.
    #[error("closing, and no PROXY protocol header within the first-byte grace")]
    Closing,
    /// Reading the socket failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header at the start of `stream` and consumes exactly its bytes, so whatever the
/// client sent after it is read next as the start of its own protocol.
///
/// `Ok(None)` is a valid header that names no client: a v2 `LOCAL` (the balancer's own health
/// check), a v1 `UNKNOWN`, or addresses that are not IP ones. The socket's addresses stand then.
///
/// Gives up after [`HEADER_TIMEOUT`], at the forced close, or, once Closing started, after
/// `first_byte_grace` (as a server closes a connection that sent nothing). The first failure in
/// the process is logged as a warning, since every connection failing is what a balancer that
/// does not send the header looks like; later ones at debug level. Every failure is counted in
/// `lameduck_proxy_protocol_refused_total` on `/metrics`.
pub async fn read_header(
    shutdown: &Shutdown,
    stream: &mut TcpStream,
) -> Result<Option<ProxiedAddresses>, ProxyHeaderError> {
    let closing = async {
        shutdown.lifecycle().reached(Phase::Closing).await;
        tokio::time::sleep(shutdown.config().settings().first_byte_grace).await;
    };
    let result = tokio::select! {
        read = tokio::time::timeout(HEADER_TIMEOUT, consume_header(stream)) => {
            read.unwrap_or(Err(ProxyHeaderError::TimedOut))
        }
        () = closing => Err(ProxyHeaderError::Closing),
        () = shutdown.force_close().cancelled() => Err(ProxyHeaderError::Closing),
    };
    if let Err(error) = &result {
        count_and_log_refusal(error, stream.peer_addr().ok());
    }
    result
}

/// Connections refused for want of a valid header, in this process (`/metrics`).
static REFUSED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

fn count_and_log_refusal(error: &ProxyHeaderError, peer: Option<SocketAddr>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    REFUSED.fetch_add(1, Ordering::Relaxed);
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    if WARNED.swap(true, Ordering::Relaxed) {
        tracing::debug!(%error, %peer, "closing a connection without a PROXY protocol header");
    } else {
        tracing::warn!(
            %error,
            %peer,
            "closing a connection without a PROXY protocol header (does the load balancer send \
             one? further ones are logged at debug level)"
        );
    }
}

async fn consume_header(
    stream: &mut TcpStream,
) -> Result<Option<ProxiedAddresses>, ProxyHeaderError> {
    let mut buf = vec![0_u8; MAX_HEADER];
    let mut seen = 0;
    // Ends by a header, an error, or the caller's timeout.
    loop {
        let peeked = stream.peek(&mut buf).await?;
        if peeked == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        match parse_prefix(&buf[..peeked])? {
            HeaderPrefix::Incomplete => {
                if peeked == seen {
                    tokio::time::sleep(PARTIAL_RETRY).await;
                }
                seen = peeked;
            }
            HeaderPrefix::Complete { length, addresses } => {
                stream.read_exact(&mut buf[..length]).await?;
                return Ok(addresses);
            }
        }
    }
}

/// What the first bytes of a connection show of its PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPrefix {
    /// So far a valid start of a header: more bytes are needed.
    Incomplete,
    /// A whole header of `length` bytes, naming `addresses` (see [`read_header`] for `None`).
    Complete {
        /// The header's bytes; the client's own protocol starts after them.
        length: usize,
        /// The client and destination it names, if any.
        addresses: Option<ProxiedAddresses>,
    },
}

/// Reads the PROXY protocol header at the start of `bytes` without consuming anything: the one
/// reading of a header, shared by [`read_header`] and the drain proxy's protocol detection,
/// which must look past the header at the client's first bytes.
///
/// A header still incomplete in [`MAX_HEADER`] bytes is [`ProxyHeaderError::TooLong`].
pub fn parse_prefix(bytes: &[u8]) -> Result<HeaderPrefix, ProxyHeaderError> {
    if !starts_like_a_header(bytes) {
        return Err(ProxyHeaderError::Invalid(
            "no PROXY protocol signature".to_owned(),
        ));
    }
    if v1_line_unfinished(bytes) {
        return Ok(HeaderPrefix::Incomplete);
    }
    let parsed = HeaderResult::parse(bytes);
    // A v1 line that ended is judged whole, even where ppp would wait for more.
    if parsed.is_incomplete() && !bytes.starts_with(V1_SIGNATURE) {
        return if bytes.len() >= MAX_HEADER {
            Err(ProxyHeaderError::TooLong)
        } else {
            Ok(HeaderPrefix::Incomplete)
        };
    }
    let (length, addresses) = match parsed {
        HeaderResult::V1(Ok(header)) => (header.header.len(), v1_addresses(header.addresses)),
        HeaderResult::V2(Ok(header)) => (header.len(), v2_addresses(&header)),
        HeaderResult::V1(Err(error)) => return Err(ProxyHeaderError::Invalid(error.to_string())),
        HeaderResult::V2(Err(error)) => return Err(ProxyHeaderError::Invalid(error.to_string())),
    };
    Ok(HeaderPrefix::Complete { length, addresses })
}

/// The longest v1 header line, CRLF included.
const V1_MAX: usize = 107;
/// How a v1 header begins.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// How each header version begins.
const SIGNATURES: [&[u8]; 2] = [V1_SIGNATURE, b"\r\n\r\n\0\r\nQUIT\n"];

/// Whether `bytes` begin like a v1 or v2 header (or are too few to tell).
///
/// ppp takes some other starts as the start of a v1 header (`P [...P`, whose first word is a
/// prefix of `PROXY` and ends the input), so a connection that is no balancer's could be
/// kept waiting, and one prefix of the bytes be refused where a longer one is not (found by
/// the `proxy_header` fuzz target).
fn starts_like_a_header(bytes: &[u8]) -> bool {
    SIGNATURES.iter().any(|signature| {
        let common = bytes.len().min(signature.len());
        bytes[..common] == signature[..common]
    })
}

/// Whether `bytes` start a v1 header line that has not ended yet: no CR, or a CR that is the
/// last byte, within [`V1_MAX`] bytes.
///
/// A v1 header is judged only once its line ended. ppp reads a start as a whole line, so a
/// header cut just after its source port (`PROXY TCP6 … 4000 `) read as one with an empty
/// destination port and was refused: whether a valid header was taken depended on where the
/// network split it. And a line that ended too early (`PROXY TCP4 1.2.3.4\r\n`) read as
/// incomplete, to wait for bytes that cannot mend it (both found by the `proxy_header` fuzz
/// target).
fn v1_line_unfinished(bytes: &[u8]) -> bool {
    bytes.starts_with(V1_SIGNATURE)
        && bytes.len() < V1_MAX
        && bytes
            .iter()
            .position(|&b| b == b'\r')
            .is_none_or(|cr| cr + 1 == bytes.len())
}

fn v1_addresses(addresses: ppp::v1::Addresses) -> Option<ProxiedAddresses> {
    match addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(ProxiedAddresses::from(a)),
        ppp::v1::Addresses::Tcp6(a) => Some(ProxiedAddresses::from(a)),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_addresses(header: &ppp::v2::Header<'_>) -> Option<ProxiedAddresses> {
    if header.command == ppp::v2::Command::Local {
        return None;
    }
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(ProxiedAddresses::from(a)),
        ppp::v2::Addresses::IPv6(a) => Some(ProxiedAddresses::from(a)),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    }
}

// Both header versions share these address types.
impl From<ppp::v2::IPv4> for ProxiedAddresses {
    fn from(a: ppp::v2::IPv4) -> Self {
        Self {
            client: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        }
    }
}

impl From<ppp::v2::IPv6> for ProxiedAddresses {
    fn from(a: ppp::v2::IPv6) -> Self {
        Self {
            client: (a.source_address, a.source_port).into(),
            destination: (a.destination_address, a.destination_port).into(),
        }
    }
}

#[cfg(test)]
mod tests;
