//! Serving over loopback: what a connection's service and its requests are given.

use std::convert::Infallible;
use std::future::{IntoFuture, Ready, ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{ConnectionInfo, Error, Lameduck, Serve, ShutdownReport};

/// Sends `GET /` on `client` and reads until the response ends with `suffix` (the body).
pub(crate) async fn get_ending_with(client: &mut TcpStream, suffix: &str) -> String {
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0; 1024];
    for _ in 0..100 {
        if response.ends_with(suffix.as_bytes()) {
            break;
        }
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            read > 0,
            "closed early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Answers with the peer it was made for and how many extensions the request carries.
#[derive(Clone, Default)]
struct PeerEcho {
    peer: Option<SocketAddr>,
}

impl tower::Service<Request<Incoming>> for PeerEcho {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let peer = self.peer.map_or("none".to_owned(), |peer| peer.to_string());
        let body = format!("peer={peer} extensions={}", req.extensions().len());
        ready(Ok(Response::new(body)))
    }
}

/// Serves [`PeerEcho`] per connection on a loopback port, as `configure` further sets it up.
async fn serve_peer_echo(
    configure: impl FnOnce(Serve<PeerEcho, String>) -> Serve<PeerEcho, String>,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<ShutdownReport, Error>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lameduck = Lameduck::builder()
        .admin_addr(None)
        .hard_exit(false)
        .build()
        .unwrap();
    let serve = lameduck
        .serve(listener, PeerEcho::default())
        .per_connection(|_, connection: &ConnectionInfo| {
            assert!(!connection.closing.is_closing(), "not closing yet");
            PeerEcho {
                peer: connection.peer,
            }
        });
    (addr, tokio::spawn(configure(serve).into_future()))
}

/// With `per_connection`, each connection's service is made once with the client's address,
/// and requests carry no extension of lameduck's.
#[tokio::test]
async fn a_per_connection_service_knows_its_peer_and_requests_carry_no_extensions() {
    let (addr, server) = serve_peer_echo(|serve| serve).await;

    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let expected = format!("peer={} extensions=0", client.local_addr().unwrap());
        for _ in 0..2 {
            let response = get_ending_with(&mut client, &expected).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.ends_with(&expected), "{response}");
        }
    }
    server.abort();
}

/// With `accept_proxy_protocol`, the client a PROXY header names is the connection's peer, and
/// a connection that starts without one is closed unanswered.
#[tokio::test]
async fn the_proxy_protocol_header_names_the_peer_and_is_required() {
    let (addr, server) = serve_peer_echo(Serve::accept_proxy_protocol).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n")
        .await
        .unwrap();
    let response = get_ending_with(&mut client, "peer=203.0.113.9:51000 extensions=0").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // The request itself where the header should be: no response, the connection is closed.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    assert!(
        read.is_err() || answer.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&answer)
    );
    server.abort();
}

/// An h2c connection after the PROXY header: the protocol is detected on the bytes that follow
/// the header.
#[tokio::test]
async fn h2c_after_a_proxy_protocol_header_is_served() {
    let (addr, server) = serve_peer_echo(Serve::accept_proxy_protocol).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PROXY TCP6 2001:db8::9 2001:db8::1 4000 80\r\n")
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}/"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("a response in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    for _ in 0..100 {
        let Some(chunk) = body.data().await else {
            break;
        };
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "peer=[2001:db8::9]:4000 extensions=0"
    );
    connection.abort();
    server.abort();
}
