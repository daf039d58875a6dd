//! Operating the gate: failing open, dry runs, bad input, the manifests in deploy/.

use std::time::Instant;

use kube::api::DeleteParams;
use serde_json::json;

use crate::support::{Cluster, PodSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gate_down_deletions_proceed_and_a_dry_run_is_never_held() {
    let Some(mut cluster) = Cluster::start(PodSettings::default(), &[]).await else {
        return;
    };
    cluster.deploy_lameduck("web", 2).await;
    let names = cluster.pod_names("web").await;
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    cluster.pods().delete(&names[0], &dry).await.unwrap();
    let after = cluster.pods().get(&names[0]).await.unwrap();
    assert!(
        after.metadata.deletion_timestamp.is_none(),
        "a dry run deleted the pod"
    );
    let labels = after.metadata.labels.unwrap_or_default();
    assert!(
        !labels.contains_key("lameduck.dev/gate-held"),
        "a dry run was held: {labels:?}"
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
            json!({"lameduck.dev/admin-port": crate::support::APP.to_string()}),
        )
        .await;
    let pod = cluster.pod_names("odd").await[0].clone();
    if let Err(e) = cluster.pods().delete(&pod, &DeleteParams::default()).await {
        panic!(
            "DELETE of {pod}: {e}; the gate's log:\n{}",
            cluster.gate_log()
        );
    }
    let log = cluster.gate_log();
    assert!(log.contains("could not take it out of traffic"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("taken out of traffic; holding") && l.contains(pod.as_str())),
        "held a pod it cannot drain: {log}"
    );
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
