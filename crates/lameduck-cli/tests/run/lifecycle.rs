//! `lameduck run` as a supervisor, and `sleep`, `wait` and `probe`, with real child processes,
//! real signals (sent only to processes these tests started) and real loopback sockets. The
//! drain proxy has its own file, `proxy.rs`.
//!
//! Drain settings are short so the suite stays quick; assertions are about the order of events
//! and counts, not speed.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::LAMEDUCK;
use lameduck_testkit::blocking_http::get;
use lameduck_testkit::process::{TempDir, alive, children_of, event, events, running, wait_for};
use lameduck_testkit::wrapper::{NAIVE_APP_LOGGING_STOP, Wrapper, app_addr, guard_pid, lameduck};
use nix::sys::signal::Signal;

#[test]
fn naive_app_answers_through_the_drain_and_is_stopped_after_it() {
    let dir = TempDir::new("naive");
    let log = dir.path("events");
    let upstream = app_addr();
    let proxy = format!("127.0.0.1:0={upstream}");
    let (log_s, up_s) = (log.to_str().unwrap(), upstream.to_string());
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--proxy",
            &proxy,
            "--grace",
            "8",
            "--min-wait",
            "1500ms",
            "--quiet-window",
            "300ms",
            "--close-timeout",
            "2s",
            "--",
            "sh",
            "-c",
            NAIVE_APP_LOGGING_STOP,
            log_s,
            LAMEDUCK,
            &up_s,
        ],
    );
    let listen = wrapper.proxy_addr();
    wrapper.wait_ready();
    assert_eq!(
        get(listen, "/").expect("request before the drain").status,
        200
    );

    event(&log, "sigterm-sent");
    wrapper.signal(Signal::SIGTERM);
    wait_for(Duration::from_secs(2), || {
        (wrapper.readyz() == Some(503)).then_some(())
    })
    .expect("/readyz fails once draining");
    event(&log, "readyz-503");
    for _ in 0..4 {
        let response = get(listen, "/").expect("requests are served while draining");
        assert_eq!(response.status, 200, "{response:?}");
        event(&log, "request-ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = wrapper.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "exit code of the app's trap; log:\n{}",
        wrapper.log_text()
    );
    assert_eq!(
        events(&log),
        [
            "sigterm-sent",
            "readyz-503",
            "request-ok",
            "request-ok",
            "request-ok",
            "request-ok",
            "stop-signal"
        ],
        "the app gets its stop signal only after the drain; log:\n{}",
        wrapper.log_text()
    );
    let text = wrapper.log_text();
    let closing = text
        .find("closing: no new connections")
        .expect("closing logged");
    let stop = text
        .find("sent the stop signal")
        .expect("stop signal logged");
    assert!(closing < stop, "{text}");
}

#[test]
fn orphans_are_adopted_and_reaped() {
    let dir = TempDir::new("orphans");
    let log = dir.path("events");
    let script = r#"for i in 1 2 3; do (sleep 2 &); done; echo spawned >> "$0"; sleep 3.5; exit 0"#;
    let mut wrapper = Wrapper::start(&dir, &["--", "sh", "-c", script, log.to_str().unwrap()]);
    let wrapper_pid = wrapper.pid().as_raw();
    wait_for(Duration::from_secs(5), || {
        (!events(&log).is_empty()).then_some(())
    })
    .expect("script started");
    let guard = wait_for(Duration::from_secs(5), || guard_pid(&wrapper.log_text()))
        .expect("the process-group guard started");
    let children_of_app = || -> Vec<(i32, char)> {
        let mut children = children_of(wrapper_pid);
        children.retain(|(pid, _)| *pid != guard);
        children
    };
    // The subshells exited at once: their `sleep`s were re-parented to the wrapper (seen while
    // they run, within their 2 s).
    let adopted = wait_for(Duration::from_millis(1800), || {
        (children_of_app().len() >= 4).then_some(())
    });
    assert!(adopted.is_some(), "children: {:?}", children_of_app());
    // Once the orphans have exited, none of them is left a zombie: the app is the only child
    // (or none, if it has exited too).
    let reaped = wait_for(Duration::from_secs(5), || {
        let children = children_of_app();
        (children.len() <= 1 && children.iter().all(|(_, state)| *state != 'Z')).then_some(())
    });
    assert!(reaped.is_some(), "children: {:?}", children_of_app());
    let status = wrapper.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        wrapper.log_text().contains("orphans_reaped=3"),
        "{}",
        wrapper.log_text()
    );
}

/// Reads the PIDs a script appended to `file`, once there are `count`.
fn pids_written(file: &std::path::Path, count: usize) -> Vec<i32> {
    wait_for(Duration::from_secs(5), || {
        let pids: Vec<i32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        (pids.len() == count).then_some(pids)
    })
    .expect("the app wrote its PIDs")
}

/// The app is a shell that started two `sleep`s in its process group (as nginx starts its
/// workers); it writes their PIDs and its own to `$0`.
const APP_WITH_WORKERS: &str =
    r#"sleep 300 & echo $! >> "$0"; sleep 300 & echo $! >> "$0"; echo $$ >> "$0"; wait"#;

/// `lameduck run` SIGKILLed (as the OOM killer does) outside a container can do nothing more
/// itself, yet its app must not run on unsupervised: the app's main process gets its
/// parent-death signal, and the guard process kills the rest of the app's process group.
#[test]
fn a_killed_wrapper_leaves_no_process_of_the_app() {
    let dir = TempDir::new("killed-wrapper");
    let pids = dir.path("pids");
    let mut wrapper = Wrapper::start(
        &dir,
        &["--", "sh", "-c", APP_WITH_WORKERS, pids.to_str().unwrap()],
    );
    let app = pids_written(&pids, 3);
    let guard = wait_for(Duration::from_secs(5), || guard_pid(&wrapper.log_text()))
        .expect("the process-group guard started");
    wrapper.signal(Signal::SIGKILL);
    wrapper.wait_exit(Duration::from_secs(5));
    let left = wait_for(Duration::from_secs(5), || {
        app.iter().all(|&pid| !running(pid)).then_some(())
    });
    assert!(
        left.is_some(),
        "still running: {:?}",
        app.iter().filter(|&&pid| running(pid)).collect::<Vec<_>>()
    );
    wait_for(Duration::from_secs(5), || (!running(guard)).then_some(()))
        .expect("the guard ends once it did its work");
    assert!(
        wrapper
            .log_text()
            .contains("killed the app's process group"),
        "{}",
        wrapper.log_text()
    );

    // A wrapper that ends normally releases its guard, which then signals nothing.
    let (status, _, stderr) = lameduck(
        &["run", "--admin", "off", "--log", "debug", "--", "true"],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    let guard = guard_pid(&stderr).expect("a guard was started");
    wait_for(Duration::from_secs(5), || (!running(guard)).then_some(()))
        .expect("a released guard exits");
    assert!(
        !stderr.contains("killed the app's process group"),
        "{stderr}"
    );
}

/// Without its guard (killed first here), a SIGKILLed wrapper still takes the app's main
/// process with it: the parent-death signal is the kernel's, set before the app's exec.
#[test]
fn the_apps_main_process_dies_with_the_wrapper_even_without_the_guard() {
    let dir = TempDir::new("killed-wrapper-and-guard");
    let pids = dir.path("pids");
    let mut wrapper = Wrapper::start(
        &dir,
        &["--", "sh", "-c", APP_WITH_WORKERS, pids.to_str().unwrap()],
    );
    let app = pids_written(&pids, 3);
    let guard = wait_for(Duration::from_secs(5), || guard_pid(&wrapper.log_text()))
        .expect("the process-group guard started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard), Signal::SIGKILL)
        .expect("kill the guard");
    wrapper.signal(Signal::SIGKILL);
    wrapper.wait_exit(Duration::from_secs(5));
    let main = app[2];
    let ended = wait_for(Duration::from_secs(5), || (!running(main)).then_some(()));
    // The workers are this test's to clean up now: nothing else will.
    for &worker in &app[..2] {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker), Signal::SIGKILL);
    }
    assert!(ended.is_some(), "the app's main process {main} runs on");
}

#[test]
fn leftovers_of_an_exited_app_are_stopped_and_reaped() {
    let dir = TempDir::new("leftovers");
    let log = dir.path("pid");
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--",
            "sh",
            "-c",
            r#"sleep 30 & echo $! >> "$0"; exit 0"#,
            log.to_str().unwrap(),
        ],
    );
    let status = wrapper.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    let pid: i32 = events(&log)[0]
        .parse()
        .expect("pid of the background sleep");
    assert!(!alive(pid), "the background job outlived the wrapper");
}

#[test]
fn exit_codes_are_the_apps_as_shells_report_them() {
    let dir = TempDir::new("codes");
    let not_executable = dir.path("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    let ne = not_executable.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 6] = [
        (&["true"], 0, ""),
        (&["sh", "-c", "exit 3"], 3, ""),
        (&["sh", "-c", "kill -KILL $$"], 137, ""),
        (&["sh", "-c", "kill -TERM $$"], 143, ""),
        (&["/nonexistent/app"], 127, "command not found"),
        (&[ne], 126, "not executable"),
    ];
    for (command, code, message) in cases {
        let mut args = vec!["run", "--admin", "off", "--"];
        args.extend_from_slice(command);
        let (status, _, stderr) = lameduck(&args, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{command:?}: {stderr}");
        assert!(stderr.contains(message), "{command:?}: {stderr}");
    }
}

/// `--log-format json`: every line lameduck writes is one JSON object, for log pipelines.
#[test]
fn json_logs_are_one_object_per_line() {
    let args = [
        "run",
        "--admin",
        "off",
        "--log-format",
        "json",
        "--",
        "sh",
        "-c",
        "exit 3",
    ];
    let (status, _, stderr) = lameduck(&args, Duration::from_secs(10));
    assert_eq!(status.code(), Some(3), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let exiting = lines
        .iter()
        .find(|line| line["message"] == "exiting")
        .unwrap_or_else(|| panic!("no exiting line: {stderr}"));
    assert_eq!(exiting["level"], "INFO");
    assert_eq!(
        exiting["code"], 3,
        "fields are keys of the object: {exiting}"
    );
    assert!(
        lines.iter().all(|line| line["timestamp"].is_string()),
        "{stderr}"
    );
}

#[test]
fn signals_are_forwarded_and_sigterm_drains_first() {
    let dir = TempDir::new("forward");
    let log = dir.path("events");
    let script = r#"trap 'echo HUP >> "$0"' HUP; trap 'echo USR1 >> "$0"' USR1; trap 'echo USR2 >> "$0"' USR2; trap 'echo TERM >> "$0"; exit 0' TERM; echo ready >> "$0"; while :; do sleep 0.05; done"#;
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--grace",
            "6",
            "--min-wait",
            "300ms",
            "--quiet-window",
            "200ms",
            "--close-timeout",
            "2s",
            "--",
            "sh",
            "-c",
            script,
            log.to_str().unwrap(),
        ],
    );
    let seen = |n: usize| {
        wait_for(Duration::from_secs(5), || {
            (events(&log).len() >= n).then_some(())
        })
    };
    seen(1).expect("app started");
    for (i, sig) in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2]
        .into_iter()
        .enumerate()
    {
        wrapper.signal(sig);
        seen(i + 2).unwrap_or_else(|| panic!("{sig} not forwarded; log:\n{}", wrapper.log_text()));
    }
    assert!(
        wrapper.child.try_wait().unwrap().is_none(),
        "forwarded signals do not stop the wrapper"
    );
    event(&log, "sigterm-sent");
    wrapper.signal(Signal::SIGTERM);
    let status = wrapper.wait_exit(Duration::from_secs(6));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        events(&log),
        ["ready", "HUP", "USR1", "USR2", "sigterm-sent", "TERM"]
    );
}

/// An app that ignores SIGTERM, recording its pid in `$0`.
const STUBBORN: &str = r#"trap '' TERM; echo $$ >> "$0"; while :; do sleep 0.05; done"#;

#[test]
fn second_sigterm_stops_at_once() {
    let dir = TempDir::new("second");
    let log = dir.path("pid");
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--grace",
            "60",
            "--min-wait",
            "30s",
            "--max-wait",
            "40s",
            "--",
            "sh",
            "-c",
            STUBBORN,
            log.to_str().unwrap(),
        ],
    );
    wait_for(Duration::from_secs(5), || events(&log).first().cloned()).expect("app started");
    let pid: i32 = events(&log)[0].parse().unwrap();
    wrapper.signal(Signal::SIGTERM);
    wait_for(Duration::from_secs(5), || {
        (wrapper.readyz() == Some(503)).then_some(())
    })
    .expect("the first SIGTERM starts the drain");
    assert!(
        wrapper.child.try_wait().unwrap().is_none(),
        "the first SIGTERM only drains"
    );
    assert!(alive(pid));
    wrapper.signal(Signal::SIGTERM);
    // Far sooner than the 30 s drain wait the first signal started.
    let status = wrapper.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(137),
        "SIGKILLed; log:\n{}",
        wrapper.log_text()
    );
    assert!(!alive(pid), "the app does not outlive the wrapper");
}

#[test]
fn an_app_ignoring_the_stop_signal_is_killed_within_the_budget() {
    let dir = TempDir::new("stubborn");
    let log = dir.path("pid");
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--grace",
            "5",
            "--safety-margin",
            "1s",
            "--min-wait",
            "500ms",
            "--quiet-window",
            "200ms",
            "--close-timeout",
            "2s",
            "--",
            "sh",
            "-c",
            STUBBORN,
            log.to_str().unwrap(),
        ],
    );
    wait_for(Duration::from_secs(5), || events(&log).first().cloned()).expect("app started");
    let pid: i32 = events(&log)[0].parse().unwrap();
    let sent = Instant::now();
    wrapper.signal(Signal::SIGTERM);
    let status = wrapper.wait_exit(Duration::from_secs(10));
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(137), "log:\n{}", wrapper.log_text());
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM: beyond the 5 s grace"
    );
    assert!(!alive(pid), "the app does not outlive the wrapper");
    let text = wrapper.log_text();
    let stop = text
        .find("sent the stop signal")
        .expect("stop signal first");
    let kill = text
        .find("SIGKILL to its process group")
        .expect("then SIGKILL");
    assert!(stop < kill, "{text}");
}

#[test]
fn lameduck_wait_drains_the_wrapper_before_the_kubelet_signal() {
    let dir = TempDir::new("wait");
    let log = dir.path("events");
    let script = r#"trap 'echo stop-signal >> "$0"; exit 0' TERM; while :; do sleep 0.05; done"#;
    let mut wrapper = Wrapper::start(
        &dir,
        &[
            "--grace",
            "6",
            "--min-wait",
            "700ms",
            "--quiet-window",
            "200ms",
            "--close-timeout",
            "2s",
            "--",
            "sh",
            "-c",
            script,
            log.to_str().unwrap(),
        ],
    );
    wrapper.wait_ready();
    let admin = wrapper.admin.to_string();
    let (status, stdout, stderr) = lameduck(
        &["wait", "--admin", &admin, "--timeout", "5s"],
        Duration::from_secs(8),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("drain started; phase closing"), "{stdout}");
    event(&log, "prestop-done");
    // The kubelet's SIGTERM after preStop is the first signal: it does not force anything.
    wrapper.signal(Signal::SIGTERM);
    let status = wrapper.wait_exit(Duration::from_secs(6));
    assert_eq!(status.code(), Some(0));
    let seen = events(&log);
    assert_eq!(
        seen.iter().filter(|e| *e == "stop-signal").count(),
        1,
        "{seen:?}"
    );
    assert!(
        !wrapper.log_text().contains("second stop signal"),
        "{}",
        wrapper.log_text()
    );
}

#[test]
fn probe_and_sleep_helpers() {
    let dir = TempDir::new("probe");
    let mut wrapper = Wrapper::start(&dir, &["--", "sleep", "30"]);
    wrapper.wait_ready();
    let livez = format!("http://{}/livez", wrapper.admin);
    let ok = lameduck(&["probe", &livez], Duration::from_secs(5));
    assert_eq!(ok.0.code(), Some(0), "{}", ok.2);
    let missing = format!("http://{}/nope", wrapper.admin);
    let not_found = lameduck(&["probe", &missing], Duration::from_secs(5));
    assert_eq!(not_found.0.code(), Some(1));
    assert!(not_found.2.contains("404"), "{}", not_found.2);
    let tcp = format!("tcp://{}", wrapper.admin);
    assert_eq!(
        lameduck(&["probe", &tcp], Duration::from_secs(5)).0.code(),
        Some(0)
    );
    let closed = format!("tcp://{}", app_addr());
    let refused = lameduck(&["probe", &closed], Duration::from_secs(5));
    assert_eq!(refused.0.code(), Some(1));
    assert!(refused.2.contains("cannot connect"), "{}", refused.2);
    let bad = lameduck(&["probe", "https://example.com/"], Duration::from_secs(5));
    assert_eq!(bad.0.code(), Some(2), "{}", bad.2);
    assert!(bad.2.contains("https is not supported"), "{}", bad.2);

    let started = Instant::now();
    assert_eq!(
        lameduck(&["sleep", "300ms"], Duration::from_secs(5))
            .0
            .code(),
        Some(0)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let bad = lameduck(&["sleep", "soon"], Duration::from_secs(5));
    assert_eq!(bad.0.code(), Some(2));
    assert!(bad.2.contains("not a duration"), "{}", bad.2);

    wrapper.signal(Signal::SIGTERM);
    wrapper.wait_exit(Duration::from_secs(10));
}

#[test]
fn bad_input_is_one_clear_message_and_a_nonzero_exit() {
    let dir = TempDir::new("bad");
    let marker = dir.path("started");
    let never = format!("echo started >> {}", marker.display());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let proxy_taken = format!("{taken_addr}={}", app_addr());
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--min-wait", "soon"], 2, "\"soon\" is not a duration"),
        (vec!["--grace", "3"], 2, "grace period too small"),
        (
            vec!["--min-wait", "9s", "--max-wait", "5s"],
            2,
            "LAMEDUCK_MIN_WAIT must be <= LAMEDUCK_MAX_WAIT",
        ),
        (vec!["--protocol", "tcp"], 2, "--proxy"),
        (vec!["--accept-proxy-protocol"], 2, "--proxy"),
        (
            vec!["--proxy", "18080=18081", "--accept-proxy-protocol=maybe"],
            2,
            "\"maybe\" is not a list of listen ports",
        ),
        (
            vec!["--proxy", "18080=18081", "--accept-proxy-protocol", "9443"],
            2,
            "--accept-proxy-protocol: no --proxy listens on port 9443",
        ),
        (
            vec![
                "--proxy",
                "18080=18081",
                "--protocol",
                "tcp",
                "--upstream-protocol",
                "h2c",
            ],
            2,
            "--upstream-protocol applies to --protocol http and auto only",
        ),
        (
            vec![
                "--proxy",
                "18080=18081",
                "--protocol",
                "http",
                "--detect-timeout",
                "1s",
            ],
            2,
            "--detect-timeout applies to --protocol auto only",
        ),
        (
            vec!["--proxy", "18080=18081", "--detect-timeout", "soon"],
            2,
            "invalid value 'soon' for '--detect-timeout <DURATION>'",
        ),
        (
            vec!["--proxy", "udp:18080=18081"],
            2,
            "is not a proxy protocol (use auto, http or tcp)",
        ),
        (
            vec!["--proxy", "18080=18081", "--client-address", "proxy-v1"],
            2,
            "the PROXY protocol needs --protocol tcp",
        ),
        (
            vec![
                "--proxy",
                "18080=18081",
                "--protocol",
                "tcp",
                "--client-address",
                "x-forwarded-for",
            ],
            2,
            "x-forwarded-for needs --protocol http",
        ),
        (
            vec!["--proxy", "18080=18081", "--client-address", "header"],
            2,
            "is not a way to pass the client address",
        ),
        (
            vec!["--proxy", "8080"],
            2,
            "is not [PROTOCOL:]LISTEN=UPSTREAM",
        ),
        (
            vec!["--proxy", "18080=18081", "--proxy", "127.0.0.1:18080=18082"],
            2,
            "listen on the same port",
        ),
        (
            vec![
                "--proxy",
                "18080=18081,tcp:18090=18091",
                "--client-address",
                "proxy-v1",
            ],
            2,
            "(for --proxy 0.0.0.0:18080=127.0.0.1:18081)",
        ),
        (vec!["--stop-signal", "SIGNOPE"], 2, "is not a signal name"),
        (
            vec!["--log-format", "yaml"],
            2,
            "invalid value 'yaml' for '--log-format",
        ),
        (vec!["--admin", "nowhere"], 2, "is not an address"),
        (
            vec!["--proxy", &proxy_taken],
            125,
            "cannot listen for the drain proxy",
        ),
        (
            vec!["--admin", &taken_addr],
            125,
            "cannot listen for the admin endpoints",
        ),
    ];
    for (flags, code, message) in cases {
        let mut args = vec!["run"];
        if !flags.contains(&"--admin") {
            args.extend(["--admin", "off"]);
        }
        args.extend(flags.iter().copied());
        args.extend(["--", "sh", "-c", &never]);
        let (status, _, stderr) = lameduck(&args, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{flags:?}: expected {message:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        let lines = stderr.lines().filter(|l| l.contains("error")).count();
        assert_eq!(lines, 1, "one message: {stderr}");
    }
    assert!(!marker.exists(), "no bad input starts the app");
    let (status, _, stderr) = lameduck(&["run", "--admin", "off"], Duration::from_secs(5));
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("no command to run"), "{stderr}");
    drop(taken);
}
