//! The scenario file as written: Kubernetes-like keys, every value spanned to name its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Distribution, Dur, IntOrPercent, PortRef, Protocol, RouterKind};

// ---- the file format (camelCase, Kubernetes-like), every value spanned for errors ----

pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileScenario {
    pub(super) command: Option<S<Command>>,
    pub(super) new_command: Option<S<Command>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) replicas: Option<S<u32>>,
    pub(super) rollouts: Option<S<u32>>,
    pub(super) seed: Option<u64>,
    pub(super) strategy: Option<FileStrategy>,
    pub(super) min_ready_seconds: Option<S<Dur>>,
    pub(super) readiness_probe: Option<FileProbe>,
    pub(super) startup_timeout: Option<S<Dur>>,
    pub(super) termination_grace_period_seconds: Option<S<Dur>>,
    pub(super) kubelet_delay: Option<S<FileDist>>,
    pub(super) pre_stop: Option<S<FilePreStop>>,
    pub(super) stop_signal: Option<S<String>>,
    pub(super) routers: Option<S<Vec<S<FileRouter>>>>,
    pub(super) propagation: Option<S<FileDist>>,
    pub(super) load: Option<FileLoad>,
    pub(super) max_failures: Option<u64>,
}

/// A command as a list, or a string split on whitespace.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Command {
    List(Vec<String>),
    Line(String),
}

impl Command {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::List(v) => v,
            Self::Line(s) => s.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileStrategy {
    pub(super) max_surge: Option<S<IntOrPercent>>,
    pub(super) max_unavailable: Option<S<IntOrPercent>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileProbe {
    pub(super) path: Option<String>,
    pub(super) tcp: Option<bool>,
    pub(super) port: Option<PortRef>,
    pub(super) initial_delay_seconds: Option<Dur>,
    pub(super) period_seconds: Option<S<Dur>>,
    pub(super) timeout_seconds: Option<S<Dur>>,
    pub(super) success_threshold: Option<S<u32>>,
    pub(super) failure_threshold: Option<S<u32>>,
}

/// `fixed: 1s`, `uniform: {min, max}`, `lognormal: {median, p99}`, or a bare duration.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum FileDist {
    Tagged(Distribution),
    Bare(Dur),
}

impl FileDist {
    pub(super) fn get(self) -> Distribution {
        match self {
            Self::Tagged(d) => d,
            Self::Bare(d) => Distribution::Fixed(d),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FilePreStop {
    pub(super) sleep: Option<Dur>,
    pub(super) exec: Option<Command>,
    pub(super) http_get: Option<FileHttpGet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileHttpGet {
    pub(super) path: String,
    #[serde(default)]
    pub(super) port: PortRef,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileRouter {
    pub(super) kind: RouterKind,
    pub(super) count: Option<S<u32>>,
    #[serde(default)]
    pub(super) retry: bool,
    pub(super) propagation: Option<S<FileDist>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileLoad {
    pub(super) clients: Option<S<String>>,
    pub(super) rate: Option<S<f64>>,
    pub(super) connections: Option<S<u32>>,
    pub(super) protocol: Option<Protocol>,
    pub(super) path: Option<String>,
    pub(super) timeout: Option<Dur>,
    pub(super) warmup: Option<Dur>,
    pub(super) cooldown: Option<Dur>,
    pub(super) duration: Option<Dur>,
    pub(super) slow: Option<FileSlow>,
    pub(super) websocket: Option<FileSessions>,
    pub(super) streaming: Option<FileSessions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileSlow {
    pub(super) share: S<f64>,
    pub(super) path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileSessions {
    pub(super) sessions: u32,
    pub(super) path: Option<String>,
}

pub(super) fn line_of<T>(s: &S<T>) -> u64 {
    s.referenced.line()
}
