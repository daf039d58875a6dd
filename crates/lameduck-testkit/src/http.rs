//! HTTP clients that show what the server did: headers, connection closes, GOAWAY.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A response, read to its end.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// Whether the server asked to close the connection after this response.
    pub fn says_close(&self) -> bool {
        self.headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("close")))
    }
}

/// One HTTP/1.1 keep-alive connection.
pub struct Http1Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: JoinHandle<Result<(), hyper::Error>>,
    addr: SocketAddr,
}

impl Http1Conn {
    /// Connects to `addr`.
    pub async fn connect(
        addr: SocketAddr,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        Ok(Self {
            sender,
            driver,
            addr,
        })
    }

    /// Sends `GET path` on this connection and reads the whole response.
    pub async fn get(
        &mut self,
        path: &str,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        self.sender.ready().await?;
        let req = Request::get(path)
            .header("host", self.addr.to_string())
            .body(Empty::new())?;
        let response = self.sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Whether the server closed the connection (hyper's connection task ended).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished() || self.sender.is_closed()
    }
}

/// `GET path` on a new connection.
pub async fn get_once(
    addr: SocketAddr,
    path: &str,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    Http1Conn::connect(addr).await?.get(path).await
}

/// A plain TCP connection that sends nothing (a client that never sends its first byte).
pub async fn raw_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect(addr).await
}
