//! A fake kubelet: the nodes of a control plane with no container runtime.
//!
//! It does what the real kubelet (and the scheduler) do to the API, and nothing else:
//! - creates Node objects and binds unscheduled pods to the node with the fewest pods;
//! - starts a pod through a [`PodRuntime`] (a real local process, or nothing), gives it a pod
//!   IP from the documentation ranges (EndpointSlices reject loopback) whose container ports
//!   map to free loopback ports, and reports it `Running`;
//! - runs readiness probes (`httpGet`, `tcpSocket`) against those loopback ports and keeps the
//!   `ContainersReady` and `Ready` conditions true to them and to the pod's readiness gates;
//! - on deletion: runs the `preStop` hook (`sleep`, `httpGet`), sends SIGTERM, SIGKILL at the
//!   end of the grace period, and completes the deletion (`DELETE` with grace 0 and the pod's
//!   UID as precondition) once the process is gone.
//!
//! No traffic ever goes to a pod IP: tests use [`FakeKubelet::loopback`].

mod probe;
mod status;
mod stop;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::task::JoinHandle;

use super::Error;
use crate::Child;
use status::{create_node, report_running, sync_conditions};
use stop::begin_termination;

/// A pod's process, started by a [`PodRuntime`]; the kubelet signals it by PID.
pub type PodProcess = Child;

/// Starts the processes behind pods. Return `Ok(None)` for a pod with no process (it is
/// `Running` at once and gone as soon as it is deleted).
pub trait PodRuntime: Send + Sync + 'static {
    /// Starts `pod`, whose container ports listen on `net`'s loopback ports.
    fn start(&self, pod: &Pod, net: &PodNet) -> Result<Option<PodProcess>, String>;
}

impl<F> PodRuntime for F
where
    F: Fn(&Pod, &PodNet) -> Result<Option<PodProcess>, String> + Send + Sync + 'static,
{
    fn start(&self, pod: &Pod, net: &PodNet) -> Result<Option<PodProcess>, String> {
        self(pod, net)
    }
}

/// A pod's address in the API and where its ports really listen.
#[derive(Debug, Clone)]
pub struct PodNet {
    /// The pod IP the API shows (a documentation address; never connect to it).
    pub ip: Ipv4Addr,
    /// Container port → the loopback address standing in for `ip:port`.
    pub ports: BTreeMap<u16, SocketAddr>,
}

impl PodNet {
    /// The loopback address of the pod's container port `port`.
    pub fn loopback(&self, port: u16) -> Option<SocketAddr> {
        self.ports.get(&port).copied()
    }
}

/// How the fake kubelet behaves.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// How many nodes (`node-0` …) to create.
    pub nodes: usize,
    /// A file kept up to date with one `POD_IP:PORT LOOPBACK_ADDRESS` line per running pod's
    /// port, for a child process that must reach pods (e.g. `lameduck gate serve
    /// --pod-address-map`).
    pub address_map: Option<std::path::PathBuf>,
}

impl Default for KubeletOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            address_map: None,
        }
    }
}

/// What the kubelet knows of a pod it runs.
struct Running {
    namespace: String,
    name: String,
    net: PodNet,
    process: Option<PodProcess>,
    /// When the process was started (a wrapper needs a moment to install its signal handlers).
    started: Instant,
    /// Per container, in spec order: what its readiness probe last concluded.
    containers_ready: Vec<bool>,
    terminating: bool,
    /// The probers and the termination, stopped when the pod is forgotten.
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Running>,
    /// The kubelet is being dropped.
    stopping: bool,
    /// Pods bound to each node (for the scheduler's spreading).
    per_node: BTreeMap<String, usize>,
    free_ips: Vec<Ipv4Addr>,
    /// The node each pod (by UID) is bound to, to count a node's pods when they go.
    node_of: HashMap<String, String>,
}

struct Shared {
    client: kube::Client,
    address_map: Option<std::path::PathBuf>,
    state: Mutex<State>,
    runtime: Box<dyn PodRuntime>,
}

/// A running fake kubelet; dropping it stops its loops and kills the pods' processes by PID.
pub struct FakeKubelet {
    shared: Arc<Shared>,
    main: JoinHandle<()>,
    nodes: Vec<String>,
}

impl std::fmt::Debug for FakeKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubelet")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Pod IPs: 192.0.2.0/24 and 203.0.113.0/24 (RFC 5737); nodes get 198.51.100.0/24.
fn pod_ip_pool() -> Vec<Ipv4Addr> {
    let mut pool: Vec<Ipv4Addr> = (1..=254)
        .map(|i| Ipv4Addr::new(192, 0, 2, i))
        .chain((1..=254).map(|i| Ipv4Addr::new(203, 0, 113, i)))
        .collect();
    pool.reverse();
    pool
}

impl FakeKubelet {
    /// Creates the nodes and starts watching pods.
    pub async fn start(
        client: kube::Client,
        options: KubeletOptions,
        runtime: impl PodRuntime,
    ) -> Result<Self, Error> {
        let nodes_api: Api<Node> = Api::all(client.clone());
        let mut nodes = Vec::new();
        for index in 0..options.nodes {
            let name = format!("node-{index}");
            create_node(&nodes_api, &name, index).await?;
            nodes.push(name);
        }
        let state = State {
            per_node: nodes.iter().map(|n| (n.clone(), 0)).collect(),
            free_ips: pod_ip_pool(),
            ..State::default()
        };
        let shared = Arc::new(Shared {
            client,
            address_map: options.address_map.clone(),
            state: Mutex::new(state),
            runtime: Box::new(runtime),
        });
        let main = tokio::spawn(run(Arc::clone(&shared)));
        Ok(Self {
            shared,
            main,
            nodes,
        })
    }

    /// The nodes' names.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The network of the running pod `namespace/name`.
    pub fn pod_net(&self, namespace: &str, name: &str) -> Option<PodNet> {
        let state = self.shared.state.lock().expect("kubelet state");
        state
            .pods
            .values()
            .find(|p| p.namespace == namespace && p.name == name)
            .map(|p| p.net.clone())
    }

    /// The loopback address standing in for pod IP `ip`, container port `port`.
    pub fn loopback(&self, ip: Ipv4Addr, port: u16) -> Option<SocketAddr> {
        let state = self.shared.state.lock().expect("kubelet state");
        state
            .pods
            .values()
            .find(|p| p.net.ip == ip)
            .and_then(|p| p.net.loopback(port))
    }

    /// Runs `f` on the process of pod `namespace/name`, if it has one.
    pub fn with_process<T>(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut PodProcess) -> T,
    ) -> Option<T> {
        let mut state = self.shared.state.lock().expect("kubelet state");
        state
            .pods
            .values_mut()
            .find(|p| p.namespace == namespace && p.name == name)
            .and_then(|p| p.process.as_mut())
            .map(f)
    }
}

/// The watch loop: every pod event is handled in order; slow work runs in tasks of its own.
async fn run(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                if let Err(e) = handle(&shared, &pod).await {
                    tracing::warn!(pod = %name_of(&pod), "fake kubelet: {e}");
                }
            }
            Ok(watcher::Event::Delete(pod)) => forget(&shared, &pod),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::debug!("fake kubelet watch: {e}"),
        }
    }
}

fn name_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

async fn handle(shared: &Arc<Shared>, pod: &Pod) -> Result<(), Error> {
    let uid = uid_of(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    if pod.metadata.deletion_timestamp.is_some() {
        begin_termination(shared, pod);
        return Ok(());
    }
    let Some(node) = spec.node_name.clone() else {
        return bind(shared, pod).await;
    };
    let known = shared
        .state
        .lock()
        .expect("kubelet state")
        .pods
        .contains_key(&uid);
    if !known {
        return start_pod(shared, pod, &node).await;
    }
    sync_conditions(shared, pod).await
}

/// The scheduler's part: the node with the fewest pods.
async fn bind(shared: &Arc<Shared>, pod: &Pod) -> Result<(), Error> {
    let uid = uid_of(pod);
    let node = {
        let mut state = shared.state.lock().expect("kubelet state");
        if state.node_of.contains_key(&uid) {
            return Ok(()); // bound already; the watch has not caught up
        }
        let Some(node) = state
            .per_node
            .iter()
            .min_by_key(|(name, count)| (**count, (*name).clone()))
            .map(|(name, _)| name.clone())
        else {
            return Ok(());
        };
        *state.per_node.entry(node.clone()).or_default() += 1;
        state.node_of.insert(uid.clone(), node.clone());
        node
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });

    let result: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await;
    if let Err(e) = result {
        let mut state = shared.state.lock().expect("kubelet state");
        state.node_of.remove(&uid);
        if let Some(count) = state.per_node.get_mut(&node) {
            *count = count.saturating_sub(1);
        }
        return Err(e.into());
    }
    Ok(())
}

/// Starts the pod's process and reports it running; probers decide readiness from then on.
async fn start_pod(shared: &Arc<Shared>, pod: &Pod, node: &str) -> Result<(), Error> {
    let uid = uid_of(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    if !shared
        .state
        .lock()
        .expect("kubelet state")
        .per_node
        .contains_key(node)
    {
        return Ok(()); // another kubelet's node
    }
    let net = {
        let mut state = shared.state.lock().expect("kubelet state");
        let Some(ip) = state.free_ips.pop() else {
            return Err(Error::Client("the fake kubelet ran out of pod IPs".into()));
        };
        // A pod created with `nodeName` set skipped the scheduler: count it here.
        if !state.node_of.contains_key(&uid) {
            state.node_of.insert(uid.clone(), node.to_owned());
            *state.per_node.entry(node.to_owned()).or_default() += 1;
        }
        PodNet {
            ip,
            ports: BTreeMap::new(),
        }
    };
    let net = map_ports(net, &spec.containers)?;
    let process = match shared.runtime.start(pod, &net) {
        Ok(process) => process,
        Err(e) => {
            shared
                .state
                .lock()
                .expect("kubelet state")
                .free_ips
                .push(net.ip);
            return Err(Error::Client(format!("starting {}: {e}", name_of(pod))));
        }
    };
    // Without a readiness probe a container is ready as soon as it runs.
    let containers_ready = spec
        .containers
        .iter()
        .map(|c| c.readiness_probe.is_none())
        .collect();
    let mut running = Running {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        net: net.clone(),
        process,
        started: Instant::now(),
        containers_ready,
        terminating: false,
        tasks: Vec::new(),
    };
    for (index, container) in spec.containers.iter().enumerate() {
        if container.readiness_probe.is_some() {
            running.tasks.push(tokio::spawn(probe::readiness(
                Arc::clone(shared),
                uid.clone(),
                index,
                container.clone(),
                net.clone(),
            )));
        }
    }
    {
        let mut state = shared.state.lock().expect("kubelet state");
        if state.stopping {
            drop(state);
            drop(running); // stops the process it just started
            return Ok(());
        }
        state.pods.insert(uid, running);
        write_address_map(shared, &state);
    }
    report_running(shared, pod, node, &net).await?;
    sync_conditions(shared, pod).await
}

/// Gives every container port (and every probe port that is not one) a loopback port.
fn map_ports(mut net: PodNet, containers: &[Container]) -> Result<PodNet, Error> {
    let mut wanted: Vec<u16> = Vec::new();
    for container in containers {
        for port in container.ports.iter().flatten() {
            wanted.extend(u16::try_from(port.container_port).ok());
        }
        if let Some(port) = container
            .readiness_probe
            .as_ref()
            .and_then(|p| probe::probe_port(p, container))
        {
            wanted.push(port);
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let listeners = wanted
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::io(std::path::Path::new("127.0.0.1:0"), source))?;
    for (port, listener) in wanted.into_iter().zip(&listeners) {
        let addr = listener
            .local_addr()
            .map_err(|source| Error::io(std::path::Path::new("127.0.0.1:0"), source))?;
        net.ports.insert(port, addr);
    }
    Ok(net)
}

/// The pod is gone from the API: free its IP and node slot, stop its tasks and process.
fn forget(shared: &Shared, pod: &Pod) {
    let uid = uid_of(pod);
    let mut state = shared.state.lock().expect("kubelet state");
    if let Some(node) = state.node_of.remove(&uid)
        && let Some(count) = state.per_node.get_mut(&node)
    {
        *count = count.saturating_sub(1);
    }
    let running = state.pods.remove(&uid);
    if let Some(running) = &running {
        for task in &running.tasks {
            task.abort();
        }
        state.free_ips.push(running.net.ip);
        write_address_map(shared, &state);
    }
    drop(state);
    // Outside the lock: a process still running (a pod deleted with grace 0) is stopped now.
    drop(running);
}

/// Rewrites the address map file (written to a temporary name, then renamed, so a reader
/// never sees half of it).
fn write_address_map(shared: &Shared, state: &State) {
    let Some(path) = &shared.address_map else {
        return;
    };
    let mut text = String::new();
    for pod in state.pods.values() {
        for (port, addr) in &pod.net.ports {
            text.push_str(&format!("{}:{port} {addr}\n", pod.net.ip));
        }
    }
    let partial = path.with_extension("partial");
    if let Err(e) = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, path)) {
        tracing::warn!(path = %path.display(), "fake kubelet: address map: {e}");
    }
}
