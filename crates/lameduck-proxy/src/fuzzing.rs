//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`); not part of the API.
//!
//! The proxy's byte parsers are crate-private and some sit behind sockets. These thin wrappers
//! run them over bytes in memory, so a coverage-guided fuzzer can reach them and check them
//! against simple models, without the parsers becoming public.

pub use crate::upstream::raw_fuzz::{RawOutcome, RawResponse, raw_response};

/// The WebSocket frame follower of upgraded connections, fed the bytes one direction carries.
#[derive(Debug, Default)]
pub struct FrameFollower(crate::tunnel::FrameTracker);

impl FrameFollower {
    /// Follows the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.feed(bytes);
    }

    /// Whether everything fed so far ends with a whole frame (where the proxy may add its own
    /// close frame).
    pub fn at_boundary(&self) -> bool {
        self.0.at_boundary()
    }

    /// Whether a close frame's header went by.
    pub fn close_sent(&self) -> bool {
        self.0.close_sent()
    }
}
