//! A `lameduck run` entrypoint of a container, read as `lameduck run` reads itself: its
//! arguments with run's own clap definition, its `LAMEDUCK_*` variables in place of the process
//! environment, and run's own validation, so lint calls invalid exactly what run refuses.

use lameduck_settings::cli::{RunArgs, error_line, parse_with_env};
use lameduck_settings::{SETTINGS, Settings};

use super::container::{argv, basename};
use crate::yaml::{Node, Pos};

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

/// Recognises `lameduck run` in `command` + `args` and reads its drain settings.
pub(super) fn lameduck_run(node: &Node) -> Option<LameduckRun> {
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
