//! Message framing through the HTTP drain proxy, against a hand-written app on loopback:
//! bodiless requests take the proxy's own HTTP/1 path, requests with a body go through hyper's
//! client, and both keep their bodies and lengths intact over one client connection. (Reuse of
//! upstream connections is asserted by the proxy's unit tests, where no idle timeout can race.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use http_body_util::{BodyExt, Full};

use lameduck_testkit::process::TempDir;
use lameduck_testkit::wrapper::Wrapper;

/// Answers by path: `POST /echo` with its body; `GET /chunked` in two chunks and a declared
/// trailer field; `HEAD /` with a length and no body; anything else until it closes the
/// connection.
fn serve_framing_app(app: TcpListener) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(50) {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream);
                for _ in 0..100 {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    for _ in 0..100 {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim_end().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let target = request_line.split_whitespace().take(2).collect::<Vec<_>>();
                    let (response, close) = match target.as_slice() {
                        ["POST", "/echo"] => {
                            let mut response =
                                format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n")
                                    .into_bytes();
                            response.extend_from_slice(&body);
                            (response, false)
                        }
                        ["GET", "/chunked"] => (
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                              trailer: x-trailer\r\n\r\n\
                              3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n"
                                .to_vec(),
                            false,
                        ),
                        ["HEAD", "/"] => (
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(),
                            false,
                        ),
                        _ => (
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close".to_vec(),
                            true,
                        ),
                    };
                    if reader.get_mut().write_all(&response).is_err() || close {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn bodies_keep_their_framing_on_both_paths_over_one_client_connection() {
    let dir = TempDir::new("framing");
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = app.local_addr().unwrap();
    serve_framing_app(app);
    let mut wrapper = Wrapper::start_proxy(&dir, upstream, &["--proxy-threads", "1"]);
    let listen = wrapper.proxy_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(listen).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let mut exchange = async |method: &str, path: &str, body: String| {
            sender.ready().await.unwrap();
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "test")
                // Lets hyper's server send trailer fields to this client.
                .header("te", "trailers")
                .body(Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status().as_u16();
            let length = response
                .headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.into_body().collect().await.unwrap();
            let trailer = body
                .trailers()
                .and_then(|trailers| trailers.get("x-trailer"))
                .map(|value| value.to_str().unwrap().to_owned());
            let body = String::from_utf8(body.to_bytes().to_vec()).unwrap();
            (status, length, body, trailer)
        };
        for round in 0..2 {
            let posted = "x".repeat(100 + round);
            let (status, _, body, _) = exchange("POST", "/echo", posted.clone()).await;
            assert_eq!((status, body), (200, posted), "POST with a body");
            let (status, _, body, trailer) = exchange("GET", "/chunked", String::new()).await;
            assert_eq!(
                (status, body.as_str(), trailer.as_deref()),
                (200, "abcdefg", Some("1")),
                "chunked GET, with its trailer field"
            );
            let (status, length, body, _) = exchange("HEAD", "/", String::new()).await;
            assert_eq!(
                (status, length.as_deref(), body.as_str()),
                (200, Some("5"), ""),
                "HEAD keeps its length and has no body"
            );
        }
        let (status, _, body, _) = exchange("GET", "/close", String::new()).await;
        assert_eq!((status, body.as_str()), (200, "until close"));
        // The app's close ended its connection only: the client's stays open.
        let (_, _, body, _) = exchange("GET", "/chunked", String::new()).await;
        assert_eq!(body, "abcdefg");
        drop(sender);
        let _ = conn.await;
    });
    wrapper.stop_at_once();
}
