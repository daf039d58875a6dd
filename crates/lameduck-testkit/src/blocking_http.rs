//! A blocking HTTP/1.1 client that writes requests by hand and reads responses as they come, so
//! a test sees what the server did to the connection (`Connection: close`, a close after the
//! response) where a pooled client would hide it. Bodies framed by Content-Length or chunked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The most chunks (or trailer lines) one response may have.
const MAX_CHUNKS: usize = 100_000;

fn eof() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
}

/// One HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl Response {
    /// The first field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client connection (raw, so `Connection: close` is visible).
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr` (at most 2 s; reads time out after 10 s).
    pub fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Self::from_stream(TcpStream::connect_timeout(&addr, Duration::from_secs(2))?)
    }

    /// A connection opened (and perhaps written to) by the test itself.
    pub fn from_stream(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends `GET path` and reads the response.
    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.read_response()
    }

    /// Sends `GET path` without waiting for the response (read it with [`Conn::receive`]).
    pub fn send(&mut self, path: &str) -> std::io::Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())
    }

    /// Reads the response to a request sent with [`Conn::send`].
    pub fn receive(&mut self) -> std::io::Result<Response> {
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(eof());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(eof());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let chunked = header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
        let body = if chunked {
            self.read_chunked()?
        } else {
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            body
        };
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// A chunked body (RFC 9112 §7.1): chunks until the last, then trailer lines until an
    /// empty one. At most [`MAX_CHUNKS`] chunks, so a broken server cannot keep a test here.
    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        for _ in 0..MAX_CHUNKS {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(eof());
            }
            let size = line.trim_end().split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailer fields, up to the empty line that ends the message.
                for _ in 0..MAX_CHUNKS {
                    line.clear();
                    if self.reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
                return Err(std::io::Error::other("endless trailer"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            let mut crlf = [0_u8; 2];
            self.reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(std::io::Error::other("chunk data not followed by CRLF"));
            }
        }
        Err(std::io::Error::other(format!(
            "more than {MAX_CHUNKS} chunks"
        )))
    }

    /// Whether the server closed the connection (reads EOF within `limit`).
    pub fn closed_by_server(&mut self, limit: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(limit));
        let mut byte = [0_u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    Conn::open(addr)?.get(path)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// Serves `response` to the first connection and returns the client's reading of it.
    fn read(response: &'static str) -> std::io::Result<Response> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept()?;
            let mut request = [0_u8; 1024];
            let _ = stream.read(&mut request)?;
            stream.write_all(response.as_bytes())
        });
        let result = get(addr, "/");
        server.join().expect("server thread")?;
        result
    }

    #[test]
    fn chunked_and_length_framed_bodies_are_read_whole() {
        let chunked = read(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n\
             7\r\n, world\r\n0\r\ngrpc-status: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, "hello, world");
        let sized = read("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((sized.status, sized.body.as_str()), (404, "no"));
        assert!(read("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel").is_err());
    }
}
