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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lameduck_lint::{
    Container, DEFAULT_ADMIN_PORT, Node, Object, PortValue, PreStopKind, ProbeHandler, Workload,
};

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

    /// The container that serves: the one a Service targets, else the first declaring ports,
    /// else the first.
    fn container<'w>(
        &mut self,
        objects: &[Object],
        w: &'w Workload<'_>,
    ) -> Result<&'w Container<'w>, ScenarioError> {
        let targeted = |c: &Container<'_>| {
            objects.iter().any(|o| {
                o.kind == "Service"
                    && lameduck_lint::service_selects(o, &w.labels)
                    && o.root
                        .path(&["spec", "ports"])
                        .map(Node::items)
                        .unwrap_or_default()
                        .iter()
                        .any(|p| {
                            p.get("targetPort").is_some_and(|t| {
                                PortValue::read(t).is_some_and(|t| match &t {
                                    PortValue::Name(n) => {
                                        c.ports.iter().any(|p| p.name.as_deref() == Some(n))
                                    }
                                    PortValue::Number(n) => c.ports.iter().any(|p| p.number == *n),
                                })
                            })
                        })
            })
        };
        let chosen = w
            .containers
            .iter()
            .find(|c| targeted(c))
            .or_else(|| w.containers.iter().find(|c| !c.ports.is_empty()))
            .or_else(|| w.containers.first())
            .ok_or_else(|| {
                err(
                    w.object,
                    w.pod_spec.key.pos.line,
                    "the pod template has no containers",
                )
            })?;
        for c in &w.containers {
            if !std::ptr::eq(c, chosen) {
                self.note(
                    w.object,
                    c.node.pos.line,
                    NoteKind::Unsupported,
                    format!(
                        "container {:?} is not run: only the serving container {:?} is (sidecars \
                         are not modelled)",
                        c.name, chosen.name
                    ),
                );
            }
        }
        Ok(chosen)
    }

    fn pod_spec(
        &mut self,
        sc: &mut Scenario,
        w: &Workload<'_>,
        _c: &Container<'_>,
    ) -> Result<(), ScenarioError> {
        let object = w.object;
        let (grace, entry) = w.grace();
        if let Some(entry) = entry {
            if entry.value.as_i64().is_none_or(|g| g < 0) {
                return Err(err(
                    object,
                    entry.value.pos.line,
                    "`terminationGracePeriodSeconds` must be a whole number of at least 0",
                ));
            }
        }
        sc.grace = Dur(Duration::from_secs_f64(grace));
        let pod = &w.pod_spec.value;
        for key in ["initContainers", "ephemeralContainers"] {
            if let Some(e) = pod.entry(key) {
                self.note(
                    object,
                    e.key.pos.line,
                    NoteKind::Unsupported,
                    format!("{key} are not run (native sidecars' shutdown order is not modelled)"),
                );
            }
        }
        Ok(())
    }

    fn ports(
        &mut self,
        objects: &[Object],
        w: &Workload<'_>,
        c: &Container<'_>,
    ) -> Result<Ports, ScenarioError> {
        let object = w.object;
        let mut mapped: Vec<Mapped> = Vec::new();
        let add = |mapped: &mut Vec<Mapped>, number: u16, to: Option<PortRef>| -> bool {
            if mapped.iter().any(|m| m.number == number) {
                return true;
            }
            let to = to.or_else(|| {
                [PortRef::Port, PortRef::Admin, PortRef::App]
                    .into_iter()
                    .find(|r| !mapped.iter().any(|m| m.to == *r))
            });
            match to {
                Some(to) if !mapped.iter().any(|m| m.to == to) => {
                    mapped.push(Mapped { number, to });
                    true
                }
                _ => false,
            }
        };
        // The serving port: what a selecting Service targets.
        let service_target = objects
            .iter()
            .filter(|o| o.kind == "Service" && lameduck_lint::service_selects(o, &w.labels))
            .flat_map(|o| {
                o.root
                    .path(&["spec", "ports"])
                    .map(Node::items)
                    .unwrap_or_default()
                    .iter()
            })
            .find_map(|p| c.target_port(p));
        let run = c.lameduck.as_ref();
        let serving = service_target
            .or_else(|| run.and_then(|r| r.proxies.first()).map(|p| p.listen))
            .or_else(|| c.ports.first().and_then(|p| u16::try_from(p.number).ok()))
            .or_else(|| {
                let probe = c.readiness?;
                let spec = lameduck_lint::probe_spec(probe).ok()?;
                match spec.handler {
                    ProbeHandler::Http { port, .. } | ProbeHandler::Tcp { port } => {
                        c.port_number(&port?)
                    }
                    _ => None,
                }
            })
            .ok_or_else(|| {
                err(
                    object,
                    c.node.pos.line,
                    format!(
                        "container {:?}: cannot tell which port it serves on (no Service targets \
                         it, no `ports`, no probe port)",
                        c.name
                    ),
                )
            })?;
        add(&mut mapped, serving, Some(PortRef::Port));
        let mut admin_given = false;
        if let Some(run) = run {
            admin_given = run.admin.is_some();
            let admin = match run.admin.as_deref() {
                None => u16::try_from(DEFAULT_ADMIN_PORT).ok(),
                Some("off") => None,
                Some(addr) => addr.rsplit(':').next().and_then(|p| p.parse().ok()),
            };
            if let Some(admin) = admin {
                add(&mut mapped, admin, Some(PortRef::Admin));
            }
            if let Some(p) = run.proxies.first() {
                add(&mut mapped, p.upstream, Some(PortRef::App));
            }
            for p in run.proxies.iter().skip(1) {
                for number in [p.listen, p.upstream] {
                    if !add(&mut mapped, number, None) {
                        self.note(
                            object,
                            run.pos.line,
                            NoteKind::Unsupported,
                            format!(
                                "--proxy {}: a replica has three ports ({{port}}, \
                                 {{admin_port}}, {{app_port}}); port {number} is left as written",
                                p.spec
                            ),
                        );
                    }
                }
            }
        }
        // Other ports the manifest names: declared ones, probes' and the preStop hook's.
        let mut others: Vec<(u16, usize)> = c
            .ports
            .iter()
            .filter_map(|p| Some((u16::try_from(p.number).ok()?, p.pos.line)))
            .collect();
        for probe in [c.readiness, c.liveness, c.startup].into_iter().flatten() {
            if let Ok(spec) = lameduck_lint::probe_spec(probe) {
                if let ProbeHandler::Http { port: Some(p), .. }
                | ProbeHandler::Tcp { port: Some(p) } = &spec.handler
                {
                    if let Some(n) = c.port_number(p) {
                        others.push((n, probe.key.pos.line));
                    }
                }
            }
        }
        if let Some((_, Some(p))) = c.pre_stop.as_ref().and_then(|p| p.http.as_ref()) {
            if let Some(n) = c.port_number(p) {
                others.push((n, c.pre_stop.as_ref().map_or(0, |p| p.pos.line)));
            }
        }
        for (number, line) in others {
            if !add(&mut mapped, number, None) {
                self.note(
                    object,
                    line,
                    NoteKind::Unsupported,
                    format!(
                        "port {number}: a replica has three ports ({{port}}, {{admin_port}}, \
                         {{app_port}}); it is left as written, so replicas share it"
                    ),
                );
            }
        }
        Ok(Ports {
            mapped,
            admin_given,
        })
    }

    /// The replica's command line: `lameduck run` with the local binary, the local command in
    /// place of the image's entrypoint, or the container's own when it runs here.
    fn command(
        &mut self,
        sc: &mut Scenario,
        w: &Workload<'_>,
        c: &Container<'_>,
        ports: &Ports,
    ) -> Result<(), ScenarioError> {
        let object = w.object;
        let map =
            |args: &[String]| -> Vec<String> { args.iter().map(|a| map_ports(a, ports)).collect() };
        let command_line = c
            .node
            .entry("command")
            .or_else(|| c.node.entry("args"))
            .map_or(c.node.pos.line, |e| e.key.pos.line);
        let local = self.local.command;
        let whole = local
            .iter()
            .any(|a| PLACEHOLDERS.iter().any(|p| a.contains(p)));
        // The program and its arguments, `lameduck run` aside.
        let (program_args, wrapper): (Vec<String>, Option<Vec<String>>) = match &c.lameduck {
            Some(run) => {
                if !run.prefix.is_empty() {
                    self.note(
                        object,
                        run.pos.line,
                        NoteKind::Unsupported,
                        format!(
                            "{:?} before `lameduck run` is not run",
                            run.prefix.join(" ")
                        ),
                    );
                }
                let mut wrapper = vec![self.local.lameduck.display().to_string(), "run".to_owned()];
                wrapper.extend(
                    run.flags
                        .iter()
                        .map(|f| map_ports(&loopback_proxy(f), ports)),
                );
                if !ports.admin_given {
                    wrapper.extend(["--admin".to_owned(), "127.0.0.1:{admin_port}".to_owned()]);
                }
                wrapper.push("--".to_owned());
                if run.app.is_empty() && local.is_empty() {
                    return Err(err(
                        object,
                        run.pos.line,
                        format!(
                            "container {:?}: `lameduck run` has no app after `--`: give the local \
                             command after `--`",
                            c.name
                        ),
                    ));
                }
                (run.app.clone(), Some(wrapper))
            }
            None => {
                let mut all = c.command.clone().unwrap_or_default();
                all.extend(c.args.iter().cloned());
                if c.command.is_none() {
                    // The image's entrypoint, unknown here: only a local command stands for it,
                    // and every arg follows it.
                    all.insert(0, String::new());
                }
                (all, None)
            }
        };
        let app: Vec<String> = if whole {
            self.note(
                object,
                command_line,
                NoteKind::Approximated,
                "the local command has placeholders, so it is the whole command line: the \
                 container's command and args are not used",
            );
            local.to_vec()
        } else if !local.is_empty() {
            let mut v = local.to_vec();
            v.extend(map(program_args.get(1..).unwrap_or_default()));
            v
        } else {
            let program = program_args.first().cloned().unwrap_or_default();
            if program.is_empty() {
                return Err(err(
                    object,
                    c.node.pos.line,
                    format!(
                        "container {:?} runs its image's entrypoint (no `command`): give the \
                         local command after `--`",
                        c.name
                    ),
                ));
            }
            if !(self.local.runnable)(&program) {
                return Err(err(
                    object,
                    command_line,
                    format!(
                        "container {:?} runs {program:?}, which is not on this machine: give the \
                         local command after `--`",
                        c.name
                    ),
                ));
            }
            map(&program_args)
        };
        sc.command = match wrapper {
            Some(mut wrapper) => {
                wrapper.extend(app);
                wrapper
            }
            None => app,
        };
        sc.new_command = None;
        let mut env = BTreeMap::new();
        for var in &c.env {
            match &var.value {
                Some(value) => {
                    let value = if var.name == "LAMEDUCK_PROXY" {
                        loopback_proxy(value)
                    } else {
                        value.clone()
                    };
                    env.insert(var.name.clone(), map_ports(&value, ports));
                }
                None => self.note(
                    object,
                    var.pos.line,
                    NoteKind::Unsupported,
                    format!(
                        "env {}: valueFrom is known only in the cluster; not set",
                        var.name
                    ),
                ),
            }
        }
        sc.env = env;
        if let Some(e) = c.node.entry("envFrom") {
            self.note(
                object,
                e.key.pos.line,
                NoteKind::Unsupported,
                "envFrom: ConfigMaps and Secrets are known only in the cluster; not set",
            );
        }
        // A port the app is not told about cannot differ per replica.
        for m in &ports.mapped {
            let lameduck_sets = c.lameduck.is_some() && m.to != PortRef::Port;
            let told = sc
                .command
                .iter()
                .chain(sc.env.values())
                .any(|a| a.contains(placeholder(m.to)));
            if !told && !lameduck_sets && m.to != PortRef::Port {
                self.note(
                    object,
                    c.node.pos.line,
                    NoteKind::Unsupported,
                    format!(
                        "port {} appears in no argument or env value: the replicas cannot be \
                         told their own {}",
                        m.number,
                        placeholder(m.to)
                    ),
                );
            }
        }
        Ok(())
    }

    fn port_ref(
        &self,
        object: &Object,
        c: &Container<'_>,
        port: Option<&PortValue>,
        ports: &Ports,
        line: usize,
    ) -> Result<PortRef, ScenarioError> {
        let Some(port) = port else {
            return Err(err(object, line, "no `port`"));
        };
        let number = c.port_number(port).ok_or_else(|| {
            err(
                object,
                line,
                match port {
                    PortValue::Number(n) => format!("port {n} is not a port number"),
                    PortValue::Name(name) => {
                        format!("port {name:?} is not the name of a port of the container")
                    }
                },
            )
        })?;
        ports.of(number).ok_or_else(|| {
            err(
                object,
                line,
                format!("port {number} has no free placeholder (a replica has three ports)"),
            )
        })
    }

    fn readiness(
        &mut self,
        sc: &mut Scenario,
        w: &Workload<'_>,
        c: &Container<'_>,
        ports: &Ports,
    ) -> Result<(), ScenarioError> {
        let object = w.object;
        let Some(entry) = c.readiness else {
            self.note(
                object,
                c.node.pos.line,
                NoteKind::Approximated,
                "no readinessProbe: Kubernetes routes to a pod once its container started; a \
                 new replica here counts as ready once {port} accepts connections",
            );
            sc.readiness = Probe {
                path: None,
                port: PortRef::Port,
                ..Scenario::default().readiness
            };
            return Ok(());
        };
        let spec = lameduck_lint::probe_spec(entry)
            .map_err(|e| err(object, e.pos.line, format!("readinessProbe: {}", e.message)))?;
        let line = entry.key.pos.line;
        let secs = |s: f64| Dur(Duration::from_secs_f64(s));
        let (path, port) = match &spec.handler {
            ProbeHandler::Http {
                path,
                port,
                https,
                host_or_headers,
            } => {
                if *https {
                    self.note(
                        object,
                        line,
                        NoteKind::Unsupported,
                        "readinessProbe scheme HTTPS: probed over plain HTTP",
                    );
                }
                if *host_or_headers {
                    self.note(
                        object,
                        line,
                        NoteKind::Unsupported,
                        "readinessProbe host / httpHeaders are not sent",
                    );
                }
                (
                    Some(path.clone()),
                    self.port_ref(object, c, port.as_ref(), ports, line)?,
                )
            }
            ProbeHandler::Tcp { port } => {
                (None, self.port_ref(object, c, port.as_ref(), ports, line)?)
            }
            ProbeHandler::Exec { .. } | ProbeHandler::Grpc { .. } | ProbeHandler::Missing => {
                self.note(
                    object,
                    line,
                    NoteKind::Approximated,
                    "readinessProbe exec / grpc: run as a TCP check of {port} with the same timing",
                );
                (None, PortRef::Port)
            }
        };
        sc.readiness = Probe {
            path,
            port,
            initial_delay: secs(spec.initial_delay),
            period: secs(spec.period),
            timeout: secs(spec.timeout),
            success_threshold: u32::try_from(spec.success_threshold).unwrap_or(u32::MAX),
            failure_threshold: u32::try_from(spec.failure_threshold).unwrap_or(u32::MAX),
        };
        for (probe, what) in [
            (
                c.liveness,
                "livenessProbe is not run: verify never restarts a pod",
            ),
            (
                c.startup,
                "startupProbe is not run: readiness is probed from the start",
            ),
        ] {
            if let Some(e) = probe {
                self.note(object, e.key.pos.line, NoteKind::Unsupported, what);
            }
        }
        Ok(())
    }

    fn lifecycle(
        &mut self,
        sc: &mut Scenario,
        w: &Workload<'_>,
        c: &Container<'_>,
        ports: &Ports,
    ) -> Result<(), ScenarioError> {
        let object = w.object;
        sc.pre_stop = match &c.pre_stop {
            None => None,
            Some(p) => {
                let line = p.pos.line;
                Some(match p.kind {
                    PreStopKind::SleepAction => {
                        let secs = p.seconds.filter(|s| *s >= 0.0).ok_or_else(|| {
                            err(
                                object,
                                line,
                                "preStop sleep needs `seconds`, a whole number",
                            )
                        })?;
                        PreStop::Sleep(Dur(Duration::from_secs_f64(secs)))
                    }
                    PreStopKind::Http => {
                        let (path, port) = p.http.clone().unwrap_or_default();
                        PreStop::Http {
                            path,
                            port: self.port_ref(object, c, port.as_ref(), ports, line)?,
                        }
                    }
                    _ => {
                        let mut command: Vec<String> =
                            p.command.iter().map(|a| map_ports(a, ports)).collect();
                        let Some(program) = command.first_mut() else {
                            return Err(err(object, line, "preStop exec has no `command`"));
                        };
                        if matches!(
                            p.kind,
                            PreStopKind::LameduckSleep | PreStopKind::LameduckWait
                        ) {
                            *program = self.local.lameduck.display().to_string();
                        } else if !(self.local.runnable)(program) {
                            self.note(
                                object,
                                line,
                                NoteKind::Unsupported,
                                format!(
                                    "preStop runs {program:?}, which is not on this machine: the \
                                     hook fails at once, as a missing program would"
                                ),
                            );
                        }
                        PreStop::Exec(command)
                    }
                })
            }
        };
        let lifecycle = c.node.get("lifecycle");
        if let Some(signal) = lifecycle.and_then(|l| l.get("stopSignal")) {
            let name = signal.as_str().unwrap_or("");
            super::parse_signal(name).map_err(|e| err(object, signal.pos.line, e))?;
            sc.stop_signal = name.to_owned();
        } else {
            sc.stop_signal = "SIGTERM".to_owned();
        }
        if let Some(e) = lifecycle.and_then(|l| l.entry("postStart")) {
            self.note(
                object,
                e.key.pos.line,
                NoteKind::Unsupported,
                "postStart is not run",
            );
        }
        Ok(())
    }

    /// Fields that could matter to a shutdown and have no place in the run; fields that cannot
    /// (images, resources, volumes, scheduling) are passed over.
    fn unknown_keys(&mut self, w: &Workload<'_>, c: &Container<'_>) {
        const WORKLOAD_USED: [&str; 12] = [
            "replicas",
            "strategy",
            "updateStrategy",
            "minReadySeconds",
            "template",
            "selector",
            "revisionHistoryLimit",
            "progressDeadlineSeconds",
            "serviceName",
            "volumeClaimTemplates",
            "persistentVolumeClaimRetentionPolicy",
            "podManagementPolicy",
        ];
        const POD_USED: [&str; 27] = [
            "containers",
            "terminationGracePeriodSeconds",
            "initContainers",
            "ephemeralContainers",
            "volumes",
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "imagePullSecrets",
            "securityContext",
            "nodeSelector",
            "nodeName",
            "tolerations",
            "affinity",
            "priorityClassName",
            "priority",
            "preemptionPolicy",
            "schedulerName",
            "dnsPolicy",
            "dnsConfig",
            "enableServiceLinks",
            "restartPolicy",
            "runtimeClassName",
            "topologySpreadConstraints",
            "hostname",
            "subdomain",
            "os",
        ];
        const CONTAINER_USED: [&str; 20] = [
            "name",
            "image",
            "imagePullPolicy",
            "command",
            "args",
            "env",
            "envFrom",
            "ports",
            "readinessProbe",
            "livenessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
            "resizePolicy",
            "volumeMounts",
            "volumeDevices",
            "securityContext",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "restartPolicy",
        ];
        let object = w.object;
        let spec = object.root.get("spec");
        if let Some(spec) = spec.filter(|_| object.kind != "Rollout") {
            for e in spec.entries() {
                let key = e.key.as_str().unwrap_or("");
                if !WORKLOAD_USED.contains(&key) {
                    self.note(
                        object,
                        e.key.pos.line,
                        NoteKind::Unsupported,
                        format!("spec.{key} is not used by the run"),
                    );
                }
            }
        }
        for e in w.pod_spec.value.entries() {
            let key = e.key.as_str().unwrap_or("");
            if !POD_USED.contains(&key) {
                self.note(
                    object,
                    e.key.pos.line,
                    NoteKind::Unsupported,
                    format!("pod spec {key} is not used by the run"),
                );
            }
        }
        for e in c.node.entries() {
            let key = e.key.as_str().unwrap_or("");
            if !CONTAINER_USED.contains(&key) {
                self.note(
                    object,
                    e.key.pos.line,
                    NoteKind::Unsupported,
                    format!("container {key} is not used by the run"),
                );
            }
        }
    }
}

/// `lameduck run --proxy 8080=8081` listens on every interface; here it listens on loopback.
/// Rewrites bare-port sides of proxy specs (`[PROTOCOL:]PORT=PORT`, comma-separated) to
/// `127.0.0.1:PORT`; anything else is returned as it is.
fn loopback_proxy(value: &str) -> String {
    let (flag, specs) = match value.split_once('=') {
        Some((flag, rest)) if flag == "--proxy" => (Some(flag), rest),
        _ => (None, value),
    };
    let is_port = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let rewritten: Vec<String> = specs
        .split(',')
        .map(|spec| {
            let Some((listen, upstream)) = spec.split_once('=') else {
                return spec.to_owned();
            };
            let (proto, port) = match listen.split_once(':') {
                Some((p, port)) if ["auto", "http", "tcp"].contains(&p) => (format!("{p}:"), port),
                _ => (String::new(), listen),
            };
            let listen = if is_port(port) {
                format!("{proto}127.0.0.1:{port}")
            } else {
                listen.to_owned()
            };
            let upstream = if is_port(upstream) {
                format!("127.0.0.1:{upstream}")
            } else {
                upstream.to_owned()
            };
            format!("{listen}={upstream}")
        })
        .collect();
    let joined = rewritten.join(",");
    match flag {
        Some(flag) => format!("{flag}={joined}"),
        None => joined,
    }
}

/// Replaces each mapped port number in `text` (a whole number, not part of a longer word or
/// version) by its placeholder; a wildcard or empty host before it becomes `127.0.0.1`.
fn map_ports(text: &str, ports: &Ports) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let boundary = |b: Option<&u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'.'));
    // Bounded: every round consumes at least one byte.
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && boundary(i.checked_sub(1).and_then(|j| bytes.get(j))) {
            let end = bytes[i..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |n| i + n);
            let to = text[i..end]
                .parse::<u16>()
                .ok()
                .filter(|_| boundary(bytes.get(end)))
                .and_then(|n| ports.of(n));
            if let Some(to) = to {
                for wildcard in ["0.0.0.0:", "[::]:", ":::"] {
                    if out.ends_with(wildcard) {
                        out.truncate(out.len() - wildcard.len());
                        out.push_str("127.0.0.1:");
                        break;
                    }
                }
                // `:8080`, `--listen=:8080`: no host is every interface.
                if out == ":" || out.ends_with("=:") || out.ends_with(" :") {
                    out.truncate(out.len() - 1);
                    out.push_str("127.0.0.1:");
                }
                out.push_str(placeholder(to));
                i = end;
                continue;
            }
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests;
