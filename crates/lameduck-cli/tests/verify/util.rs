//! Helpers of the `lameduck verify` tests: the binary, scenario files, JSON reports.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Path of the `lameduck` binary under test.
pub fn lameduck_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lameduck")
}

/// Runs `lameduck ARGS` and waits (every run bounds itself: rollouts, grace, load duration).
pub fn lameduck(args: &[&str]) -> Output {
    Command::new(lameduck_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The naive app: dies at once on SIGTERM.
pub fn naive() -> Vec<String> {
    vec![
        lameduck_bin().into(),
        "demo-app".into(),
        "--listen".into(),
        "127.0.0.1:{port}".into(),
    ]
}

/// The naive app under `lameduck run` with its drain proxy in HTTP mode.
pub fn wrapped() -> Vec<String> {
    wrapped_proxy("http")
}

/// The naive app under `lameduck run` with its drain proxy in `protocol` mode (`http`, `tcp`,
/// `auto`).
pub fn wrapped_proxy(protocol: &str) -> Vec<String> {
    let app = vec![
        lameduck_bin().into(),
        "demo-app".into(),
        "--listen".into(),
        "127.0.0.1:{app_port}".into(),
    ];
    let mut v: Vec<String> = [
        lameduck_bin(),
        "run",
        "--admin",
        "127.0.0.1:{admin_port}",
        "--proxy",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    v.push(format!(
        "{protocol}:127.0.0.1:{{port}}=127.0.0.1:{{app_port}}"
    ));
    v.extend(["--grace".into(), "30".into(), "--".into()]);
    v.extend(app);
    v
}

/// A scenario file: 3 replicas, one rollout with maxSurge 1 / maxUnavailable 0, `routers`
/// (YAML), propagation `dist` (YAML), `extra` top-level YAML, `seed`.
pub fn scenario(command: &[String], routers: &str, dist: &str, extra: &str, seed: u64) -> String {
    let cmd: Vec<String> = command.iter().map(|a| format!("'{a}'")).collect();
    let mut y = format!(
        "command: [{}]\nreplicas: 3\nrollouts: 1\nseed: {seed}\nstrategy:\n  maxSurge: 1\n  maxUnavailable: 0\n\
         readinessProbe:\n  path: /healthz\n  periodSeconds: 100ms\nterminationGracePeriodSeconds: 30\n{routers}propagation:\n  {dist}\n",
        cmd.join(", ")
    );
    // `extra` may repeat a top-level key (rollouts, readinessProbe, load): it replaces it.
    let mut out = String::new();
    let keys: Vec<&str> = extra
        .lines()
        .filter(|l| !l.starts_with(' ') && l.contains(':'))
        .filter_map(|l| l.split(':').next())
        .collect();
    let mut skipping = false;
    for line in y.lines() {
        if !line.starts_with(' ') {
            skipping = keys.iter().any(|k| line.starts_with(&format!("{k}:")));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    y = out;
    y.push_str(extra);
    y
}

/// The result of one `lameduck verify --json` run.
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// The JSON reports, each checked by [`parse_reports`].
    pub reports: Vec<Value>,
}

/// The published schema of `--json`.
fn report_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../../../docs/schema/verify-report.schema.json");
        let schema: Value = serde_json::from_str(text).unwrap();
        jsonschema::options().build(&schema).unwrap()
    })
}

/// Parses the JSON reports, checks them against the published schema and checks the
/// accounting invariant of each.
pub fn parse_reports(out: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let errors: Vec<String> = report_schema()
        .iter_errors(&v)
        .take(10)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report breaks its schema: {errors:#?}"
    );
    let reports = v.as_array().unwrap().clone();
    for r in &reports {
        let load = &r["load"];
        let (started, ok, failed) = (
            load["started"].as_u64().unwrap(),
            load["ok"].as_u64().unwrap(),
            load["failed"].as_u64().unwrap(),
        );
        assert_eq!(started, ok + failed, "accounting invariant");
        assert_eq!(r["invariantHolds"], true);
        assert_eq!(r["failures"].as_array().unwrap().len() as u64, failed);
        assert!(started > 0);
    }
    reports
}

/// Writes `yaml` to `dir/name` and runs `lameduck verify --json -q -f FILE EXTRA...`.
pub fn verify_file(dir: &Path, name: &str, yaml: &str, extra: &[&str]) -> Run {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    // A generous request timeout: the verdicts are about lost requests, and a run on a busy
    // 2-core machine can stall a few seconds.
    let mut args = vec![
        "verify",
        "--json",
        "-q",
        "--request-timeout",
        "30s",
        "-f",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = lameduck(&args);
    let reports = parse_reports(&out);
    Run {
        code: out.status.code().unwrap_or(-1),
        reports,
    }
}

/// Failures seen through router `id`.
pub fn router_failures(report: &Value, id: u64) -> u64 {
    report["failuresByRouter"][id.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// A one-line summary for assertion messages.
pub fn summary(r: &Value) -> String {
    format!(
        "started {} failed {} by class {} by router {} by phase {} exposure {:.2}",
        r["load"]["started"],
        r["load"]["failed"],
        r["failuresByClass"],
        r["failuresByRouter"],
        r["failuresByPhase"],
        r["exposure"].as_f64().unwrap_or(0.0)
    )
}

/// Whether `lameduck run` is built. When it is not, tests that need it print a notice and
/// pass, except under `CI=true`, where they fail.
pub fn run_available() -> bool {
    let out = lameduck(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && help.contains("--proxy") && help.contains("--admin");
    let what = "`lameduck run` with --admin and --proxy";
    lameduck_testkit::needed_or_skip(ok.then_some(()), what, "not built yet").is_some()
}

/// Serializes the heavy tests of one test binary: each run already loads the 2 cores with its
/// replicas, routers and load; two at once would starve both and measure the machine instead.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
