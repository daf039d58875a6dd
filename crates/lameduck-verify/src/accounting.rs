//! Accounting: from records and events to the verdict.
//!
//! Guarantees: every request started is in exactly one record (checked: `started == ok + failed`,
//! the run fails with [`crate::VerifyError::Invariant`] otherwise). Failures are classified,
//! attributed to a router and (when the router says so) a pod, and placed in the phase the pod was
//! in at the time: `serving` (before t0), `pre_stop` (t0 until the stop signal), `stopping` (stop
//! signal until exit), `gone` (after its process exited).
//!
//! Exposure is rate-free: for each router and each pod that stopped, the seconds between the pod
//! stopping to accept (its exit, or its first refused/reset request if earlier) and that router
//! withdrawing it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::events::{Event, EventKind, PodId, RouterId};
use crate::load::{Outcome, Record, RequestKind};
use crate::scenario::{RouterKind, Scenario};

/// A router as reported.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterInfo {
    /// Index.
    pub id: RouterId,
    /// Kind.
    pub kind: RouterKind,
    /// Listen address.
    pub addr: String,
    /// Its propagation distribution.
    pub propagation: String,
}

/// A replica as reported.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    /// Id (`pod-N`).
    pub id: PodId,
    /// Revision (0 = initial).
    pub revision: u32,
    /// The port routers sent to.
    pub port: u16,
    /// PID of its main process.
    pub pid: u32,
    /// Started (s since run start).
    pub started: f64,
    /// Became ready.
    pub ready: Option<f64>,
    /// t0 of its deletion.
    pub deleted: Option<f64>,
    /// preStop started / finished.
    #[serde(serialize_with = "shape::span")]
    pub pre_stop: Option<(f64, f64)>,
    /// Stop signal sent.
    pub stop_signal: Option<f64>,
    /// SIGKILLed at the end of the grace period.
    pub killed: Option<f64>,
    /// Its process exited.
    pub exited: Option<f64>,
    /// Exit code or signal.
    pub exit_status: Option<String>,
    /// Seconds from t0 to exit.
    pub termination_seconds: Option<f64>,
    /// When each router withdrew it (router id, time).
    #[serde(serialize_with = "shape::withdrawals")]
    pub withdrawals: Vec<(RouterId, f64)>,
    /// The last withdrawal.
    pub last_withdrawal: Option<f64>,
    /// Exit minus last withdrawal: negative means it exited while a router still routed to it.
    pub exit_after_last_withdrawal: Option<f64>,
    /// Router-seconds of exposure caused by this pod.
    pub exposure: f64,
    /// Failed requests attributed to it.
    pub failures: u64,
    /// Failures by class.
    pub failures_by_class: BTreeMap<&'static str, u64>,
    /// Failures by the pod's phase at the time.
    pub failures_by_phase: BTreeMap<&'static str, u64>,
}

/// Totals of the load.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// Requests started.
    pub started: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Succeeded only thanks to an L7 retry (counted in `ok`, reported separately).
    pub ok_after_retry: u64,
    /// Requested rate (req/s).
    pub target_rate: f64,
    /// Started / load duration.
    pub achieved_rate: f64,
    /// Seconds of load.
    pub duration: f64,
    /// Latency of successful plain requests, milliseconds: p50, p99, max.
    #[serde(serialize_with = "shape::latency")]
    pub latency_ms: [f64; 3],
    /// Requests by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The scenario run.
    pub scenario: Scenario,
    /// Label (for side-by-side reports such as `--demo`).
    pub label: String,
    /// Whether `failed <= max_failures` and the invariant held.
    pub passed: bool,
    /// `started == ok + failed`.
    pub invariant_holds: bool,
    /// Totals.
    pub load: LoadReport,
    /// Failures by class.
    pub failures_by_class: BTreeMap<&'static str, u64>,
    /// Failures by phase of the pod at the time.
    pub failures_by_phase: BTreeMap<&'static str, u64>,
    /// Failures by router.
    pub failures_by_router: BTreeMap<RouterId, u64>,
    /// Total exposure, router-seconds.
    pub exposure: f64,
    /// Exposure per router.
    pub exposure_by_router: BTreeMap<RouterId, f64>,
    /// Routers.
    pub routers: Vec<RouterInfo>,
    /// Replicas.
    pub pods: Vec<PodReport>,
    /// Every event, in time order.
    pub events: Vec<Event>,
    /// Every failed request.
    pub failures: Vec<Record>,
    /// Successes per 100 ms bucket (for the report's load line).
    pub ok_per_bucket: Vec<u32>,
    /// Changes a router failed to apply.
    pub router_errors: Vec<String>,
    /// Load start and stop (s since run start).
    #[serde(serialize_with = "shape::window")]
    pub load_window: (f64, f64),
    /// What the testbed itself cost.
    pub testbed: TestbedCost,
}

/// What the testbed itself (routers, load, accounting: this process, not the replicas) cost.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestbedCost {
    /// CPU seconds (user + system) of this process during the run.
    pub cpu_seconds: f64,
    /// Wall seconds of the run.
    pub wall_seconds: f64,
    /// Seconds spent building this report from the records.
    pub accounting_seconds: f64,
    /// Records accounted.
    pub records: u64,
}

/// Inputs of [`account`].
pub(crate) struct Inputs {
    pub scenario: Scenario,
    pub label: String,
    pub started: u64,
    pub records: Vec<Record>,
    pub events: Vec<Event>,
    pub routers: Vec<RouterInfo>,
    pub pods: Vec<(PodId, u32, u16, u32)>,
    pub router_errors: Vec<String>,
    pub load_window: (f64, f64),
}

/// The pod's phase at `t`.
fn phase(ev: &[&Event], t: f64) -> &'static str {
    let at = |f: &dyn Fn(&EventKind) -> bool| ev.iter().find(|e| f(&e.kind)).map(|e| e.t);
    let exited = at(&|k| matches!(k, EventKind::Exited { .. }));
    let signal = at(&|k| matches!(k, EventKind::StopSignal { .. }));
    let deleted = at(&|k| matches!(k, EventKind::PodDeleted));
    if exited.is_some_and(|x| t >= x) {
        "gone"
    } else if signal.is_some_and(|x| t >= x) {
        "stopping"
    } else if deleted.is_some_and(|x| t >= x) {
        "pre_stop"
    } else {
        "serving"
    }
}

fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) * 1000.0
}

/// Builds the report.
pub(crate) fn account(inp: Inputs) -> Report {
    let Inputs {
        scenario,
        label,
        started,
        records,
        events,
        routers,
        pods,
        router_errors,
        load_window,
    } = inp;
    let ok = records.iter().filter(|r| r.outcome == Outcome::Ok).count() as u64;
    let failed = records.len() as u64 - ok;
    let invariant_holds = started == ok + failed;
    let mut by_pod_events: HashMap<PodId, Vec<&Event>> = HashMap::new();
    for e in &events {
        if let Some(p) = e.pod {
            by_pod_events.entry(p).or_default().push(e);
        }
    }
    let failures: Vec<Record> = records
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .copied()
        .collect();
    let mut failures_by_class = BTreeMap::new();
    let mut failures_by_phase = BTreeMap::new();
    let mut failures_by_router = BTreeMap::new();
    for f in &failures {
        *failures_by_class.entry(f.outcome.name()).or_insert(0) += 1;
        let ph = f
            .pod
            .and_then(|p| by_pod_events.get(&p))
            .map_or("unknown", |ev| phase(ev, f.t));
        *failures_by_phase.entry(ph).or_insert(0) += 1;
        *failures_by_router.entry(f.router).or_insert(0) += 1;
    }
    let mut exposure_by_router: BTreeMap<RouterId, f64> =
        routers.iter().map(|r| (r.id, 0.0)).collect();
    let mut pod_reports = Vec::new();
    for (id, revision, port, pid) in pods {
        let ev = by_pod_events.get(&id).cloned().unwrap_or_default();
        let first = |f: &dyn Fn(&EventKind) -> bool| ev.iter().find(|e| f(&e.kind)).map(|e| e.t);
        let started_t = first(&|k| matches!(k, EventKind::PodStarted { .. })).unwrap_or(0.0);
        let ready = first(&|k| matches!(k, EventKind::PodReady));
        let deleted = first(&|k| matches!(k, EventKind::PodDeleted));
        let ps_start = first(&|k| matches!(k, EventKind::PreStopStarted));
        let ps_end = first(&|k| matches!(k, EventKind::PreStopFinished { .. }));
        let stop_signal = first(&|k| matches!(k, EventKind::StopSignal { .. }));
        let killed = first(&|k| matches!(k, EventKind::Killed));
        let exit_ev = ev
            .iter()
            .find(|e| matches!(e.kind, EventKind::Exited { .. }));
        let exited = exit_ev.map(|e| e.t);
        let exit_status = exit_ev.map(|e| match e.kind {
            EventKind::Exited { code: Some(c), .. } => format!("exit {c}"),
            EventKind::Exited {
                signal: Some(s), ..
            } => format!("signal {s}"),
            _ => "?".into(),
        });
        // Withdrawals after t0 only (the initial adds are not withdrawals).
        let withdrawals: Vec<(RouterId, f64)> = ev
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RouterWithdrew))
            .filter_map(|e| e.router.map(|r| (r, e.t)))
            .collect();
        let last_withdrawal = withdrawals.iter().map(|w| w.1).reduce(f64::max);
        let pod_failures: Vec<&Record> = failures.iter().filter(|f| f.pod == Some(id)).collect();
        let first_broken = pod_failures
            .iter()
            .filter(|f| {
                matches!(f.outcome, Outcome::Refused | Outcome::Reset)
                    && deleted.is_some_and(|d| f.t >= d)
            })
            .map(|f| f.t)
            .reduce(f64::min);
        // Only pods whose process exited during the load (not the teardown) cause exposure.
        let stop = match (exited.filter(|x| *x <= load_window.1), first_broken) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut exposure = 0.0;
        if let Some(stop) = stop {
            for r in &routers {
                let w = withdrawals
                    .iter()
                    .find(|w| w.0 == r.id)
                    .map_or(load_window.1, |w| w.1);
                let e = (w.min(load_window.1) - stop).max(0.0);
                exposure += e;
                *exposure_by_router.entry(r.id).or_insert(0.0) += e;
            }
        }
        let mut by_class = BTreeMap::new();
        let mut by_phase = BTreeMap::new();
        for f in &pod_failures {
            *by_class.entry(f.outcome.name()).or_insert(0) += 1;
            *by_phase.entry(phase(&ev, f.t)).or_insert(0) += 1;
        }
        pod_reports.push(PodReport {
            id,
            revision,
            port,
            pid,
            started: started_t,
            ready,
            deleted,
            pre_stop: ps_start.map(|s| (s, ps_end.unwrap_or(s))),
            stop_signal,
            killed,
            exited,
            exit_status,
            termination_seconds: deleted.zip(exited).map(|(d, x)| x - d),
            withdrawals,
            last_withdrawal,
            exit_after_last_withdrawal: deleted
                .and(exited.zip(last_withdrawal).map(|(x, w)| x - w)),
            exposure,
            failures: pod_failures.len() as u64,
            failures_by_class: by_class,
            failures_by_phase: by_phase,
        });
    }
    let mut lat: Vec<f32> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Ok && r.kind == RequestKind::Plain)
        .map(|r| r.latency)
        .collect();
    lat.sort_by(f32::total_cmp);
    let duration = (load_window.1 - load_window.0).max(1e-9);
    let mut by_kind = BTreeMap::new();
    for r in &records {
        let k = match r.kind {
            RequestKind::Plain => "plain",
            RequestKind::Slow => "slow",
            RequestKind::Websocket => "websocket",
            RequestKind::Stream => "stream",
        };
        *by_kind.entry(k).or_insert(0) += 1;
    }
    let buckets = (duration * 10.0).ceil() as usize + 1;
    let mut ok_per_bucket = vec![0u32; buckets.min(100_000)];
    for r in records.iter().filter(|r| r.outcome == Outcome::Ok) {
        let b = ((r.t - load_window.0).max(0.0) * 10.0) as usize;
        if let Some(x) = ok_per_bucket.get_mut(b) {
            *x += 1;
        }
    }
    let exposure = exposure_by_router.values().sum();
    let passed = invariant_holds && failed <= scenario.max_failures && router_errors.is_empty();
    Report {
        label,
        passed,
        invariant_holds,
        load: LoadReport {
            started,
            ok,
            failed,
            ok_after_retry: records
                .iter()
                .filter(|r| r.outcome == Outcome::Ok && r.retried)
                .count() as u64,
            target_rate: scenario.load.rate,
            achieved_rate: started as f64 / duration,
            duration,
            latency_ms: [
                quantile(&lat, 0.5),
                quantile(&lat, 0.99),
                quantile(&lat, 1.0),
            ],
            by_kind,
        },
        scenario,
        failures_by_class,
        failures_by_phase,
        failures_by_router,
        exposure,
        exposure_by_router,
        routers,
        pods: pod_reports,
        events,
        failures,
        ok_per_bucket,
        router_errors,
        load_window,
        testbed: TestbedCost::default(),
    }
}

mod shape;
#[cfg(test)]
mod tests;
