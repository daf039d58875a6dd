//! A tiny HTTP/TCP client for probes: `/readyz` checks of the app, `lameduck probe`, and
//! `lameduck wait` (which asks the running wrapper to drain).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Response bodies are read up to this size (for messages, not data).
const MAX_BODY: usize = 64 * 1024;

/// What to probe: `http://host:port/path` (2xx and 3xx are healthy, as for Kubernetes
/// httpGet probes) or `tcp://host:port` (healthy if a connection opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTP GET.
    Http {
        /// `host:port` to connect to and to send as Host.
        authority: String,
        /// Path and query.
        path: String,
    },
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        authority: String,
    },
}

impl FromStr for Target {
    type Err = ProbeError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ProbeError::Target {
            value: value.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = value.trim().parse().map_err(|_| bad("not a URL"))?;
        let authority = uri.authority().ok_or_else(|| bad("no host:port"))?;
        let port = authority.port_u16();
        match uri.scheme_str() {
            Some("http") => Ok(Self::Http {
                authority: format!("{}:{}", authority.host(), port.unwrap_or(80)),
                path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            }),
            Some("tcp") => {
                let port = port.ok_or_else(|| bad("tcp:// needs a port"))?;
                Ok(Self::Tcp {
                    authority: format!("{}:{port}", authority.host()),
                })
            }
            Some("https") => Err(bad(
                "https is not supported: probe the plain-HTTP port, or use tcp://",
            )),
            _ => Err(bad("use http://host:port/path or tcp://host:port")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { authority, path } => write!(f, "http://{authority}{path}"),
            Self::Tcp { authority } => write!(f, "tcp://{authority}"),
        }
    }
}

/// Why a probe or request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The target does not parse.
    #[error("{value:?} is not a probe target: {why}")]
    Target {
        /// The value as given.
        value: String,
        /// What is wrong.
        why: String,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "http://127.0.0.1:8080/healthz?x=1"
                .parse::<Target>()
                .unwrap(),
            Target::Http {
                authority: "127.0.0.1:8080".into(),
                path: "/healthz?x=1".into()
            }
        );
        assert_eq!(
            "http://localhost".parse::<Target>().unwrap(),
            Target::Http {
                authority: "localhost:80".into(),
                path: "/".into()
            }
        );
        assert_eq!(
            "tcp://db:5432".parse::<Target>().unwrap(),
            Target::Tcp {
                authority: "db:5432".into()
            }
        );
        for bad in [
            "tcp://db",
            "https://x/",
            "ftp://x",
            "nonsense",
            "127.0.0.1:80",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
