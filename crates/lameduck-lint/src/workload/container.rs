//! What a container says about its shutdown: its probes, its preStop hook and how long that
//! delays the stop signal, and the drain settings of a `lameduck run` entrypoint read from
//! its command, args and env. Separate from finding the workload and its pod template.

use lameduck_settings::proxy_spec::ProxySpec;
use lameduck_settings::{Settings, setting_of_flag};

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

impl ProxyPorts {
    /// Each `[PROTOCOL:]LISTEN=UPSTREAM` of a comma-separated list, read by `lameduck run`'s
    /// own parser; what it refuses is an error in `lameduck run`'s words.
    fn parse_list(value: &str) -> impl Iterator<Item = Result<Self, String>> + '_ {
        value.split(',').map(|spec| {
            spec.parse::<ProxySpec>()
                .map(|parsed| Self {
                    spec: spec.trim().to_owned(),
                    listen: parsed.listen.port(),
                    upstream: parsed.upstream.port(),
                })
                .map_err(|error| error.to_string())
        })
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
        });
    }
    if hook.get("httpGet").is_some() {
        return Some(PreStop {
            pos,
            kind: PreStopKind::Http,
            seconds: None,
            program: String::new(),
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
    // Built as `lameduck run` builds it: the environment first, then flags over it.
    let mut reading = Reading::default();
    let mut env = Vec::new();
    let mut env_proxies = Vec::new();
    // `lameduck run` reads LAMEDUCK_PROXY only when no --proxy flag is given.
    let mut env_proxy_errors = Vec::new();
    for item in node.get("env").map(Node::items).unwrap_or_default() {
        let (Some(name), Some(value)) = (
            item.get("name").and_then(Node::as_str),
            item.get("value").and_then(Node::as_str),
        ) else {
            continue;
        };
        if name.starts_with("LAMEDUCK_") {
            env.push((name.to_owned(), value.to_owned()));
        }
        if name == "LAMEDUCK_PROXY" {
            for parsed in ProxyPorts::parse_list(value) {
                match parsed {
                    Ok(ports) => env_proxies.push(ports),
                    Err(error) => env_proxy_errors.push(format!("{name} {value:?}: {error}")),
                }
            }
        }
        // `lameduck run` takes an empty variable for unset.
        if !value.trim().is_empty() {
            reading.set(name, name, value);
        }
    }
    let mut flag_proxies = None;
    let mut i = 0;
    // Bounded by the argument count: every round advances `i`.
    while i < flags.len() {
        let (flag, inline) = match flags[i].split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (flags[i].as_str(), None),
        };
        let var = match flag {
            "--proxy" => "LAMEDUCK_PROXY",
            flag => match setting_of_flag(flag) {
                Some(spec) => spec.env,
                None => {
                    i += 1;
                    continue;
                }
            },
        };
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                flags.get(i).cloned().unwrap_or_default()
            }
        };
        if var == "LAMEDUCK_PROXY" {
            let proxies = flag_proxies.get_or_insert_with(Vec::new);
            for parsed in ProxyPorts::parse_list(&value) {
                match parsed {
                    Ok(ports) => proxies.push(ports),
                    Err(error) => reading.invalid.push(format!("{flag} {value:?}: {error}")),
                }
            }
        } else {
            reading.set(var, flag, &value);
        }
        i += 1;
    }
    // Flags win over the environment variable, as in `lameduck run`.
    let proxies = flag_proxies.unwrap_or_else(|| {
        reading.invalid.extend(env_proxy_errors);
        env_proxies
    });
    let refused = if reading.invalid.is_empty() {
        reading
            .settings
            .clone()
            .validate()
            .err()
            .map(|e| e.to_string())
    } else {
        None
    };
    Some(LameduckRun {
        pos,
        grace: reading.setting("LAMEDUCK_GRACE_SECONDS"),
        prestop: reading.setting("LAMEDUCK_PRESTOP_SECONDS"),
        min_wait: reading.setting("LAMEDUCK_MIN_WAIT"),
        max_wait: reading.setting("LAMEDUCK_MAX_WAIT"),
        quiet_window: reading.setting("LAMEDUCK_QUIET_WINDOW"),
        close_timeout: reading.setting("LAMEDUCK_CLOSE_TIMEOUT"),
        invalid: reading.invalid,
        refused,
        proxies,
        flags,
        env,
    })
}

/// The settings of a `lameduck run` container as it reads them, and where each came from.
#[derive(Debug, Default)]
struct Reading {
    settings: Settings,
    /// (variable, the flag or variable that set it last).
    sources: Vec<(String, String)>,
    invalid: Vec<String>,
}

impl Reading {
    /// Sets variable `var` from `value`, given by `source`, as `lameduck run` would.
    fn set(&mut self, var: &str, source: &str, value: &str) {
        match self.settings.set(var, value) {
            Ok(()) => self.sources.push((var.to_owned(), source.to_owned())),
            // The variable's name in the error, as `lameduck run` reports it; the flag too.
            Err(error) if source == var => self.invalid.push(error.to_string()),
            Err(error) => self.invalid.push(format!("{source}: {error}")),
        }
    }

    /// One setting in seconds, with the flag or variable that set it (or `default`).
    fn setting(&self, var: &str) -> Setting {
        Setting {
            seconds: self.settings.get(var).unwrap_or_default().as_secs_f64(),
            source: self
                .sources
                .iter()
                .rev()
                .find(|(set, _)| set == var)
                .map_or("default", |(_, source)| source)
                .to_owned(),
        }
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
        assert_eq!(run.proxies.len(), 1);
        assert_eq!(
            run.invalid,
            [
                "--proxy \"8080=8080,9=10\": the upstream 127.0.0.1:8080 is one of the proxy's own \
              listening addresses: it would forward to itself"
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
