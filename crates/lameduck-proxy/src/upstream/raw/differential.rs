//! A differential property test: generated HTTP/1 responses, well-formed and malformed, are
//! served from loopback and read once through the raw path and once through hyper's client,
//! which the raw path replaced for bodiless requests. Both must give the same status, header
//! fields, body bytes and trailer fields, or both must refuse.
//!
//! The raw path leaves hop-by-hop fields out by design, so hyper's fields are compared after
//! [`headers::strip`], which the proxy applies to hyper's responses. Where the two differ by
//! design, [`by_design`] says so, narrowly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::RawPool;
use crate::headers;

/// How many responses are generated (each is served twice).
const CASES: u32 = 256;
/// Every exchange of the test ends within this, or the test fails.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client made of one response.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The response head was refused, or the connection ended before or in it.
    Refused,
    /// A final response head, and what came of its body.
    Response {
        status: StatusCode,
        headers: Box<HeaderMap>,
        body: Body,
    },
}

/// A response body read to its end (with its trailer fields, if any), or refused.
#[derive(Debug, PartialEq)]
enum Body {
    Whole(Bytes, Option<HeaderMap>),
    Refused,
}

/// One generated exchange: the request method and the bytes the app answers with.
#[derive(Clone)]
struct Case {
    head: bool,
    response: Vec<u8>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = if self.head { "HEAD" } else { "GET" };
        write!(f, "{method} {:?}", String::from_utf8_lossy(&self.response))
    }
}

/// Serves `response` on one connection from a listener of its own, after reading the
/// request head, then closes the connection (which ends a body read until close).
async fn serve_once(response: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(tokio::time::timeout(EXCHANGE_TIMEOUT, async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0; 1024];
        // Bounded: by the request head's end, the close, 64 KiB, or the timeout.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = socket.write_all(&response).await;
        let _ = socket.shutdown().await;
    }));
    addr
}

fn request(head: bool) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(if head { Method::HEAD } else { Method::GET })
        .uri("/generated")
        .header("host", "app.example")
        .body(Empty::new())
        .expect("a valid request")
}

fn trailers(trailers: Option<&HeaderMap>) -> Option<HeaderMap> {
    trailers.filter(|t| !t.is_empty()).cloned()
}

async fn through_raw(case: &Case) -> Outcome {
    let addr = serve_once(case.response.clone()).await;
    let pool = Arc::new(RawPool::new(addr, EXCHANGE_TIMEOUT));
    let Ok(response) = pool.send(&request(case.head)).await else {
        return Outcome::Refused;
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => {
            let trailers = trailers(collected.trailers());
            Body::Whole(collected.to_bytes(), trailers)
        }
        Err(_) => Body::Refused,
    };
    Outcome::Response {
        status: parts.status,
        headers: Box::new(parts.headers),
        body,
    }
}

async fn through_hyper(case: &Case) -> Outcome {
    let addr = serve_once(case.response.clone()).await;
    let Ok(stream) = TcpStream::connect(addr).await else {
        return Outcome::Refused;
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Outcome::Refused;
    };
    tokio::spawn(connection);
    let Ok(response) = sender.send_request(request(case.head)).await else {
        return Outcome::Refused;
    };
    let (mut parts, body) = response.into_parts();
    // What the proxy does with a response hyper read: its hop-by-hop fields go.
    headers::strip(&mut parts.headers, false);
    let body = match body.collect().await {
        Ok(collected) => {
            let trailers = trailers(collected.trailers());
            Body::Whole(collected.to_bytes(), trailers)
        }
        Err(_) => Body::Refused,
    };
    Outcome::Response {
        status: parts.status,
        headers: Box::new(parts.headers),
        body,
    }
}

/// Takes out of an outcome what the two paths may do differently by design.
///
/// - `TE` is a request field (RFC 9110 §10.1.4) with no meaning in a response.
///   [`headers::strip`] keeps `TE: trailers` (gRPC requests need it end to end), so hyper's
///   path passes it on; the raw path drops it with the other hop-by-hop fields, unless
///   `Connection` names other fields and it calls `strip` too.
fn by_design(outcome: &mut Outcome) {
    if let Outcome::Response { headers, .. } = outcome {
        headers.remove(http::header::TE);
    }
}

// ---- generated responses ----

fn status_line() -> impl Strategy<Value = Vec<u8>> {
    let valid = (
        prop::sample::select(vec!["1.1", "1.0"]),
        prop::sample::select(vec![
            200u16, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 599,
        ]),
        prop::sample::select(vec!["OK", "", "Some Reason"]),
    )
        .prop_map(|(version, code, reason)| {
            format!("HTTP/{version} {code} {reason}\r\n").into_bytes()
        });
    let malformed = prop::sample::select(vec![
        &b"HTTP/1.1 20 OK\r\n"[..],
        b"HTTP/2 200 OK\r\n",
        b"HTTP/1.1 abc OK\r\n",
        b"HTP/1.1 200 OK\r\n",
        b"HTTP/1.1 2000 OK\r\n",
        b"HTTP/1.1 099 Low\r\n",
        b"HTTP/1.1 200 O\x01K\r\n",
        b" HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\n",
        b"HTTP/1.1  200 OK\r\n",
    ])
    .prop_map(<[u8]>::to_vec);
    prop_oneof![6 => valid, 1 => malformed]
}

fn interim() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            b"HTTP/1.1 102 Processing\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        ]),
        0..3,
    )
    .prop_map(|parts| parts.concat())
}

fn fields() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            &b"Server: generated\r\n"[..],
            b"X-Dup: 1\r\n",
            b"X-Dup: 2\r\n",
            b"X-Empty:\r\n",
            b"X-Padded:   padded value   \r\n",
            b"X-Obs: caf\xe9\r\n",
            b"Keep-Alive: timeout=5\r\n",
            b"Connection: keep-alive\r\n",
            b"Connection: close\r\n",
            b"Connection: X-Dup\r\n",
            b"Proxy-Connection: keep-alive\r\n",
            b"Upgrade: h2c\r\n",
            b"TE: trailers\r\n",
            b"Trailer: x-t\r\n",
            b"Close: reserved\r\n",
            b"Bad Name: v\r\n",
            b"X-Ctl: a\x01b\r\n",
            b": no name\r\n",
            b"X-Fold: a\r\n folded\r\n",
            b"NoColon\r\n",
            b"X-Tab:\tv\r\n",
        ]),
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

/// How the body is framed, and how the framing is spoiled (if it is).
#[derive(Debug, Clone)]
enum Framing {
    /// Neither Content-Length nor Transfer-Encoding: read until the app closes.
    Close(Vec<u8>),
    /// `Content-Length` with a body `delta` bytes longer (or shorter) than declared.
    Length(Vec<u8>, i8),
    /// A `Content-Length` field (or two) with the raw value(s) given.
    OddLength(&'static str, Vec<u8>),
    /// `Transfer-Encoding` with the value given, and a chunked body.
    Chunked {
        coding: &'static str,
        chunks: Vec<Vec<u8>>,
        extensions: bool,
        trailers: Vec<&'static str>,
        spoil: Spoil,
        also_length: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum Spoil {
    None,
    BadSize,
    HugeSize,
    NoDataCrlf,
    NoLastChunk,
    NoFinalCrlf,
    UpperHex,
    Cut(u8),
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

fn framing() -> impl Strategy<Value = Framing> {
    let chunked = (
        prop::sample::select(vec![
            "chunked",
            "Chunked",
            "gzip, chunked",
            "chunked, gzip",
            "identity",
        ]),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..24), 0..4),
        any::<bool>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "x-t: 1\r\n",
                "X-U: two\r\n",
                "bad trailer\r\n",
                "content-length: 5\r\n",
            ]),
            0..3,
        ),
        prop_oneof![
            6 => Just(Spoil::None),
            1 => Just(Spoil::BadSize),
            1 => Just(Spoil::HugeSize),
            1 => Just(Spoil::NoDataCrlf),
            1 => Just(Spoil::NoLastChunk),
            1 => Just(Spoil::NoFinalCrlf),
            1 => Just(Spoil::UpperHex),
            1 => (1u8..8).prop_map(Spoil::Cut),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(coding, chunks, extensions, trailers, spoil, also_length)| Framing::Chunked {
                coding,
                chunks,
                extensions,
                trailers,
                spoil,
                also_length,
            },
        );
    prop_oneof![
        2 => body_bytes().prop_map(Framing::Close),
        4 => (body_bytes(), prop_oneof![4 => Just(0i8), 1 => -3i8..0, 1 => 1i8..4])
            .prop_map(|(body, delta)| Framing::Length(body, delta)),
        2 => (
            prop::sample::select(vec![
                "2, 2",
                "2\r\nContent-Length: 2",
                "2\r\nContent-Length: 3",
                "2, 3",
                "abc",
                "-1",
                "+2",
                "0x2",
                "18446744073709551616",
                "2,",
                "",
            ]),
            Just(b"ok".to_vec()),
        )
            .prop_map(|(value, body)| Framing::OddLength(value, body)),
        4 => chunked,
    ]
}

fn render(status: Vec<u8>, interim: Vec<u8>, fields: Vec<u8>, framing: &Framing) -> Vec<u8> {
    let mut out = interim;
    out.extend_from_slice(&status);
    out.extend_from_slice(&fields);
    match framing {
        Framing::Close(body) => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
        Framing::Length(body, delta) => {
            let declared = body.len().saturating_add_signed(isize::from(*delta));
            out.extend_from_slice(format!("Content-Length: {declared}\r\n\r\n").as_bytes());
            out.extend_from_slice(body);
        }
        Framing::OddLength(value, body) => {
            out.extend_from_slice(format!("Content-Length: {value}\r\n\r\n").as_bytes());
            out.extend_from_slice(body);
        }
        Framing::Chunked {
            coding,
            chunks,
            extensions,
            trailers,
            spoil,
            also_length,
        } => {
            out.extend_from_slice(format!("Transfer-Encoding: {coding}\r\n").as_bytes());
            if *also_length {
                out.extend_from_slice(b"Content-Length: 3\r\n");
            }
            out.extend_from_slice(b"\r\n");
            for (i, chunk) in chunks.iter().enumerate() {
                let size = match spoil {
                    Spoil::BadSize if i == 0 => "zz".to_owned(),
                    Spoil::HugeSize if i == 0 => "fffffffffffffffffff".to_owned(),
                    Spoil::UpperHex => format!("{:X}", chunk.len()),
                    _ => format!("{:x}", chunk.len()),
                };
                out.extend_from_slice(size.as_bytes());
                if *extensions {
                    out.extend_from_slice(b";name=value");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(chunk);
                if !matches!(spoil, Spoil::NoDataCrlf) || i > 0 {
                    out.extend_from_slice(b"\r\n");
                }
            }
            if !matches!(spoil, Spoil::NoLastChunk) {
                out.extend_from_slice(b"0\r\n");
                for trailer in trailers {
                    out.extend_from_slice(trailer.as_bytes());
                }
                if !matches!(spoil, Spoil::NoFinalCrlf) {
                    out.extend_from_slice(b"\r\n");
                }
            }
            if let Spoil::Cut(cut) = spoil {
                out.truncate(out.len().saturating_sub(usize::from(*cut)));
            }
        }
    }
    out
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::bool::weighted(0.15),
        status_line(),
        prop_oneof![3 => Just(Vec::new()), 1 => interim()],
        fields(),
        framing(),
    )
        .prop_map(|(head, status, interim, fields, framing)| Case {
            head,
            response: render(status, interim, fields, &framing),
        })
}

#[test]
fn the_raw_path_reads_generated_responses_as_hyper_does() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        let (raw, hyper) = runtime.block_on(async {
            let raw = tokio::time::timeout(EXCHANGE_TIMEOUT, through_raw(&case)).await;
            let hyper = tokio::time::timeout(EXCHANGE_TIMEOUT, through_hyper(&case)).await;
            (raw, hyper)
        });
        let (Ok(mut raw), Ok(mut hyper)) = (raw, hyper) else {
            return Err(TestCaseError::fail("an exchange timed out"));
        };
        by_design(&mut raw);
        by_design(&mut hyper);
        if raw != hyper {
            return Err(TestCaseError::fail(format!(
                "{case:?}:\nraw:   {raw:?}\nhyper: {hyper:?}"
            )));
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
