//! DELETEs through the gate: held until safe, rolling updates, readiness gates, max holds.

use std::time::{Duration, Instant};

use kube::api::DeleteParams;
use lameduck_testkit::poll_until;
use serde_json::json;

use crate::support::{ADMIN, Cluster, EVERY, HTTP, PodSettings, WAIT, traffic};
use crate::{assert_confirmed, events_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_is_admitted_only_after_the_endpoint_is_not_ready_and_the_margin_passed() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster.deploy_lameduck("web", 3).await;
    let victim = cluster.pod_names("web").await[0].clone();
    let pid = cluster
        .kubelet
        .with_process(crate::support::NS, &victim, |p| p.pid())
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
                kube::Api::namespaced(cluster_endpoints, crate::support::NS);
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
    // Behaviour, not speed: the drain wait ended on the gate's word, not on a quiet window.
    assert_confirmed(&log);
    let gate_log = cluster.gate_log();
    assert!(
        gate_log
            .lines()
            .any(|l| l.contains("safe: every EndpointSlice") && l.contains(victim.as_str())),
        "{gate_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_goes_through_the_gate_for_every_old_pod() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster.deploy_lameduck("web", 3).await;
    let old = cluster.pod_names("web").await;
    let began = Instant::now();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"version": "2"}}}}});
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cluster.client.clone(), crate::support::NS);
    deployments
        .patch(
            "web",
            &Default::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let done = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async {
            let status = deployments.get("web").await.ok()?.status?;
            let names = cluster.pod_names("web").await;
            let replaced = names.iter().all(|n| !old.contains(n));
            (replaced
                && names.len() == 3
                && status.updated_replicas == Some(3)
                && status.available_replicas == Some(3))
            .then_some(())
        },
    )
    .await;
    assert!(
        done.is_some(),
        "the rollout did not finish: {}",
        cluster.gate_log()
    );
    let log = cluster.gate_log();
    let holds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("safe: every EndpointSlice"))
        .collect();
    println!(
        "rolling update of 3 pods through the gate: {:.1} s",
        began.elapsed().as_secs_f64()
    );
    for line in &holds {
        println!("  {line}");
    }
    for pod in &old {
        assert!(
            holds.iter().any(|l| l.contains(pod.as_str())),
            "{pod} was not held by the gate: {log}"
        );
        assert_confirmed(&cluster.pod_log(pod));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_lameduck_is_taken_out_through_its_readiness_gate() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    // Ready only once the gate opened the readiness gate it declares.
    cluster.deploy_plain("legacy", 2).await;
    let pod = cluster.pod_names("legacy").await[0].clone();
    let started = Instant::now();
    cluster
        .pods()
        .delete(&pod, &DeleteParams::default())
        .await
        .unwrap();
    let held = started.elapsed();
    println!("readiness-gate pod: DELETE held {} ms", held.as_millis());
    assert!(
        held >= Duration::from_millis(900),
        "admitted before the 1 s margin"
    );
    let log = cluster.gate_log();
    assert!(
        log.lines()
            .any(|l| l.contains("safe: every EndpointSlice") && l.contains(pod.as_str())),
        "{log}"
    );
    let notes = events_for(&cluster, &pod, "TakenOutOfTraffic").await;
    assert_eq!(notes.len(), 1, "one Event when taken out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_hook_that_says_not_yet_is_refused_past_the_max_hold_when_strict_and_let_go_when_best_effort()
 {
    let Some(cluster) = Cluster::start(PodSettings::default(), &["--hold-limit=4s"]).await else {
        return;
    };
    // The demo app answers POST /prepare with 404: "not yet", forever.
    let hook = format!("http://$(POD_IP):{}/prepare", crate::support::APP);
    for (app, policy) in [("strict", "strict"), ("relaxed", "best-effort")] {
        cluster
            .deploy(
                app,
                1,
                json!({
                    "lameduck.dev/admin-port": ADMIN.to_string(),
                    "lameduck.dev/prepare-url": hook,
                    "lameduck.dev/max-hold": "2s",
                    "lameduck.dev/hold-policy": policy,
                }),
            )
            .await;
    }
    let strict = cluster.pod_names("strict").await[0].clone();
    for attempt in 1..=2 {
        let started = Instant::now();
        match cluster
            .pods()
            .delete(&strict, &DeleteParams::default())
            .await
        {
            Err(kube::Error::Api(status)) => {
                println!(
                    "strict, DELETE {attempt}: {} after {} ms",
                    status.message,
                    started.elapsed().as_millis()
                );
                assert_eq!(status.code, 429);
                assert!(
                    status.message.contains("prepare hook answered 404"),
                    "{}",
                    status.message
                );
                assert!(status.message.contains("strict"), "{}", status.message);
            }
            other => panic!("a strict pod whose hook says not yet was let go: {other:?}"),
        }
    }
    let pod = cluster.pods().get(&strict).await.unwrap();
    assert!(
        pod.metadata.deletion_timestamp.is_none(),
        "still there, not terminating"
    );
    assert_eq!(
        events_for(&cluster, &strict, "MaxHoldReached").await.len(),
        1,
        "one Event"
    );

    let relaxed = cluster.pod_names("relaxed").await[0].clone();
    let started = Instant::now();
    cluster
        .pods()
        .delete(&relaxed, &DeleteParams::default())
        .await
        .expect("best-effort lets it go at the max hold");
    let held = started.elapsed();
    println!("best-effort: DELETE admitted after {} ms", held.as_millis());
    assert!(
        held >= Duration::from_millis(1500),
        "let go before the max hold"
    );
    let notes = events_for(&cluster, &relaxed, "MaxHoldReached").await;
    assert!(notes.iter().any(|n| n.contains("best-effort")), "{notes:?}");
}
