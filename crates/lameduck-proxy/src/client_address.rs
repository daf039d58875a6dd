//! The PROXY protocol header a TCP proxy sends the app (behind the proxy its peer is always
//! 127.0.0.1), for [`ClientAddress::ProxyV1`] and [`ClientAddress::ProxyV2`].

use std::net::{IpAddr, SocketAddr};

pub use lameduck_settings::proxy_config::ClientAddress;

/// The PROXY protocol header for a client connection from `client` to `local` (the proxy's own
/// end), or `None` if `way` sends none.
pub(crate) fn proxy_header(
    way: ClientAddress,
    client: SocketAddr,
    local: SocketAddr,
) -> Option<Vec<u8>> {
    let (client, local) = same_family(client, local);
    match way {
        ClientAddress::ProxyV1 => Some(
            ppp::v1::Addresses::from((client, local))
                .to_string()
                .into_bytes(),
        ),
        ClientAddress::ProxyV2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (client, local),
        )
        .build()
        .ok(),
        ClientAddress::XForwardedFor | ClientAddress::None => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_are_the_text_lines_of_the_spec() {
        let header = proxy_header(
            ClientAddress::ProxyV1,
            addr("10.1.2.3:40000"),
            addr("127.0.0.1:8080"),
        )
        .unwrap();
        assert_eq!(header, b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 8080\r\n");
        let header = proxy_header(
            ClientAddress::ProxyV1,
            addr("[2001:db8::1]:5"),
            addr("[::1]:80"),
        )
        .unwrap();
        assert_eq!(header, b"PROXY TCP6 2001:db8::1 ::1 5 80\r\n");
        // A dual-stack listener's IPv4 client.
        let header = proxy_header(
            ClientAddress::ProxyV1,
            addr("[::ffff:10.0.0.9]:1234"),
            addr("[::ffff:10.0.0.1]:80"),
        )
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
            let bytes = proxy_header(ClientAddress::ProxyV2, client, local).unwrap();
            let header = ppp::v2::Header::try_from(&bytes[..]).unwrap();
            assert_eq!(header.command, ppp::v2::Command::Proxy);
            assert_eq!(header.len(), bytes.len());
            let (client, local) = same_family(client, local);
            assert_eq!(header.addresses, ppp::v2::Addresses::from((client, local)));
        }
    }

    #[test]
    fn only_the_proxy_protocol_sends_a_header() {
        let (client, local) = (addr("10.0.0.1:1"), addr("127.0.0.1:2"));
        assert_eq!(
            proxy_header(ClientAddress::XForwardedFor, client, local),
            None
        );
        assert_eq!(proxy_header(ClientAddress::None, client, local), None);
    }
}
