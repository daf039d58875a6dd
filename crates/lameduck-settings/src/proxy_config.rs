//! How one drain proxy of `lameduck run` is set up, beside its address pair: what it speaks to
//! the app, how the app learns the client's address, and the combinations that cannot work.

use std::str::FromStr;
use std::time::Duration;

use crate::proxy_spec::{Protocol, ProxySpec};

/// How long `auto` waits for a connection's first bytes before splicing it: server-first
/// protocols (SMTP, MySQL, PostgreSQL's SSL request aside) send nothing until greeted, so their
/// greeting waits this long; every client-first protocol has sent its first bytes by then.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_millis(250);

/// One drain proxy, as `lameduck run` starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Listen and upstream addresses.
    pub spec: ProxySpec,
    /// Auto, HTTP or TCP.
    pub protocol: Protocol,
    /// Auto: how long a connection may stay silent before it is spliced.
    pub detect_timeout: Duration,
    /// What HTTP mode speaks to the app.
    pub upstream_protocol: UpstreamProtocol,
    /// How the app learns the client's address.
    pub client_address: ClientAddress,
    /// Every client connection starts with a PROXY protocol header from a load balancer,
    /// naming the client.
    pub accept_proxy_protocol: bool,
    /// How many threads accept and forward, each with its own event loop; 0 means one per
    /// CPU the process may use.
    pub threads: usize,
}

impl ProxyConfig {
    /// The threads to start: [`ProxyConfig::threads`], or one per CPU the process may use.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Which protocol the proxy speaks to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// The client's: HTTP/1.x requests go over HTTP/1.1, HTTP/2 requests over h2c. Clients
    /// used to talk to the app directly, so the app speaks what they speak.
    #[default]
    Same,
    /// Always HTTP/1.1 (an app that does not speak h2c behind h2c clients).
    Http1,
    /// Always h2c with prior knowledge (gRPC apps).
    H2c,
}

impl FromStr for UpstreamProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "same" => Ok(Self::Same),
            "http1" | "http1.1" => Ok(Self::Http1),
            "h2c" | "http2" => Ok(Self::H2c),
            _ => Err(format!(
                "{s:?} is not an upstream protocol (use same, http1 or h2c)"
            )),
        }
    }
}

/// How the proxy tells the app who the client is (behind the proxy its peer is always
/// 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    /// HTTP mode (and the HTTP connections of `auto`): append the client's IP to
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// TCP mode: start each app connection with a PROXY protocol v1 (text) header.
    ProxyV1,
    /// TCP mode: start each app connection with a PROXY protocol v2 (binary) header.
    ProxyV2,
    /// Tell it nothing; an `X-Forwarded-For` from the client passes unchanged.
    None,
}

impl ClientAddress {
    /// What a proxy speaking `protocol` does unless told otherwise: HTTP adds
    /// `X-Forwarded-For`; TCP sends nothing, as an app must be configured to expect a PROXY
    /// header (one it does not expect would be read as the start of its protocol).
    pub fn default_for(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Http | Protocol::Auto => Self::XForwardedFor,
            Protocol::Tcp => Self::None,
        }
    }

    /// Why this way cannot work with `protocol`, if it cannot.
    pub fn conflict(self, protocol: Protocol) -> Option<&'static str> {
        match (self, protocol) {
            (Self::XForwardedFor, Protocol::Tcp) => Some(
                "x-forwarded-for needs --protocol http: a TCP proxy does not read the bytes it \
                 passes (use proxy-v1 or proxy-v2 if the app accepts the PROXY protocol)",
            ),
            (Self::ProxyV1 | Self::ProxyV2, Protocol::Http | Protocol::Auto) => Some(
                "the PROXY protocol needs --protocol tcp: HTTP mode reuses app connections for \
                 many clients, so a header per connection would name the wrong one (use \
                 x-forwarded-for)",
            ),
            _ => None,
        }
    }
}

impl FromStr for ClientAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" | "xff" => Ok(Self::XForwardedFor),
            "proxy-v1" => Ok(Self::ProxyV1),
            "proxy-v2" => Ok(Self::ProxyV2),
            "none" | "off" => Ok(Self::None),
            _ => Err(format!(
                "{s:?} is not a way to pass the client address (use x-forwarded-for, proxy-v1, \
                 proxy-v2 or none)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_named_and_defaults_follow_the_protocol() {
        assert!(
            ClientAddress::XForwardedFor
                .conflict(Protocol::Tcp)
                .is_some()
        );
        assert!(ClientAddress::ProxyV2.conflict(Protocol::Http).is_some());
        assert!(ClientAddress::None.conflict(Protocol::Http).is_none());
        assert!(ClientAddress::ProxyV1.conflict(Protocol::Auto).is_some());
        assert_eq!(
            ClientAddress::default_for(Protocol::Auto),
            ClientAddress::XForwardedFor
        );
        assert_eq!(
            ClientAddress::default_for(Protocol::Tcp),
            ClientAddress::None
        );
        assert_eq!("PROXY-V2".parse(), Ok(ClientAddress::ProxyV2));
        assert!("proxy-v3".parse::<ClientAddress>().is_err());
        assert_eq!("http1.1".parse(), Ok(UpstreamProtocol::Http1));
        assert!("h3".parse::<UpstreamProtocol>().is_err());
    }
}
