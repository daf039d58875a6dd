//! The serving container of the pod template: which container, its command line, readiness
//! probe, lifecycle hooks, and what it says that the testbed does not model.

use std::collections::BTreeMap;
use std::time::Duration;

use lameduck_lint::{Container, Node, Object, PortValue, PreStopKind, ProbeHandler, Workload};

use super::{
    Dur, Mapper, NoteKind, PLACEHOLDERS, PortRef, Ports, PreStop, Probe, Scenario, ScenarioError,
    err, placeholder,
};

use super::ports::{loopback_proxy, map_ports};

impl Mapper<'_, '_> {
    /// The container that serves: the one a Service targets, else the first declaring ports,
    /// else the first.
    pub(super) fn container<'w>(
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

    pub(super) fn pod_spec(
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

    /// The replica's command line: `lameduck run` with the local binary, the local command in
    /// place of the image's entrypoint, or the container's own when it runs here.
    pub(super) fn command(
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

    pub(super) fn readiness(
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

    pub(super) fn lifecycle(
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
            crate::scenario::parse_signal(name).map_err(|e| err(object, signal.pos.line, e))?;
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
    pub(super) fn unknown_keys(&mut self, w: &Workload<'_>, c: &Container<'_>) {
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
