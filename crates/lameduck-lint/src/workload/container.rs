//! What a container says about its shutdown: its probes, its preStop hook and how long that
//! delays the stop signal, and the drain settings of a `lameduck run` entrypoint read from
//! its command, args and env. Separate from finding the workload and its pod template.

use lameduck_settings::cli::{RunArgs, error_line, parse_with_env};
use lameduck_settings::{SETTINGS, Settings};

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

/// One `lameduck run` setting and where its value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Seconds.
    pub seconds: f64,
    /// `default`, `--flag` or `ENV_VAR`.
    pub source: String,
}

/// The drain settings of a `lameduck run` entrypoint read from args and env.
#[derive(Debug, Clone, PartialEq)]
pub struct LameduckRun {
    /// The `command` or `args` key that names it.
    pub pos: Pos,
    /// The grace period lameduck assumes.
    pub grace: Setting,
    /// The time it assumes preStop takes.
    pub prestop: Setting,
    /// Minimum drain wait.
    pub min_wait: Setting,
    /// Maximum drain wait.
    pub max_wait: Setting,
    /// Quiet window.
    pub quiet_window: Setting,
    /// Closing time.
    pub close_timeout: Setting,
    /// Values `lameduck run` cannot parse, in its own words.
    pub invalid: Vec<String>,
    /// Why `lameduck run` would refuse these settings at start (its validation's own text).
    pub refused: Option<String>,
    /// The drain proxies (`--proxy` / `LAMEDUCK_PROXY`) whose ports could be read.
    pub proxies: Vec<ProxyPorts>,
    /// The arguments between `run` and `--`, as written.
    pub flags: Vec<String>,
    /// The container's `LAMEDUCK_*` variables with literal values, in order.
    pub env: Vec<(String, String)>,
    /// What `command` + `args` hold before `lameduck run` (an init such as tini), usually
    /// nothing.
    pub prefix: Vec<String>,
    /// The `lameduck` program as written (`/usr/local/bin/lameduck`).
    pub program: String,
    /// The app's command line: what follows `--`.
    pub app: Vec<String>,
    /// Where the admin endpoints listen, as `--admin` or `LAMEDUCK_ADMIN_ADDR` says (`None`:
    /// run's default, `0.0.0.0:8686`).
    pub admin: Option<String>,
}

/// Where `lameduck run` serves its admin endpoints unless told otherwise.
pub const DEFAULT_ADMIN_PORT: i64 = 8686;

impl LameduckRun {
    /// Whether `lameduck run` could read its command line and variables: when not, its settings
    /// are unknown (defaults stand in) and only `lameduck-settings-invalid` speaks of them.
    pub fn settings_read(&self) -> bool {
        self.invalid.is_empty()
    }
}

/// One `--proxy [PROTOCOL:]LISTEN=UPSTREAM` of `lameduck run`, by port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPorts {
    /// The value as written.
    pub spec: String,
    /// Where the proxy listens: what a Service should target.
    pub listen: u16,
    /// Where the app listens, behind the proxy.
    pub upstream: u16,
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

fn argv(node: &Node, key: &str) -> Vec<String> {
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

fn basename(program: &str) -> &str {
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

/// Recognises `lameduck run` in `command` + `args` and reads its drain settings.
fn lameduck_run(node: &Node) -> Option<LameduckRun> {
    let command = argv(node, "command");
    let args = argv(node, "args");
    let all: Vec<&str> = command
        .iter()
        .chain(args.iter())
        .map(String::as_str)
        .collect();
    let start = all
        .windows(2)
        .position(|w| basename(w[0]) == "lameduck" && w[1] == "run")?;
    let pos_key = if command.iter().any(|a| basename(a) == "lameduck") {
        "command"
    } else {
        "args"
    };
    let pos = node.entry(pos_key).map(|e| e.key.pos).unwrap_or(node.pos);
    let flags: Vec<String> = all[start + 2..]
        .iter()
        .take_while(|arg| **arg != "--")
        .map(|arg| (*arg).to_owned())
        .collect();
    let app: Vec<String> = all[start + 2 + flags.len()..]
        .iter()
        .skip(1)
        .map(|arg| (*arg).to_owned())
        .collect();
    let mut env: Vec<(String, String)> = Vec::new();
    for item in node.get("env").map(Node::items).unwrap_or_default() {
        if let (Some(name), Some(value)) = (
            item.get("name").and_then(Node::as_str),
            item.get("value").and_then(Node::as_str),
        ) {
            if name.starts_with("LAMEDUCK_") {
                env.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    // The last entry of a name is the one the container gets.
    let lookup = |var: &str| {
        env.iter()
            .rev()
            .find(|(name, _)| name == var)
            .map(|(_, value)| value.clone())
    };
    // Read with `lameduck run`'s own command line, settings and checks, in its order.
    let mut invalid = Vec::new();
    let mut refused = None;
    let args = parse_with_env(&flags, lookup)
        .map_err(|error| invalid.push(error_line(&error)))
        .ok();
    let settings = match args.as_ref().map_or_else(
        || Settings::from_lookup(lookup),
        |args| args.drain_settings(lookup),
    ) {
        Ok(settings) => {
            if args.is_some() {
                refused = settings.clone().validate().err().map(|e| e.to_string());
            }
            settings
        }
        Err(error) => {
            invalid.push(error.to_string());
            Settings::default()
        }
    };
    if let (Some(args), None) = (&args, &refused) {
        refused = args.proxy_configs().err().map(|e| e.to_string());
    }
    let setting = |name: &str| setting(&settings, args.as_ref(), &lookup, name);
    Some(LameduckRun {
        pos,
        grace: setting("grace"),
        prestop: setting("prestop"),
        min_wait: setting("min_wait"),
        max_wait: setting("max_wait"),
        quiet_window: setting("quiet_window"),
        close_timeout: setting("close_timeout"),
        invalid,
        refused,
        proxies: args
            .iter()
            .flat_map(|args| &args.proxy)
            .map(|spec| ProxyPorts {
                spec: spec.to_string(),
                listen: spec.listen.port(),
                upstream: spec.upstream.port(),
            })
            .collect(),
        admin: args
            .as_ref()
            .and_then(|args| args.admin.clone())
            .or_else(|| lookup("LAMEDUCK_ADMIN_ADDR")),
        prefix: all[..start].iter().map(|a| (*a).to_owned()).collect(),
        program: all[start].to_owned(),
        app,
        flags,
        env,
    })
}

/// One setting in seconds, with the flag or variable that set it (or `default`), as `lameduck
/// run` reads them: flags over variables over defaults.
fn setting(
    settings: &Settings,
    args: Option<&RunArgs>,
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Setting {
    let Some(spec) = SETTINGS.iter().find(|spec| spec.name == name) else {
        return Setting {
            seconds: 0.0,
            source: "default".to_owned(),
        };
    };
    let flag = args.is_some_and(|args| args.drain.given().iter().any(|(given, _)| *given == spec));
    let source = if flag {
        spec.flag
    } else if lookup(spec.env).is_some_and(|value| !value.trim().is_empty()) {
        spec.env
    } else {
        "default"
    };
    Setting {
        seconds: settings.get(spec.env).unwrap_or_default().as_secs_f64(),
        source: source.to_owned(),
    }
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
