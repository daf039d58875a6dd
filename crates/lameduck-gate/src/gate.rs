//! The decision: allow a pod's deletion or eviction now, hold it, or refuse it for now.
//!
//! What must survive a replica lives on the pod ([`HoldRecord`]); a replica keeps only what it
//! observed itself (since when the slices are clear, whether it reported the max hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource, ResourceExt};
use tokio::time::Instant;

use crate::budget::{self, Budget};
use crate::caches::Caches;
use crate::hold_record::HoldRecord;
use crate::lease::Leadership;
use crate::metrics::Metrics;
use crate::pods::{self, Handle, PodAddresses};
use crate::settings::{HoldPolicy, OPT_IN_LABEL, OPT_IN_VALUE, PodHold, Settings};

/// How often a held DELETE re-reads the evidence.
const RECHECK: Duration = Duration::from_millis(100);
/// A held pod's record is rewritten at most this often (each write is a PATCH of the pod).
const TOUCH_EVERY: Duration = Duration::from_secs(2);
/// What a replica observed of a pod is forgotten after this long without a request.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// What the gate answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through, with warnings the caller sees.
    Allow(Vec<String>),
    /// Refuse it for now: HTTP `code` (429: retry) and what is pending.
    Deny {
        /// The status code the API server passes on.
        code: u16,
        /// What is still pending.
        message: String,
    },
}

/// Which way the pod is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delete,
    Evict,
}

/// What this replica observed of a held pod.
#[derive(Debug)]
struct Seen {
    /// Since when every EndpointSlice showed the pod not ready.
    clear_since: Option<Instant>,
    /// Whether this replica reported the max hold (Event, metric) already.
    escalated: bool,
    /// Whether this replica let the deletion through.
    released: bool,
    last_request: Instant,
}

/// The admission webhook's state: caches, what this replica saw, metrics.
pub struct Gate {
    client: kube::Client,
    settings: Settings,
    addresses: PodAddresses,
    caches: Caches,
    recorder: Recorder,
    seen: Mutex<HashMap<String, Seen>>,
    leadership: Arc<Leadership>,
    /// Counters and the hold histogram, for `/metrics`.
    pub metrics: Metrics,
}

impl Gate {
    /// A gate reading `caches`, reaching pods through `addresses`.
    pub fn new(
        client: kube::Client,
        settings: Settings,
        addresses: PodAddresses,
        caches: Caches,
    ) -> Self {
        let reporter = Reporter {
            controller: "lameduck-gate".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            addresses,
            caches,
            seen: Mutex::new(HashMap::new()),
            leadership: Arc::default(),
            metrics: Metrics::default(),
        }
    }

    /// The API client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether this replica holds the Lease (and so runs the background loops).
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }

    /// Decides on one admission request. `deadline` is when the API server stops waiting
    /// (from the call's `?timeout=`).
    pub async fn decide(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        deadline: Instant,
    ) -> Verdict {
        let verdict = self.decide_inner(request, deadline).await;
        self.metrics.count(&verdict);
        verdict
    }

    async fn decide_inner(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        deadline: Instant,
    ) -> Verdict {
        let is_pods = request.resource.group.is_empty() && request.resource.resource == "pods";
        let kind = match (&request.operation, request.sub_resource.as_deref()) {
            (Operation::Delete, None) if is_pods => Kind::Delete,
            (Operation::Create, Some("eviction")) if is_pods => Kind::Evict,
            _ => {
                return Verdict::Allow(vec![format!(
                    "lameduck gate: {:?} of {}{} is not a pod deletion or eviction; allowed",
                    request.operation,
                    request.resource.resource,
                    request
                        .sub_resource
                        .as_deref()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default()
                )]);
            }
        };
        if request.dry_run {
            return Verdict::Allow(Vec::new());
        }
        let pod = match kind {
            Kind::Delete => match request.old_object.as_ref().map(to_pod) {
                Some(Ok(pod)) => pod,
                Some(Err(e)) => return allow_warning(format!("the pod in the request: {e}")),
                None => return allow_warning("the DELETE request carries no pod".into()),
            },
            Kind::Evict => {
                let namespace = request.namespace.as_deref().unwrap_or("default");
                let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                match api.get_opt(&request.name).await {
                    Ok(Some(pod)) => pod,
                    Ok(None) => return Verdict::Allow(Vec::new()),
                    Err(e) => return allow_warning(format!("reading the pod: {e}")),
                }
            }
        };
        if let Some(why) = self.exempt(&pod) {
            tracing::debug!(pod = %key(&pod), why, "allowed at once");
            return Verdict::Allow(Vec::new());
        }
        let record = match HoldRecord::of(&pod) {
            Some(record) => record,
            None => {
                if kind == Kind::Evict
                    && let Some(verdict) = self.budget_verdict(&pod).await
                {
                    return verdict;
                }
                match self.take_out(&pod).await {
                    Ok(record) => record,
                    Err(verdict) => return verdict,
                }
            }
        };
        self.hold(&pod, record, kind, deadline).await
    }

    /// Why the pod is let go at once, if it is.
    fn exempt(&self, pod: &Pod) -> Option<&'static str> {
        let opted_in = pod.labels().get(OPT_IN_LABEL).map(String::as_str) == Some(OPT_IN_VALUE)
            || self
                .caches
                .namespace_opted_in(pod.namespace().as_deref().unwrap_or_default());
        if !opted_in {
            return Some("not opted in");
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return Some("already terminating");
        }
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
            return Some("not running");
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        // A pod the gate took out is not Ready because of the gate: no reason to let it go.
        if !ready && HoldRecord::of(pod).is_none() {
            return Some("not ready");
        }
        let own = self.settings.own_namespace.as_deref() == pod.namespace().as_deref()
            && pod.labels().get("app.kubernetes.io/name") == Some(&self.settings.own_name);
        if own {
            return Some("the gate's own pod");
        }
        None
    }

    /// The answer when the pod's budgets stand in the way of taking it out for an eviction.
    async fn budget_verdict(&self, pod: &Pod) -> Option<Verdict> {
        match budget::check(&self.client, pod).await {
            Budget::Clear => None,
            Budget::Refused(budget) => {
                // The API server refuses it itself (429); taking the pod out first would only
                // leave it out of traffic.
                tracing::info!(pod = %key(pod), budget, "eviction refused by its budget: not taking the pod out");
                Some(Verdict::Allow(Vec::new()))
            }
            Budget::Waiting { budget, pod: other } => Some(Verdict::Deny {
                code: 429,
                message: format!(
                    "lameduck gate: {} stays in service until {other} (out of traffic, PodDisruptionBudget {budget}) is gone; retry",
                    key(pod)
                ),
            }),
        }
    }

    /// Takes the pod out of traffic and records the hold on it; `Err` is the answer when it
    /// cannot be taken out (the gate then lets it go: it fails open).
    ///
    /// Nothing is written to a pod the gate lets go at once: the API server runs a DELETE's
    /// admission inside its update of the pod, and a write to the pod in between makes it run
    /// the admission again.
    async fn take_out(&self, pod: &Pod) -> Result<HoldRecord, Verdict> {
        let handle = pods::handle_of(pod, &self.addresses)
            .map_err(|e| allow_warning(format!("{}: {e}; allowed without the gate", key(pod))))?;
        let (_, warnings) = PodHold::of(pod, &self.settings);
        for warning in warnings {
            tracing::warn!(pod = %key(pod), "{warning}");
        }
        if let Err(e) =
            pods::take_out(&self.client, pod, &handle, self.settings.pod_call_timeout).await
        {
            self.metrics.pod_unreachable();
            return Err(allow_warning(format!(
                "{}: could not take it out of traffic ({e}); allowed without the gate",
                key(pod)
            )));
        }
        let record = HoldRecord::begin();
        if let Err(e) = record.write(&self.pods(pod), &pod.name_any()).await {
            // Held all the same; only the cancel loop will not find it.
            tracing::warn!(pod = %key(pod), "{e}");
        }
        tracing::info!(pod = %key(pod), ?handle, "taken out of traffic; holding its deletion");
        self.event(
            pod,
            EventType::Normal,
            "TakenOutOfTraffic",
            "lameduck gate took the pod out of traffic before its deletion",
        )
        .await;
        Ok(record)
    }

    /// Waits for the evidence: for a DELETE until `deadline` (within the hold limit), for an
    /// eviction not at all (its callers retry 429s).
    async fn hold(
        &self,
        pod: &Pod,
        mut record: HoldRecord,
        kind: Kind,
        deadline: Instant,
    ) -> Verdict {
        let uid = pod.uid().unwrap_or_default();
        let hold_until = match kind {
            Kind::Delete => {
                let limit = Instant::now() + self.settings.hold_limit;
                limit.min(
                    deadline
                        .checked_sub(Duration::from_secs(1))
                        .unwrap_or(deadline),
                )
            }
            Kind::Evict => Instant::now(),
        };
        let (hold, _) = PodHold::of(pod, &self.settings);
        let handle = pods::handle_of(pod, &self.addresses).ok();
        loop {
            let mut pending = self.slices_and_margin(&uid, pod);
            if pending.is_empty() {
                pending.extend(self.pod_evidence(pod, handle.as_ref()).await);
            }
            if pending.is_empty() {
                return self
                    .release(&uid, pod, handle.as_ref(), record.held_for())
                    .await;
            }
            if record.held_for() >= hold.max_hold {
                return self.at_max_hold(&uid, pod, hold, &pending).await;
            }
            if Instant::now() + RECHECK > hold_until {
                // Refused for now: the caller's retry is a request still coming, so keep the
                // cancel loop away. (Never written on the way to an allow: see take_out.)
                if let Err(e) = record
                    .touch(&self.pods(pod), &pod.name_any(), TOUCH_EVERY)
                    .await
                {
                    tracing::warn!(pod = %key(pod), "{e}");
                }
                let message = format!(
                    "lameduck gate: {} is out of traffic but not safe to stop yet ({}); held {:.1}s, retry",
                    key(pod),
                    pending.join("; "),
                    record.held_for().as_secs_f64()
                );
                return Verdict::Deny { code: 429, message };
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// The cluster's evidence: no EndpointSlice lists the pod ready, and the sync margin passed
    /// since this replica first saw that.
    fn slices_and_margin(&self, uid: &str, pod: &Pod) -> Vec<String> {
        let Some(ip) = pods::pod_ip(pod) else {
            return Vec::new();
        };
        let ready_in = self.caches.still_ready_in(ip);
        let mut seen = self.seen.lock().expect("seen");
        seen.retain(|_, s| s.last_request.elapsed() < FORGET_AFTER);
        let entry = seen.entry(uid.to_owned()).or_insert_with(|| Seen {
            clear_since: None,
            escalated: false,
            released: false,
            last_request: Instant::now(),
        });
        entry.last_request = Instant::now();
        if !ready_in.is_empty() {
            entry.clear_since = None;
            return vec![format!(
                "EndpointSlice {} still lists it ready",
                ready_in.join(", ")
            )];
        }
        let since = *entry.clear_since.get_or_insert_with(Instant::now);
        let left = self.settings.sync_margin.saturating_sub(since.elapsed());
        if left.is_zero() {
            Vec::new()
        } else {
            vec![format!(
                "sync margin for the slowest consumer: {:.1}s left",
                left.as_secs_f64()
            )]
        }
    }

    /// The pod's own evidence: quiet and idle (lameduck pods), and its prepare hook done.
    async fn pod_evidence(&self, pod: &Pod, handle: Option<&Handle>) -> Vec<String> {
        let timeout = self.settings.pod_call_timeout;
        let mut pending = Vec::new();
        if let Some(Handle::Lameduck(addr)) = handle {
            match pods::drain_status(*addr, timeout).await {
                Ok(status) if status.quiet && status.busy_tasks == 0 => {}
                Ok(status) => pending.push(format!(
                    "the pod is busy (in flight {}, tracked tasks {}, quiet for {} ms)",
                    status.in_flight,
                    status.busy_tasks,
                    status.quiet_for_ms.unwrap_or(0)
                )),
                Err(e) => pending.push(format!("the pod's drain status: {e}")),
            }
        }
        match pods::prepare_pending(pod, &self.addresses, timeout).await {
            Ok(None) => {}
            Ok(Some(why)) | Err(why) => pending.push(why),
        }
        pending
    }

    /// Marks the pod released in this replica; true the first time.
    fn mark_released(&self, uid: &str) -> bool {
        let mut seen = self.seen.lock().expect("seen");
        seen.get_mut(uid)
            .is_some_and(|s| !std::mem::replace(&mut s.released, true))
    }

    async fn release(
        &self,
        uid: &str,
        pod: &Pod,
        handle: Option<&Handle>,
        held_for: Duration,
    ) -> Verdict {
        let mut warnings = Vec::new();
        if let Some(Handle::Lameduck(addr)) = handle
            && let Err(e) = pods::confirm_safe(*addr, self.settings.pod_call_timeout).await
        {
            warnings.push(format!("lameduck gate: telling the pod it is safe: {e}"));
        }
        if self.mark_released(uid) {
            self.metrics.held(held_for);
            tracing::info!(pod = %key(pod), held = ?held_for, "safe: every EndpointSlice shows it not ready, margin passed; allowed");
            let note = format!(
                "safe after {:.1}s out of traffic; deletion allowed",
                held_for.as_secs_f64()
            );
            self.event(pod, EventType::Normal, "Released", &note).await;
        }
        Verdict::Allow(warnings)
    }

    async fn at_max_hold(
        &self,
        uid: &str,
        pod: &Pod,
        hold: PodHold,
        pending: &[String],
    ) -> Verdict {
        let first = {
            let mut seen = self.seen.lock().expect("seen");
            seen.get_mut(uid)
                .is_some_and(|s| !std::mem::replace(&mut s.escalated, true))
        };
        let what = pending.join("; ");
        let max = humantime::format_duration(hold.max_hold);
        let note = match hold.policy {
            HoldPolicy::BestEffort => {
                format!("max hold {max} reached, still pending: {what}; allowed (best-effort)")
            }
            HoldPolicy::Strict => {
                format!("max hold {max} reached, still pending: {what}; refused (strict)")
            }
        };
        if first {
            self.metrics.escalated(hold.policy);
            tracing::warn!(pod = %key(pod), "{note}");
            self.event(pod, EventType::Warning, "MaxHoldReached", &note)
                .await;
        }
        match hold.policy {
            HoldPolicy::BestEffort => {
                if self.mark_released(uid) {
                    self.metrics.held(hold.max_hold);
                }
                Verdict::Allow(vec![format!("lameduck gate: {note}")])
            }
            HoldPolicy::Strict => Verdict::Deny {
                code: 429,
                message: format!("lameduck gate: {} {note}", key(pod)),
            },
        }
    }

    /// Puts back in service every held pod whose deletion did not follow within
    /// `cancel_after` of the last request for it. Runs every second for the life of the gate,
    /// acting only while this replica holds the Lease.
    pub async fn cancel_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let all: Api<Pod> = Api::all(self.client.clone());
        let held = kube::api::ListParams::default()
            .labels(&format!("{}=true", crate::hold_record::HELD_LABEL));
        loop {
            tick.tick().await;
            if !self.leadership.is_leader() {
                continue;
            }
            let pods = match all.list(&held).await {
                Ok(list) => list.items,
                Err(e) => {
                    tracing::warn!("listing held pods: {e}");
                    continue;
                }
            };
            for pod in pods {
                let stale =
                    HoldRecord::of(&pod).is_none_or(|r| r.idle_for() >= self.settings.cancel_after);
                // A terminating pod's deletion followed: its hold ends with it.
                if stale && pod.metadata.deletion_timestamp.is_none() {
                    self.put_back(&pod).await;
                }
            }
        }
    }

    async fn put_back(&self, pod: &Pod) {
        let api = self.pods(pod);
        let result = match pods::handle_of(pod, &self.addresses) {
            Ok(handle) => {
                pods::put_back(&self.client, pod, &handle, self.settings.pod_call_timeout).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                tracing::info!(pod = %key(pod), "no deletion followed: put back in service");
                self.metrics.put_back();
                self.event(
                    pod,
                    EventType::Normal,
                    "PutBackInService",
                    "no deletion or eviction followed; lameduck gate put the pod back in service",
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(pod = %key(pod), "could not put it back in service: {e}; erasing the hold anyway")
            }
        }
        if let Err(e) = HoldRecord::erase(&api, &pod.name_any()).await {
            tracing::warn!(pod = %key(pod), "{e}");
        }
        self.seen
            .lock()
            .expect("seen")
            .remove(&pod.uid().unwrap_or_default());
    }

    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(
            self.client.clone(),
            pod.namespace().as_deref().unwrap_or("default"),
        )
    }

    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Hold".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::debug!(pod = %key(pod), "event: {e}");
        }
    }

    /// How many pods this replica is holding (seen, not released).
    pub fn holding(&self) -> usize {
        self.seen
            .lock()
            .expect("seen")
            .values()
            .filter(|s| !s.released)
            .count()
    }
}

fn allow_warning(warning: String) -> Verdict {
    tracing::warn!("{warning}");
    Verdict::Allow(vec![warning])
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn to_pod(object: &DynamicObject) -> Result<Pod, String> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| e.to_string())
}
