//! `lameduck lint` as a user runs it: exit codes, stdin, directories, config discovery, formats.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../lameduck-lint/tests/fixtures"
);

fn lameduck(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("lint")
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-lint-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(path)).unwrap()
}

#[test]
fn exit_codes_follow_fail_on() {
    let dir = temp_dir("exit");
    std::fs::write(
        dir.join("clean.yaml"),
        fixture("checks/pdb-missing/pass.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("info.yaml"),
        fixture("checks/min-ready-seconds-unset/fail.yaml"),
    )
    .unwrap();
    assert_eq!(lameduck(&dir, &["clean.yaml"], None).status.code(), Some(0));
    // An info finding fails only with --fail-on info.
    assert_eq!(lameduck(&dir, &["info.yaml"], None).status.code(), Some(0));
    assert_eq!(
        lameduck(&dir, &["--fail-on", "info", "info.yaml"], None)
            .status
            .code(),
        Some(1)
    );
    let out = lameduck(&dir, &["--fail-on", "error", "info.yaml"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("info[min-ready-seconds-unset]"));
    assert_eq!(
        lameduck(&dir, &["missing.yaml"], None).status.code(),
        Some(2)
    );
    assert_eq!(lameduck(&dir, &[], None).status.code(), Some(2));
}

#[test]
fn stdin_with_a_broken_document_reports_the_rest_and_exits_2() {
    let dir = temp_dir("stdin");
    let input = format!(
        "{}\n---\nkind: [oops\n",
        fixture("checks/no-shutdown-delay/fail.yaml")
    );
    let out = lameduck(&dir, &["-"], Some(&input));
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("<stdin>:") && text.contains("error[no-shutdown-delay]"),
        "{text}"
    );
    assert!(
        text.contains("input error: invalid YAML in the document starting at line"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn directories_are_searched_recursively_and_config_is_found_upward() {
    let dir = temp_dir("dirs");
    std::fs::create_dir_all(dir.join("deploy/nested")).unwrap();
    std::fs::create_dir_all(dir.join("deploy/.hidden")).unwrap();
    std::fs::write(
        dir.join("deploy/nested/web.yml"),
        fixture("checks/single-replica/fail.yaml"),
    )
    .unwrap();
    std::fs::write(dir.join("deploy/.hidden/x.yaml"), "kind: [broken").unwrap();
    std::fs::write(dir.join("deploy/notes.txt"), "kind: [broken").unwrap();
    let out = lameduck(&dir.join("deploy"), &["."], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("nested/web.yml:"), "{}", stdout(&out));
    // .lameduck.yaml in a parent directory of the working directory applies.
    std::fs::write(
        dir.join(".lameduck.yaml"),
        "lint:\n  disable: [single-replica]\n",
    )
    .unwrap();
    let out = lameduck(&dir.join("deploy"), &["."], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        lameduck(&dir.join("deploy"), &["--no-config", "."], None)
            .status
            .code(),
        Some(1)
    );
    // A broken config is a usage error naming the line.
    std::fs::write(
        dir.join(".lameduck.yaml"),
        "lint:\n  disable: [no-such-check]\n",
    )
    .unwrap();
    let out = lameduck(&dir.join("deploy"), &["."], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: unknown check \"no-such-check\"")
    );
}

#[test]
fn json_and_sarif_formats() {
    let dir = temp_dir("formats");
    let realistic = format!("{FIXTURES}/realistic");
    let out = lameduck(&dir, &["--format", "json", &realistic], None);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["summary"]["objects"], 20);
    assert_eq!(json["summary"]["suppressed"], 1);
    assert_eq!(json["findings"].as_array().unwrap().len(), 10);
    let out = lameduck(&dir, &["--format", "sarif", &realistic], None);
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let first = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert!(
        first["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("data/postgres.yaml")
    );
    assert_eq!(first["region"]["startLine"], 56);
}

#[test]
fn list_and_explain() {
    let dir = temp_dir("list");
    let out = lameduck(&dir, &["--list"], None);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 22, "one line per check");
    assert!(text.contains("grace-period-too-short") && text.contains("error"));
    let out = lameduck(&dir, &["--explain", "grace-period-too-short"], None);
    assert!(stdout(&out).contains("Fix: Raise terminationGracePeriodSeconds"));
    assert_eq!(
        lameduck(&dir, &["--explain", "nope"], None).status.code(),
        Some(2)
    );
}

/// Every `*.yaml` under `dir`, recursively (fixture trees are a few levels deep).
fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
}

/// What `lameduck run --check` says of a container's flags and `LAMEDUCK_*` variables: `None`
/// if it accepts them, else its error's own text.
fn run_check(invocation: &lameduck_lint::RunInvocation) -> Option<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    command.args(["run", "--check"]).args(&invocation.flags);
    for (name, _) in std::env::vars() {
        if name.starts_with("LAMEDUCK_") {
            command.env_remove(name);
        }
    }
    let output = command
        .envs(invocation.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    match output.status.code() {
        Some(0) => None,
        Some(2) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().next().unwrap_or_default();
            // `lameduck: error: TEXT`, or clap's `error: invalid value 'V' for 'FLAG': TEXT` or
            // `error: TEXT`.
            let text = first
                .strip_prefix("lameduck: error: ")
                .or_else(|| first.split_once("': ").map(|(_, text)| text))
                .or_else(|| first.strip_prefix("error: "))
                .unwrap_or(first);
            Some(text.to_owned())
        }
        other => panic!(
            "lameduck run --check exited {other:?}: {stderr:?}",
            stderr = output.stderr
        ),
    }
}

/// lint and `lameduck run` agree on every `lameduck run` container of every lint fixture: lint
/// reports `lameduck-settings-invalid` exactly where `lameduck run --check` refuses the same
/// flags and environment, and its message carries run's own error text.
#[test]
fn lint_and_run_check_agree_on_every_fixture() {
    let mut files = Vec::new();
    yaml_files(Path::new(FIXTURES), &mut files);
    let mut checked = 0;
    let mut refused = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display().to_string();
        let loaded = lameduck_lint::load(&name, &text);
        let findings = lameduck_lint::lint(&loaded.objects, &lameduck_lint::Config::default());
        for invocation in lameduck_lint::lameduck_runs(&loaded.objects) {
            let label = format!("container {:?}:", invocation.container);
            let lint_says: Vec<&str> = findings
                .iter()
                .filter(|f| {
                    f.check == "lameduck-settings-invalid"
                        && f.object.name == invocation.workload
                        && f.message.starts_with(&label)
                })
                .map(|f| f.message.as_str())
                .collect();
            let run_says = run_check(&invocation);
            match &run_says {
                None => assert!(
                    lint_says.is_empty(),
                    "{name} {invocation:?}: run accepts, lint says {lint_says:?}"
                ),
                Some(error) => {
                    refused += 1;
                    assert!(
                        lint_says
                            .iter()
                            .any(|message| message.contains(error.as_str())),
                        "{name} {invocation:?}: run says {error:?}, lint says {lint_says:?}"
                    );
                }
            }
            checked += 1;
        }
    }
    // The run-agreement fixtures alone hold 12 containers, 9 of them refused.
    assert!(
        checked >= 12 && refused >= 9,
        "{checked} checked, {refused} refused"
    );
}
