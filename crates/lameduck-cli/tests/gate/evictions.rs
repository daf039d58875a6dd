//! Evictions through the gate: 429 until safe, budgets, putting pods back, replicas.

use std::time::{Duration, Instant};

use lameduck_testkit::poll_until;
use serde_json::json;

use crate::assert_confirmed;
use crate::support::{Cluster, EVERY, PodSettings, WAIT};

/// Evicts `pod` the way `kubectl drain` does: retries 429s every 300 ms, at most `limit`.
/// Returns how many 429s it got and when it was admitted.
async fn evict_with_retries(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    pod: &str,
    limit: Duration,
) -> (u32, Option<Instant>, Vec<String>) {
    let (mut refused, mut messages) = (0, Vec::new());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match pods.evict(pod, &Default::default()).await {
            Ok(_) => return (refused, Some(Instant::now()), messages),
            Err(kube::Error::Api(status)) if status.code == 429 => {
                refused += 1;
                if messages.last() != Some(&status.message) {
                    messages.push(status.message);
                }
            }
            Err(other) => panic!("evicting {pod}: {other}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (refused, None, messages)
}

async fn pdb(cluster: &Cluster, app: &str) {
    let budget: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
    }))
    .unwrap();
    let api: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(cluster.client.clone(), crate::support::NS);
    api.create(&Default::default(), &budget).await.unwrap();
    poll_until(WAIT, EVERY, || async {
        let status = api.get(app).await.ok()?.status?;
        (status.disruptions_allowed == Some(1)).then_some(())
    })
    .await
    .expect("the disruption controller allows one disruption");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_get_429_until_safe_and_a_budget_takes_the_second_pod_out_only_after_the_first() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster.deploy_lameduck("api", 3).await;
    pdb(&cluster, "api").await;
    let names = cluster.pod_names("api").await;
    let (first, second) = (names[0].clone(), names[1].clone());

    let began = Instant::now();
    let second_eviction = {
        // The second eviction starts while the first is under way.
        let (pods, second) = (cluster.pods(), second.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            evict_with_retries(&pods, &second, WAIT).await
        })
    };
    let (refused, admitted, messages) = evict_with_retries(&cluster.pods(), &first, WAIT).await;
    let admitted = admitted.expect("the first eviction was admitted");
    println!(
        "first eviction: {refused} answers 429 ({messages:?}), admitted after {} ms",
        admitted.duration_since(began).as_millis()
    );
    assert!(refused >= 1, "the gate answered 429 while the pod drained");
    assert!(
        messages.iter().any(|m| m.contains("not safe to stop yet")),
        "{messages:?}"
    );
    // While the first pod is still there, the second stays in service: the budget allows one
    // disruption, so the gate does not take it out.
    let first_gone = poll_until(WAIT, EVERY, || async {
        let endpoints = cluster.endpoints("api").await;
        assert_ne!(
            endpoints.get(&second).map(|e| e.0),
            Some(false),
            "the second pod was taken out while the first was still there: {endpoints:?}"
        );
        cluster
            .pods()
            .get_opt(&first)
            .await
            .unwrap()
            .is_none()
            .then_some(Instant::now())
    })
    .await
    .expect("the first pod is gone");
    let (second_refused, second_admitted, _) = second_eviction.await.unwrap();
    let second_admitted = second_admitted.expect("the second eviction was admitted");
    println!(
        "first pod gone after {} ms; second eviction: {second_refused} answers 429, admitted after {} ms",
        first_gone.duration_since(began).as_millis(),
        second_admitted.duration_since(began).as_millis()
    );
    assert!(
        second_admitted > first_gone,
        "the second pod went before the first was gone"
    );
    assert_confirmed(&cluster.pod_log(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_eviction_is_not_retried_is_put_back_in_service() {
    let Some(cluster) = Cluster::start(
        PodSettings::default(),
        &["--cancel-after=3s", "--hold-limit=2s"],
    )
    .await
    else {
        return;
    };
    cluster.deploy_lameduck("cart", 2).await;
    let pod = cluster.pod_names("cart").await[0].clone();
    match cluster.pods().evict(&pod, &Default::default()).await {
        Err(kube::Error::Api(status)) if status.code == 429 => {}
        other => {
            panic!("the first eviction should be answered 429 while the pod drains: {other:?}")
        }
    }
    let status = cluster.drain_status(&pod).await;
    assert!(status.contains("\"held\":true"), "{status}");
    // Nobody retries: after --cancel-after the gate puts the pod back.
    let back = poll_until(WAIT, Duration::from_millis(100), || async {
        let status = cluster.drain_status(&pod).await;
        let ready = cluster
            .endpoints("cart")
            .await
            .get(&pod)
            .is_some_and(|e| e.0);
        (status.contains("\"phase\":\"serving\"") && ready).then_some(())
    })
    .await;
    assert!(back.is_some(), "never put back: {}", cluster.gate_log());
    assert!(
        cluster.gate_log().contains("put back in service"),
        "{}",
        cluster.gate_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_carries_on_a_hold_from_the_record_on_the_pod() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster.deploy_lameduck("api", 2).await;
    let pod = cluster.pod_names("api").await[0].clone();
    // Replica A takes the pod out and answers 429.
    match cluster.pods().evict(&pod, &Default::default()).await {
        Err(kube::Error::Api(status)) if status.code == 429 => {}
        other => panic!("the first eviction should be answered 429: {other:?}"),
    }
    let held = cluster.pods().get(&pod).await.unwrap();
    let labels = held.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("lameduck.dev/gate-held").map(String::as_str),
        Some("true")
    );
    let annotations = held.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("lameduck.dev/gate-hold"),
        "{annotations:?}"
    );

    // The API server now calls replica B, which never saw the pod.
    let (_replica, addr, log) = cluster.start_replica("gate-b", &[]);
    cluster.point_webhook_at(addr).await;
    let (refused, admitted, _) = evict_with_retries(&cluster.pods(), &pod, WAIT).await;
    assert!(admitted.is_some(), "replica B never admitted the eviction");
    let log = std::fs::read_to_string(log).unwrap();
    println!("replica B: {refused} answers 429, then admitted");
    assert!(
        !log.contains("taken out of traffic"),
        "replica B took the pod out again: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("safe: every EndpointSlice") && l.contains(pod.as_str())),
        "{log}"
    );
    poll_until(WAIT, EVERY, || async {
        cluster
            .pods()
            .get_opt(&pod)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
    .expect("the evicted pod is gone");
    assert_confirmed(&cluster.pod_log(&pod));
}
