//! Kubernetes manifests to [`Scenario`]: `lameduck verify -f deploy.yaml [-f service.yaml]`.
//!
//! The manifests are read with `lameduck lint`'s parser and pod-template reader, so a file means
//! the same to both and every error names the same line. What the workload says about a rollout
//! (replicas, strategy, minReadySeconds, the grace period, the serving container's readiness
//! probe, preStop hook, stop signal, ports, env, command and args) replaces the base scenario's
//! values; routers, propagation and load stay as the base (a scenario file, or the defaults)
//! says, and flags still override everything afterwards.
//!
//! A replica runs on loopback, so the container's ports become the scenario's placeholders:
//! the port the Service (or `lameduck run`'s proxy, or the first declared port) serves on is
//! `{port}`, `lameduck run`'s admin port `{admin_port}`, its proxy's upstream `{app_port}`, and
//! other ports take whichever of the last two is free. Every argument and env value naming such
//! a port number is rewritten to the placeholder, with a wildcard host (`0.0.0.0`, `[::]`, none)
//! turned into `127.0.0.1`.
//!
//! Nothing is dropped silently: whatever a manifest says that matters to a shutdown and that
//! the testbed does not model is returned as a [`Note`], once, with its file and line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lameduck_lint::{Node, Object, Workload};

use super::{Dur, IntOrPercent, PortRef, PreStop, Probe, Scenario, ScenarioError};

/// What the local machine provides in place of the container image.
pub struct Local<'a> {
    /// The command given after `--` (empty: take the container's own, when it runs here).
    pub command: &'a [String],
    /// The `lameduck` binary that runs a container's `lameduck run` (and `lameduck sleep` /
    /// `wait` hooks).
    pub lameduck: &'a Path,
    /// Whether a program runs here: an absolute path that exists, or a name on `PATH`.
    /// A function so that tests need not depend on the machine.
    pub runnable: &'a dyn Fn(&str) -> bool,
}

/// How far a manifest field is from what the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Run differently from Kubernetes, close enough to say what the rollout loses.
    Approximated,
    /// Not modelled at all: the run behaves as if the field were absent.
    Unsupported,
}

/// A manifest field the run does not follow exactly, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// How far it is.
    pub kind: NoteKind,
    /// What, and how it is run instead.
    pub text: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::Approximated => "approximated",
            NoteKind::Unsupported => "not modelled",
        };
        write!(
            f,
            "{}:{}: {kind}: {}",
            self.file.display(),
            self.line,
            self.text
        )
    }
}

/// Whether `program` runs here: a path (with a `/`) naming an executable file, or a name found
/// in one of `PATH`'s directories.
#[must_use]
pub fn runnable_here(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return false;
    }
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

/// Workload kinds whose rollout verify runs.
const ROLLED: [&str; 3] = ["Deployment", "StatefulSet", "Rollout"];

/// Placeholders a local command may carry; one makes it the whole command line.
const PLACEHOLDERS: [&str; 4] = ["{port}", "{admin_port}", "{app_port}", "{pod}"];

impl Scenario {
    /// Reads `sources` (file name, text) as Kubernetes manifests and applies their workload to
    /// this scenario. Returns what the run approximates or leaves out, each once.
    ///
    /// Exactly one Deployment, StatefulSet or Argo Rollout must be among the objects; Services
    /// selecting it give the serving port, and other objects are listed as not modelled.
    pub fn apply_manifests(
        &mut self,
        sources: &[(&Path, &str)],
        local: &Local<'_>,
    ) -> Result<Vec<Note>, ScenarioError> {
        let names: Vec<String> = sources
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        let texts: Vec<(&str, &str)> = names
            .iter()
            .zip(sources)
            .map(|(name, (_, text))| (name.as_str(), *text))
            .collect();
        let loaded = lameduck_lint::load_all(&texts);
        if let Some(e) = loaded.errors.first() {
            return Err(ScenarioError::Syntax {
                path: PathBuf::from(&*e.file),
                line: e.pos.line as u64,
                message: e.message.clone(),
            });
        }
        let first = sources
            .first()
            .map_or_else(PathBuf::new, |(p, _)| p.to_path_buf());
        let mut m = Mapper {
            notes: Vec::new(),
            local,
        };
        let workload = m.the_workload(&loaded.objects, &first)?;
        self.source = PathBuf::from(&*workload.object.file);
        m.others(&loaded.objects, &workload);
        m.workload_spec(self, &workload)?;
        let container = m.container(&loaded.objects, &workload)?;
        m.pod_spec(self, &workload, container)?;
        let ports = m.ports(&loaded.objects, &workload, container)?;
        m.command(self, &workload, container, &ports)?;
        m.readiness(self, &workload, container, &ports)?;
        m.lifecycle(self, &workload, container, &ports)?;
        m.unknown_keys(&workload, container);
        m.notes.dedup();
        Ok(m.notes)
    }
}

/// One port of the container and the placeholder it runs on.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    number: u16,
    to: PortRef,
}

struct Ports {
    mapped: Vec<Mapped>,
    /// `lameduck run` has its admin address from the manifest (otherwise one is added).
    admin_given: bool,
}

impl Ports {
    fn of(&self, number: u16) -> Option<PortRef> {
        self.mapped
            .iter()
            .find(|m| m.number == number)
            .map(|m| m.to)
    }
}

fn placeholder(to: PortRef) -> &'static str {
    match to {
        PortRef::Port => "{port}",
        PortRef::Admin => "{admin_port}",
        PortRef::App => "{app_port}",
    }
}

struct Mapper<'l, 'a> {
    notes: Vec<Note>,
    local: &'l Local<'a>,
}

fn err(object: &Object, line: usize, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        path: PathBuf::from(&*object.file),
        line: line as u64,
        message: message.into(),
    }
}

impl Mapper<'_, '_> {
    fn note(&mut self, object: &Object, line: usize, kind: NoteKind, text: impl Into<String>) {
        let note = Note {
            file: PathBuf::from(&*object.file),
            line,
            kind,
            text: text.into(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn the_workload<'o>(
        &mut self,
        objects: &'o [Object],
        first: &Path,
    ) -> Result<Workload<'o>, ScenarioError> {
        let mut found: Vec<Workload<'o>> = Vec::new();
        for object in objects {
            let Some(w) = lameduck_lint::workload(object) else {
                continue;
            };
            if !ROLLED.contains(&object.kind.as_str()) {
                return Err(err(
                    object,
                    object.root.pos.line,
                    format!(
                        "{} has no rolling update to verify (Deployment, StatefulSet or Argo \
                         Rollout)",
                        object.display_name()
                    ),
                ));
            }
            found.push(w);
        }
        match found.len() {
            0 => {
                // A Rollout that points at a Deployment's template has none of its own.
                if let Some(o) = objects.iter().find(|o| {
                    o.kind == "Rollout" && o.root.path(&["spec", "workloadRef"]).is_some()
                }) {
                    return Err(err(
                        o,
                        o.root.pos.line,
                        format!(
                            "{} uses spec.workloadRef: give the Deployment it refers to instead",
                            o.display_name()
                        ),
                    ));
                }
                Err(ScenarioError::Invalid {
                    path: first.to_owned(),
                    line: 0,
                    message: "no Deployment, StatefulSet or Argo Rollout with a pod template \
                              in the manifests"
                        .into(),
                })
            }
            1 => Ok(found.remove(0)),
            _ => {
                let list: Vec<String> = found
                    .iter()
                    .map(|w| {
                        format!(
                            "{} ({}:{})",
                            w.object.display_name(),
                            w.object.file,
                            w.object.root.pos.line
                        )
                    })
                    .collect();
                Err(err(
                    found[1].object,
                    found[1].object.root.pos.line,
                    format!(
                        "more than one workload to roll: {}; give one per run",
                        list.join(", ")
                    ),
                ))
            }
        }
    }

    /// Services, PDBs and the rest: what each means to this run.
    fn others(&mut self, objects: &[Object], w: &Workload<'_>) {
        for o in objects {
            if std::ptr::eq(o, w.object) {
                continue;
            }
            let line = o.root.pos.line;
            match o.kind.as_str() {
                "Service" if lameduck_lint::service_selects(o, &w.labels) => {
                    let spec = |k: &str| o.root.path(&["spec", k]).and_then(Node::as_str);
                    if spec("type") == Some("LoadBalancer")
                        || spec("externalTrafficPolicy") == Some("Local")
                    {
                        self.note(
                            o,
                            line,
                            NoteKind::Unsupported,
                            format!(
                                "{}: load balancers, nodes and externalTrafficPolicy are not \
                                 modelled; the routers stand for kube-proxy and ingresses",
                                o.display_name()
                            ),
                        );
                    }
                }
                "PodDisruptionBudget" => self.note(
                    o,
                    line,
                    NoteKind::Unsupported,
                    format!(
                        "{}: a rolling update does not consult PodDisruptionBudgets (only \
                         evictions do, as in node drains, which verify does not run)",
                        o.display_name()
                    ),
                ),
                _ => self.note(
                    o,
                    line,
                    NoteKind::Unsupported,
                    format!("{}: not used by the run", o.display_name()),
                ),
            }
        }
    }

    fn workload_spec(&mut self, sc: &mut Scenario, w: &Workload<'_>) -> Result<(), ScenarioError> {
        let object = w.object;
        let spec = object.root.get("spec");
        let replicas = spec.and_then(|s| s.get("replicas"));
        sc.replicas = match replicas {
            None => 1,
            Some(n) => n
                .as_i64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    err(
                        object,
                        n.pos.line,
                        "`replicas` must be a whole number from 1 to 1000 to roll",
                    )
                })?,
        };
        if replicas.is_none() {
            let line = object
                .root
                .entry("spec")
                .map_or(object.root.pos.line, |s| s.key.pos.line);
            self.note(
                object,
                line,
                NoteKind::Approximated,
                "no `replicas`: 1, Kubernetes' default (an autoscaler's count is not known here; \
                 --replicas sets it)",
            );
        }
        if let Some(n) = spec.and_then(|s| s.get("minReadySeconds")) {
            let secs = n
                .as_i64()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    err(
                        object,
                        n.pos.line,
                        "`minReadySeconds` must be a whole number of at least 0",
                    )
                })?;
            sc.min_ready = Dur(Duration::from_secs(secs));
        } else {
            sc.min_ready = Dur(Duration::ZERO);
        }
        let int_or_percent = |node: Option<&Node>, default: IntOrPercent| {
            let Some(node) = node else {
                return Ok(default);
            };
            if let Some(n) = node.as_i64() {
                return u32::try_from(n).map(IntOrPercent::Int).map_err(|_| {
                    err(object, node.pos.line, format!("{n} is not a count of pods"))
                });
            }
            let text = node.as_str().unwrap_or("");
            if !text.trim_end().ends_with('%') {
                return Err(err(
                    object,
                    node.pos.line,
                    format!("expected a count or a percentage, got {text:?}"),
                ));
            }
            text.parse::<IntOrPercent>()
                .map_err(|e| err(object, node.pos.line, e))
        };
        let kind = object.kind.as_str();
        let (surge_node, unavailable_node, strategy_line) = match kind {
            "Deployment" => {
                let strategy = spec.and_then(|s| s.entry("strategy"));
                if let Some(t) = strategy.and_then(|s| s.value.get("type")) {
                    if t.as_str() == Some("Recreate") {
                        self.note(
                            object,
                            t.pos.line,
                            NoteKind::Approximated,
                            "strategy Recreate: run as maxSurge 0, maxUnavailable 100% (new pods \
                             may start before the old ones have exited)",
                        );
                        sc.max_surge = IntOrPercent::Int(0);
                        sc.max_unavailable = IntOrPercent::Percent(100);
                        return Ok(());
                    }
                }
                let rolling = strategy.and_then(|s| s.value.get("rollingUpdate"));
                (
                    rolling.and_then(|r| r.get("maxSurge")),
                    rolling.and_then(|r| r.get("maxUnavailable")),
                    strategy.map_or(0, |s| s.key.pos.line),
                )
            }
            "StatefulSet" => {
                let strategy = spec.and_then(|s| s.entry("updateStrategy"));
                let line = strategy.map_or(object.root.pos.line, |s| s.key.pos.line);
                if strategy
                    .and_then(|s| s.value.get("type"))
                    .and_then(Node::as_str)
                    == Some("OnDelete")
                {
                    self.note(
                        object,
                        line,
                        NoteKind::Approximated,
                        "updateStrategy OnDelete replaces pods only when someone deletes them: \
                         run as a RollingUpdate",
                    );
                }
                self.note(
                    object,
                    line,
                    NoteKind::Approximated,
                    "StatefulSet: pods are replaced maxUnavailable at a time without a surge, \
                     like a Deployment with maxSurge 0; ordinals, their order and the wait for \
                     the old pod's name are not modelled",
                );
                let rolling = strategy.and_then(|s| s.value.get("rollingUpdate"));
                if let Some(p) = rolling.and_then(|r| r.entry("partition")) {
                    self.note(
                        object,
                        p.key.pos.line,
                        NoteKind::Unsupported,
                        "rollingUpdate.partition: every pod is updated",
                    );
                }
                sc.max_surge = IntOrPercent::Int(0);
                sc.max_unavailable = int_or_percent(
                    rolling.and_then(|r| r.get("maxUnavailable")),
                    IntOrPercent::Int(1),
                )?;
                return Ok(());
            }
            _ => {
                // Argo Rollout.
                let strategy = spec.and_then(|s| s.entry("strategy"));
                let line = strategy.map_or(object.root.pos.line, |s| s.key.pos.line);
                let canary = strategy.and_then(|s| s.value.get("canary"));
                if let Some(blue_green) = strategy.and_then(|s| s.value.entry("blueGreen")) {
                    self.note(
                        object,
                        blue_green.key.pos.line,
                        NoteKind::Approximated,
                        "Rollout blueGreen: run as a rolling update with maxSurge 100%, \
                         maxUnavailable 0 (the preview service, promotion and \
                         scaleDownDelaySeconds are not modelled)",
                    );
                    sc.max_surge = IntOrPercent::Percent(100);
                    sc.max_unavailable = IntOrPercent::Int(0);
                    return Ok(());
                }
                if let Some(steps) = canary.and_then(|c| c.entry("steps")) {
                    self.note(
                        object,
                        steps.key.pos.line,
                        NoteKind::Approximated,
                        "Rollout canary steps (setWeight, pause, analysis) are run as one \
                         rolling update with the canary's maxSurge and maxUnavailable",
                    );
                } else {
                    self.note(
                        object,
                        line,
                        NoteKind::Approximated,
                        "Argo Rollout: run as a rolling update with the canary's maxSurge and \
                         maxUnavailable",
                    );
                }
                for key in ["trafficRouting", "canaryService", "stableService"] {
                    if let Some(n) = canary.and_then(|c| c.entry(key)) {
                        self.note(
                            object,
                            n.key.pos.line,
                            NoteKind::Unsupported,
                            format!("canary.{key}: traffic goes through verify's routers only"),
                        );
                    }
                }
                (
                    canary.and_then(|c| c.get("maxSurge")),
                    canary.and_then(|c| c.get("maxUnavailable")),
                    line,
                )
            }
        };
        sc.max_surge = int_or_percent(surge_node, IntOrPercent::Percent(25))?;
        sc.max_unavailable = int_or_percent(unavailable_node, IntOrPercent::Percent(25))?;
        if matches!(surge_node.and_then(Node::as_i64), Some(0))
            && matches!(unavailable_node.and_then(Node::as_i64), Some(0))
        {
            return Err(err(
                object,
                unavailable_node.map_or(strategy_line, |n| n.pos.line),
                "maxSurge and maxUnavailable cannot both be 0 (the API server refuses it)",
            ));
        }
        // Kubernetes' fenceposts: when both resolve to 0, one pod may be unavailable.
        if sc.max_surge.resolve(sc.replicas, true) == 0
            && sc.max_unavailable.resolve(sc.replicas, false) == 0
        {
            self.note(
                object,
                unavailable_node.map_or(strategy_line, |n| n.pos.line),
                NoteKind::Approximated,
                format!(
                    "maxSurge {} and maxUnavailable {} both round to 0 pods of {}: maxUnavailable \
                     1, as Kubernetes does",
                    sc.max_surge, sc.max_unavailable, sc.replicas
                ),
            );
            sc.max_unavailable = IntOrPercent::Int(1);
        }
        Ok(())
    }
}

mod container;
mod ports;
#[cfg(test)]
mod tests;
