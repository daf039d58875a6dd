//! `lameduck gate serve` against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager built from Kubernetes' Go modules), with pods that are real
//! `lameduck run --proxy` processes behind the fake kubelet. Timings are printed.

#![allow(clippy::unwrap_used)]

mod deletions;
mod evictions;
mod operations;
mod support;

use support::Cluster;

/// The pod's `lameduck run` ended its drain wait on the gate's confirmation.
pub(crate) fn assert_confirmed(log: &str) {
    assert!(
        log.contains("reason=confirmed"),
        "the drain wait did not end on the gate's confirmation: {log}"
    );
}

pub(crate) async fn events_for(cluster: &Cluster, pod: &str, reason: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(cluster.client.clone(), support::NS);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}
