//! Headers read from real loopback connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::Lameduck;

fn lameduck() -> Lameduck {
    Lameduck::builder()
        .admin_addr(None)
        .hard_exit(false)
        .build()
        .unwrap()
}

/// A connected pair: (the client's end, the server's end).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Sends `bytes` and reads the server end's header.
async fn read_after(
    bytes: &[u8],
) -> (
    Result<Option<ProxiedAddresses>, ProxyHeaderError>,
    TcpStream,
) {
    let lameduck = lameduck();
    let (mut client, mut server) = pair().await;
    client.write_all(bytes).await.unwrap();
    let read = read_header(lameduck.shutdown(), &mut server).await;
    (read, server)
}

/// What is left on the server end after the header: what the client sent after it.
async fn rest(server: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut rest = vec![0; len];
    tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut rest))
        .await
        .expect("the bytes after the header in time")
        .unwrap();
    rest
}

fn addresses(client: &str, destination: &str) -> Option<ProxiedAddresses> {
    Some(ProxiedAddresses {
        client: client.parse().unwrap(),
        destination: destination.parse().unwrap(),
    })
}

/// A v2 header (PROXY command, TCP) from `client` to `destination` with one extra field.
fn v2_header(client: &str, destination: &str, (kind, value): (u8, &[u8])) -> Vec<u8> {
    let addresses = (
        client.parse::<SocketAddr>().unwrap(),
        destination.parse::<SocketAddr>().unwrap(),
    );
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .write_tlv(kind, value)
    .unwrap()
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_v1_header_names_the_client_and_only_its_bytes_are_consumed() {
    let (read, mut server) =
        read_after(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\nGET / HTTP/1.1\r\n").await;
    assert_eq!(
        read.unwrap(),
        addresses("203.0.113.7:40000", "10.0.0.1:443")
    );
    assert_eq!(rest(&mut server, 16).await, b"GET / HTTP/1.1\r\n");

    let (read, mut server) = read_after(b"PROXY TCP6 2001:db8::7 2001:db8::1 5 80\r\nx").await;
    assert_eq!(
        read.unwrap(),
        addresses("[2001:db8::7]:5", "[2001:db8::1]:80")
    );
    assert_eq!(rest(&mut server, 1).await, b"x");
}

#[tokio::test]
async fn a_v2_header_with_extra_fields_names_the_client() {
    // An AWS NLB's VPC endpoint id travels in a field of type 0xEA.
    let header = v2_header(
        "[2001:db8::7]:40000",
        "[2001:db8::1]:443",
        (0xEA, b"\x01vpce-0123456789abcdef0"),
    );
    let mut bytes = header.clone();
    bytes.extend_from_slice(b"after");
    let (read, mut server) = read_after(&bytes).await;
    assert_eq!(
        read.unwrap(),
        addresses("[2001:db8::7]:40000", "[2001:db8::1]:443")
    );
    assert_eq!(rest(&mut server, 5).await, b"after");
}

#[tokio::test]
async fn headers_that_name_no_client_leave_the_socket_addresses() {
    let local = ppp::v2::Builder::new(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
    )
    .build()
    .unwrap();
    let (read, _) = read_after(&local).await;
    assert_eq!(read.unwrap(), None, "v2 LOCAL (a balancer's health check)");
    let (read, mut server) = read_after(b"PROXY UNKNOWN\r\nok").await;
    assert_eq!(read.unwrap(), None, "v1 UNKNOWN");
    assert_eq!(rest(&mut server, 2).await, b"ok");
}

#[tokio::test]
async fn a_header_that_arrives_in_parts_is_read_whole() {
    let lameduck = lameduck();
    let (mut client, mut server) = pair().await;
    client.set_nodelay(true).unwrap();
    let writer = tokio::spawn(async move {
        for part in [
            &b"PROXY TCP4 19"[..],
            b"8.51.100.2 10.0.0.1 1",
            b"234 80\r\nrest",
        ] {
            client.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        client
    });
    let read = read_header(lameduck.shutdown(), &mut server).await;
    assert_eq!(read.unwrap(), addresses("198.51.100.2:1234", "10.0.0.1:80"));
    assert_eq!(rest(&mut server, 4).await, b"rest");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_connection_without_a_header_is_refused() {
    let (read, _) = read_after(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        matches!(read, Err(ProxyHeaderError::Invalid(_))),
        "{read:?}"
    );
    let (read, _) = read_after(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").await;
    assert!(
        matches!(read, Err(ProxyHeaderError::Invalid(_))),
        "{read:?}"
    );

    let lameduck = lameduck();
    let (client, mut server) = pair().await;
    drop(client);
    let read = read_header(lameduck.shutdown(), &mut server).await;
    assert!(matches!(read, Err(ProxyHeaderError::Closed)), "{read:?}");
}

#[tokio::test]
async fn a_header_too_long_to_be_one_is_refused() {
    // A v1 line has at most 107 bytes; this one never ends.
    let mut bytes = b"PROXY TCP4 ".to_vec();
    bytes.resize(200, b'1');
    let (read, _) = read_after(&bytes).await;
    assert!(
        matches!(read, Err(ProxyHeaderError::Invalid(_))),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_v2_header_longer_than_any_balancer_sends_is_refused() {
    let header = v2_header("192.0.2.1:1", "192.0.2.2:2", (0x04, &[0; 5000]));
    let (read, _) = read_after(&header).await;
    assert!(matches!(read, Err(ProxyHeaderError::TooLong)), "{read:?}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_given_up_on() {
    let lameduck = lameduck();
    let (_client, mut server) = pair().await;
    let read = read_header(lameduck.shutdown(), &mut server).await;
    assert!(matches!(read, Err(ProxyHeaderError::TimedOut)), "{read:?}");

    // At the forced close it is given up on at once.
    let (_client, mut server) = pair().await;
    lameduck.shutdown().force_close().cancel();
    let read = read_header(lameduck.shutdown(), &mut server).await;
    assert!(matches!(read, Err(ProxyHeaderError::Closing)), "{read:?}");
}

/// Found by the `proxy_header` fuzz target: a v1 header cut just after its source port read as
/// one with an empty destination port and was refused, so a valid header split there by the
/// network failed. Every cut of a valid header must wait for more bytes; a line that ended is
/// judged at once.
#[test]
fn every_start_of_a_valid_header_waits_for_the_rest() {
    let v2 = v2_header("192.0.2.1:1", "192.0.2.2:2", (0x04, b"x"));
    let headers: [&[u8]; 4] = [
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n",
        b"PROXY TCP4 198.51.100.2 10.0.0.1 1234 80\r\n",
        b"PROXY UNKNOWN\r\n",
        &v2,
    ];
    for header in headers {
        for cut in 0..header.len() {
            let prefix = parse_prefix(&header[..cut]);
            assert!(
                matches!(prefix, Ok(HeaderPrefix::Incomplete)),
                "{:?}: {prefix:?}",
                String::from_utf8_lossy(&header[..cut])
            );
        }
        let whole = parse_prefix(header);
        assert!(
            matches!(whole, Ok(HeaderPrefix::Complete { length, .. }) if length == header.len()),
            "{whole:?}"
        );
    }
    // What is not a header is still refused at once, and so is a v1 line once it ended. (ppp
    // took `P [NKOWNPOWNP` for the start of a v1 header, though `P ` is none: found by the
    // fuzz target too.)
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
        b"P ",
        b"P [NKOWNPOWNP",
        // A line that ended is judged whole: it cannot be mended by more bytes.
        b"PROXY TCP4 1.2.3.4\r\n",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 400\r0 \n\r\n",
    ] {
        let refused = parse_prefix(bytes);
        assert!(
            matches!(refused, Err(ProxyHeaderError::Invalid(_))),
            "{refused:?}"
        );
    }
}
