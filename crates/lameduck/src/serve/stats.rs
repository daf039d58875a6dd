//! Connection counters read by `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What a connection speaks, as far as we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Protocol {
    /// Accepted; no complete request yet.
    Pending = 0,
    /// HTTP/1.x.
    Http1 = 1,
    /// HTTP/2 (h2c).
    Http2 = 2,
    /// Upgraded from HTTP/1.1 (WebSocket and the like).
    Upgraded = 3,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 4] = [
        Protocol::Pending,
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Upgraded,
    ];

    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pending => "pending",
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Upgraded => "upgraded",
        }
    }

    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            3 => Protocol::Upgraded,
            _ => Protocol::Pending,
        }
    }
}

/// Counters shared by every server of one process.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    open: [AtomicI64; 4],
    requests: AtomicU64,
    forced_closes: AtomicU64,
}

impl ConnStats {
    pub(crate) fn open(&self, protocol: Protocol) -> i64 {
        self.open[protocol as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn opened(&self, protocol: Protocol) {
        self.open[protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, protocol: Protocol) {
        self.open[protocol as usize].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forced_closes(&self) -> u64 {
        self.forced_closes.load(Ordering::Relaxed)
    }

    pub(crate) fn forced_close(&self) {
        self.forced_closes.fetch_add(1, Ordering::Relaxed);
    }
}
