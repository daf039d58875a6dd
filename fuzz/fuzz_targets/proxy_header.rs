//! The PROXY protocol v1/v2 header reader of TCP mode (and of the proxy's protocol detection),
//! over any first bytes of a connection.
//!
//! The reader peeks at what has arrived and asks again while the header is incomplete, so the
//! answer must not depend on where the bytes were cut. Checked: no panic; a complete header is
//! no longer than the bytes and reads the same from its own bytes; every shorter prefix of it
//! is incomplete (never refused, never another header); a prefix of an incomplete start is
//! incomplete too.

#![no_main]

use lameduck::proxy_protocol::{HeaderPrefix, parse_prefix};
use libfuzzer_sys::fuzz_target;

/// At most this many prefixes are checked per input (all of them for short headers).
const PREFIXES: usize = 128;

fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let step = len.div_ceil(PREFIXES).max(1);
    (0..len).step_by(step).chain(len.checked_sub(1))
}

fuzz_target!(|data: &[u8]| {
    match parse_prefix(data) {
        Ok(HeaderPrefix::Complete { length, addresses }) => {
            assert!(length > 0 && length <= data.len(), "length {length}");
            let alone = parse_prefix(&data[..length]).ok();
            assert_eq!(
                alone,
                Some(HeaderPrefix::Complete { length, addresses }),
                "the header read differently without what follows it"
            );
            for cut in prefixes(length) {
                let prefix = parse_prefix(&data[..cut]).ok();
                assert_eq!(
                    prefix,
                    Some(HeaderPrefix::Incomplete),
                    "the first {cut} of {length} header bytes"
                );
            }
        }
        Ok(HeaderPrefix::Incomplete) => {
            for cut in prefixes(data.len()) {
                let prefix = parse_prefix(&data[..cut]).ok();
                assert_eq!(
                    prefix,
                    Some(HeaderPrefix::Incomplete),
                    "the first {cut} bytes"
                );
            }
        }
        Err(_) => {}
    }
});
