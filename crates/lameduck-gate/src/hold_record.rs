//! The hold, written on the pod itself, so that every replica of the gate (and the one that
//! runs the cancel loop) sees the same: a label to find held pods by, and an annotation with
//! when the hold began and when the last deletion or eviction request for the pod came.
//! Labels are only added, never removed or changed, so Services, ReplicaSets and
//! PodDisruptionBudgets keep selecting the pod.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};

/// `lameduck.dev/gate-held: "true"` on a pod the gate took out of traffic.
pub const HELD_LABEL: &str = "lameduck.dev/gate-held";
/// The [`HoldRecord`] of a held pod, as JSON.
pub const HOLD_ANNOTATION: &str = "lameduck.dev/gate-hold";

/// When the hold began and when a request for the pod last came (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// The hold began (the max hold counts from here).
    pub since_ms: u64,
    /// The last deletion or eviction request (the cancel timeout counts from here).
    pub last_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl HoldRecord {
    /// A hold that begins now.
    pub fn begin() -> Self {
        let now = now_ms();
        Self {
            since_ms: now,
            last_ms: now,
        }
    }

    /// How long the pod has been held.
    pub fn held_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.since_ms))
    }

    /// How long ago the last request came.
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_ms))
    }

    /// The record of a pod the gate holds, if it holds it.
    pub fn of(pod: &Pod) -> Option<Self> {
        let held = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HELD_LABEL))
            .is_some_and(|v| v == "true");
        let text = pod.metadata.annotations.as_ref()?.get(HOLD_ANNOTATION)?;
        held.then(|| serde_json::from_str(text).ok()).flatten()
    }

    /// Writes it on the pod (with the label).
    pub async fn write(&self, api: &Api<Pod>, name: &str) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        let patch = serde_json::json!({"metadata": {
            "labels": {HELD_LABEL: "true"},
            "annotations": {HOLD_ANNOTATION: text},
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| format!("recording the hold on the pod: {e}"))
    }

    /// Records a request now, unless one was recorded less than `every` ago (one write per
    /// retry of `kubectl drain` at most).
    pub async fn touch(
        &mut self,
        api: &Api<Pod>,
        name: &str,
        every: Duration,
    ) -> Result<(), String> {
        if self.idle_for() < every {
            return Ok(());
        }
        self.last_ms = now_ms();
        self.write(api, name).await
    }

    /// Removes the label and the annotation (the pod is back in service).
    pub async fn erase(api: &Api<Pod>, name: &str) -> Result<(), String> {
        let patch = serde_json::json!({"metadata": {
            "labels": {HELD_LABEL: null},
            "annotations": {HOLD_ANNOTATION: null},
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| format!("erasing the hold from the pod: {e}"))
    }
}
