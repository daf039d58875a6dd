//! What a container says about its shutdown: its probes, its preStop hook and how long that
//! delays the stop signal, and the drain settings of a `lameduck run` entrypoint read from
//! its command, args and env. Separate from finding the workload and its pod template.

use super::lameduck_run::lameduck_run;
pub use super::lameduck_run::{DEFAULT_ADMIN_PORT, LameduckRun, ProxyPorts, Setting};
use super::parse_duration;
use crate::yaml::{Entry, Node, Pos};

/// A container of a pod template.
#[derive(Debug)]
pub struct Container<'a> {
    /// The container mapping.
    pub node: &'a Node,
    /// `name`.
    pub name: &'a str,
    /// Whether it declares ports.
    pub has_ports: bool,
    /// `readinessProbe`.
    pub readiness: Option<&'a Entry>,
    /// `livenessProbe`.
    pub liveness: Option<&'a Entry>,
    /// `startupProbe`.
    pub startup: Option<&'a Entry>,
    /// `lifecycle.preStop`.
    pub pre_stop: Option<PreStop>,
    /// The `lameduck run` entrypoint, if the container uses it.
    pub lameduck: Option<LameduckRun>,
    /// `command` (the image's entrypoint when absent), strings only.
    pub command: Option<Vec<String>>,
    /// `args`, strings only.
    pub args: Vec<String>,
    /// `ports`: the ones with a `containerPort` number.
    pub ports: Vec<PortSpec>,
    /// `env`, in order.
    pub env: Vec<EnvVar>,
}

/// A port as a probe, a hook or a Service's `targetPort` names it: a number, or the name of a
/// container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortValue {
    /// A port number.
    Number(i64),
    /// The `name` of one of the container's ports.
    Name(String),
}

impl PortValue {
    /// Reads an IntOrString port.
    pub fn read(node: &Node) -> Option<Self> {
        node.as_i64()
            .map(Self::Number)
            .or_else(|| node.as_str().map(|s| Self::Name(s.to_owned())))
    }
}

/// One of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The list item.
    pub pos: Pos,
    /// `name`.
    pub name: Option<String>,
    /// `containerPort`.
    pub number: i64,
}

/// One of `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The list item.
    pub pos: Pos,
    /// `name`.
    pub name: String,
    /// `value`; `None` for `valueFrom` (known only in the cluster).
    pub value: Option<String>,
}

/// What a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeHandler {
    /// `httpGet`.
    Http {
        /// `path` (`/` when absent, as the kubelet does).
        path: String,
        /// `port`.
        port: Option<PortValue>,
        /// `scheme: HTTPS`.
        https: bool,
        /// `host` or `httpHeaders` is set.
        host_or_headers: bool,
    },
    /// `tcpSocket`.
    Tcp {
        /// `port`.
        port: Option<PortValue>,
    },
    /// `exec`.
    Exec {
        /// `command`.
        command: Vec<String>,
    },
    /// `grpc`.
    Grpc {
        /// `port`.
        port: Option<PortValue>,
    },
    /// No handler the kubelet knows.
    Missing,
}

/// A probe with the kubelet's defaults filled in (period 10 s, timeout 1 s, thresholds 1 and 3).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// The probe's key.
    pub pos: Pos,
    /// What it runs.
    pub handler: ProbeHandler,
    /// `initialDelaySeconds`.
    pub initial_delay: f64,
    /// `periodSeconds`.
    pub period: f64,
    /// `timeoutSeconds`.
    pub timeout: f64,
    /// `successThreshold`.
    pub success_threshold: i64,
    /// `failureThreshold`.
    pub failure_threshold: i64,
}

/// A field whose value is not what Kubernetes accepts there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The value.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// Reads a probe, checking its numbers as the API server would (`periodSeconds: 0` or a
/// string is refused there, so a run from it would prove nothing).
pub fn probe_spec(entry: &Entry) -> Result<ProbeSpec, FieldError> {
    let probe = &entry.value;
    let number = |key: &str, default: i64, min: i64| -> Result<i64, FieldError> {
        match probe.get(key) {
            None => Ok(default),
            Some(node) => node
                .as_i64()
                .filter(|n| *n >= min)
                .ok_or_else(|| FieldError {
                    pos: node.pos,
                    message: format!("`{key}` must be a whole number of at least {min}"),
                }),
        }
    };
    let handler = if let Some(http) = probe.get("httpGet") {
        ProbeHandler::Http {
            path: http
                .get("path")
                .and_then(Node::as_str)
                .unwrap_or("/")
                .to_owned(),
            port: http.get("port").and_then(PortValue::read),
            https: http
                .get("scheme")
                .and_then(Node::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("https")),
            host_or_headers: http.get("host").is_some() || http.get("httpHeaders").is_some(),
        }
    } else if let Some(tcp) = probe.get("tcpSocket") {
        ProbeHandler::Tcp {
            port: tcp.get("port").and_then(PortValue::read),
        }
    } else if let Some(exec) = probe.get("exec") {
        ProbeHandler::Exec {
            command: argv(exec, "command"),
        }
    } else if let Some(grpc) = probe.get("grpc") {
        ProbeHandler::Grpc {
            port: grpc.get("port").and_then(PortValue::read),
        }
    } else {
        ProbeHandler::Missing
    };
    Ok(ProbeSpec {
        pos: entry.key.pos,
        handler,
        initial_delay: number("initialDelaySeconds", 0, 0)? as f64,
        period: number("periodSeconds", 10, 1)? as f64,
        timeout: number("timeoutSeconds", 1, 1)? as f64,
        success_threshold: number("successThreshold", 1, 1)?,
        failure_threshold: number("failureThreshold", 3, 1)?,
    })
}

/// What a preStop hook does.
#[derive(Debug, Clone, PartialEq)]
pub enum PreStopKind {
    /// The native `sleep` action.
    SleepAction,
    /// `exec` of a shell.
    Shell,
    /// `exec` of the `sleep` binary.
    SleepBinary,
    /// `exec` of `lameduck sleep`.
    LameduckSleep,
    /// `exec` of `lameduck wait`.
    LameduckWait,
    /// Another `exec` command.
    Exec,
    /// An `httpGet` hook.
    Http,
}

/// A preStop hook and how long it delays the stop signal, when that can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct PreStop {
    /// The `preStop` key.
    pub pos: Pos,
    /// The kind of hook.
    pub kind: PreStopKind,
    /// Its duration in seconds, if it can be read from the manifest.
    pub seconds: Option<f64>,
    /// For exec hooks: the program it runs.
    pub program: String,
    /// For exec hooks: the whole command.
    pub command: Vec<String>,
    /// For `httpGet` hooks: the path (`/` when absent) and the port.
    pub http: Option<(String, Option<PortValue>)>,
}

impl Container<'_> {
    /// The container port a Service port sends to: `targetPort` as a number, or the container
    /// port of that name, or else `port` itself (Kubernetes' default).
    pub fn target_port(&self, service_port: &Node) -> Option<u16> {
        let target = service_port
            .get("targetPort")
            .or_else(|| service_port.get("port"))?;
        self.port_number(&PortValue::read(target)?)
    }

    /// A port number, or the number of the container port of that name.
    pub fn port_number(&self, port: &PortValue) -> Option<u16> {
        match port {
            PortValue::Number(n) => u16::try_from(*n).ok(),
            PortValue::Name(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.number).ok()),
        }
    }
}

pub(super) fn container(node: &Node) -> Container<'_> {
    Container {
        node,
        name: node.get("name").and_then(Node::as_str).unwrap_or(""),
        has_ports: node.get("ports").is_some_and(|p| !p.items().is_empty()),
        readiness: node.entry("readinessProbe").filter(|e| e.value.is_map()),
        liveness: node.entry("livenessProbe").filter(|e| e.value.is_map()),
        startup: node.entry("startupProbe").filter(|e| e.value.is_map()),
        pre_stop: node
            .get("lifecycle")
            .and_then(|l| l.entry("preStop"))
            .and_then(pre_stop),
        lameduck: lameduck_run(node),
        command: node.get("command").map(|_| argv(node, "command")),
        args: argv(node, "args"),
        ports: node
            .get("ports")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                Some(PortSpec {
                    pos: p.pos,
                    name: p.get("name").and_then(Node::as_str).map(str::to_owned),
                    number: p.get("containerPort")?.as_i64()?,
                })
            })
            .collect(),
        env: node
            .get("env")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                Some(EnvVar {
                    pos: e.pos,
                    name: e.get("name")?.as_str()?.to_owned(),
                    value: e.get("value").map(|v| v.as_str().unwrap_or("").to_owned()),
                })
            })
            .collect(),
    }
}

pub(super) fn argv(node: &Node, key: &str) -> Vec<String> {
    node.get(key)
        .map(|c| {
            c.items()
                .iter()
                .filter_map(Node::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

const SHELLS: [&str; 6] = ["sh", "bash", "ash", "dash", "zsh", "busybox"];

fn pre_stop(entry: &Entry) -> Option<PreStop> {
    let hook = &entry.value;
    let pos = entry.key.pos;
    if let Some(sleep) = hook.get("sleep") {
        let seconds = sleep.get("seconds").and_then(Node::as_f64);
        return Some(PreStop {
            pos,
            kind: PreStopKind::SleepAction,
            seconds,
            program: String::new(),
            command: Vec::new(),
            http: None,
        });
    }
    if let Some(http) = hook.get("httpGet") {
        return Some(PreStop {
            pos,
            kind: PreStopKind::Http,
            seconds: None,
            program: String::new(),
            command: Vec::new(),
            http: Some((
                http.get("path")
                    .and_then(Node::as_str)
                    .unwrap_or("/")
                    .to_owned(),
                http.get("port").and_then(PortValue::read),
            )),
        });
    }
    let exec = hook.get("exec")?;
    let cmd = argv(exec, "command");
    let program = cmd
        .first()
        .map(|p| basename(p).to_owned())
        .unwrap_or_default();
    let (kind, seconds) = if SHELLS.contains(&program.as_str()) {
        let script = cmd
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        (PreStopKind::Shell, shell_sleep(&script))
    } else if program == "sleep" {
        (
            PreStopKind::SleepBinary,
            cmd.get(1).and_then(|d| parse_duration(d)),
        )
    } else if program == "lameduck" && cmd.get(1).map(String::as_str) == Some("sleep") {
        (
            PreStopKind::LameduckSleep,
            cmd.get(2).and_then(|d| parse_duration(d)),
        )
    } else if program == "lameduck" && cmd.get(1).map(String::as_str) == Some("wait") {
        (PreStopKind::LameduckWait, None)
    } else {
        (PreStopKind::Exec, None)
    };
    Some(PreStop {
        pos,
        kind,
        seconds,
        program,
        command: cmd,
        http: None,
    })
}

/// The total of `sleep N` commands in a shell script.
fn shell_sleep(script: &str) -> Option<f64> {
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|w| !w.is_empty())
        .collect();
    let mut total = None;
    for pair in words.windows(2) {
        if basename(pair[0]) == "sleep" {
            if let Some(s) = parse_duration(pair[1]) {
                total = Some(total.unwrap_or(0.0) + s);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_scripts_sum_their_sleeps() {
        assert_eq!(shell_sleep("sleep 5"), Some(5.0));
        assert_eq!(
            shell_sleep("echo draining; /bin/sleep 10 && sleep 2"),
            Some(12.0)
        );
        assert_eq!(shell_sleep("kill -TERM 1"), None);
    }

    fn container_of(yaml: &str) -> Container<'static> {
        let loaded = crate::source::load("t.yaml", yaml);
        let node: &'static Node = Box::leak(Box::new(loaded.objects[0].root.clone()));
        container(node)
    }

    #[test]
    fn lameduck_run_reads_flags_over_env() {
        let c = container_of(
            "kind: X\nname: app\ncommand: [/usr/bin/lameduck, run, --max-wait=15s, --grace, '40', --, /app, --min-wait, 99]\nenv:\n- {name: LAMEDUCK_MAX_WAIT, value: 9s}\n- {name: LAMEDUCK_MIN_WAIT, value: 500ms}\n",
        );
        let run = c.lameduck.unwrap();
        assert_eq!(run.max_wait.seconds, 15.0);
        assert_eq!(run.max_wait.source, "--max-wait");
        assert_eq!(run.grace.seconds, 40.0);
        assert_eq!(
            run.min_wait.seconds, 0.5,
            "flags after -- belong to the app"
        );
        assert_eq!(run.quiet_window.source, "default");
    }

    #[test]
    fn lameduck_run_reads_its_proxies() {
        let c = container_of(
            "kind: X\ncommand: [lameduck, run, --proxy, 8080=8081, '--proxy=tcp:[::]:5432=127.0.0.1:5433', --, /app, --proxy, 1=2]\nenv:\n- {name: LAMEDUCK_PROXY, value: '9=10'}\n",
        );
        let ports: Vec<(u16, u16)> = c
            .lameduck
            .unwrap()
            .proxies
            .iter()
            .map(|p| (p.listen, p.upstream))
            .collect();
        assert_eq!(ports, [(8080, 8081), (5432, 5433)], "flags win over env");
        let c = container_of(
            "kind: X\ncommand: [lameduck, run, --, /app]\nenv:\n- {name: LAMEDUCK_PROXY, value: '0.0.0.0:80=81,tcp:5432=5433'}\n",
        );
        assert_eq!(c.lameduck.unwrap().proxies.len(), 2);
        let c = container_of(
            "kind: X\ncommand: [lameduck, run, --proxy, '8080=8080,9=10', --, /app]\n",
        );
        let run = c.lameduck.unwrap();
        assert!(run.proxies.is_empty(), "run would not start");
        assert_eq!(
            run.invalid,
            [
                "invalid value '8080=8080' for '--proxy <[PROTOCOL:]LISTEN=UPSTREAM>': the \
                 upstream 127.0.0.1:8080 is one of the proxy's own listening addresses: it would \
                 forward to itself"
            ]
        );
    }

    #[test]
    fn prestop_kinds() {
        let c = container_of(
            "kind: X\nlifecycle: {preStop: {exec: {command: [lameduck, sleep, 7s]}}}\n",
        );
        let p = c.pre_stop.unwrap();
        assert_eq!((p.kind, p.seconds), (PreStopKind::LameduckSleep, Some(7.0)));
        let c = container_of(
            "kind: X\nlifecycle: {preStop: {exec: {command: [/bin/sh, -c, sleep 4]}}}\n",
        );
        let p = c.pre_stop.unwrap();
        assert_eq!((p.kind, p.seconds), (PreStopKind::Shell, Some(4.0)));
        let c = container_of("kind: X\nlifecycle: {preStop: {sleep: {seconds: 9}}}\n");
        assert_eq!(c.pre_stop.unwrap().seconds, Some(9.0));
    }
}
