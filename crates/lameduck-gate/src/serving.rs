//! Sets the readiness gate `lameduck.dev/serving` True on pods that declare it and have no
//! such condition yet: a pod with a readiness gate is not Ready until its condition is True,
//! and nothing else sets this one. The gate sets it False when it takes the pod out.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::settings::SERVING_CONDITION;

/// Watches every pod (no cache is kept: each event is looked at once) for the life of the
/// gate. Every replica does it, not only the Lease holder: setting a missing condition True is
/// idempotent, and a new pod must not wait for a leader change to become Ready.
pub async fn open_new_pods(client: kube::Client) {
    let api: Api<Pod> = Api::all(client.clone());
    let mut pods = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = pods.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(error) => {
                tracing::warn!(%error, "watching pods for the readiness gate; retrying");
                continue;
            }
        };
        if needs_opening(&pod) {
            let namespace = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            if let Err(e) = crate::pods::set_serving(&api, &pod.name_any(), true).await {
                tracing::warn!(pod = %format!("{namespace}/{}", pod.name_any()), "{e}");
            }
        }
    }
}

/// Declares the gate, is not terminating, and has no condition of that type yet.
fn needs_opening(pod: &Pod) -> bool {
    let declares = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == SERVING_CONDITION));
    let has_condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == SERVING_CONDITION));
    declares && !has_condition && pod.metadata.deletion_timestamp.is_none()
}
