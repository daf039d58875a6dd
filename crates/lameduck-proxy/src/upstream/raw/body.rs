//! The response body of the short path: decoded from the upstream connection's buffer as the
//! client's connection asks for it, by the framing the response head announced.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::{Chunk, Framing, MAX_HEAD, MAX_HEADERS, READ_CHUNK, RawConn, RawPool, invalid};

/// A response body read from its upstream connection; the connection goes back to the pool
/// when the body was read to its end on a connection that may be reused.
pub(crate) struct RawBody {
    /// `None` once the body ended.
    pub(super) conn: Option<Box<RawConn>>,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
    pub(super) pool: Arc<RawPool>,
}

/// The next piece of body from the buffered bytes, by `framing` (which it advances);
/// `Ok(None)` when more must be read. No I/O, so the fuzz targets drive it over bytes in memory.
pub(super) fn decode(framing: &mut Framing, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
    // Bounded: each turn consumes bytes from `buf` or returns.
    loop {
        match *framing {
            Framing::Length(0) => return Ok(Some(Decoded::End)),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                *framing = Framing::Length(left - take as u64);
                return Ok(Some(Decoded::Data(buf.split_to(take).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Decoded::Data(buf.split().freeze())));
            }
            Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((len, 0))) => {
                    buf.advance(len);
                    *framing = Framing::Chunked(Chunk::Trailers);
                }
                Ok(httparse::Status::Complete((len, size))) => {
                    buf.advance(len);
                    *framing = Framing::Chunked(Chunk::Data(size));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
                _ => return Err(invalid("bad chunk size line")),
            },
            Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - take as u64;
                *framing = Framing::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                return Ok(Some(Decoded::Data(buf.split_to(take).freeze())));
            }
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = Framing::Length(0);
                    continue;
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let (len, trailers) = match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => (len, trailer_map(fields)?),
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                        return Ok(None);
                    }
                    Ok(httparse::Status::Partial) => {
                        return Err(invalid("trailer section too large"));
                    }
                    Err(error) => {
                        return Err(invalid(&format!("bad trailer section: {error}")));
                    }
                };
                buf.advance(len);
                *framing = Framing::Length(0);
                return Ok(Some(Decoded::Trailers(trailers)));
            }
        }
    }
}

impl RawBody {
    /// Ends the body: the connection is reused if the exchange left it clean.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.read.is_empty() {
                self.pool.idle.put(conn);
            }
        }
    }
}

/// What [`decode`] found next in the buffer.
pub(super) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields of a chunked body.
    Trailers(HeaderMap),
    /// The end of the body.
    End,
}

/// The trailer fields of a chunked body, as hyper's client would pass them on.
fn trailer_map(fields: &[httparse::Header<'_>]) -> io::Result<HeaderMap> {
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| invalid("bad trailer field name"))?;
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| invalid("bad trailer field value"))?;
        trailers.append(name, value);
    }
    Ok(trailers)
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        // Bounded: each turn reads at least one byte from the socket or returns.
        loop {
            let Some(mut conn) = this.conn.take() else {
                return Poll::Ready(None);
            };
            let decoded = decode(&mut this.framing, &mut conn.read);
            this.conn = Some(conn);
            match decoded {
                Ok(Some(Decoded::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Some(Decoded::Trailers(trailers))) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Some(Decoded::End)) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.read.reserve(READ_CHUNK);
            let read = ready!(poll_read_buf(&conn.stream, cx, &mut conn.read));
            match read {
                Ok(0) if this.framing == Framing::Close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the app closed the connection in a response body",
                    ))));
                }
                Ok(_) => {}
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing == Framing::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RawBody {
    fn drop(&mut self) {
        // hyper may drop a body it saw end (is_end_stream) without polling it to None.
        if self.framing == Framing::Length(0) {
            self.finish();
        }
    }
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBody")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// Reads what the socket has into `buf`, waiting for readiness if it has nothing.
fn poll_read_buf(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    // Bounded: readiness that turns out stale is cleared by the failed read.
    for _ in 0..8 {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read_buf(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}
