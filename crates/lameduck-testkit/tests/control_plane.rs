//! The control plane and fake kubelet against the real controllers: EndpointSlices of a
//! Deployment, a deleted pod's endpoint turning `ready: false, terminating: true`, evictions
//! against a PodDisruptionBudget, and a rolling update. Timings are printed (run with
//! `--nocapture` to see them).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use lameduck_testkit::k8s::{
    ControlPlane, FakeKubelet, KubeletOptions, PodNet, PodProcess, create_namespace,
    endpoint_conditions,
};
use lameduck_testkit::{Child, needed_or_skip, poll_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_millis(50);

async fn start() -> Option<ControlPlane> {
    let plane = ControlPlane::start_or_skip().await?;
    let t = plane.start_times();
    println!(
        "control plane started in {:.1} s (etcd {:.1} s, kube-apiserver {:.1} s, kube-controller-manager {:.1} s)",
        t.total.as_secs_f64(),
        t.etcd.as_secs_f64(),
        t.apiserver.as_secs_f64(),
        t.controller_manager.as_secs_f64()
    );
    Some(plane)
}

/// No process behind the pods: they run in the API only.
fn api_only(_: &Pod, _: &PodNet) -> Result<Option<PodProcess>, String> {
    Ok(None)
}

async fn namespace(client: &kube::Client, name: &str) {
    create_namespace(client, name, &[]).await.unwrap();
}

fn deployment(name: &str, replicas: i32, container: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]},
            },
        },
    }))
    .unwrap()
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap()
}

/// Endpoint conditions of a Service's slices, by pod name: (ready, serving, terminating).
async fn endpoints(
    client: &kube::Client,
    ns: &str,
    service: &str,
) -> BTreeMap<String, (bool, bool, bool)> {
    endpoint_conditions(client, ns, service).await.unwrap()
}

async fn pods(client: &kube::Client, ns: &str, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap()
}

/// A real HTTP server per pod (Python's http.server), probed for readiness by the kubelet and
/// stopped by its SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_endpoint_turns_terminating_then_goes() {
    let Some(python) = needed_or_skip(
        lameduck_testkit::installed("python3"),
        "python3",
        "apt-get install python3",
    ) else {
        return;
    };
    let Some(plane) = start().await else { return };
    let client = plane.client();
    let runtime = move |_: &Pod, net: &PodNet| {
        let port = net.loopback(8080).ok_or("no port 8080")?.port().to_string();
        Child::spawn(
            &python,
            &["-m", "http.server", &port, "--bind", "127.0.0.1"],
            &[],
        )
        .map(Some)
        .map_err(|e| e.to_string())
    };
    let kubelet = FakeKubelet::start(client.clone(), KubeletOptions::default(), runtime)
        .await
        .unwrap();
    namespace(&client, "web").await;
    let container = json!({
        "name": "web", "image": "python:3",
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        // Keeps the terminating pod around long enough to be seen in its slice.
        "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
    });
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "web");
    deployments
        .create(&PostParams::default(), &deployment("web", 3, container))
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "web");
    services
        .create(&PostParams::default(), &service("web"))
        .await
        .unwrap();

    let began = Instant::now();
    let ready = poll_until(WAIT, EVERY, || async {
        let found = endpoints(&client, "web", "web").await;
        (found.len() == 3 && found.values().all(|&(ready, ..)| ready)).then_some(found)
    })
    .await
    .expect("3 ready endpoints");
    println!(
        "3 ready endpoints {:.1} s after the Deployment was created",
        began.elapsed().as_secs_f64()
    );

    // Each pod is a real server on the loopback port standing in for its pod IP.
    let all = pods(&client, "web", "web").await;
    let nodes: BTreeSet<String> = all
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 3, "pods spread over the 3 nodes");
    for pod in &all {
        let ip = pod.status.as_ref().unwrap().pod_ip.as_ref().unwrap();
        let addr = kubelet.loopback(ip.parse().unwrap(), 8080).unwrap();
        let reply = lameduck_testkit::get_once(addr, "/").await.unwrap();
        assert_eq!(reply.status, 200, "{} answers", name(pod));
    }

    let victim = ready.keys().next().unwrap().clone();
    let pid = kubelet
        .with_process("web", &victim, |p| p.pid())
        .expect("a process");
    let api: Api<Pod> = Api::namespaced(client.clone(), "web");
    let deleted = Instant::now();
    api.delete(&victim, &DeleteParams::default()).await.unwrap();
    let seen = poll_until(WAIT, Duration::from_millis(10), || async {
        let found = endpoints(&client, "web", "web").await;
        (found.get(&victim) == Some(&(false, true, true))).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "{victim}'s endpoint never showed ready=false serving=true terminating=true"
    );
    println!(
        "DELETE to endpoint ready=false terminating=true: {} ms",
        deleted.elapsed().as_millis()
    );
    // preStop sleep 2 s, then SIGTERM (Python exits on it), then the kubelet's final DELETE.
    let gone = poll_until(WAIT, EVERY, || async {
        let found = endpoints(&client, "web", "web").await;
        let pod = api.get_opt(&victim).await.unwrap();
        (!found.contains_key(&victim) && pod.is_none()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "{victim} was never removed");
    let took = deleted.elapsed();
    println!(
        "DELETE to pod and endpoint gone: {} ms (preStop sleep 2 s)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_secs(2),
        "the kubelet ran the preStop sleep"
    );
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
        "the pod's process {pid} exited"
    );
    // The ReplicaSet replaced it; the replacement becomes a ready endpoint.
    poll_until(WAIT, EVERY, || async {
        let found = endpoints(&client, "web", "web").await;
        (found.len() == 3 && found.values().all(|&(ready, ..)| ready)).then_some(())
    })
    .await
    .expect("a replacement endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_is_refused_with_429_while_the_budget_allows_no_disruption() {
    let Some(plane) = start().await else { return };
    let client = plane.client();
    let _kubelet = FakeKubelet::start(client.clone(), KubeletOptions::default(), api_only)
        .await
        .unwrap();
    namespace(&client, "pdb").await;
    let container = json!({"name": "app", "image": "app:1"});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "pdb");
    deployments
        .create(&PostParams::default(), &deployment("app", 2, container))
        .await
        .unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "pdb");
    let budget = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "app"}}},
    }))
    .unwrap();
    budgets
        .create(&PostParams::default(), &budget)
        .await
        .unwrap();
    let allowed = |want: i32| {
        let budgets = budgets.clone();
        async move {
            poll_until(WAIT, EVERY, || async {
                let status = budgets.get("app").await.ok()?.status?;
                (status.current_healthy == Some(2) && status.disruptions_allowed == Some(want))
                    .then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("the disruption controller never allowed {want}"));
        }
    };
    allowed(0).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "pdb");
    let victim = name(&pods(&client, "pdb", "app").await[0]);
    match api.evict(&victim, &EvictParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 429, "refused as Too Many Requests: {status:?}");
            println!("eviction refused: {}", status.message);
        }
        other => panic!("eviction with no disruption allowed: {other:?}"),
    }
    assert!(
        api.get(&victim)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    let relaxed = json!({"spec": {"minAvailable": 1}});
    budgets
        .patch("app", &PatchParams::default(), &Patch::Merge(&relaxed))
        .await
        .unwrap();
    allowed(1).await;
    let evicted = Instant::now();
    api.evict(&victim, &EvictParams::default())
        .await
        .expect("eviction allowed by the budget");
    poll_until(WAIT, EVERY, || async {
        api.get_opt(&victim).await.unwrap().is_none().then_some(())
    })
    .await
    .expect("the evicted pod is deleted");
    println!("eviction to pod gone: {} ms", evicted.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_every_pod_within_surge_and_unavailability() {
    let Some(plane) = start().await else { return };
    let client = plane.client();
    let _kubelet = FakeKubelet::start(client.clone(), KubeletOptions::default(), api_only)
        .await
        .unwrap();
    namespace(&client, "roll").await;
    let container = json!({"name": "app", "image": "app:1"});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "roll");
    deployments
        .create(&PostParams::default(), &deployment("app", 3, container))
        .await
        .unwrap();
    let rolled_out = |generation_image: &'static str| {
        let deployments = deployments.clone();
        let client = client.clone();
        async move {
            poll_until(WAIT, EVERY, || async {
                let d = deployments.get("app").await.ok()?;
                let status = d.status?;
                let done = status.observed_generation == d.metadata.generation
                    && status.updated_replicas == Some(3)
                    && status.available_replicas == Some(3)
                    && status.replicas == Some(3);
                let images: Vec<String> = pods(&client, "roll", "app")
                    .await
                    .iter()
                    .map(|p| {
                        p.spec.as_ref().unwrap().containers[0]
                            .image
                            .clone()
                            .unwrap()
                    })
                    .collect();
                (done && images.len() == 3 && images.iter().all(|i| i == generation_image))
                    .then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("the Deployment never ran 3 pods of {generation_image}"));
        }
    };
    rolled_out("app:1").await;
    let before: BTreeSet<String> = pods(&client, "roll", "app")
        .await
        .iter()
        .map(name)
        .collect();

    // Watch the rollout: never more than 3 + maxSurge pods, never fewer than 3 ready.
    let watch = {
        let client = client.clone();
        tokio::spawn(async move {
            let (mut most, mut fewest_ready) = (0, usize::MAX);
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                let all = pods(&client, "roll", "app").await;
                let live: Vec<&Pod> = all
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let ready = live
                    .iter()
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                    .count();
                // Terminating pods do not count toward maxSurge (the Deployment controller
                // ignores them); they are gone once the kubelet finishes with them.
                most = most.max(live.len());
                fewest_ready = fewest_ready.min(ready);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if all.len() == 3
                    && ready == 3
                    && all.iter().all(|p| {
                        p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("app:2")
                    })
                {
                    break;
                }
            }
            (most, fewest_ready)
        })
    };
    let began = Instant::now();
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    deployments
        .patch("app", &PatchParams::default(), &Patch::Strategic(&update))
        .await
        .unwrap();
    rolled_out("app:2").await;
    let (most, fewest_ready) = watch.await.unwrap();
    println!(
        "rolling update of 3 pods took {:.1} s; at most {most} live (not terminating) pods at once, never fewer than {fewest_ready} ready",
        began.elapsed().as_secs_f64()
    );
    let after: BTreeSet<String> = pods(&client, "roll", "app")
        .await
        .iter()
        .map(name)
        .collect();
    assert!(
        before.is_disjoint(&after),
        "every pod was replaced: {before:?} → {after:?}"
    );
    assert!(most <= 4, "maxSurge 1 allows 4 live pods, saw {most}");
    assert!(
        fewest_ready >= 3,
        "maxUnavailable 0 keeps 3 ready, saw {fewest_ready}"
    );
}
