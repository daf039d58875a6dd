//! A cluster for the gate's tests: a real control plane, the fake kubelet running each pod as
//! `lameduck run --proxy` in front of the demo app, and `lameduck gate serve` registered as a
//! validating webhook.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use lameduck_testkit::k8s::{
    ControlPlane, FakeKubelet, KubeletOptions, PodNet, PodProcess, create_namespace,
    endpoint_conditions,
};
use lameduck_testkit::{Child, poll_until};
use serde_json::json;

pub const LAMEDUCK: &str = env!("CARGO_BIN_EXE_lameduck");
pub const NS: &str = "shop";
pub const WAIT: Duration = Duration::from_secs(60);
pub const EVERY: Duration = Duration::from_millis(20);
/// The pods' ports: the drain proxy (what routers reach), lameduck's admin port, the app.
pub const HTTP: u16 = 8080;
pub const ADMIN: u16 = 8686;
pub const APP: u16 = 8081;

pub struct Cluster {
    pub client: kube::Client,
    pub kubelet: FakeKubelet,
    pub gate: Option<Child>,
    pub gate_addr: SocketAddr,
    /// The gate's log file (its stderr).
    pub gate_log: PathBuf,
    pub logs: PathBuf,
    pub plane: ControlPlane,
}

/// What the pods' `lameduck run` is told; `min_wait` is long so that a second drain wait
/// after the gate's admission would show.
pub struct PodSettings {
    pub min_wait: &'static str,
    pub quiet_window: &'static str,
}

impl Default for PodSettings {
    fn default() -> Self {
        Self {
            min_wait: "10s",
            quiet_window: "1s",
        }
    }
}

fn pod_runtime(
    logs: PathBuf,
    settings: PodSettings,
) -> impl Fn(&Pod, &PodNet) -> Result<Option<PodProcess>, String> + Send + Sync + 'static {
    move |pod: &Pod, net: &PodNet| {
        if net.loopback(HTTP).is_none() {
            return Ok(None); // a pod without lameduck: it lives in the API only
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let port = |p: u16| {
            net.loopback(p)
                .map(|a| a.to_string())
                .ok_or(format!("no port {p}"))
        };
        let (http, admin, app) = (port(HTTP)?, port(ADMIN)?, port(APP)?);
        let log = logs.join(format!("{name}.log"));
        // `exec`: the kubelet's SIGTERM goes to lameduck itself, by PID.
        let script = format!(
            "exec '{LAMEDUCK}' run --proxy {http}={app} --admin {admin} --grace 30 \
             --min-wait {} --quiet-window {} --max-wait 20s --close-timeout 2s --log-format text \
             -- '{LAMEDUCK}' demo-app --listen {app} --on-sigterm exit 2>>'{}'",
            settings.min_wait,
            settings.quiet_window,
            log.display()
        );
        Child::spawn("/bin/sh", &["-c", &script], &[])
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl Cluster {
    /// A control plane, a kubelet with 3 nodes, and the gate with `gate_flags`.
    pub async fn start(pods: PodSettings, gate_flags: &[&str]) -> Option<Self> {
        let plane = ControlPlane::start_or_skip().await?;
        let client = plane.client();
        let logs = plane.dir().join("pod-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let map = plane.dir().join("pod-addresses");
        let kubelet = FakeKubelet::start(
            client.clone(),
            KubeletOptions {
                nodes: 3,
                address_map: Some(map.clone()),
            },
            pod_runtime(logs.clone(), pods),
        )
        .await
        .unwrap();
        let cert = plane
            .pki()
            .server_cert("gate", &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let gate_log = plane.dir().join("gate.log");
        let (gate, gate_addr) = start_gate(&plane, &cert, &map, &gate_log, gate_flags);
        let cluster = Self {
            client,
            kubelet,
            gate: Some(gate),
            gate_addr,
            gate_log,
            logs,
            plane,
        };
        cluster.register_webhook().await;
        cluster.namespace().await;
        Some(cluster)
    }

    /// A second replica of the gate (same flags as the first), with its own log.
    pub fn start_replica(&self, name: &str, flags: &[&str]) -> (Child, SocketAddr, PathBuf) {
        let cert = self
            .plane
            .pki()
            .server_cert(name, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let log = self.plane.dir().join(format!("{name}.log"));
        let map = self.plane.dir().join("pod-addresses");
        let (child, addr) = start_gate(&self.plane, &cert, &map, &log, flags);
        (child, addr, log)
    }

    /// Points the webhook at another replica's address.
    pub async fn point_webhook_at(&self, addr: SocketAddr) {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let patch = json!({"webhooks": [{
            "name": "pods.gate.lameduck.dev",
            "clientConfig": {"url": format!("https://{addr}/validate")},
        }]});
        api.patch(
            "lameduck-gate",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    }

    async fn register_webhook(&self) {
        let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "lameduck-gate"},
            "webhooks": [{
                "name": "pods.gate.lameduck.dev",
                "clientConfig": {"url": format!("https://{}/validate", self.gate_addr)},
                "rules": [
                    {"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
                    {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/eviction"]},
                ],
                "failurePolicy": "Ignore",
                "sideEffects": "NoneOnDryRun",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 30,
            }],
        }))
        .unwrap();
        let mut config = config;
        config.webhooks.as_mut().unwrap()[0].client_config.ca_bundle =
            Some(ByteString(self.plane.pki().ca_pem().into_bytes()));
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &config).await.unwrap();
    }

    async fn namespace(&self) {
        create_namespace(&self.client, NS, &[("lameduck.dev/gate", "enabled")])
            .await
            .unwrap();
    }

    /// A Deployment of `replicas` lameduck-wrapped pods that name their admin port to the
    /// gate, and a Service; waits until every endpoint is ready.
    pub async fn deploy_lameduck(&self, name: &str, replicas: usize) {
        let annotations = json!({"lameduck.dev/admin-port": ADMIN.to_string()});
        self.deploy(name, replicas, annotations).await;
    }

    /// A Deployment of `replicas` lameduck-wrapped pods and a Service for them; waits until
    /// every endpoint is ready.
    pub async fn deploy(&self, name: &str, replicas: usize, annotations: serde_json::Value) {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{
                            "name": "app", "image": "demo:1",
                            "ports": [
                                {"name": "http", "containerPort": HTTP},
                                {"name": "admin", "containerPort": ADMIN},
                                {"name": "app", "containerPort": APP},
                            ],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 1, "failureThreshold": 1},
                        }],
                    },
                },
            },
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        self.expose(name, replicas, json!("http")).await;
    }

    /// A Service for the pods `app=name`, and a wait until `replicas` endpoints are ready.
    async fn expose(&self, name: &str, replicas: usize, target_port: serde_json::Value) {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": target_port}]},
        }))
        .unwrap();
        Api::<Service>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        poll_until(WAIT, Duration::from_millis(100), || async {
            let found = self.endpoints(name).await;
            (found.len() == replicas && found.values().all(|&(ready, ..)| ready)).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{replicas} ready endpoints of {name}: {}", self.gate_log()));
    }

    /// A Deployment of `replicas` pods without lameduck (no process behind them) that declare
    /// the readiness gate `lameduck.dev/serving`, and a Service; waits until every endpoint is
    /// ready (which needs the gate to open the readiness gate).
    pub async fn deploy_plain(&self, name: &str, replicas: usize) {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "readinessGates": [{"conditionType": "lameduck.dev/serving"}],
                        "containers": [{"name": "app", "image": "legacy:1", "ports": [{"containerPort": 9090}]}],
                    },
                },
            },
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        self.expose(name, replicas, json!(9090)).await;
    }

    /// The Service's endpoints by pod name: (ready, serving, terminating).
    pub async fn endpoints(&self, service: &str) -> BTreeMap<String, (bool, bool, bool)> {
        endpoint_conditions(&self.client, NS, service)
            .await
            .unwrap()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn pod_names(&self, app: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// The loopback address of a pod's port.
    pub fn loopback(&self, pod: &str, port: u16) -> SocketAddr {
        self.kubelet
            .pod_net(NS, pod)
            .and_then(|n| n.loopback(port))
            .unwrap()
    }

    /// The pod's `lameduck run` log.
    pub fn pod_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{pod}.log"))).unwrap_or_default()
    }

    pub fn gate_log(&self) -> String {
        std::fs::read_to_string(&self.gate_log).unwrap_or_default()
    }

    /// The pod's `GET /drain` JSON.
    pub async fn drain_status(&self, pod: &str) -> String {
        let reply = lameduck_testkit::get_once(self.loopback(pod, ADMIN), "/drain")
            .await
            .unwrap();
        String::from_utf8_lossy(&reply.body).into_owned()
    }
}

fn start_gate(
    plane: &ControlPlane,
    cert: &lameduck_testkit::k8s::CertFiles,
    map: &std::path::Path,
    log: &std::path::Path,
    flags: &[&str],
) -> (Child, SocketAddr) {
    let mut args = vec![
        "gate".to_owned(),
        "serve".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        format!("--tls-cert={}", cert.cert.display()),
        format!("--tls-key={}", cert.key.display()),
        format!("--kubeconfig={}", plane.kubeconfig().display()),
        format!("--pod-address-map={}", map.display()),
        "--sync-margin=1s".to_owned(),
        "--log-format=text".to_owned(),
    ];
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    let script = format!(
        "exec '{LAMEDUCK}' {} 2>>'{}'",
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        log.display()
    );
    let mut gate = Child::spawn("/bin/sh", &["-c", &script], &[]).unwrap();
    let addr = gate
        .wait_for_line("listening on ", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "the gate did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (gate, addr.trim().parse().unwrap())
}

/// Sends `GET /` to `addr` every 20 ms until `stop` says so; counts (sent, failed).
pub fn traffic(
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(u32, u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut sent, mut failed, mut errors) = (0, 0, Vec::new());
        let limit = Instant::now() + Duration::from_secs(120);
        while !*stop.borrow() && Instant::now() < limit {
            sent += 1;
            match lameduck_testkit::get_once(addr, "/").await {
                Ok(reply) if reply.status == 200 => {}
                Ok(reply) => {
                    failed += 1;
                    errors.push(format!("status {}", reply.status));
                }
                Err(e) => {
                    failed += 1;
                    errors.push(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (sent, failed, errors)
    })
}
