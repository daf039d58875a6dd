//! The headers a proxy changes: hop-by-hop ones (RFC 9110 §7.6.1) describe one connection, so
//! they are dropped; `X-Forwarded-For` gets the client's address, which the app no longer sees
//! as its peer.

use std::io::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, Entry, HeaderName, HeaderValue};

/// Headers that always belong to one hop. `upgrade` is kept for an upgrade handshake.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];
/// Where `upgrade` and `te` are in [`HOP_BY_HOP`].
const UPGRADE_AT: usize = 2;
const TE_AT: usize = 3;

/// Removes hop-by-hop headers and every header the `Connection` header names.
///
/// With `upgrade`, `Connection: upgrade` and `Upgrade` are kept so the handshake reaches the
/// other side. `TE: trailers` is kept (gRPC needs it end to end) unless `Connection` names it.
pub(crate) fn strip(headers: &mut HeaderMap, upgrade: bool) {
    // Which hop-by-hop headers are present, from one pass over the few names a message has: a
    // lookup per hop-by-hop name hashed each of them and cost 6% of the proxy's instructions.
    let mut present = [false; HOP_BY_HOP.len()];
    // A field named `Close` (reserved by RFC 9110 §16.3.2.1, but possible) goes with
    // `Connection: close` like any named one.
    let mut close_field = false;
    for name in headers.keys() {
        if let Some(at) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[at] = true;
        }
        close_field |= name.as_str() == "close";
    }
    if !present.contains(&true) {
        return;
    }
    // `Connection` mostly names hop-by-hop headers only (`keep-alive`, as nginx, Node and Tomcat
    // send it) or connection options that name no header (`close`); those need no lookup here,
    // and only other names (rare) are collected.
    let mut te_named = false;
    let mut named = Vec::new();
    let options = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| tokens(value.as_bytes()))
        .filter(|token| {
            !token.is_empty() && (close_field || !token.eq_ignore_ascii_case(b"close"))
        });
    for token in options {
        match hop_by_hop_at(token) {
            Some(TE_AT) => te_named = true,
            Some(_) => {}
            None => named.extend(HeaderName::from_bytes(token).ok()),
        }
    }
    for name in named {
        headers.remove(name);
    }
    let trailers = present[TE_AT]
        && !te_named
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    let upgrade_to = (upgrade && present[UPGRADE_AT])
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|&(_, here)| here) {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// Whether `name` is a header that always belongs to one hop.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Whether a `Connection` value names a header [`is_hop_by_hop`] does not know, which only
/// [`strip`] removes. `keep-alive` and `close`, nearly every value there is, name none.
pub(crate) fn names_other_fields(connection: &[u8]) -> bool {
    tokens(connection).any(|token| {
        !token.is_empty() && !token.eq_ignore_ascii_case(b"close") && hop_by_hop_at(token).is_none()
    })
}

/// The comma-separated elements of a field value, trimmed (empty ones too).
pub(crate) fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Where the hop-by-hop header `name` (any case) is in [`HOP_BY_HOP`].
fn hop_by_hop_at(name: &[u8]) -> Option<usize> {
    HOP_BY_HOP
        .iter()
        .position(|hop| name.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// Whether the request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether the upgrade asked for is to WebSocket.
pub(crate) fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Appends `client` to `X-Forwarded-For` (one comma-separated field, as nginx and Envoy write it).
pub(crate) fn forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut text = [0; IP_TEXT_MAX];
    let client = ip_text(client, &mut text);
    // An IP address and valid field values joined by ", " always make a valid value.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            if let Ok(value) = HeaderValue::from_bytes(client) {
                entry.insert(value);
            }
        }
        Entry::Occupied(mut entry) => {
            let mut chain = Vec::new();
            for earlier in entry.iter() {
                chain.extend_from_slice(earlier.as_bytes());
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(client);
            if let Ok(value) = HeaderValue::from_bytes(&chain) {
                entry.insert(value);
            }
        }
    }
}

/// The longest text of an IP address (an IPv4-mapped IPv6 one).
const IP_TEXT_MAX: usize = 45;

/// `ip` as text, in `buf`. IPv4 is written digit by digit: `Display` goes through the formatting
/// machinery, which cost the proxy as many instructions as all the rest of its header work.
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT_MAX]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            &buf[..len]
        }
        IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // Never fails: no IPv6 text is longer than the buffer.
            let _ = write!(cursor, "{v6}");
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            &buf[..len]
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("te", "gzip"),
            ("x-end", "2"),
        ]);
        strip(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-end"));
    }

    #[test]
    fn keep_alive_responses_lose_only_their_hop_by_hop_fields() {
        // As nginx, Node and Tomcat answer.
        let mut h = map(&[
            ("server", "nginx"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
        ]);
        strip(&mut h, false);
        let names: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["server", "content-length"]);
    }

    #[test]
    fn every_connection_field_line_and_option_counts() {
        let mut h = map(&[
            ("connection", "close, X-One"),
            ("connection", " x-two ,,TE"),
            ("close", "reserved"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("te", "trailers"),
            ("x-end", "3"),
        ]);
        strip(&mut h, false);
        // `TE: trailers` stays only when `Connection` does not name it.
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-end"]
        );
        let mut h = map(&[("connection", "close"), ("x-end", "3")]);
        strip(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-end"]
        );
        assert_eq!(HOP_BY_HOP[UPGRADE_AT], header::UPGRADE);
        assert_eq!(HOP_BY_HOP[TE_AT], header::TE);
    }

    #[test]
    fn upgrade_and_trailers_survive_when_meant() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        assert!(wants_upgrade(&h));
        strip(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn the_client_address_is_appended_to_one_forwarded_for_field() {
        let mut h = HeaderMap::new();
        forwarded_for(&mut h, "10.1.2.3".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1, 10.0.0.2, ::1");
    }

    #[test]
    fn ip_text_matches_display() {
        let mut buf = [0; IP_TEXT_MAX];
        for octet in 0..=255u8 {
            for ip in [
                [octet, 0, 0, 1],
                [10, octet, 99, 100],
                [255, 9, octet, 10],
                [1, 2, 3, octet],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
            }
        }
        for ip in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
        }
    }
}
