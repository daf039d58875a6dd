//! What `lameduck run` runs beside its proxies: where forwarded signals go, and the app's own
//! readiness target.

use std::fmt;
use std::str::FromStr;

use http::Uri;

/// Where forwarded signals (SIGHUP, SIGUSR1, ...) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardTo {
    /// The app's main process only, as `docker run --init` (tini) does.
    #[default]
    Child,
    /// Every process in the app's process group (tini `-g`).
    Group,
}

impl FromStr for ForwardTo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "child" => Ok(Self::Child),
            "group" => Ok(Self::Group),
            _ => Err(format!("{s:?} is not child or group")),
        }
    }
}

/// A probe target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a probe target: {why}")]
pub struct TargetError {
    /// The value as given.
    pub value: String,
    /// What is wrong.
    pub why: String,
}

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
    type Err = TargetError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| TargetError {
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
