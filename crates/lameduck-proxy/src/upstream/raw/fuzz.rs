//! The raw response parser driven over bytes in memory, for the fuzz targets (feature
//! `fuzzing`). It takes the steps [`super::read_head`] and [`RawBody`](super::RawBody) take on a
//! socket, with the reads cut where the caller says, so a target can check that how a response
//! is split into reads never changes what is made of it.

use bytes::BytesMut;

use super::body::{Decoded, decode};
use super::{Framing, MAX_HEAD, parse_head};

/// What the raw path made of the bytes an app sent, up to its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOutcome {
    /// The app closed without sending a byte (the raw path then retries or reports it).
    NoAnswer,
    /// The response head was refused, or the app closed in the middle of it.
    HeadRefused,
    /// A final response head was read; see [`RawResponse::body_ok`] for the body.
    Response(RawResponse),
}

/// A final response as the raw path passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The header fields passed on (hop-by-hop ones left out), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection could carry another response after this one.
    pub reusable: bool,
    /// The body bytes passed on before the body ended or was refused.
    pub body: Vec<u8>,
    /// The trailer fields of a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// `false` if the body was refused (bad framing) or cut short by the close.
    pub body_ok: bool,
}

/// Reads from `bytes` in pieces of the given lengths (0 counts as 1), the rest in one read.
struct Reads<'a> {
    bytes: &'a [u8],
    pieces: std::slice::Iter<'a, usize>,
}

impl Reads<'_> {
    /// Appends the next read to `buf`; 0 once the bytes are all read (the app closed).
    fn read(&mut self, buf: &mut BytesMut) -> usize {
        let want = self.pieces.next().map_or(self.bytes.len(), |&n| n.max(1));
        let (now, rest) = self.bytes.split_at(want.min(self.bytes.len()));
        buf.extend_from_slice(now);
        self.bytes = rest;
        now.len()
    }
}

/// Parses `response`, the bytes an app sent before closing, as an answer to a HEAD request
/// (`head_request`) or another bodiless one, read in pieces of the lengths in `pieces`.
pub fn raw_response(response: &[u8], head_request: bool, pieces: &[usize]) -> RawOutcome {
    let mut reads = Reads {
        bytes: response,
        pieces: pieces.iter(),
    };
    let mut buf = BytesMut::new();
    let mut received = false;
    // Bounded: each turn reads at least one byte or returns.
    let head = loop {
        if !buf.is_empty() {
            received = true;
            match parse_head(&mut buf, head_request) {
                Ok(Some(head)) => break head,
                Ok(None) if buf.len() > MAX_HEAD => return RawOutcome::HeadRefused,
                Ok(None) => {}
                Err(_) => return RawOutcome::HeadRefused,
            }
        }
        if reads.read(&mut buf) == 0 {
            return if received {
                RawOutcome::HeadRefused
            } else {
                RawOutcome::NoAnswer
            };
        }
    };
    let mut response = RawResponse {
        status: head.status.as_u16(),
        headers: fields(&head.headers),
        reusable: head.reusable,
        body: Vec::new(),
        trailers: Vec::new(),
        body_ok: false,
    };
    let mut framing = head.framing;
    // Bounded: each turn consumes buffered bytes, reads at least one, or returns.
    loop {
        match decode(&mut framing, &mut buf) {
            Ok(Some(Decoded::Data(data))) => response.body.extend_from_slice(&data),
            Ok(Some(Decoded::Trailers(trailers))) => response.trailers = fields(&trailers),
            Ok(Some(Decoded::End)) => {
                response.body_ok = true;
                break;
            }
            Ok(None) => {
                if reads.read(&mut buf) == 0 {
                    response.body_ok = framing == Framing::Close;
                    break;
                }
            }
            Err(_) => break,
        }
    }
    RawOutcome::Response(response)
}

fn fields(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}
