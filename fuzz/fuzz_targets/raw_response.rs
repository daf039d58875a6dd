//! The drain proxy's own HTTP/1 response parser (response heads, 1xx, Content-Length, chunked
//! bodies and trailers, read-until-close), over any bytes an app might send.
//!
//! Input: one flag byte (bit 0: the request was HEAD), one byte giving how many read lengths
//! follow (0 to 7), those lengths, then the response. Checked: no panic; the outcome is the
//! same whether the response arrives in one read or in the given pieces; and what is passed on
//! keeps the framing rules (no interim status, no body where none may be, no hop-by-hop field).

#![no_main]

use lameduck_proxy::fuzzing::{RawOutcome, raw_response};
use libfuzzer_sys::fuzz_target;

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
];

fuzz_target!(|data: &[u8]| {
    let [flags, count, rest @ ..] = data else {
        return;
    };
    let count = usize::from(count % 8).min(rest.len());
    let (lengths, response) = rest.split_at(count);
    let head_request = flags & 1 == 1;
    let pieces: Vec<usize> = lengths.iter().map(|&n| usize::from(n)).collect();
    let whole = raw_response(response, head_request, &[]);
    let split = raw_response(response, head_request, &pieces);
    assert_eq!(whole, split, "the reads' boundaries changed the outcome");
    let bytewise = raw_response(response, head_request, &[1; 64]);
    assert_eq!(whole, bytewise, "reads of one byte changed the outcome");
    match whole {
        RawOutcome::NoAnswer => assert!(response.is_empty()),
        RawOutcome::HeadRefused => {}
        RawOutcome::Response(r) => {
            assert!(r.status >= 100 && r.status <= 999);
            assert!(
                r.status >= 200 || r.status == 101,
                "interim {} passed on",
                r.status
            );
            if head_request || r.status == 204 || r.status == 304 {
                assert!(r.body.is_empty() && r.body_ok, "a body where none may be");
            }
            for (name, _) in &r.headers {
                assert!(!HOP_BY_HOP.contains(&name.as_str()), "{name} passed on");
            }
            assert!(r.body.len() <= response.len());
            if !r.body_ok {
                assert!(!r.reusable || r.body.len() < response.len());
            }
        }
    }
});
