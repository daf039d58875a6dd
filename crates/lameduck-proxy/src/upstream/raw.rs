//! Requests without a body, sent over HTTP/1.1 connections this module speaks itself.
//!
//! Most proxied requests are GETs. For them hyper's client connection was the larger part of
//! the proxy's user-space work: its dispatch channels, callback and state machine serve request
//! bodies, pipelining and upgrades a bodiless exchange does not have. Without it the proxy
//! ran 17,468 instructions per request instead of 25,620 (`bench/run/instructions.sh` at
//! ac8c5f9).
//! Here the request head is written from the parsed request in one send, the response head is
//! parsed with `httparse` (its hop-by-hop fields left out as it goes), and the response body is
//! read from the socket as the client's connection asks for it, all in the client connection's
//! task.
//!
//! The framing rules are RFC 9112's (§6.3): no body after HEAD or for 1xx/204/304; chunked
//! wins over Content-Length (and such a connection is not reused); a response with neither is
//! read until the app closes. Interim 1xx responses are skipped. Chunk extensions are dropped;
//! trailer fields are passed on, as hyper's client does. A connection goes back to the idle
//! stack only after a keep-alive HTTP/1.1 response was read to its end (see [`body`]).

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{IdleStack, UpstreamError};
use crate::headers::{self as hop, tokens};

/// The most response-head bytes read before the response is refused (hyper's default too).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response may have.
const MAX_HEADERS: usize = 100;
/// How many header fields' positions [`parse_head`] keeps on the stack.
const INLINE_FIELDS: usize = 24;
/// Reads ask the socket for at least this much room.
const READ_CHUNK: usize = 8 * 1024;

/// Idle connections to one upstream address, with the dial timeout for new ones.
pub(crate) struct RawPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: IdleStack<Box<RawConn>>,
}

/// One upstream connection and its buffers, kept across requests so they stay warm.
pub(crate) struct RawConn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding, at this point of a chunk.
    Chunked(Chunk),
    /// Until the app closes the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: expecting trailer fields or the final CRLF.
    Trailers,
}

impl RawPool {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        Self {
            addr,
            connect_timeout,
            idle: IdleStack::default(),
        }
    }

    /// Sends a bodiless request (origin-form target, `Host` set, hop-by-hop headers gone) and
    /// returns the response, whose body reads the rest from the connection.
    ///
    /// A pooled connection the app closed while it sat idle is passed over: for idempotent
    /// methods (RFC 9110 §9.2.2) by sending again when it answers nothing, for the others by
    /// looking for the close before sending, so they are never sent twice.
    pub(crate) async fn send<B>(
        self: &Arc<Self>,
        req: &Request<B>,
    ) -> Result<Response<RawBody>, UpstreamError> {
        let idempotent = req.method().is_idempotent();
        // Bounded: each turn but the last drops a pooled connection.
        for _ in 0..=super::MAX_IDLE {
            let (mut conn, pooled) = match self.idle.take() {
                Some(conn) => (conn, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            if pooled && !idempotent && closed_while_idle(&conn.stream) {
                continue;
            }
            encode_head(req, &mut conn.write);
            let exchanged = match conn.stream.write_all(&conn.write).await {
                Ok(()) => read_head(&mut conn, req.method() == Method::HEAD).await,
                Err(error) if is_closed(&error) => Ok(None),
                Err(error) => Err(error),
            };
            match exchanged {
                Ok(Some(head)) => return Ok(self.respond(conn, head)),
                Ok(None) if pooled && idempotent => {}
                Ok(None) => {
                    return Err(UpstreamError::Raw(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the app closed the connection without answering",
                    )));
                }
                Err(error) => return Err(UpstreamError::Raw(error)),
            }
        }
        Err(UpstreamError::Exhausted)
    }

    fn respond(self: &Arc<Self>, conn: Box<RawConn>, head: Head) -> Response<RawBody> {
        let mut response = Response::new(RawBody {
            conn: Some(conn),
            framing: head.framing,
            reusable: head.reusable,
            pool: Arc::clone(self),
        });
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        response
    }

    async fn connect(&self) -> Result<Box<RawConn>, UpstreamError> {
        Ok(Box::new(RawConn {
            stream: super::dial(self.addr, self.connect_timeout)
                .await
                .map_err(UpstreamError::Connect)?,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(1024),
        }))
    }
}

/// Whether the app closed (or wrote on) an idle connection, as far as the reactor has seen:
/// no system call unless the socket was marked readable.
fn closed_while_idle(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => false,
        Poll::Ready(Err(_)) => true,
        // Readable: either stale readiness from the last response (the read clears it) or
        // an end of stream, or bytes nobody asked for; only the first leaves it usable.
        Poll::Ready(Ok(())) => !matches!(
            stream.try_read(&mut [0; 1]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        ),
    }
}

/// Writes the request line and headers (the request has no body) into `out`.
fn encode_head<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed final response head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reusable: bool,
}

/// Reads until a final response head is parsed (interim 1xx ones are skipped); `None` if the
/// connection closed before any byte of a response.
async fn read_head(conn: &mut RawConn, head_request: bool) -> io::Result<Option<Head>> {
    conn.read.clear();
    let mut received = false;
    // Bounded: each turn reads at least one byte, and MAX_HEAD bytes end it.
    loop {
        if !conn.read.is_empty() {
            received = true;
            if let Some(head) = parse_head(&mut conn.read, head_request)? {
                return Ok(Some(head));
            }
            if conn.read.len() > MAX_HEAD {
                return Err(invalid("the response head is too large"));
            }
        }
        conn.read.reserve(READ_CHUNK);
        let read = match conn.stream.read_buf(&mut conn.read).await {
            Err(error) if is_closed(&error) && !received => return Ok(None),
            read => read?,
        };
        if read == 0 {
            return if received {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the app closed the connection in a response head",
                ))
            } else {
                Ok(None)
            };
        }
    }
}

/// One header field's name and value, as byte offsets (start, end) in the response head.
#[derive(Debug, Clone, Copy, Default)]
struct FieldSpan {
    name: (usize, usize),
    value: (usize, usize),
}

impl FieldSpan {
    fn name(self) -> std::ops::Range<usize> {
        self.name.0..self.name.1
    }

    fn value(self) -> std::ops::Range<usize> {
        self.value.0..self.value.1
    }
}

/// Parses a complete response head at the start of `buf` and removes it; `None` if more bytes
/// are needed. Interim (1xx) responses are removed and skipped.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> io::Result<Option<Head>> {
    // Bounded by the bytes in `buf`: each interim response removes its head.
    loop {
        // Left uninitialized: zeroing 100 slots (3 KiB) per response is work for nothing.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Complete(_)) => {
                return Err(invalid("the response head is too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(invalid(&format!("bad response head: {error}"))),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| invalid("bad response status code"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            buf.advance(len);
            continue;
        }
        let http11 = parsed.version == Some(1);
        // Where each field lies in `buf`, so the values can share the head's bytes once it is
        // split off (no allocation per value) when `parsed` no longer borrows `buf`.
        // On the stack for the usual few fields (zeroing room for all MAX_HEADERS would cost
        // more than the allocations saved).
        let mut inline = [FieldSpan::default(); INLINE_FIELDS];
        let mut heap = Vec::new();
        let spans = match parsed.headers.len() {
            fields if fields <= INLINE_FIELDS => &mut inline[..fields],
            fields => {
                heap.resize(fields, FieldSpan::default());
                &mut heap[..]
            }
        };
        let base = buf.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            (start, start + part.len())
        };
        // Hop-by-hop fields are left out of the map as it is built, unless `Connection` names
        // other fields too (or a field is called `close`): then `strip` sorts them out after.
        let mut plain = true;
        for (slot, field) in spans.iter_mut().zip(parsed.headers.iter()) {
            *slot = FieldSpan {
                name: span(field.name.as_bytes()),
                value: span(field.value),
            };
            if field.name.eq_ignore_ascii_case("connection") {
                plain &= !hop::names_other_fields(field.value);
            } else if field.name.eq_ignore_ascii_case("close") {
                plain = false;
            }
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        let mut chunked = false;
        let mut transfer_encoding = false;
        let mut length = None;
        // Why the Content-Length fields cannot frame a body. Only an error where they would
        // frame it (RFC 9112 §6.3: not after HEAD, for 204/304, or next to Transfer-Encoding),
        // as in hyper's client.
        let mut bad_length = None;
        let mut close = !http11;
        for &field in spans.iter() {
            let name = HeaderName::from_bytes(&head[field.name()])
                .map_err(|_| invalid("bad response header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(field.value()))
                .map_err(|_| invalid("bad response header value"))?;
            if name == header::TRANSFER_ENCODING {
                transfer_encoding = true;
                // Only the last coding decides whether the body is chunked.
                chunked = last_token(value.as_bytes()).eq_ignore_ascii_case(b"chunked");
                if plain {
                    continue;
                }
            } else if name == header::CONTENT_LENGTH {
                // A list of one repeated value ("5, 5") is allowed (RFC 9110 §8.6).
                for token in tokens(value.as_bytes()) {
                    match content_length(token) {
                        Some(value) if length.is_none_or(|seen| seen == value) => {
                            length = Some(value);
                        }
                        Some(_) => {
                            bad_length.get_or_insert("conflicting Content-Length values");
                        }
                        None => {
                            bad_length.get_or_insert("bad Content-Length");
                        }
                    }
                }
            } else if name == header::CONNECTION {
                close |= has_token(value.as_bytes(), b"close");
                if !http11 && has_token(value.as_bytes(), b"keep-alive") {
                    close = false;
                }
                if plain {
                    continue;
                }
            } else if plain && hop::is_hop_by_hop(&name) {
                continue;
            }
            headers.append(name, value);
        }
        if !plain {
            hop::strip(&mut headers, false);
        }
        let no_body =
            head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing = if no_body {
            Framing::Length(0)
        } else if transfer_encoding && !http11 {
            // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112 §6.1), as
            // hyper's client finds too (the differential test compares the two).
            return Err(invalid("Transfer-Encoding in an HTTP/1.0 response"));
        } else if transfer_encoding {
            // Content-Length next to Transfer-Encoding is ignored (and suspect): no reuse.
            close |= length.is_some() || bad_length.is_some() || !chunked;
            if chunked {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::Close
            }
        } else if let Some(message) = bad_length {
            return Err(invalid(message));
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::Close
        };
        return Ok(Some(Head {
            status,
            headers,
            reusable: !close && framing != Framing::Close,
            framing,
        }));
    }
}

/// A Content-Length value: digits only (RFC 9110 §8.6), so not `+2`, which `u64::from_str`
/// takes (found by the differential test against hyper's client).
fn content_length(token: &[u8]) -> Option<u64> {
    if token.is_empty() {
        return None;
    }
    token.iter().try_fold(0u64, |length, &digit| {
        digit
            .is_ascii_digit()
            .then_some(())
            .and_then(|()| length.checked_mul(10))
            .and_then(|length| length.checked_add(u64::from(digit - b'0')))
    })
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token(value: &[u8]) -> &[u8] {
    tokens(value).next_back().unwrap_or_default()
}

/// Whether an error says the app closed the connection (a pooled one may have been closed
/// while it sat idle).
fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

mod body;
#[cfg(test)]
mod differential;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
#[cfg(test)]
mod tests;

pub(crate) use body::RawBody;
