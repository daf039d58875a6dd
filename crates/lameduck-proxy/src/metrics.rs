//! What the proxy itself failed at, for `/metrics`.
//!
//! The app counts what it answered; it cannot count the requests and connections that never
//! reached it. Those are the proxy's: through a rollout they should stay at zero, and a
//! dashboard can show that they did.

use lameduck::Lameduck;
use lameduck::prometheus_client::metrics::counter::Counter;
use lameduck::prometheus_client::metrics::family::Family;

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

    fn label(self) -> [(&'static str, &'static str); 1] {
        [(
            "kind",
            match self {
                Self::BadGateway => "bad_gateway",
                Self::UpstreamUnreachable => "upstream_unreachable",
            },
        )]
    }
}

/// The proxy's failure counters, shared by every thread of the proxy (clones share values).
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    failures: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        let failures = Family::default();
        // Every kind is rendered from the start: a dashboard sees 0, not a missing series.
        for kind in Failure::ALL {
            let _ = failures.get_or_create(&kind.label());
        }
        Self { failures }
    }
}

impl ProxyMetrics {
    /// Renders the counters on `lameduck`'s `/metrics` as `lameduck_proxy_failures_total`.
    pub fn register(&self, lameduck: &Lameduck) {
        let failures = self.failures.clone();
        lameduck.register_metrics(move |registry| {
            registry.register(
                "lameduck_proxy_failures",
                "Requests (HTTP) and connections (TCP) the proxy failed itself, by kind",
                failures.clone(),
            );
        });
    }

    /// Counts one failure.
    pub fn failed(&self, kind: Failure) {
        self.failures.get_or_create(&kind.label()).inc();
    }
}
