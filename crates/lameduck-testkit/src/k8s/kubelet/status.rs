//! What the kubelet reports to the API: Node objects, a started pod's status, and its
//! `ContainersReady` and `Ready` conditions.

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::{PodNet, Shared, name_of, uid_of};
use crate::k8s::Error;

pub(super) async fn create_node(api: &Api<Node>, name: &str, index: usize) -> Result<(), Error> {
    let octet = u8::try_from(index + 1).unwrap_or(u8::MAX);
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": format!("zone-{}", index % 3),
            }
        },
    }))
    .map_err(|e| Error::Client(e.to_string()))?;
    api.create(&PostParams::default(), &node).await?;
    let status = json!({
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "lameduck fake kubelet",
                "lastHeartbeatTime": now(), "lastTransitionTime": now(),
            }],
            "addresses": [
                {"type": "InternalIP", "address": Ipv4Addr::new(198, 51, 100, octet).to_string()},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "nodeInfo": {
                "kubeletVersion": "v1.37.2-fake", "containerRuntimeVersion": "none://0",
                "operatingSystem": "linux", "architecture": "amd64",
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                "osImage": "", "kubeProxyVersion": "",
            },
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

pub(super) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
        .to_string()
}

pub(super) async fn report_running(
    shared: &Arc<Shared>,
    pod: &Pod,
    node: &str,
    net: &PodNet,
) -> Result<(), Error> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let node_index: usize = node
        .strip_prefix("node-")
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    let host_ip = Ipv4Addr::new(
        198,
        51,
        100,
        u8::try_from(node_index + 1).unwrap_or(u8::MAX),
    )
    .to_string();
    let started = now();
    let statuses: Vec<serde_json::Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(),
                "imageID": "", "containerID": format!("fake://{}/{}", uid_of(pod), c.name),
                "ready": false, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            })
        })
        .collect();
    let status = json!({
        "status": {
            "phase": "Running",
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": net.ip.to_string(), "podIPs": [{"ip": net.ip.to_string()}],
            "startTime": started,
            "containerStatuses": statuses,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            ],
        }
    });
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
        .await?;
    Ok(())
}

/// Sets `ContainersReady` and `Ready` from the probes and the readiness gates, if they changed.
pub(super) async fn sync_conditions(shared: &Arc<Shared>, pod: &Pod) -> Result<(), Error> {
    let uid = uid_of(pod);
    let containers = {
        let state = shared.state.lock().expect("kubelet state");
        match state.pods.get(&uid) {
            Some(running) if !running.terminating => running.containers_ready.clone(),
            _ => return Ok(()),
        }
    };
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    let containers_ready = containers.iter().all(|&ready| ready);
    let gates_open = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .all(|gate| condition(&gate.condition_type).is_some_and(|c| c.status == "True"));
    let ready = containers_ready && gates_open;
    let word = |b: bool| if b { "True" } else { "False" };
    let unchanged =
        |kind: &str, want: bool| condition(kind).is_some_and(|c| c.status == word(want));
    if unchanged("ContainersReady", containers_ready) && unchanged("Ready", ready) {
        return Ok(());
    }
    let at = now();
    let names: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let statuses: Vec<serde_json::Value> = names
        .iter()
        .zip(&containers)
        .map(|(name, ready)| json!({"name": name, "ready": ready}))
        .collect();
    let reason = |ok: bool, not: &str| if ok { String::new() } else { not.to_owned() };
    let status = json!({
        "status": {
            "containerStatuses": statuses,
            "conditions": [
                {"type": "ContainersReady", "status": word(containers_ready), "lastTransitionTime": at,
                 "reason": reason(containers_ready, "ContainersNotReady")},
                {"type": "Ready", "status": word(ready), "lastTransitionTime": at,
                 "reason": reason(ready, if containers_ready { "ReadinessGatesNotReady" } else { "ContainersNotReady" })},
            ],
        }
    });
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Strategic(&status),
    )
    .await?;
    Ok(())
}

/// Called by a prober when a container's readiness changed.
pub(super) async fn container_readiness(
    shared: &Arc<Shared>,
    uid: &str,
    index: usize,
    ready: bool,
) {
    let (namespace, name) = {
        let mut state = shared.state.lock().expect("kubelet state");
        let Some(running) = state.pods.get_mut(uid) else {
            return;
        };
        match running.containers_ready.get_mut(index) {
            Some(slot) if *slot != ready => *slot = ready,
            _ => return,
        }
        (running.namespace.clone(), running.name.clone())
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    match api.get_opt(&name).await {
        Ok(Some(pod)) if uid_of(&pod) == uid => {
            if let Err(e) = sync_conditions(shared, &pod).await {
                tracing::warn!(pod = %name_of(&pod), "fake kubelet: readiness: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(pod = %name, "fake kubelet: readiness: {e}"),
    }
}
