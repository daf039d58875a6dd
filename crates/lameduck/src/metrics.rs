//! `/metrics`: the lifecycle and the drain as Prometheus text.

use lameduck_core::Phase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::time::Instant;

use crate::Lameduck;
use crate::serve::Protocol;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Renders the current state. Built per scrape from live counters: scrapes are rare, and this
/// keeps the serving path free of metric bookkeeping beyond a few atomics.
pub(crate) fn render(lameduck: &Lameduck) -> String {
    let mut root = Registry::default();
    let registry = root.sub_registry_with_prefix("lameduck");
    let snapshot = lameduck.lifecycle().snapshot();
    let now = Instant::now();

    let phase = Family::<PhaseLabel, Gauge>::default();
    let phase_seconds = Family::<PhaseLabel, FloatGauge>::default();
    for p in Phase::ALL {
        let label = PhaseLabel {
            phase: p.as_str().to_owned(),
        };
        phase
            .get_or_create(&label)
            .set(i64::from(p == snapshot.phase));
        phase_seconds
            .get_or_create(&label)
            .set(snapshot.time_in(p, now).as_secs_f64());
    }
    registry.register("phase", "1 for the current lifecycle phase", phase);
    registry.register(
        "phase_seconds",
        "Time spent in each phase so far",
        phase_seconds,
    );

    let stats = lameduck.stats();
    let connections = Family::<ProtocolLabel, Gauge>::default();
    for protocol in Protocol::ALL {
        let label = ProtocolLabel {
            protocol: protocol.as_str().to_owned(),
        };
        connections.get_or_create(&label).set(stats.open(protocol));
    }
    registry.register(
        "open_connections",
        "Open connections by protocol",
        connections,
    );
    let tracked = Gauge::<i64>::default();
    tracked.set(i64::try_from(lameduck.shutdown().connections().len()).unwrap_or(i64::MAX));
    registry.register(
        "tracked_connections",
        "Connections (upgraded ones included) that Closing waits for",
        tracked,
    );

    let shutdown = lameduck.shutdown();
    let in_flight = Gauge::<i64>::default();
    in_flight.set(i64::try_from(shutdown.activity().in_flight()).unwrap_or(i64::MAX));
    registry.register("in_flight_requests", "Requests being handled", in_flight);
    let requests = Counter::<u64>::default();
    requests.inc_by(stats.requests());
    registry.register("requests", "Requests received", requests);
    let forced = Counter::<u64>::default();
    forced.inc_by(stats.forced_closes());
    registry.register(
        "forced_closes",
        "Connections closed at the deadline with work open",
        forced,
    );
    let tasks = Gauge::<i64>::default();
    tasks.set(i64::try_from(shutdown.tasks().len()).unwrap_or(i64::MAX));
    registry.register(
        "tracked_tasks",
        "Tracked long-running tasks still running",
        tasks,
    );

    let settings = shutdown.config().settings();
    let config = Family::<NameLabel, FloatGauge>::default();
    for spec in lameduck_core::SETTINGS {
        if let Some(value) = settings.get(spec.env) {
            config
                .get_or_create(&NameLabel {
                    name: spec.name.to_owned(),
                })
                .set(value.as_secs_f64());
        }
    }
    registry.register("config_seconds", "Drain settings in effect", config);

    if let (Some(plan), Some(started)) = (shutdown.plan(), snapshot.entered(Phase::Draining)) {
        let budget = Family::<NameLabel, FloatGauge>::default();
        for (name, at) in [
            ("drain_deadline", plan.drain_deadline),
            ("force_close_at", plan.force_close_at),
            ("exit_by", plan.exit_by),
        ] {
            let since = at.saturating_duration_since(started).as_secs_f64();
            budget
                .get_or_create(&NameLabel {
                    name: name.to_owned(),
                })
                .set(since);
        }
        registry.register(
            "budget_seconds",
            "Deadlines of the running shutdown, in seconds after the drain started",
            budget,
        );
    }

    let refused = Counter::<u64>::default();
    refused.inc_by(crate::proxy_protocol::refused());
    registry.register(
        "proxy_protocol_refused",
        "Connections closed for want of a valid PROXY protocol header",
        refused,
    );

    for hook in lameduck.metrics_hooks() {
        hook(&mut root);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &root);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics a process registers are rendered next to the built-in ones, under their own
    /// names, with the values they have at each scrape.
    #[test]
    fn registered_metrics_are_rendered_beside_the_built_in_ones() {
        let lameduck = Lameduck::builder()
            .admin_addr(None)
            .hard_exit(false)
            .build()
            .unwrap();
        let jobs = Counter::<u64>::default();
        let registered = jobs.clone();
        lameduck.register_metrics(move |registry| {
            registry.register("app_jobs", "Jobs done", registered.clone());
        });
        jobs.inc_by(3);
        let text = render(&lameduck);
        assert!(text.contains("\napp_jobs_total 3\n"), "{text}");
        assert!(
            text.contains("\nlameduck_phase{phase=\"starting\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nlameduck_proxy_protocol_refused_total "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        jobs.inc();
        assert!(render(&lameduck).contains("\napp_jobs_total 4\n"));
    }
}
