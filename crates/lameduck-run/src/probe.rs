//! A tiny HTTP/TCP client for probes: `/readyz` checks of the app, `lameduck probe`, and
//! `lameduck wait` (which asks the running wrapper to drain).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Response bodies are read up to this size (for messages, not data).
const MAX_BODY: usize = 64 * 1024;

pub use lameduck_settings::app::Target;

/// Why a probe or request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting failed.
    #[error("cannot connect to {authority}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("no answer from {target} within {timeout:?}")]
    Timeout {
        /// What was probed.
        target: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request to {target} failed")]
    Http {
        /// What was requested.
        target: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer was not a success.
    #[error("{target} answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// What was requested.
        target: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
}

/// Probes `target` once: `Ok` if it is healthy, within `timeout`.
pub async fn check(target: &Target, timeout: Duration) -> Result<(), ProbeError> {
    let work = async {
        match target {
            Target::Tcp { authority } => connect(authority).await.map(drop),
            Target::Http { authority, path } => {
                let (status, body) = request(authority, Method::GET, path).await?;
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(ProbeError::Status {
                        target: target.to_string(),
                        status,
                        body: first_line(&body),
                    })
                }
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout {
            target: target.to_string(),
            timeout,
        })?
}

/// Asks the `lameduck run` whose admin endpoints listen on `admin` to start draining, and waits
/// until its drain wait is over (`POST /drain?wait=true`). Returns its answer.
pub async fn request_drain(admin: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let authority = admin.to_string();
    let target = format!("http://{authority}/drain?wait=true");
    let work = async {
        let (status, body) = request(&authority, Method::POST, "/drain?wait=true").await?;
        if status.is_success() {
            Ok(body.trim().to_owned())
        } else {
            Err(ProbeError::Status {
                target: target.clone(),
                status,
                body: first_line(&body),
            })
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout {
            target: target.clone(),
            timeout,
        })?
}

async fn connect(authority: &str) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(authority)
        .await
        .map_err(|source| ProbeError::Connect {
            authority: authority.to_owned(),
            source,
        })
}

async fn request(
    authority: &str,
    method: Method,
    path: &str,
) -> Result<(StatusCode, String), ProbeError> {
    let target = format!("http://{authority}{path}");
    let http_err = |source: Box<dyn std::error::Error + Send + Sync>| ProbeError::Http {
        target: target.clone(),
        source,
    };
    let stream = connect(authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_err(e.into()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("lameduck/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_err(e.into()))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| http_err(e.into()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(http_err)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn first_line(body: &str) -> String {
    body.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}
