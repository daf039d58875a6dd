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

/// The pod's `lameduck run` ended its drain wait on the gate's confirmation.
fn assert_confirmed(log: &str) {
    assert!(
        log.contains("reason=confirmed"),
        "the drain wait did not end on the gate's confirmation: {log}"
    );
}

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
        kube::Api::namespaced(cluster.client.clone(), gate_support::NS);
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
    cluster
        .deploy(
            "api",
            3,
            json!({"lameduck.dev/admin-port": ADMIN.to_string()}),
        )
        .await;
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
    cluster
        .deploy(
            "cart",
            2,
            json!({"lameduck.dev/admin-port": ADMIN.to_string()}),
        )
        .await;
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
async fn a_rolling_update_goes_through_the_gate_for_every_old_pod() {
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
    let old = cluster.pod_names("web").await;
    let began = Instant::now();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"version": "2"}}}}});
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cluster.client.clone(), gate_support::NS);
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

async fn events_for(cluster: &Cluster, pod: &str, reason: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(cluster.client.clone(), gate_support::NS);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_hook_that_says_not_yet_is_refused_past_the_max_hold_when_strict_and_let_go_when_best_effort()
 {
    let Some(cluster) = Cluster::start(PodSettings::default(), &["--hold-limit=4s"]).await else {
        return;
    };
    // The demo app answers POST /prepare with 404: "not yet", forever.
    let hook = format!("http://$(POD_IP):{}/prepare", gate_support::APP);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gate_down_deletions_proceed_and_a_dry_run_is_never_held() {
    let Some(mut cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster
        .deploy(
            "web",
            2,
            json!({"lameduck.dev/admin-port": ADMIN.to_string()}),
        )
        .await;
    let names = cluster.pod_names("web").await;
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let started = Instant::now();
    cluster.pods().delete(&names[0], &dry).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a dry run was held"
    );
    assert!(
        cluster
            .drain_status(&names[0])
            .await
            .contains("\"phase\":\"serving\""),
        "a dry run took the pod out"
    );

    drop(cluster.gate.take()); // kills the gate by PID
    let started = Instant::now();
    cluster
        .pods()
        .delete(&names[1], &DeleteParams::default())
        .await
        .unwrap();
    println!(
        "with the gate down, DELETE answered in {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failurePolicy Ignore: no wait"
    );
    let pod = cluster.pods().get_opt(&names[1]).await.unwrap();
    assert!(
        pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the deletion proceeded"
    );
}

/// POSTs `body` to the gate with curl (which trusts the control plane's CA): status and body.
fn post_review(cluster: &Cluster, body: &str) -> Option<(u16, String)> {
    let curl = lameduck_testkit::needed_or_skip(
        lameduck_testkit::installed("curl"),
        "curl",
        "apt-get install curl",
    )?;
    let ca = cluster.plane.dir().join("ca.pem");
    std::fs::write(&ca, cluster.plane.pki().ca_pem()).unwrap();
    let output = std::process::Command::new(curl)
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            body,
        ])
        .arg(format!("https://{}/validate?timeout=5s", cluster.gate_addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Some((code.trim().parse().unwrap(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_answer() {
    let Some(cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    let Some((status, body)) = post_review(&cluster, "{not json") else {
        return;
    };
    assert_eq!(status, 400);
    assert!(body.contains("malformed AdmissionReview"), "{body}");
    let (status, body) = post_review(
        &cluster,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    )
    .unwrap();
    assert_eq!(
        (status, body.trim()),
        (400, "the AdmissionReview has no request")
    );
    let config_map = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"u1","kind":{"group":"","version":"v1","kind":"ConfigMap"},
        "resource":{"group":"","version":"v1","resource":"configmaps"},
        "name":"c","namespace":"shop","operation":"DELETE","userInfo":{"username":"me"}}}"#;
    let (status, body) = post_review(&cluster, config_map).unwrap();
    assert_eq!(status, 200);
    let review: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["response"]["allowed"], true, "{body}");
    assert_eq!(review["response"]["uid"], "u1", "{body}");
    assert!(
        review["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not a pod deletion"),
        "{body}"
    );

    // A pod whose "admin endpoint" is not lameduck's: let go, with a warning, not held.
    cluster
        .deploy(
            "odd",
            1,
            json!({"lameduck.dev/admin-port": gate_support::APP.to_string()}),
        )
        .await;
    let pod = cluster.pod_names("odd").await[0].clone();
    let started = Instant::now();
    if let Err(e) = cluster.pods().delete(&pod, &DeleteParams::default()).await {
        panic!(
            "DELETE of {pod}: {e}; the gate's log:\n{}",
            cluster.gate_log()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held a pod it cannot drain"
    );
    let log = cluster.gate_log();
    assert!(log.contains("could not take it out of traffic"), "{log}");
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

/// A YAML node as JSON, with the core schema's types for plain scalars.
fn to_json(node: &lameduck_lint::Node) -> serde_json::Value {
    use lameduck_lint::Value;
    match &node.value {
        Value::Scalar { text, plain } => {
            let text = text.as_str();
            if !plain {
                return json!(text);
            }
            match text {
                "true" => json!(true),
                "false" => json!(false),
                "null" | "~" | "" => serde_json::Value::Null,
                _ => text
                    .parse::<i64>()
                    .map(|i| json!(i))
                    .unwrap_or_else(|_| json!(text)),
            }
        }
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|e| {
                    (
                        e.key.as_str().unwrap_or_default().to_owned(),
                        to_json(&e.value),
                    )
                })
                .collect(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_manifests_are_accepted_by_the_api_server() {
    let Some(plane) = lameduck_testkit::k8s::ControlPlane::start_or_skip().await else {
        return;
    };
    let client = plane.client();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/gate/gate.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let loaded = lameduck_lint::load("gate.yaml", &text);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.objects.len(), 10);
    for object in &loaded.objects {
        let body: kube::core::DynamicObject =
            serde_json::from_value(to_json(&object.root)).unwrap();
        let types = body.types.clone().unwrap();
        let gvk = kube::core::GroupVersionKind::try_from(&types).unwrap();
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
        let api: kube::Api<kube::core::DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => {
                kube::Api::namespaced_with(client.clone(), &object.namespace, &resource)
            }
            kube::discovery::Scope::Cluster => kube::Api::all_with(client.clone(), &resource),
        };
        // The namespace for real (a dry run in a missing namespace is refused); the rest as a
        // server-side dry run: validated, defaulted and admitted, not stored.
        let params = kube::api::PostParams {
            dry_run: object.kind != "Namespace",
            ..Default::default()
        };
        if let Err(e) = api.create(&params, &body).await {
            panic!(
                "{} {}: refused by the API server: {e}",
                object.kind, object.name
            );
        }
    }
}
