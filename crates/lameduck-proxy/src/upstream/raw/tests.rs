//! The raw HTTP/1 exchange against a scripted app on loopback: framing, reuse, interim
//! responses and connections the app closed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{Framing, RawPool, encode_head, parse_head};

/// What a scripted app saw: one entry per connection, each the request heads it read.
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

/// Serves connections one after another: the n-th gets the n-th list of raw responses, one per
/// request head it reads, and is closed after the last. Each close is reported on the channel.
async fn scripted_app(
    script: Vec<Vec<&'static str>>,
) -> (std::net::SocketAddr, Seen, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let (closed, closes) = mpsc::unbounded_channel();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        for (index, responses) in script.into_iter().enumerate() {
            let (mut socket, _) = listener.accept().await.unwrap();
            log.lock().unwrap().push(Vec::new());
            for response in responses {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0; 1];
                    if socket.read(&mut byte).await.unwrap() == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                log.lock().unwrap()[index].push(String::from_utf8(head).unwrap());
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            drop(socket);
            let _ = closed.send(index);
        }
    });
    (addr, seen, closes)
}

fn get(method: Method) -> Request<()> {
    Request::builder()
        .method(method)
        .uri("/path?q=1")
        .header("host", "app.example")
        .body(())
        .unwrap()
}

/// Sends one request and reads the whole response body.
async fn exchange(pool: &Arc<RawPool>, req: &Request<()>) -> (StatusCode, http::HeaderMap, String) {
    let response = pool.send(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn pool(addr: std::net::SocketAddr) -> Arc<RawPool> {
    Arc::new(RawPool::new(addr, Duration::from_secs(5)))
}

#[test]
fn the_request_head_is_written_as_parsed() {
    let mut out = Vec::new();
    let mut req = get(Method::GET);
    req.headers_mut()
        .append("x-forwarded-for", "10.0.0.1".parse().unwrap());
    encode_head(&req, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /path?q=1 HTTP/1.1\r\nhost: app.example\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
    );
}

/// Header fields keep their names, values and order, whether their positions fit on the stack
/// (a few fields) or not (many), and the bytes after the head stay in the buffer.
#[test]
fn a_response_head_is_parsed_whole_with_few_or_many_fields() {
    for fields in [3, 60] {
        let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        for i in 1..fields {
            head.push_str(&format!("x-field-{i}: value {i}\r\n"));
        }
        head.push_str("\r\nok");
        let mut buf = bytes::BytesMut::from(head.as_str());
        let parsed = parse_head(&mut buf, false)
            .expect("a valid head")
            .expect("a complete head");
        assert_eq!(parsed.status, StatusCode::OK);
        assert_eq!(parsed.framing, Framing::Length(2));
        assert_eq!(parsed.headers.len(), fields);
        let mut fields_in_order = parsed.headers.iter();
        let (name, _) = fields_in_order.next().unwrap();
        assert_eq!(name, "content-length");
        for (i, (name, value)) in (1..).zip(fields_in_order) {
            assert_eq!(name.as_str(), format!("x-field-{i}"));
            assert_eq!(value.to_str().unwrap(), format!("value {i}"));
        }
        assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
    }
}

#[test]
fn hop_by_hop_fields_are_left_out_of_the_parsed_head() {
    let names = |head: &str| {
        let mut buf = bytes::BytesMut::from(head);
        let parsed = parse_head(&mut buf, false).unwrap().unwrap();
        let names: Vec<String> = parsed.headers.keys().map(|n| n.to_string()).collect();
        (names, parsed.framing, parsed.reusable)
    };
    // As nginx answers: `Connection: keep-alive` names nothing beyond its own hop.
    let (fields, framing, reusable) = names(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive\r\n\
         Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(fields, ["server", "content-length"]);
    assert_eq!((framing, reusable), (Framing::Length(2), true));
    // The framing fields still decide the framing, and are still left out.
    let (fields, framing, reusable) =
        names("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    assert!(fields.is_empty(), "{fields:?}");
    assert_eq!(framing, Framing::Chunked(super::Chunk::Size));
    assert!(!reusable);
    // A field `Connection` names goes too, whether it comes before or after it.
    let (mut fields, _, _) = names(
        "HTTP/1.1 200 OK\r\nX-Before: 1\r\nConnection: keep-alive, X-Before, x-after\r\n\
         X-After: 2\r\nX-Kept: 3\r\nContent-Length: 0\r\n\r\n",
    );
    // (Removing fields from a map reorders it; only fields of one name keep their order.)
    fields.sort();
    assert_eq!(fields, ["content-length", "x-kept"]);
}

#[tokio::test]
async fn content_length_and_chunked_bodies_arrive_whole_over_one_reused_connection() {
    let (addr, seen, _closes) = scripted_app(vec![vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]])
    .await;
    let pool = pool(addr);
    let (status, headers, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(headers["content-length"], "5");
    let response = pool.send(&get(Method::GET)).await.unwrap();
    let body = response.into_body().collect().await.unwrap();
    let trailers = body.trailers().expect("the trailer fields are passed on");
    assert_eq!(trailers["x-trailer"], "t");
    assert_eq!(body.to_bytes(), "hello world");
    let (_, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!(body, "ok");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "all three requests on one connection");
    assert_eq!(seen[0].len(), 3);
    assert!(seen[0][0].starts_with("GET /path?q=1 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn responses_without_a_body_end_at_their_head_and_lengths_may_repeat() {
    let (addr, seen, _closes) = scripted_app(vec![vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\ncontent-length: 2\r\n\r\nok",
    ]])
    .await;
    let pool = pool(addr);
    let (status, headers, body) = exchange(&pool, &get(Method::HEAD)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        headers["content-length"], "5",
        "HEAD keeps the length it describes"
    );
    let (status, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let (status, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "ok"),
        "the interim 100 is skipped"
    );
    let (_, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!(body, "ok", "one length, repeated, is one length");
    assert_eq!(seen.lock().unwrap().len(), 1, "one connection for all");
}

#[tokio::test]
async fn connections_that_cannot_carry_another_response_are_not_reused() {
    let (addr, seen, _closes) = scripted_app(vec![
        // Read until the app closes.
        vec!["HTTP/1.1 200 OK\r\n\r\nuntil close"],
        vec!["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"],
        // Transfer-Encoding next to Content-Length: chunked wins, the connection is suspect.
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
        vec!["HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ])
    .await;
    let pool = pool(addr);
    let (_, _, body) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!(body, "until close");
    for _ in 0..4 {
        let (_, _, body) = exchange(&pool, &get(Method::GET)).await;
        assert_eq!(body, "ok");
    }
    assert_eq!(seen.lock().unwrap().len(), 5, "a new connection after each");
}

#[tokio::test]
async fn a_connection_the_app_closed_while_idle_is_passed_over() {
    let (addr, seen, mut closes) = scripted_app(vec![
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ])
    .await;
    let pool = pool(addr);
    exchange(&pool, &get(Method::GET)).await;
    // The app closed the pooled connection after its one response: a GET is sent again on a
    // new connection.
    assert_eq!(closes.recv().await, Some(0));
    let (status, _, _) = exchange(&pool, &get(Method::GET)).await;
    assert_eq!(status, StatusCode::OK);
    // A POST must not be sent twice: the close is seen before sending (let the reactor see it).
    assert_eq!(closes.recv().await, Some(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, _) = exchange(&pool, &get(Method::POST)).await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|requests| requests.len() == 1));
}

#[tokio::test]
async fn a_bad_or_oversized_response_head_is_an_error() {
    let huge: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n",
            "a".repeat(super::MAX_HEAD + 1)
        )
        .into_boxed_str(),
    );
    let (addr, _seen, _closes) = scripted_app(vec![
        vec!["NOT HTTP\r\n\r\n"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"],
        vec![huge],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"],
        vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nno colon\r\n\r\n",
        ],
    ])
    .await;
    let pool = pool(addr);
    for _ in 0..4 {
        assert!(pool.send(&get(Method::GET)).await.is_err());
    }
    // A body cut short by the app's close, or with a bad trailer section, ends in an error,
    // not a short success.
    for _ in 0..2 {
        let response = pool.send(&get(Method::GET)).await.unwrap();
        assert!(response.into_body().collect().await.is_err());
    }
}

/// Found by the differential test against hyper's client (`differential.rs`): a signed
/// Content-Length was taken, Transfer-Encoding in an HTTP/1.0 response was decoded as chunked,
/// and a bad Content-Length was refused where it frames nothing.
#[test]
fn content_length_and_transfer_encoding_are_read_as_hyper_reads_them() {
    let parse = |head: &str, head_request: bool| {
        let mut buf = bytes::BytesMut::from(head);
        parse_head(&mut buf, head_request).map(|parsed| parsed.map(|p| (p.framing, p.reusable)))
    };
    for refused in [
        "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2, +2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert!(parse(refused, false).is_err(), "{refused:?}");
    }
    // Content-Length frames nothing after HEAD, for 304, or next to Transfer-Encoding.
    let conflicting = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(
        parse(conflicting, true).unwrap(),
        Some((Framing::Length(0), true))
    );
    assert!(parse(conflicting, false).is_err());
    let not_modified = "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n";
    assert_eq!(
        parse(not_modified, false).unwrap(),
        Some((Framing::Length(0), true))
    );
    let chunked = "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        parse(chunked, false).unwrap(),
        Some((Framing::Chunked(super::Chunk::Size), false)),
        "chunked wins; the connection is suspect"
    );
}
