//! Calls to a pod: its lameduck admin endpoint (`/drain`), its readiness gate condition, and
//! its prepare hook.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize;

use crate::settings::{ADMIN_PORT_ANNOTATION, PREPARE_URL_ANNOTATION, SERVING_CONDITION};

/// Where a pod's ports are reached.
#[derive(Debug, Clone, Default)]
pub enum PodAddresses {
    /// At the pod IP, as in a cluster.
    #[default]
    Direct,
    /// Through a file of `POD_IP:PORT ADDRESS` lines, read at each call. For tests whose pods
    /// are local processes on loopback ports while the API shows documentation addresses.
    MapFile(PathBuf),
}

impl PodAddresses {
    fn resolve(&self, ip: IpAddr, port: u16) -> Result<SocketAddr, String> {
        let direct = SocketAddr::new(ip, port);
        let PodAddresses::MapFile(path) = self else {
            return Ok(direct);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("pod address map {}: {e}", path.display()))?;
        let key = direct.to_string();
        text.lines()
            .filter_map(|line| line.split_once(' '))
            .find(|(from, _)| *from == key)
            .and_then(|(_, to)| to.trim().parse().ok())
            .ok_or_else(|| format!("pod address map {} has no {key}", path.display()))
    }
}

/// How the gate takes a pod out of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handle {
    /// lameduck's admin endpoint at this address: `POST /drain?hold`.
    Lameduck(SocketAddr),
    /// The pod's readiness gate `lameduck.dev/serving`, set False through `pods/status`.
    ReadinessGate,
}

/// The pod's own evidence, from `GET /drain`.
#[derive(Debug, Clone, Deserialize)]
pub struct DrainStatus {
    /// The lifecycle phase.
    pub phase: String,
    /// Whether it is held for the gate.
    pub held: bool,
    /// Nothing in flight and nothing arrived for the quiet window.
    pub quiet: bool,
    /// Requests in flight.
    pub in_flight: u64,
    /// Tracked long-running tasks still running.
    pub busy_tasks: u64,
    /// How long nothing arrived, if draining.
    pub quiet_for_ms: Option<u64>,
}

/// The pod's IP, if it has one.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

/// How to take `pod` out of traffic, or why the gate cannot.
pub fn handle_of(pod: &Pod, addresses: &PodAddresses) -> Result<Handle, String> {
    let annotations = pod.metadata.annotations.as_ref();
    if let Some(port) = annotations.and_then(|a| a.get(ADMIN_PORT_ANNOTATION)) {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{ADMIN_PORT_ANNOTATION}: {port:?} is not a port number"))?;
        let ip = pod_ip(pod).ok_or("the pod has no IP")?;
        return addresses.resolve(ip, port).map(Handle::Lameduck);
    }
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == SERVING_CONDITION));
    if gated {
        return Ok(Handle::ReadinessGate);
    }
    Err(format!(
        "no way to take it out of traffic: annotate {ADMIN_PORT_ANNOTATION} (lameduck inside) \
         or add the readiness gate {SERVING_CONDITION}"
    ))
}

/// One HTTP/1 request on a new connection; the status and body.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).trim().to_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within {timeout:?}"))?
}

/// Takes the pod out of traffic, keeping it serving.
pub async fn take_out(
    client: &kube::Client,
    pod: &Pod,
    handle: &Handle,
    timeout: Duration,
) -> Result<(), String> {
    match handle {
        Handle::Lameduck(addr) => call_ok(*addr, Method::POST, "/drain?hold", timeout).await,
        Handle::ReadinessGate => set_serving(&namespaced(client, pod), &pod_name(pod), false).await,
    }
}

/// Puts a pod the gate took out back in service.
pub async fn put_back(
    client: &kube::Client,
    pod: &Pod,
    handle: &Handle,
    timeout: Duration,
) -> Result<(), String> {
    match handle {
        Handle::Lameduck(addr) => call_ok(*addr, Method::DELETE, "/drain", timeout).await,
        Handle::ReadinessGate => set_serving(&namespaced(client, pod), &pod_name(pod), true).await,
    }
}

/// The pod's drain status (lameduck pods only).
pub async fn drain_status(addr: SocketAddr, timeout: Duration) -> Result<DrainStatus, String> {
    let (status, body) = call(addr, Method::GET, "/drain", timeout).await?;
    if !status.is_success() {
        return Err(format!("GET /drain: {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET /drain: {e}: {body}"))
}

/// Tells a lameduck pod the cluster confirmed it safe: its SIGTERM goes straight to Closing.
pub async fn confirm_safe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    call_ok(addr, Method::POST, "/drain/safe", timeout).await
}

/// [`call`], with any status but 2xx an error naming the request.
async fn call_ok(
    addr: SocketAddr,
    method: Method,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let (status, body) = call(addr, method.clone(), path, timeout).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{method} {path}: {status} {body}"))
    }
}

/// Asks the pod's prepare hook; `Ok(None)` when it answered done (200), `Ok(Some(why))` while
/// it is not (any other status, with its body), or when there is none.
pub async fn prepare_pending(
    pod: &Pod,
    addresses: &PodAddresses,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let Some(url) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PREPARE_URL_ANNOTATION))
    else {
        return Ok(None);
    };
    let ip = pod_ip(pod).ok_or("the pod has no IP")?;
    let url = url.replace("$(POD_IP)", &ip.to_string());
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{PREPARE_URL_ANNOTATION}: {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{PREPARE_URL_ANNOTATION}: {url:?}: only http:// is supported"
        ));
    }
    let host: IpAddr = uri
        .host()
        .and_then(|h| h.trim_matches(['[', ']']).parse().ok())
        .ok_or_else(|| {
            format!("{PREPARE_URL_ANNOTATION}: {url:?}: the host must be an IP (or $(POD_IP))")
        })?;
    let addr = addresses.resolve(host, uri.port_u16().unwrap_or(80))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let (status, body) = call(addr, Method::POST, path, timeout).await?;
    Ok((status != StatusCode::OK).then(|| {
        if body.is_empty() {
            format!("prepare hook answered {status}")
        } else {
            format!("prepare hook answered {status}: {body}")
        }
    }))
}

fn namespaced(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Sets the readiness gate condition through `pods/status` (a strategic merge by type, so the
/// kubelet's own conditions stay).
pub(crate) async fn set_serving(api: &Api<Pod>, name: &str, serving: bool) -> Result<(), String> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (status, reason) = if serving {
        ("True", "Serving")
    } else {
        ("False", "TakenOutByGate")
    };
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": SERVING_CONDITION, "status": status, "reason": reason,
        "lastTransitionTime": now,
    }]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("set {SERVING_CONDITION}={status}: {e}"))
}
