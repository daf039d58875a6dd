//! How the app learns the client's address: behind the proxy its peer is always 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// How the proxy tells the app who the client is.
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
    pub fn default_for(protocol: crate::Protocol) -> Self {
        match protocol {
            crate::Protocol::Http | crate::Protocol::Auto => Self::XForwardedFor,
            crate::Protocol::Tcp => Self::None,
        }
    }

    /// Why this way cannot work with `protocol`, if it cannot.
    pub fn conflict(self, protocol: crate::Protocol) -> Option<&'static str> {
        match (self, protocol) {
            (Self::XForwardedFor, crate::Protocol::Tcp) => Some(
                "x-forwarded-for needs --protocol http: a TCP proxy does not read the bytes it \
                 passes (use proxy-v1 or proxy-v2 if the app accepts the PROXY protocol)",
            ),
            (Self::ProxyV1 | Self::ProxyV2, crate::Protocol::Http | crate::Protocol::Auto) => Some(
                "the PROXY protocol needs --protocol tcp: HTTP mode reuses app connections for \
                 many clients, so a header per connection would name the wrong one (use \
                 x-forwarded-for)",
            ),
            _ => None,
        }
    }

    /// The PROXY protocol header for a client connection from `client` to `local` (the
    /// proxy's own end), or `None` if this way sends none.
    pub(crate) fn proxy_header(self, client: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
        let (client, local) = same_family(client, local);
        match self {
            Self::ProxyV1 => Some(
                ppp::v1::Addresses::from((client, local))
                    .to_string()
                    .into_bytes(),
            ),
            Self::ProxyV2 => ppp::v2::Builder::with_addresses(
                ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                ppp::v2::Protocol::Stream,
                (client, local),
            )
            .build()
            .ok(),
            Self::XForwardedFor | Self::None => None,
        }
    }
}

/// Both addresses in one family, as the PROXY protocol needs: IPv4-mapped IPv6 addresses (a
/// dual-stack listener's IPv4 clients) become IPv4, and if one is still IPv4 while the other is
/// IPv6, the IPv4 one is mapped.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canonical(a), canonical(b));
    let mapped = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (mapped(a), mapped(b))
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

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_are_the_text_lines_of_the_spec() {
        let header = ClientAddress::ProxyV1
            .proxy_header(addr("10.1.2.3:40000"), addr("127.0.0.1:8080"))
            .unwrap();
        assert_eq!(header, b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 8080\r\n");
        let header = ClientAddress::ProxyV1
            .proxy_header(addr("[2001:db8::1]:5"), addr("[::1]:80"))
            .unwrap();
        assert_eq!(header, b"PROXY TCP6 2001:db8::1 ::1 5 80\r\n");
        // A dual-stack listener's IPv4 client.
        let header = ClientAddress::ProxyV1
            .proxy_header(addr("[::ffff:10.0.0.9]:1234"), addr("[::ffff:10.0.0.1]:80"))
            .unwrap();
        assert_eq!(header, b"PROXY TCP4 10.0.0.9 10.0.0.1 1234 80\r\n");
    }

    #[test]
    fn v2_headers_parse_back_to_the_same_addresses() {
        for (client, local) in [
            ("10.1.2.3:40000", "127.0.0.1:8080"),
            ("[2001:db8::1]:5", "[::1]:80"),
            ("10.1.2.3:7", "[::1]:80"),
        ] {
            let (client, local) = (addr(client), addr(local));
            let bytes = ClientAddress::ProxyV2.proxy_header(client, local).unwrap();
            let header = ppp::v2::Header::try_from(&bytes[..]).unwrap();
            assert_eq!(header.command, ppp::v2::Command::Proxy);
            assert_eq!(header.len(), bytes.len());
            let (client, local) = same_family(client, local);
            assert_eq!(header.addresses, ppp::v2::Addresses::from((client, local)));
        }
    }

    #[test]
    fn only_the_proxy_protocol_sends_a_header_and_conflicts_are_named() {
        let (client, local) = (addr("10.0.0.1:1"), addr("127.0.0.1:2"));
        assert_eq!(
            ClientAddress::XForwardedFor.proxy_header(client, local),
            None
        );
        assert_eq!(ClientAddress::None.proxy_header(client, local), None);
        assert!(
            ClientAddress::XForwardedFor
                .conflict(crate::Protocol::Tcp)
                .is_some()
        );
        assert!(
            ClientAddress::ProxyV2
                .conflict(crate::Protocol::Http)
                .is_some()
        );
        assert!(
            ClientAddress::None
                .conflict(crate::Protocol::Http)
                .is_none()
        );
        assert!(
            ClientAddress::ProxyV1
                .conflict(crate::Protocol::Auto)
                .is_some()
        );
        assert_eq!(
            ClientAddress::default_for(crate::Protocol::Auto),
            ClientAddress::XForwardedFor
        );
        assert_eq!("PROXY-V2".parse(), Ok(ClientAddress::ProxyV2));
        assert!("proxy-v3".parse::<ClientAddress>().is_err());
    }
}
