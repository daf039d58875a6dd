//! The decision: allow a pod's deletion or eviction now, hold it, or refuse it for now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource, ResourceExt};
use tokio::time::Instant;

use crate::caches::Caches;
use crate::metrics::Metrics;
use crate::pods::{self, Handle, PodAddresses};
use crate::settings::{HoldPolicy, OPT_IN_LABEL, OPT_IN_VALUE, PodHold, Settings};

/// How often a held DELETE re-reads the evidence.
const RECHECK: Duration = Duration::from_millis(100);

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
        /// Warnings the caller sees.
        warnings: Vec<String>,
    },
}

/// What a pod's budgets say about taking it out for an eviction.
enum Budget {
    /// Nothing stands in the way.
    Clear,
    /// This budget allows no disruption: the API server refuses the eviction itself.
    Refused(String),
    /// Another pod of this budget is out of traffic and not gone yet.
    Waiting { budget: String, pod: String },
}

/// Which way the pod is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delete,
    Evict,
}

/// A pod the gate took out of traffic.
struct Tracked {
    pod: Pod,
    handle: Handle,
    hold: PodHold,
    first_request: Instant,
    last_request: Instant,
    /// Since when every EndpointSlice showed the pod not ready.
    clear_since: Option<Instant>,
    /// Whether the max hold was reported already.
    escalated: bool,
    /// Whether the gate let the deletion through. The pod stays tracked until it terminates:
    /// if the deletion does not follow after all (a budget refused the eviction after the
    /// webhook allowed it), the cancel loop puts it back in service.
    released: bool,
}

/// The admission webhook's state: caches, the pods taken out of traffic, metrics.
pub struct Gate {
    client: kube::Client,
    settings: Settings,
    addresses: PodAddresses,
    caches: Caches,
    recorder: Recorder,
    tracked: Mutex<HashMap<String, Tracked>>,
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
            tracked: Mutex::new(HashMap::new()),
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
        let uid = pod.uid().unwrap_or_default();
        let known = self.tracked.lock().expect("tracked").contains_key(&uid);
        if !known {
            if kind == Kind::Evict {
                match self.budget_check(&pod).await {
                    Budget::Clear => {}
                    Budget::Refused(budget) => {
                        // The API server refuses it itself (429); taking the pod out first
                        // would only leave it out of traffic.
                        tracing::info!(pod = %key(&pod), budget, "eviction refused by its budget: not taking the pod out");
                        return Verdict::Allow(Vec::new());
                    }
                    Budget::Waiting { budget, pod: other } => {
                        let message = format!(
                            "lameduck gate: {} stays in service until {other} (out of traffic, PodDisruptionBudget {budget}) is gone; retry",
                            key(&pod)
                        );
                        return Verdict::Deny {
                            code: 429,
                            message,
                            warnings: Vec::new(),
                        };
                    }
                }
            }
            if let Err(verdict) = self.take_out(&pod).await {
                return verdict;
            }
        }
        self.hold(&uid, &pod, kind, deadline).await
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
        let tracked = self
            .tracked
            .lock()
            .expect("tracked")
            .contains_key(&pod.uid().unwrap_or_default());
        // A pod the gate took out is not Ready because of the gate: that is no reason to let
        // it go.
        if !ready && !tracked {
            return Some("not ready");
        }
        let own = self.settings.own_namespace.as_deref() == pod.namespace().as_deref()
            && pod.labels().get("app.kubernetes.io/name") == Some(&self.settings.own_name);
        if own {
            return Some("the gate's own pod");
        }
        None
    }

    /// Whether the pod's PodDisruptionBudgets let the gate take it out for an eviction.
    ///
    /// A pod the gate takes out turns unready, which its budget counts as a disruption, but
    /// the disruption controller notices only a moment later: so while another pod of the same
    /// budget is out of traffic (held, or admitted and not gone yet), the gate waits for it to
    /// be gone instead of trusting `disruptionsAllowed`. One pod per budget at a time.
    async fn budget_check(&self, pod: &Pod) -> Budget {
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &namespace);
        let Ok(budgets) = api.list(&ListParams::default()).await else {
            return Budget::Clear; // the API server's own check still runs
        };
        let uid = pod.uid().unwrap_or_default();
        for budget in budgets.items {
            let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.clone()) else {
                continue;
            };
            if !selects(&selector, pod.labels()) {
                continue;
            }
            let allowed = budget
                .status
                .as_ref()
                .and_then(|s| s.disruptions_allowed)
                .unwrap_or(0);
            if allowed < 1 {
                return Budget::Refused(budget.name_any());
            }
            let others: Vec<(String, String)> = {
                let tracked = self.tracked.lock().expect("tracked");
                tracked
                    .iter()
                    .filter(|(other, t)| {
                        **other != uid
                            && t.pod.namespace().as_deref() == Some(namespace.as_str())
                            && selects(&selector, t.pod.labels())
                    })
                    .map(|(other, t)| (other.clone(), t.pod.name_any()))
                    .collect()
            };
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            for (other_uid, other_name) in others {
                match pods.get_opt(&other_name).await {
                    Ok(Some(other)) if other.uid().as_deref() == Some(other_uid.as_str()) => {
                        return Budget::Waiting {
                            budget: budget.name_any(),
                            pod: other_name,
                        };
                    }
                    Ok(_) => {
                        self.forget(&other_uid);
                    }
                    Err(_) => {
                        return Budget::Waiting {
                            budget: budget.name_any(),
                            pod: other_name,
                        };
                    }
                }
            }
        }
        Budget::Clear
    }

    /// Takes the pod out of traffic and starts tracking it; `Err` is the answer when it cannot
    /// be (the gate then lets it go: it fails open).
    async fn take_out(&self, pod: &Pod) -> Result<(), Verdict> {
        let (hold, warnings) = PodHold::of(pod, &self.settings);
        let handle = pods::handle_of(pod, &self.addresses)
            .map_err(|e| allow_warning(format!("{}: {e}; allowed without the gate", key(pod))))?;
        pods::take_out(&self.client, pod, &handle, self.settings.pod_call_timeout)
            .await
            .map_err(|e| {
                self.metrics.pod_unreachable();
                allow_warning(format!(
                    "{}: could not take it out of traffic ({e}); allowed without the gate",
                    key(pod)
                ))
            })?;
        for warning in warnings {
            tracing::warn!(pod = %key(pod), "{warning}");
        }
        tracing::info!(pod = %key(pod), ?handle, "taken out of traffic; holding its deletion");
        self.event(
            pod,
            EventType::Normal,
            "TakenOutOfTraffic",
            "lameduck gate took the pod out of traffic before its deletion",
        )
        .await;
        let now = Instant::now();
        self.tracked.lock().expect("tracked").insert(
            pod.uid().unwrap_or_default(),
            Tracked {
                pod: pod.clone(),
                handle,
                hold,
                first_request: now,
                last_request: now,
                clear_since: None,
                escalated: false,
                released: false,
            },
        );
        Ok(())
    }

    /// Waits for the evidence: for a DELETE until `deadline` (within the hold limit), for an
    /// eviction not at all (its callers retry 429s).
    async fn hold(&self, uid: &str, pod: &Pod, kind: Kind, deadline: Instant) -> Verdict {
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
        loop {
            let (pending, since, hold) = {
                let mut tracked = self.tracked.lock().expect("tracked");
                let Some(entry) = tracked.get_mut(uid) else {
                    return Verdict::Allow(Vec::new());
                };
                entry.last_request = Instant::now();
                (
                    self.slices_and_margin(entry, pod),
                    entry.first_request,
                    entry.hold,
                )
            };
            let mut pending = pending;
            if pending.is_empty() {
                pending.extend(self.pod_evidence(uid, pod).await);
            }
            let held_for = since.elapsed();
            if pending.is_empty() {
                return self.release(uid, pod, held_for).await;
            }
            if held_for >= hold.max_hold {
                return self.at_max_hold(uid, pod, hold, &pending).await;
            }
            if Instant::now() + RECHECK > hold_until {
                let message = format!(
                    "lameduck gate: {} is out of traffic but not safe to stop yet ({}); held {:.1}s, retry",
                    key(pod),
                    pending.join("; "),
                    held_for.as_secs_f64()
                );
                return Verdict::Deny {
                    code: 429,
                    message,
                    warnings: Vec::new(),
                };
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// The cluster's evidence: no EndpointSlice lists the pod ready, and the sync margin passed
    /// since that was first seen.
    fn slices_and_margin(&self, entry: &mut Tracked, pod: &Pod) -> Vec<String> {
        let Some(ip) = pods::pod_ip(pod) else {
            return Vec::new();
        };
        let ready_in = self.caches.still_ready_in(ip);
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
    async fn pod_evidence(&self, uid: &str, pod: &Pod) -> Vec<String> {
        let handle = {
            let tracked = self.tracked.lock().expect("tracked");
            tracked.get(uid).map(|t| t.handle.clone())
        };
        let timeout = self.settings.pod_call_timeout;
        let mut pending = Vec::new();
        if let Some(Handle::Lameduck(addr)) = handle {
            match pods::drain_status(addr, timeout).await {
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

    async fn release(&self, uid: &str, pod: &Pod, held_for: Duration) -> Verdict {
        let (handle, first_release) = {
            let mut tracked = self.tracked.lock().expect("tracked");
            match tracked.get_mut(uid) {
                Some(t) => (
                    Some(t.handle.clone()),
                    !std::mem::replace(&mut t.released, true),
                ),
                None => (None, false),
            }
        };
        if !first_release {
            // A retry after an admission the API server did not carry out: still safe.
            return Verdict::Allow(Vec::new());
        }
        let mut warnings = Vec::new();
        if let Some(Handle::Lameduck(addr)) = handle
            && let Err(e) = pods::confirm_safe(addr, self.settings.pod_call_timeout).await
        {
            warnings.push(format!("lameduck gate: telling the pod it is safe: {e}"));
        }
        self.metrics.held(held_for);
        tracing::info!(pod = %key(pod), held = ?held_for, "safe: every EndpointSlice shows it not ready, margin passed; allowed");
        let note = format!(
            "safe after {:.1}s out of traffic; deletion allowed",
            held_for.as_secs_f64()
        );
        self.event(pod, EventType::Normal, "Released", &note).await;
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
            let mut tracked = self.tracked.lock().expect("tracked");
            tracked
                .get_mut(uid)
                .map(|t| !std::mem::replace(&mut t.escalated, true))
                .unwrap_or(false)
        };
        let what = pending.join("; ");
        let max = humantime::format_duration(hold.max_hold);
        match hold.policy {
            HoldPolicy::BestEffort => {
                if first {
                    self.metrics.escalated(hold.policy);
                }
                let first_release = {
                    let mut tracked = self.tracked.lock().expect("tracked");
                    tracked
                        .get_mut(uid)
                        .map(|t| !std::mem::replace(&mut t.released, true))
                        .unwrap_or(false)
                };
                if first_release {
                    self.metrics.held(hold.max_hold);
                }
                let note =
                    format!("max hold {max} reached, still pending: {what}; allowed (best-effort)");
                tracing::warn!(pod = %key(pod), "{note}");
                self.event(pod, EventType::Warning, "MaxHoldReached", &note)
                    .await;
                Verdict::Allow(vec![format!("lameduck gate: {note}")])
            }
            HoldPolicy::Strict => {
                let note =
                    format!("max hold {max} reached, still pending: {what}; refused (strict)");
                if first {
                    self.metrics.escalated(hold.policy);
                    tracing::warn!(pod = %key(pod), "{note}");
                    self.event(pod, EventType::Warning, "MaxHoldReached", &note)
                        .await;
                }
                Verdict::Deny {
                    code: 429,
                    message: format!("lameduck gate: {} {note}", key(pod)),
                    warnings: Vec::new(),
                }
            }
        }
    }

    fn forget(&self, uid: &str) -> Option<Tracked> {
        self.tracked.lock().expect("tracked").remove(uid)
    }

    /// Puts back in service every pod taken out whose deletion did not follow within
    /// `cancel_after`, and forgets pods that are gone or terminating. Runs every second for
    /// the life of the gate.
    pub async fn cancel_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let stale: Vec<(String, Pod, Handle)> = {
                let tracked = self.tracked.lock().expect("tracked");
                tracked
                    .iter()
                    .filter(|(_, t)| t.last_request.elapsed() >= self.settings.cancel_after)
                    .map(|(uid, t)| (uid.clone(), t.pod.clone(), t.handle.clone()))
                    .collect()
            };
            for (uid, pod, handle) in stale {
                self.cancel(&uid, &pod, &handle).await;
            }
        }
    }

    async fn cancel(&self, uid: &str, pod: &Pod, handle: &Handle) {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.namespace().as_deref().unwrap_or("default"),
        );
        match api.get_opt(&pod.name_any()).await {
            Ok(Some(now))
                if now.uid().as_deref() == Some(uid)
                    && now.metadata.deletion_timestamp.is_none() =>
            {
                match pods::put_back(&self.client, &now, handle, self.settings.pod_call_timeout)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(pod = %key(pod), "no deletion followed: put back in service");
                        self.metrics.put_back();
                        self.event(&now, EventType::Normal, "PutBackInService", "no deletion or eviction followed; lameduck gate put the pod back in service").await;
                    }
                    Err(e) => {
                        tracing::warn!(pod = %key(pod), "could not put it back in service: {e}")
                    }
                }
            }
            Ok(_) => {} // gone, replaced, or terminating: the deletion followed
            Err(e) => {
                tracing::warn!(pod = %key(pod), "checking a pod taken out of traffic: {e}");
                return; // keep it tracked: try again next time
            }
        }
        self.forget(uid);
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

    /// How many pods are out of traffic now.
    pub fn holding(&self) -> usize {
        self.tracked.lock().expect("tracked").len()
    }

    /// Whether `ip` is the IP of a pod the gate holds (for tests and logs).
    pub fn holds_ip(&self, ip: IpAddr) -> bool {
        self.tracked
            .lock()
            .expect("tracked")
            .values()
            .any(|t| pods::pod_ip(&t.pod) == Some(ip))
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

/// Whether `selector` (matchLabels and matchExpressions) selects `labels`.
fn selects(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}
