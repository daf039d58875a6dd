//! The gate's Prometheus metrics.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::gate::Verdict;
use crate::settings::HoldPolicy;

/// Counters and the hold histogram.
pub struct Metrics {
    decisions: Family<Vec<(String, String)>, Counter>,
    holds: Histogram,
    escalations: Family<Vec<(String, String)>, Counter>,
    put_back: Counter,
    pod_unreachable: Counter,
    holding: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            // 0.1 s … 409.6 s: a hold is seconds (margin) to minutes (strict pods).
            holds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.1, 2.0, 13,
            )),
            escalations: Family::default(),
            put_back: Counter::default(),
            pod_unreachable: Counter::default(),
            holding: Gauge::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn count(&self, verdict: &Verdict) {
        let decision = match verdict {
            Verdict::Allow(_) => "allowed",
            Verdict::Deny { .. } => "denied",
        };
        self.decisions
            .get_or_create(&vec![("decision".to_owned(), decision.to_owned())])
            .inc();
    }

    pub(crate) fn held(&self, held: Duration) {
        self.holds.observe(held.as_secs_f64());
    }

    pub(crate) fn escalated(&self, policy: HoldPolicy) {
        self.escalations
            .get_or_create(&vec![("policy".to_owned(), policy.as_str().to_owned())])
            .inc();
    }

    pub(crate) fn put_back(&self) {
        self.put_back.inc();
    }

    pub(crate) fn pod_unreachable(&self) {
        self.pod_unreachable.inc();
    }

    /// Sets how many pods are out of traffic now (read at scrape time).
    pub fn set_holding(&self, pods: usize) {
        self.holding.set(i64::try_from(pods).unwrap_or(i64::MAX));
    }

    /// OpenMetrics text.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("lameduck_gate");
        registry.register(
            "admission_decisions",
            "Admission answers for pod deletions and evictions, by decision",
            self.decisions.clone(),
        );
        registry.register(
            "hold_seconds",
            "Time a pod was out of traffic before the gate let its deletion through",
            self.holds.clone(),
        );
        registry.register(
            "max_hold_escalations",
            "Pods still not safe at their max hold, by policy (best-effort: let go; strict: refused)",
            self.escalations.clone(),
        );
        registry.register(
            "put_back_in_service",
            "Pods put back in service because no deletion followed",
            self.put_back.clone(),
        );
        registry.register(
            "pod_unreachable",
            "Pods whose admin endpoint did not answer when the gate took them out (let go without evidence)",
            self.pod_unreachable.clone(),
        );
        registry.register(
            "holding_pods",
            "Pods out of traffic now, waiting for evidence",
            self.holding.clone(),
        );
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}
