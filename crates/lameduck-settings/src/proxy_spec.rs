//! `--proxy [PROTOCOL:]LISTEN=UPSTREAM` and `--protocol`: the one reading of a drain proxy's
//! address pair, for `lameduck run` and for `lameduck lint`, which reports what run would
//! refuse.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A `--proxy` value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// No `=` between the two addresses.
    #[error(
        "{value:?} is not [PROTOCOL:]LISTEN=UPSTREAM (e.g. 0.0.0.0:8080=127.0.0.1:8081, 8080=8081 \
         or tcp:5432=5433)"
    )]
    Shape {
        /// The value as given.
        value: String,
    },
    /// One side is not an address.
    #[error("{side} {value:?} is not IP:PORT or PORT")]
    Addr {
        /// `listen` or `upstream`.
        side: &'static str,
        /// The value as given.
        value: String,
    },
    /// Listening on the upstream's own address would loop.
    #[error(
        "the upstream {0} is one of the proxy's own listening addresses: it would forward to itself"
    )]
    Loop(SocketAddr),
    /// Unknown protocol name.
    #[error("{0:?} is not a proxy protocol (use auto, http or tcp)")]
    Protocol(String),
}

/// What the proxy understands of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Per connection, by its first bytes: HTTP/1 and h2c take the `Http` path, anything else
    /// (TLS, client-first binary protocols, and server-first ones after a short silence) the
    /// `Tcp` splice (the drain proxy's `detect` module).
    #[default]
    Auto,
    /// HTTP/1.1 and h2c, with upgrades: per-request evidence, `Connection: close`, GOAWAY.
    Http,
    /// Bytes: per-connection evidence; idle connections are closed at Closing.
    Tcp,
}

impl Protocol {
    /// Whether connections of this protocol may take the HTTP path.
    pub fn serves_http(self) -> bool {
        self != Self::Tcp
    }
}

impl FromStr for Protocol {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "http" => Ok(Self::Http),
            "tcp" => Ok(Self::Tcp),
            _ => Err(SpecError::Protocol(s.to_owned())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Http => "http",
            Self::Tcp => "tcp",
        })
    }
}

/// Where the proxy listens and where it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySpec {
    /// The address the Service targets (a bare port means `0.0.0.0:PORT`).
    pub listen: SocketAddr,
    /// The app (a bare port means `127.0.0.1:PORT`).
    pub upstream: SocketAddr,
    /// What this proxy speaks, if the value said (`tcp:5432=5433`); else `--protocol`'s.
    pub protocol: Option<Protocol>,
}

impl FromStr for ProxySpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let trimmed = value.trim();
        // An address starts with a digit or `[`, so a leading word is the protocol.
        let (protocol, addresses) = match trimmed.split_once(':') {
            Some((word, rest)) if word.chars().all(|c| c.is_ascii_alphabetic()) => {
                (Some(word.parse::<Protocol>()?), rest)
            }
            _ => (None, trimmed),
        };
        let (listen, upstream) = addresses.split_once('=').ok_or_else(|| SpecError::Shape {
            value: value.to_owned(),
        })?;
        let listen = addr("listen", listen, Ipv4Addr::UNSPECIFIED.into())?;
        let upstream = addr("upstream", upstream, Ipv4Addr::LOCALHOST.into())?;
        if listens_on(listen, upstream) {
            return Err(SpecError::Loop(upstream));
        }
        Ok(Self {
            listen,
            upstream,
            protocol,
        })
    }
}

impl fmt::Display for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(protocol) = self.protocol {
            write!(f, "{protocol}:")?;
        }
        write!(f, "{}={}", self.listen, self.upstream)
    }
}

/// Whether a socket listening on `listen` would take connections to `upstream`: the same
/// address, or the same port on a wildcard address (`8080=8080` listens on 0.0.0.0:8080 and
/// forwards to 127.0.0.1:8080, itself). `[::]` takes IPv4 connections too (Linux's default,
/// `bindv6only = 0`); `0.0.0.0` takes no IPv6 ones.
fn listens_on(listen: SocketAddr, upstream: SocketAddr) -> bool {
    listen.port() == upstream.port()
        && (listen.ip() == upstream.ip()
            || (listen.ip().is_unspecified() && (listen.is_ipv6() || upstream.is_ipv4())))
}

fn addr(side: &'static str, value: &str, default_ip: IpAddr) -> Result<SocketAddr, SpecError> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(default_ip, port));
    }
    value.parse().map_err(|_| SpecError::Addr {
        side,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let spec: ProxySpec = "127.0.0.1:8080=127.0.0.1:9090".parse().unwrap();
        assert_eq!(spec.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(spec.upstream, "127.0.0.1:9090".parse().unwrap());
        let spec: ProxySpec = "8080=9090".parse().unwrap();
        assert_eq!(spec.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(spec.upstream, "127.0.0.1:9090".parse().unwrap());
        let spec: ProxySpec = "[::]:80=[::1]:81".parse().unwrap();
        assert_eq!(spec.to_string(), "[::]:80=[::1]:81");
        assert_eq!(spec.protocol, None);
    }

    #[test]
    fn a_protocol_may_lead_the_spec() {
        let spec: ProxySpec = "tcp:5432=5433".parse().unwrap();
        assert_eq!(spec.protocol, Some(Protocol::Tcp));
        assert_eq!(spec.listen, "0.0.0.0:5432".parse().unwrap());
        assert_eq!(spec.to_string(), "tcp:0.0.0.0:5432=127.0.0.1:5433");
        let spec: ProxySpec = "HTTP:[::]:80=[::1]:81".parse().unwrap();
        assert_eq!(spec.protocol, Some(Protocol::Http));
        assert_eq!(spec.upstream, "[::1]:81".parse().unwrap());
        assert_eq!(
            "udp:53=5353".parse::<ProxySpec>(),
            Err(SpecError::Protocol("udp".to_owned()))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(matches!(
            "8080".parse::<ProxySpec>(),
            Err(SpecError::Shape { .. })
        ));
        let err = "8080=localhost:x".parse::<ProxySpec>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "upstream \"localhost:x\" is not IP:PORT or PORT"
        );
        assert!(matches!(
            "127.0.0.1:1=1".parse::<ProxySpec>(),
            Err(SpecError::Loop(_))
        ));
        // A wildcard listener takes its own port on loopback too.
        assert_eq!(
            "8080=8080".parse::<ProxySpec>(),
            Err(SpecError::Loop("127.0.0.1:8080".parse().unwrap()))
        );
        assert!(matches!(
            "[::]:80=[::1]:80".parse::<ProxySpec>(),
            Err(SpecError::Loop(_))
        ));
        // Another address of the same port is another socket.
        assert!("127.0.0.2:8080=127.0.0.1:8080".parse::<ProxySpec>().is_ok());
        assert!("0.0.0.0:8080=[::1]:8080".parse::<ProxySpec>().is_ok());
        assert!(matches!(
            "[::]:8080=127.0.0.1:8080".parse::<ProxySpec>(),
            Err(SpecError::Loop(_))
        ));
        assert!("udp".parse::<Protocol>().is_err());
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
        assert_eq!("auto".parse::<Protocol>(), Ok(Protocol::Auto));
        assert_eq!(Protocol::default(), Protocol::Auto);
    }
}
