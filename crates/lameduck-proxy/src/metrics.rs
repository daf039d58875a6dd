//! What the proxy itself failed at, for `/metrics`.
//!
//! The app counts what it answered; it cannot count the requests and connections that never
//! reached it. Those are the proxy's: through a rollout they should stay at zero, and a
//! dashboard can show that they did.

use std::net::SocketAddr;

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

    fn as_str(self) -> &'static str {
        match self {
            Self::BadGateway => "bad_gateway",
            Self::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// `listen` (the proxy's address, one series per proxy) and `kind`.
type Labels = [(&'static str, String); 2];

/// The failure counters of one proxy (clones share values), in a family shared by all proxies
/// of the process: each proxy's series carry its listening address.
#[derive(Debug, Clone, Default)]
pub struct ProxyMetrics {
    failures: Family<Labels, Counter>,
    listen: String,
}

impl ProxyMetrics {
    /// Renders the counters of this proxy and of every proxy made from it with
    /// [`ProxyMetrics::for_listener`] on `lameduck`'s `/metrics`, as
    /// `lameduck_proxy_failures_total{listen, kind}`.
    pub fn register(&self, lameduck: &Lameduck) {
        let failures = self.failures.clone();
        lameduck.register_metrics(move |registry| {
            registry.register(
                "lameduck_proxy_failures",
                "Requests (HTTP) and connections (TCP) a proxy failed itself, by kind",
                failures.clone(),
            );
        });
    }

    /// The counters of the proxy listening on `listen`, in the same family. Every kind is
    /// rendered from now on: a dashboard sees 0, not a missing series.
    pub fn for_listener(&self, listen: SocketAddr) -> Self {
        let proxy = Self {
            failures: self.failures.clone(),
            listen: listen.to_string(),
        };
        for kind in Failure::ALL {
            let _ = proxy.failures.get_or_create(&proxy.labels(kind));
        }
        proxy
    }

    /// Counts one failure.
    pub fn failed(&self, kind: Failure) {
        self.failures.get_or_create(&self.labels(kind)).inc();
    }

    fn labels(&self, kind: Failure) -> Labels {
        [
            ("listen", self.listen.clone()),
            ("kind", kind.as_str().to_owned()),
        ]
    }
}
