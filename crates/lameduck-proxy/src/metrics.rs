//! What the proxy itself failed at, for `/metrics`.
//!
//! The app counts what it answered; it cannot count the requests and connections that never
//! reached it. Those are the proxy's: through a rollout they should stay at zero, and a
//! dashboard can show that they did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lameduck::Lameduck;
use lameduck::prometheus_client::metrics::counter::Counter;
use lameduck::prometheus_client::metrics::family::Family;

use crate::detect::Detected;

/// One failure of the proxy's own, as its `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP mode: the proxy answered `502 Bad Gateway` itself (the app could not be reached,
    /// or the exchange with it failed before a response).
    BadGateway,
    /// TCP mode: a client connection was closed because the app could not be reached.
    UpstreamUnreachable,
}

impl Failure {
    const ALL: [Self; 2] = [Self::BadGateway, Self::UpstreamUnreachable];

    fn as_str(self) -> &'static str {
        match self {
            Self::BadGateway => "bad_gateway",
            Self::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// One `auto` proxy's series of `lameduck_proxy_detected_total`, held so that counting a
/// connection is one atomic add, not a lookup by labels.
#[derive(Debug, Clone)]
pub struct DetectedCounters(Arc<[Counter; Detected::ALL.len()]>);

impl DetectedCounters {
    /// Counts one connection that showed `protocol`.
    pub fn count(&self, protocol: Detected) {
        // ALL lists the variants in declaration order.
        self.0[protocol as usize].inc();
    }
}

/// `listen` (the proxy's address, one series per proxy) and `kind` or `protocol`.
type Labels = [(&'static str, String); 2];

/// The counters of one proxy (clones share values), in families shared by all proxies of the
/// process: each proxy's series carry its listening address.
#[derive(Debug, Clone, Default)]
pub struct ProxyMetrics {
    failures: Family<Labels, Counter>,
    detected: Family<Labels, Counter>,
    listen: String,
    /// Whether this proxy already said that HTTP arrived where it could not drain it.
    warned_http_spliced: Arc<AtomicBool>,
}

impl ProxyMetrics {
    /// Renders the counters of this proxy and of every proxy made from it with
    /// [`ProxyMetrics::for_listener`] on `lameduck`'s `/metrics`, as
    /// `lameduck_proxy_failures_total{listen, kind}` and (`auto` proxies)
    /// `lameduck_proxy_detected_total{listen, protocol}`.
    pub fn register(&self, lameduck: &Lameduck) {
        let (failures, detected) = (self.failures.clone(), self.detected.clone());
        lameduck.register_metrics(move |registry| {
            registry.register(
                "lameduck_proxy_failures",
                "Requests (HTTP) and connections (TCP) a proxy failed itself, by kind",
                failures.clone(),
            );
            registry.register(
                "lameduck_proxy_detected",
                "Connections of an auto proxy, by the protocol their first bytes showed \
                 (http1 and h2c take the HTTP path; the others are spliced)",
                detected.clone(),
            );
        });
    }

    /// The counters of the proxy listening on `listen`, in the same family. Every kind is
    /// rendered from now on: a dashboard sees 0, not a missing series.
    pub fn for_listener(&self, listen: SocketAddr) -> Self {
        let proxy = Self {
            failures: self.failures.clone(),
            detected: self.detected.clone(),
            listen: listen.to_string(),
            warned_http_spliced: Arc::default(),
        };
        for kind in Failure::ALL {
            let _ = proxy
                .failures
                .get_or_create(&proxy.labels("kind", kind.as_str()));
        }
        proxy
    }

    /// The counters of an `auto` proxy's detected protocols, every one rendered from now on.
    pub fn detects(&self) -> DetectedCounters {
        DetectedCounters(Arc::new(Detected::ALL.map(|protocol| {
            self.detected
                .get_or_create(&self.labels("protocol", protocol.as_str()))
                .clone()
        })))
    }

    /// Counts one failure.
    pub fn failed(&self, kind: Failure) {
        self.failures
            .get_or_create(&self.labels("kind", kind.as_str()))
            .inc();
    }

    /// Whether this is the first time this proxy spliced a connection that speaks HTTP (which
    /// it then says once, at warning level).
    pub(crate) fn first_http_spliced(&self) -> bool {
        !self.warned_http_spliced.swap(true, Ordering::Relaxed)
    }

    fn labels(&self, name: &'static str, value: &str) -> Labels {
        [("listen", self.listen.clone()), (name, value.to_owned())]
    }
}
