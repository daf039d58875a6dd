use super::*;

fn is(detected: Detected) -> Verdict {
    Verdict::Is(detected)
}

#[test]
fn http1_request_lines_are_http() {
    for line in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"GET /a?b=c HTTP/1.0\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\n",
        b"VERSION-CONTROL /x HTTP/1.1",
        // Decided at the version's digit: the line end is not needed.
        b"POST /upload HTTP/1.1",
    ] {
        assert_eq!(classify(line), is(Detected::Http1), "{line:?}");
    }
}

#[test]
fn every_prefix_of_a_request_line_waits_for_more() {
    let line = b"DELETE /items/7 HTTP/1.1\r\n";
    for end in 0..line.len() {
        let verdict = classify(&line[..end]);
        let decided_at = b"DELETE /items/7 HTTP/1.1".len();
        if end < decided_at {
            assert_eq!(verdict, Verdict::NeedMore, "{:?}", &line[..end]);
        } else {
            assert_eq!(verdict, is(Detected::Http1));
        }
    }
}

#[test]
fn the_h2c_preface_is_http_and_its_prefixes_wait() {
    assert_eq!(classify(H2_PREFACE), is(Detected::H2c));
    let mut with_settings = H2_PREFACE.to_vec();
    with_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(classify(&with_settings), is(Detected::H2c));
    for end in 1..H2_PREFACE.len() {
        assert_eq!(classify(&H2_PREFACE[..end]), Verdict::NeedMore);
    }
    // The preface's first line alone is not an HTTP/1 request.
    assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nXX"), is(Detected::Other));
}

#[test]
fn tls_and_binary_protocols_are_decided_at_their_first_bytes() {
    // A TLS 1.2 ClientHello record header.
    assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), is(Detected::Tls));
    assert_eq!(classify(&[0x16]), is(Detected::Tls));
    // PostgreSQL's StartupMessage: a length, then protocol 3.0.
    assert_eq!(classify(&[0, 0, 0, 8, 0, 3, 0, 0]), is(Detected::Other));
    // Redis' RESP and a bare newline.
    assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), is(Detected::Other));
    assert_eq!(classify(b"\r\n"), is(Detected::Other));
}

#[test]
fn near_misses_are_not_http() {
    for bytes in [
        &b"GET  / HTTP/1.1\r\n"[..],
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTPS/1.1\r\n",
        b"GET / HTTP/1.x\r\n",
        b"GET /\r\n",
        b"GET / \r\n",
        b"G(T / HTTP/1.1\r\n",
        b"hello world\r\n",
        b"EHLO mail.example.com\r\n",
    ] {
        assert_eq!(classify(bytes), is(Detected::Other), "{bytes:?}");
    }
}

#[test]
fn lines_are_bounded() {
    let method = vec![b'A'; METHOD_LIMIT + 1];
    assert_eq!(classify(&method), is(Detected::Other));
    assert_eq!(classify(&method[..METHOD_LIMIT]), Verdict::NeedMore);
    let mut long = b"GET /".to_vec();
    long.resize(REQUEST_LINE_LIMIT + 1, b'a');
    assert_eq!(classify(&long), is(Detected::Other));
    long.truncate(REQUEST_LINE_LIMIT - 16);
    assert_eq!(classify(&long), Verdict::NeedMore);
    long.extend_from_slice(b" HTTP/1.1\r\n");
    assert_eq!(classify(&long), is(Detected::Http1));
}

#[test]
fn every_verdict_is_listed_at_its_own_index() {
    // DetectedCounters indexes its counters by the variant's number.
    for (index, detected) in Detected::ALL.into_iter().enumerate() {
        assert_eq!(detected as usize, index);
    }
}

#[test]
fn a_proxy_protocol_header_is_looked_past() {
    let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n";
    let mut http = v1.to_vec();
    http.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(decide(&http, true), is(Detected::Http1));
    let mut tls = v1.to_vec();
    tls.push(0x16);
    assert_eq!(decide(&tls, true), is(Detected::Tls));
    assert_eq!(decide(v1, true), Verdict::NeedMore);
    assert_eq!(decide(&v1[..10], true), Verdict::NeedMore);
    assert_eq!(decide(b"GET / HTTP/1.1\r\n", true), is(Detected::Other));
    // Without the option, the header is the client's first bytes.
    assert_eq!(decide(&http, false), is(Detected::Other));
}
