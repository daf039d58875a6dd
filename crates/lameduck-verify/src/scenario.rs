//! The scenario: what to run, how to roll it, which routers, which load.
//!
//! A scenario comes from a YAML file (keys mirror Kubernetes: `maxSurge`, `minReadySeconds`,
//! `terminationGracePeriodSeconds`, ...), from flags, or both: flags override the file. Every
//! error in a file names the file and the line of the offending key or value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

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

/// A duration written as `500ms`, `3s`, `1m 30s` or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Seconds as a float.
    #[must_use]
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{}ms", ms)
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

/// Parses `500ms`, `3s`, `1.5s`, `2` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return secs_to_duration(secs);
    }
    if let Some(num) = text.strip_suffix('s').filter(|n| !n.ends_with('m'))
        && let Ok(secs) = num.trim().parse::<f64>()
    {
        return secs_to_duration(secs);
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

fn secs_to_duration(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && (0.0..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("duration {secs} s is out of range (0 to 1 day)"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => secs_to_duration(n).map(Dur).map_err(de::Error::custom),
            Raw::Text(t) => parse_duration(&t).map(Dur).map_err(de::Error::custom),
        }
    }
}

/// A count or a percentage of replicas (`1`, `"25%"`), as Kubernetes' `IntOrString`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IntOrPercent {
    /// An absolute count.
    Int(u32),
    /// A percentage of `replicas`.
    Percent(u32),
}

impl IntOrPercent {
    /// Resolves against `replicas`, rounding up (maxSurge) or down (maxUnavailable).
    #[must_use]
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let v = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(v).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for IntOrPercent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {s:?}"))?;
            if p > 100 {
                return Err(format!("percentage {s:?} is above 100%"));
            }
            Ok(Self::Percent(p))
        } else {
            s.parse()
                .map(Self::Int)
                .map_err(|_| format!("expected a count or a percentage, got {s:?}"))
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self::Int(n)),
            Raw::Text(t) => t.parse().map_err(de::Error::custom),
        }
    }
}

/// The distribution of a delay (router propagation, kubelet notice).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Distribution {
    /// Always the same delay.
    Fixed(Dur),
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: Dur,
        /// Upper bound.
        max: Dur,
    },
    /// Log-normal with the given median and 99th percentile.
    Lognormal {
        /// Median delay.
        median: Dur,
        /// 99th percentile (must be ≥ median).
        p99: Dur,
    },
}

impl Distribution {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::Fixed(_) => Ok(()),
            Self::Uniform { min, max } if min > max => Err(format!(
                "uniform propagation needs min ≤ max, got min {min} > max {max}"
            )),
            Self::Lognormal { median, p99 } if p99 < median || median.0.is_zero() => Err(format!(
                "lognormal needs 0 < median ≤ p99, got median {median}, p99 {p99}"
            )),
            _ => Ok(()),
        }
    }

    /// A bound that covers almost every draw (the max, or the p99.9 of a log-normal), used to
    /// size cool-down waits.
    #[must_use]
    pub fn upper(&self) -> Duration {
        match *self {
            Self::Fixed(d) => d.0,
            Self::Uniform { max, .. } => max.0,
            Self::Lognormal { median, p99 } => {
                let sigma = (p99.secs() / median.secs()).ln() / 2.326_348;
                Duration::from_secs_f64((median.secs() * (3.090_232 * sigma).exp()).min(3600.0))
            }
        }
    }

    /// Parses the flag syntax: `fixed:1s`, `uniform:0.5s..3s`, `lognormal:1s,5s` (median, p99).
    pub fn parse_flag(text: &str) -> Result<Self, String> {
        let (kind, rest) = text.split_once(':').unwrap_or(("fixed", text));
        let d = match kind.trim() {
            "fixed" => Self::Fixed(Dur(parse_duration(rest)?)),
            "uniform" => {
                let (a, b) = rest
                    .split_once("..")
                    .ok_or_else(|| format!("uniform needs MIN..MAX, got {rest:?}"))?;
                Self::Uniform {
                    min: Dur(parse_duration(a)?),
                    max: Dur(parse_duration(b)?),
                }
            }
            "lognormal" => {
                let (a, b) = rest
                    .split_once(',')
                    .ok_or_else(|| format!("lognormal needs MEDIAN,P99, got {rest:?}"))?;
                Self::Lognormal {
                    median: Dur(parse_duration(a)?),
                    p99: Dur(parse_duration(b)?),
                }
            }
            other => {
                return Err(format!(
                    "unknown distribution {other:?} (fixed, uniform, lognormal)"
                ));
            }
        };
        d.validate()?;
        Ok(d)
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => write!(f, "fixed {d}"),
            Self::Uniform { min, max } => write!(f, "uniform {min}–{max}"),
            Self::Lognormal { median, p99 } => write!(f, "lognormal median {median} p99 {p99}"),
        }
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
    pub propagation: Option<Distribution>,
}

/// The preStop hook.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PreStop {
    /// Native `preStop: sleep` (KEP-3960).
    Sleep(Dur),
    /// `preStop: exec` with a command (placeholders substituted).
    Exec(Vec<String>),
    /// `preStop: httpGet` to a path on a port of the pod.
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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

/// The load driven through the routers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Load {
    /// Requests per second over all routers (open loop).
    pub rate: f64,
    /// Keep-alive connections per router.
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

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// Where it came from (file path or `<flags>`), for error messages.
    #[serde(skip)]
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

// ---- the file format (camelCase, Kubernetes-like), every value spanned for errors ----

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileScenario {
    command: Option<S<Command>>,
    new_command: Option<S<Command>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    replicas: Option<S<u32>>,
    rollouts: Option<S<u32>>,
    seed: Option<u64>,
    strategy: Option<FileStrategy>,
    min_ready_seconds: Option<S<Dur>>,
    readiness_probe: Option<FileProbe>,
    startup_timeout: Option<S<Dur>>,
    termination_grace_period_seconds: Option<S<Dur>>,
    kubelet_delay: Option<S<FileDist>>,
    pre_stop: Option<S<FilePreStop>>,
    stop_signal: Option<S<String>>,
    routers: Option<S<Vec<S<FileRouter>>>>,
    propagation: Option<S<FileDist>>,
    load: Option<FileLoad>,
    max_failures: Option<u64>,
}

/// A command as a list, or a string split on whitespace.
#[derive(Deserialize)]
#[serde(untagged)]
enum Command {
    List(Vec<String>),
    Line(String),
}

impl Command {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::List(v) => v,
            Self::Line(s) => s.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileStrategy {
    max_surge: Option<S<IntOrPercent>>,
    max_unavailable: Option<S<IntOrPercent>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileProbe {
    path: Option<String>,
    tcp: Option<bool>,
    port: Option<PortRef>,
    initial_delay_seconds: Option<Dur>,
    period_seconds: Option<S<Dur>>,
    timeout_seconds: Option<S<Dur>>,
    success_threshold: Option<S<u32>>,
    failure_threshold: Option<S<u32>>,
}

/// `fixed: 1s`, `uniform: {min, max}`, `lognormal: {median, p99}`, or a bare duration.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileDist {
    Tagged(Distribution),
    Bare(Dur),
}

impl FileDist {
    fn get(self) -> Distribution {
        match self {
            Self::Tagged(d) => d,
            Self::Bare(d) => Distribution::Fixed(d),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilePreStop {
    sleep: Option<Dur>,
    exec: Option<Command>,
    http_get: Option<FileHttpGet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileHttpGet {
    path: String,
    #[serde(default)]
    port: PortRef,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRouter {
    kind: RouterKind,
    count: Option<S<u32>>,
    #[serde(default)]
    retry: bool,
    propagation: Option<S<FileDist>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileLoad {
    rate: Option<S<f64>>,
    connections: Option<S<u32>>,
    protocol: Option<Protocol>,
    path: Option<String>,
    timeout: Option<Dur>,
    warmup: Option<Dur>,
    cooldown: Option<Dur>,
    duration: Option<Dur>,
    slow: Option<FileSlow>,
    websocket: Option<FileSessions>,
    streaming: Option<FileSessions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSlow {
    share: S<f64>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSessions {
    sessions: u32,
    path: Option<String>,
}

fn line_of<T>(s: &S<T>) -> u64 {
    s.referenced.line()
}

impl Scenario {
    /// Reads a scenario file; the result is not yet validated (flags may still override it).
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses scenario YAML; `path` is used in error messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let file: FileScenario = serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            let message = e.without_snippet().to_string();
            // The message may repeat the position; keep only its first line.
            let message = message
                .lines()
                .next()
                .unwrap_or("invalid scenario")
                .to_owned();
            ScenarioError::Syntax {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        let mut sc = Self {
            source: path.to_owned(),
            ..Self::default()
        };
        let invalid = |line: u64, message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        if let Some(c) = file.command {
            let line = line_of(&c);
            sc.command = c.value.into_vec();
            if sc.command.is_empty() {
                return Err(invalid(line, "`command` is empty".into()));
            }
        }
        if let Some(c) = file.new_command {
            sc.new_command = Some(c.value.into_vec());
        }
        sc.env = file.env;
        if let Some(r) = file.replicas {
            if r.value == 0 {
                return Err(invalid(line_of(&r), "`replicas` must be at least 1".into()));
            }
            sc.replicas = r.value;
        }
        if let Some(r) = file.rollouts {
            sc.rollouts = r.value;
        }
        if let Some(s) = file.seed {
            sc.seed = s;
        }
        let mut strategy_line = 0;
        if let Some(st) = file.strategy {
            if let Some(v) = st.max_surge {
                strategy_line = line_of(&v);
                sc.max_surge = v.value;
            }
            if let Some(v) = st.max_unavailable {
                strategy_line = strategy_line.max(line_of(&v));
                sc.max_unavailable = v.value;
            }
        }
        if let Some(v) = file.min_ready_seconds {
            sc.min_ready = v.value;
        }
        if let Some(p) = file.readiness_probe {
            if p.tcp == Some(true) {
                sc.readiness.path = None;
            } else if let Some(path) = p.path {
                sc.readiness.path = Some(path);
            }
            if let Some(v) = p.port {
                sc.readiness.port = v;
            }
            if let Some(v) = p.initial_delay_seconds {
                sc.readiness.initial_delay = v;
            }
            if let Some(v) = p.period_seconds {
                if v.value.0 < Duration::from_millis(10) {
                    return Err(invalid(
                        line_of(&v),
                        "`periodSeconds` must be at least 10ms".into(),
                    ));
                }
                sc.readiness.period = v.value;
            }
            if let Some(v) = p.timeout_seconds {
                if v.value.0.is_zero() {
                    return Err(invalid(
                        line_of(&v),
                        "`timeoutSeconds` must be above 0".into(),
                    ));
                }
                sc.readiness.timeout = v.value;
            }
            for (v, slot, name) in [
                (
                    p.success_threshold,
                    &mut sc.readiness.success_threshold,
                    "successThreshold",
                ),
                (
                    p.failure_threshold,
                    &mut sc.readiness.failure_threshold,
                    "failureThreshold",
                ),
            ] {
                if let Some(v) = v {
                    if v.value == 0 {
                        return Err(invalid(line_of(&v), format!("`{name}` must be at least 1")));
                    }
                    *slot = v.value;
                }
            }
        }
        if let Some(v) = file.startup_timeout {
            sc.startup_timeout = v.value;
        }
        if let Some(v) = file.termination_grace_period_seconds {
            sc.grace = v.value;
        }
        if let Some(v) = file.kubelet_delay {
            let line = line_of(&v);
            sc.kubelet_delay = v.value.get();
            sc.kubelet_delay.validate().map_err(|m| invalid(line, m))?;
        }
        if let Some(v) = file.pre_stop {
            let line = line_of(&v);
            let p = v.value;
            let n = usize::from(p.sleep.is_some())
                + usize::from(p.exec.is_some())
                + usize::from(p.http_get.is_some());
            if n != 1 {
                return Err(invalid(
                    line,
                    "`preStop` needs exactly one of sleep, exec, httpGet".into(),
                ));
            }
            sc.pre_stop = if let Some(d) = p.sleep {
                Some(PreStop::Sleep(d))
            } else if let Some(c) = p.exec {
                let c = c.into_vec();
                if c.is_empty() {
                    return Err(invalid(line, "`preStop.exec` is empty".into()));
                }
                Some(PreStop::Exec(c))
            } else {
                p.http_get.map(|h| PreStop::Http {
                    path: h.path,
                    port: h.port,
                })
            };
        }
        if let Some(v) = file.stop_signal {
            parse_signal(&v.value).map_err(|m| invalid(line_of(&v), m))?;
            sc.stop_signal = v.value;
        }
        if let Some(v) = file.propagation {
            let line = line_of(&v);
            sc.propagation = v.value.get();
            sc.propagation.validate().map_err(|m| invalid(line, m))?;
        }
        if let Some(rs) = file.routers {
            if rs.value.is_empty() {
                return Err(invalid(line_of(&rs), "`routers` is empty".into()));
            }
            sc.routers.clear();
            for r in rs.value {
                let line = line_of(&r);
                let r = r.value;
                let count = match r.count {
                    Some(c) if c.value == 0 || c.value > 64 => {
                        return Err(invalid(
                            line_of(&c),
                            "router `count` must be 1 to 64".into(),
                        ));
                    }
                    Some(c) => c.value,
                    None => 1,
                };
                if r.retry && r.kind == RouterKind::L4 {
                    return Err(invalid(
                        line,
                        "`retry` is for l7-style routers, not l4".into(),
                    ));
                }
                let propagation = match r.propagation {
                    Some(p) => {
                        let pl = line_of(&p);
                        let d = p.value.get();
                        d.validate().map_err(|m| invalid(pl, m))?;
                        Some(d)
                    }
                    None => None,
                };
                sc.routers.push(RouterSpec {
                    kind: r.kind,
                    count,
                    retry: r.retry,
                    propagation,
                });
            }
        }
        if let Some(l) = file.load {
            if let Some(r) = l.rate {
                if !(r.value.is_finite() && r.value > 0.0 && r.value <= 100_000.0) {
                    return Err(invalid(
                        line_of(&r),
                        "`load.rate` must be in (0, 100000] requests/s".into(),
                    ));
                }
                sc.load.rate = r.value;
            }
            if let Some(c) = l.connections {
                if c.value == 0 || c.value > 1024 {
                    return Err(invalid(
                        line_of(&c),
                        "`load.connections` must be 1 to 1024".into(),
                    ));
                }
                sc.load.connections = c.value;
            }
            if let Some(v) = l.protocol {
                sc.load.protocol = v;
            }
            if let Some(v) = l.path {
                sc.load.path = v;
            }
            if let Some(v) = l.timeout {
                sc.load.timeout = v;
            }
            if let Some(v) = l.warmup {
                sc.load.warmup = v;
            }
            if let Some(v) = l.cooldown {
                sc.load.cooldown = v;
            }
            if let Some(v) = l.duration {
                sc.load.duration = v;
            }
            if let Some(s) = l.slow {
                if !(0.0..=1.0).contains(&s.share.value) {
                    return Err(invalid(
                        line_of(&s.share),
                        format!(
                            "`load.slow.share` is a probability (0 to 1), got {}",
                            s.share.value
                        ),
                    ));
                }
                sc.load.slow_share = s.share.value;
                if let Some(p) = s.path {
                    sc.load.slow_path = p;
                }
            }
            if let Some(w) = l.websocket {
                sc.load.websockets = w.sessions;
                if let Some(p) = w.path {
                    sc.load.websocket_path = p;
                }
            }
            if let Some(w) = l.streaming {
                sc.load.streams = w.sessions;
                if let Some(p) = w.path {
                    sc.load.stream_path = p;
                }
            }
        }
        if let Some(v) = file.max_failures {
            sc.max_failures = v;
        }
        if sc.max_surge.resolve(sc.replicas, true) == 0
            && sc.max_unavailable.resolve(sc.replicas, false) == 0
        {
            return Err(invalid(
                strategy_line,
                "maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)"
                    .into(),
            ));
        }
        Ok(sc)
    }

    /// Checks what a file cannot check alone (after flags were applied).
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: self.source.clone(),
            line: 0,
            message,
        };
        if self.command.is_empty() {
            return Err(invalid(
                "no command: give `-- CMD ...`, `command:` in the scenario file, or --demo".into(),
            ));
        }
        if !self.command.iter().any(|a| a.contains("{port}"))
            && !self.env.values().any(|v| v.contains("{port}"))
        {
            return Err(invalid(format!(
                "the command {:?} has no {{port}} placeholder: each replica must listen on its own port",
                self.command.join(" ")
            )));
        }
        if self.replicas == 0 {
            return Err(invalid("replicas must be at least 1".into()));
        }
        if self.max_surge.resolve(self.replicas, true) == 0
            && self.max_unavailable.resolve(self.replicas, false) == 0
        {
            return Err(invalid(
                "maxSurge and maxUnavailable cannot both be 0".into(),
            ));
        }
        self.propagation.validate().map_err(invalid)?;
        self.kubelet_delay.validate().map_err(invalid)?;
        parse_signal(&self.stop_signal).map_err(invalid)?;
        if !(0.0..=1.0).contains(&self.load.slow_share) {
            return Err(invalid(format!(
                "slow share is a probability (0 to 1), got {}",
                self.load.slow_share
            )));
        }
        if !(self.load.rate.is_finite() && self.load.rate > 0.0) {
            return Err(invalid("load rate must be above 0".into()));
        }
        if self.routers.is_empty() {
            return Err(invalid("no routers".into()));
        }
        Ok(())
    }

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

/// Parses `SIGTERM`, `TERM`, `SIGINT`, `SIGQUIT`, `SIGUSR1`, ... into a signal.
pub fn parse_signal(name: &str) -> Result<nix::sys::signal::Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map_err(|_| format!("unknown stop signal {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_yaml(yaml, Path::new("s.yaml"))
    }

    #[test]
    fn full_file_parses() {
        let sc = parse(
            "command: [app, --listen, '127.0.0.1:{port}']\nreplicas: 4\nstrategy:\n  maxSurge: 25%\n  maxUnavailable: 0\n\
             preStop:\n  sleep: 5s\nrouters:\n  - kind: l4\n    count: 2\n  - kind: l7\n    retry: true\n\
             propagation:\n  lognormal: {median: 1s, p99: 5s}\nload:\n  rate: 300\n  slow:\n    share: 0.1\n",
        )
        .unwrap();
        assert_eq!(sc.replicas, 4);
        assert_eq!(sc.max_surge.resolve(4, true), 1);
        assert_eq!(
            sc.pre_stop,
            Some(PreStop::Sleep(Dur(Duration::from_secs(5))))
        );
        assert_eq!(sc.router_count(), 3);
        assert!(sc.routers[1].retry);
        assert!(sc.max_propagation() > Duration::from_secs(5));
        sc.validate().unwrap();
    }

    #[test]
    fn unknown_key_names_line() {
        let err = parse("replicas: 3\nload:\n  rate: 5\n  burst: 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("s.yaml:4:"), "{msg}");
        assert!(msg.contains("burst"), "{msg}");
    }

    #[test]
    fn impossible_values_name_line() {
        let err =
            parse("replicas: 3\nstrategy:\n  maxSurge: 0\n  maxUnavailable: 0\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:4: maxSurge"), "{err}");
        let err = parse("load:\n  slow:\n    share: 1.5\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:3:"), "{err}");
        let err = parse("propagation:\n  uniform: {min: 3s, max: 1s}\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:2:"), "{err}");
    }

    #[test]
    fn flag_distributions() {
        assert_eq!(
            Distribution::parse_flag("uniform:0.5s..3s").unwrap(),
            Distribution::Uniform {
                min: Dur(Duration::from_millis(500)),
                max: Dur(Duration::from_secs(3))
            }
        );
        assert!(Distribution::parse_flag("lognormal:2s,1s").is_err());
        assert_eq!(
            Distribution::parse_flag("2s").unwrap(),
            Distribution::Fixed(Dur(Duration::from_secs(2)))
        );
    }
}
