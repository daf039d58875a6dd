//! `lameduck gate serve` against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager built from Kubernetes' Go modules), with pods that are real
//! `lameduck run --proxy` processes behind the fake kubelet. Timings are printed.

#![allow(clippy::unwrap_used)]

mod gate_support;

use std::time::{Duration, Instant};

use gate_support::{ADMIN, Cluster, EVERY, HTTP, PodSettings, WAIT, traffic};
use kube::api::DeleteParams;
use lameduck_testkit::poll_until;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_is_admitted_only_after_the_endpoint_is_not_ready_and_the_margin_passed() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster
        .deploy(
            "web",
            3,
            json!({"lameduck.dev/admin-port": ADMIN.to_string()}),
        )
        .await;
    let victim = cluster.pod_names("web").await[0].clone();
    let pid = cluster
        .kubelet
        .with_process(gate_support::NS, &victim, |p| p.pid())
        .unwrap();

    // A router in front of the pod: it sends until it sees the victim's endpoint not ready,
    // 300 ms (its propagation delay) after the EndpointSlice says so.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let not_ready_at = {
        let cluster_endpoints = cluster.client.clone();
        let victim = victim.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
                kube::Api::namespaced(cluster_endpoints, gate_support::NS);
            let limit = Instant::now() + WAIT;
            while Instant::now() < limit {
                let list = slices.list(&Default::default()).await.unwrap();
                let ready = list
                    .items
                    .iter()
                    .flat_map(|s| s.endpoints.iter().flatten())
                    .any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.name.as_deref())
                            == Some(victim.as_str())
                            && e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                    });
                if !ready {
                    let at = Instant::now();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = stop_tx.send(true);
                    return Some(at);
                }
                tokio::time::sleep(EVERY).await;
            }
            None
        })
    };
    let load = traffic(cluster.loopback(&victim, HTTP), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let deleting = Instant::now();
    cluster
        .pods()
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let admitted = Instant::now();
    stop_tx.send(true).unwrap();
    let (sent, failed, errors) = load.await.unwrap();
    let not_ready_at = not_ready_at
        .await
        .unwrap()
        .expect("the endpoint turned not ready");
    println!(
        "DELETE held {} ms; the endpoint turned not ready {} ms after the DELETE, {} ms before it was admitted; {sent} requests through the pod's proxy while held, {failed} failed",
        admitted.duration_since(deleting).as_millis(),
        not_ready_at.duration_since(deleting).as_millis(),
        admitted.duration_since(not_ready_at).as_millis(),
    );
    assert_eq!(
        failed, 0,
        "requests through the held pod failed: {errors:?}"
    );
    assert!(sent >= 20, "only {sent} requests");
    assert!(
        admitted.duration_since(not_ready_at) >= Duration::from_millis(900),
        "admitted before the 1 s sync margin after the endpoint turned not ready"
    );
    // The gate told the pod it is safe: SIGTERM goes straight to Closing, no second drain
    // wait (min_wait is 10 s).
    let exited = poll_until(Duration::from_secs(20), EVERY, || async {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
            .is_err()
            .then_some(Instant::now())
    })
    .await
    .expect("the pod's process exited");
    let log = cluster.pod_log(&victim);
    println!(
        "admitted to exited: {} ms",
        exited.duration_since(admitted).as_millis()
    );
    assert!(
        log.contains("drain ended by confirmed") || log.contains("reason=confirmed"),
        "{log}"
    );
    assert!(
        exited.duration_since(admitted) < Duration::from_secs(8),
        "the pod waited out a drain of its own after the gate's admission: {log}"
    );
    assert!(
        cluster.gate_log().contains("safe"),
        "{}",
        cluster.gate_log()
    );
}
