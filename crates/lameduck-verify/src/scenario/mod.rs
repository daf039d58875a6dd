//! The scenario: what to run, how to roll it, which routers, which load.
//!
//! A scenario comes from a YAML file (keys mirror Kubernetes: `maxSurge`, `minReadySeconds`,
//! `terminationGracePeriodSeconds`, ...), from Kubernetes manifests (a Deployment, StatefulSet
//! or Argo Rollout: [`Scenario::apply_manifests`]), from flags, or all three: manifests override
//! the file, flags override both. Every error in a file names the file and the line of the
//! offending key or value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod distribution;
mod json;
mod manifest;
mod parse;
mod schema;
mod validate;
mod values;

pub use distribution::Distribution;
pub use manifest::{Local, Note, NoteKind, runnable_here};
pub use values::{Dur, IntOrPercent, parse_duration, parse_signal};

/// A scenario that could not be read or is impossible.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML or does not match the schema (unknown key, wrong type, ...).
    #[error("{}", located(path, *line, message))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The scenario parses but is impossible (e.g. `maxSurge: 0` with `maxUnavailable: 0`).
    #[error("{}", located(path, *line, message))]
    Invalid {
        /// The file, or `<flags>` when no file was given.
        path: PathBuf,
        /// 1-based line of the offending key (0 when it came from a flag or a default).
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// `file:line: message`, or `file: message` when the line is unknown (flags, defaults).
fn located(path: &Path, line: u64, message: &str) -> String {
    if line == 0 {
        format!("{}: {message}", path.display())
    } else {
        format!("{}:{line}: {message}", path.display())
    }
}

/// Kind of a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// Embedded kube-proxy-like router: per-connection choice, pinned connections.
    L4,
    /// Embedded ingress-like router: per-request choice, 502 on upstream failure.
    L7,
    /// A real HAProxy, driven through its runtime API (HTTP mode, like an ingress).
    Haproxy,
    /// A real nginx, driven by reloads (like ingress-nginx without its Lua balancer).
    Nginx,
}

impl fmt::Display for RouterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::L4 => "l4",
            Self::L7 => "l7",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
        })
    }
}

impl std::str::FromStr for RouterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l4" | "kube-proxy" => Ok(Self::L4),
            "l7" | "ingress" => Ok(Self::L7),
            "haproxy" => Ok(Self::Haproxy),
            "nginx" => Ok(Self::Nginx),
            other => Err(format!(
                "unknown router kind {other:?} (l4, l7, haproxy, nginx)"
            )),
        }
    }
}

/// A group of routers of one kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouterSpec {
    /// Kind.
    pub kind: RouterKind,
    /// How many routers of this kind (each with its own delays).
    pub count: u32,
    /// L7 only: retry an idempotent request once on another endpoint after an upstream failure.
    pub retry: bool,
    /// Propagation delay of this group, instead of the scenario's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Distribution>,
}

/// The preStop hook (serialized as the file writes it: `sleep`, `exec`, `httpGet`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PreStop {
    /// Native `preStop: sleep` (KEP-3960).
    Sleep(Dur),
    /// `preStop: exec` with a command (placeholders substituted).
    Exec(Vec<String>),
    /// `preStop: httpGet` to a path on a port of the pod.
    #[serde(rename = "httpGet")]
    Http {
        /// Path, e.g. `/prestop`.
        path: String,
        /// Which port: `port`, `admin` or `app`.
        port: PortRef,
    },
}

/// Which of a replica's ports a probe or hook targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortRef {
    /// `{port}`: the port routers send to.
    #[default]
    Port,
    /// `{admin_port}`.
    Admin,
    /// `{app_port}`.
    App,
}

/// The readiness probe of new pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// HTTP path; a TCP connect check when `None`.
    pub path: Option<String>,
    /// Port to probe.
    pub port: PortRef,
    /// `initialDelaySeconds`.
    pub initial_delay: Dur,
    /// `periodSeconds`.
    pub period: Dur,
    /// `timeoutSeconds`.
    pub timeout: Dur,
    /// `successThreshold`.
    pub success_threshold: u32,
    /// `failureThreshold`.
    pub failure_threshold: u32,
}

/// Protocol of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over cleartext (prior knowledge).
    H2c,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http1 => "HTTP/1.1",
            Self::H2c => "h2c",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http1" | "http/1.1" | "h1" => Ok(Self::Http1),
            "h2c" | "http2" | "h2" => Ok(Self::H2c),
            o => Err(format!("unknown protocol {o:?} (http1, h2c)")),
        }
    }
}

/// How the load's clients decide when to send.
///
/// Both models exist because they lose different requests: an open-loop client's keep-alive
/// connections sit idle between arrivals and see a server's close before they send again,
/// while a busy client's connection always has a request on its way, so a close that races it
/// costs that request (as production clients at high load, and wrk, show).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clients {
    /// Open loop: requests arrive at `rate`, each sent when it is due whatever happened to the
    /// earlier ones, over a shared pool of keep-alive connections.
    #[default]
    Open,
    /// Closed loop: each of `connections` clients per router keeps one keep-alive connection
    /// and sends its next request as soon as the previous one ended, at most `rate` in total.
    Closed,
}

impl fmt::Display for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
        })
    }
}

impl std::str::FromStr for Clients {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            o => Err(format!("unknown client model {o:?} (open, closed)")),
        }
    }
}

/// The load driven through the routers.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// Client model: open loop (the default) or busy closed-loop clients.
    pub clients: Clients,
    /// Requests per second over all routers: the arrival rate of the open loop, the most the
    /// closed loop's clients may send.
    pub rate: f64,
    /// Keep-alive connections per router: the open loop's shared pool, or the closed loop's
    /// clients (one connection each).
    pub connections: u32,
    /// Protocol.
    pub protocol: Protocol,
    /// Path of ordinary requests.
    pub path: String,
    /// A request without a full response after this long failed with `timeout`.
    pub timeout: Dur,
    /// Load before the first rollout.
    pub warmup: Dur,
    /// Load after the last pod exited and every router applied every change.
    pub cooldown: Dur,
    /// Total load time when `rollouts` is 0.
    pub duration: Dur,
    /// Slow requests: share of requests sent to `slow_path` instead.
    pub slow_share: f64,
    /// Path of slow requests.
    pub slow_path: String,
    /// Concurrent WebSocket sessions (each echoes a message every 100 ms).
    pub websockets: u32,
    /// Path of WebSocket sessions.
    pub websocket_path: String,
    /// Concurrent streaming responses.
    pub streams: u32,
    /// Path of streaming responses.
    pub stream_path: String,
}

/// Everything a run needs. Serialized in the scenario file's shape (`json.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Where it came from (file path or `<flags>`), for error messages.
    pub source: PathBuf,
    /// Command of a replica, with `{port}`, `{admin_port}`, `{app_port}`, `{pod}` placeholders.
    pub command: Vec<String>,
    /// Command of the new revision (defaults to `command`).
    pub new_command: Option<Vec<String>>,
    /// Extra environment of each replica (placeholders substituted).
    pub env: BTreeMap<String, String>,
    /// Replica count.
    pub replicas: u32,
    /// Number of rolling updates, one after the other.
    pub rollouts: u32,
    /// Seed of every random draw.
    pub seed: u64,
    /// `strategy.rollingUpdate.maxSurge`.
    pub max_surge: IntOrPercent,
    /// `strategy.rollingUpdate.maxUnavailable`.
    pub max_unavailable: IntOrPercent,
    /// `minReadySeconds`.
    pub min_ready: Dur,
    /// Readiness probe.
    pub readiness: Probe,
    /// How long a replica may take to become ready before the run fails.
    pub startup_timeout: Dur,
    /// `terminationGracePeriodSeconds`.
    pub grace: Dur,
    /// Delay from t0 until the kubelet acts (preStop or stop signal).
    pub kubelet_delay: Distribution,
    /// preStop hook.
    pub pre_stop: Option<PreStop>,
    /// Stop signal (`SIGTERM` unless the image says otherwise).
    pub stop_signal: String,
    /// Routers.
    pub routers: Vec<RouterSpec>,
    /// Propagation delay of every router (unless its group overrides it).
    pub propagation: Distribution,
    /// Load.
    pub load: Load,
    /// The run passes when failures ≤ this.
    pub max_failures: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            source: PathBuf::from("<flags>"),
            command: Vec::new(),
            new_command: None,
            env: BTreeMap::new(),
            replicas: 3,
            rollouts: 1,
            seed: 1,
            max_surge: IntOrPercent::Percent(25),
            max_unavailable: IntOrPercent::Percent(25),
            min_ready: Dur(Duration::ZERO),
            readiness: Probe {
                path: Some("/".into()),
                port: PortRef::Port,
                initial_delay: Dur(Duration::ZERO),
                period: Dur(Duration::from_millis(200)),
                timeout: Dur(Duration::from_secs(1)),
                success_threshold: 1,
                failure_threshold: 3,
            },
            startup_timeout: Dur(Duration::from_secs(20)),
            grace: Dur(Duration::from_secs(30)),
            kubelet_delay: Distribution::Fixed(Dur(Duration::from_millis(50))),
            pre_stop: None,
            stop_signal: "SIGTERM".into(),
            routers: vec![RouterSpec {
                kind: RouterKind::L7,
                count: 1,
                retry: false,
                propagation: None,
            }],
            propagation: Distribution::Uniform {
                min: Dur(Duration::from_millis(500)),
                max: Dur(Duration::from_secs(3)),
            },
            load: Load {
                clients: Clients::Open,
                rate: 200.0,
                connections: 8,
                protocol: Protocol::Http1,
                path: "/".into(),
                timeout: Dur(Duration::from_secs(10)),
                warmup: Dur(Duration::from_secs(1)),
                cooldown: Dur(Duration::from_secs(1)),
                duration: Dur(Duration::from_secs(10)),
                slow_share: 0.0,
                slow_path: "/slow?ms=2000".into(),
                websockets: 0,
                websocket_path: "/ws".into(),
                streams: 0,
                stream_path: "/stream".into(),
            },
            max_failures: 0,
        }
    }
}

impl Load {
    /// The client model in words, for reports: `open loop, 200 req/s` or `closed loop, 8 busy
    /// connections per router, at most 200 req/s`.
    #[must_use]
    pub fn clients_described(&self) -> String {
        match self.clients {
            Clients::Open => format!("open loop, {} req/s", self.rate),
            Clients::Closed => format!(
                "closed loop, {} busy connection{} per router, at most {} req/s",
                self.connections,
                if self.connections == 1 { "" } else { "s" },
                self.rate
            ),
        }
    }
}

impl Scenario {
    /// Total number of routers.
    #[must_use]
    pub fn router_count(&self) -> usize {
        self.routers.iter().map(|r| r.count as usize).sum()
    }

    /// The largest propagation delay any router can draw (for cool-down sizing).
    #[must_use]
    pub fn max_propagation(&self) -> Duration {
        self.routers
            .iter()
            .map(|r| r.propagation.unwrap_or(self.propagation).upper())
            .max()
            .unwrap_or_default()
    }
}
