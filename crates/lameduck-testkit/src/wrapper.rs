//! `lameduck run` under test: the wrapper started with its admin address read back from its
//! log, one-shot `lameduck` invocations, and the demo app behind a drain proxy.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use std::net::TcpListener;

use crate::blocking_http::get;
use crate::process::{TempDir, wait_for};

/// The `lameduck` binary cargo built for the integration tests that call this: beside the
/// test's own executable (`target/<profile>/deps/<test>` → `target/<profile>/lameduck`).
pub fn lameduck_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("lameduck");
    assert!(
        bin.is_file(),
        "{} is missing: the lameduck-cli integration tests build it (cargo test -p lameduck-cli)",
        bin.display()
    );
    bin
}

/// A loopback address for a process that must be told its port before it starts: an app that
/// `lameduck run` will start (its port is on the `--proxy` before the app exists), a port named
/// in a flag (`--accept-proxy-protocol 8443`), or a peer such as HAProxy. Everything else a test
/// starts binds port 0 and reports what it got (a listener the test holds, or a log line:
/// [`Wrapper::proxy_addr`]).
///
/// The port was free a moment ago and this test process has not handed it out before: the
/// kernel often gives a just-released port to the next bind, so two calls in a row would
/// otherwise return the same port (a proxy told to forward to itself).
pub fn app_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.insert(addr.port()) {
            return addr;
        }
    }
    panic!("no port this process has not handed out in 1000 binds")
}

/// A running `lameduck run`, its stderr captured to a file. Killed on drop if still running.
pub struct Wrapper {
    /// The `lameduck run` process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
    /// Its admin address, read back from the log.
    pub admin: SocketAddr,
}

impl Wrapper {
    /// Starts `lameduck run --admin ADMIN ARGS...` (ARGS include `-- CMD ...`).
    pub fn start(dir: &TempDir, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// [`Wrapper::start`] with `LAMEDUCK_*` settings in the environment as well.
    ///
    /// The admin endpoints listen on a port the kernel picks (`127.0.0.1:0`), read back from
    /// the wrapper's log, so no other process can take it between a test's choice and the bind.
    pub fn start_with_env(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.path("wrapper.log");
        let mut child = Command::new(lameduck_bin())
            .args(["run", "--admin", "127.0.0.1:0"])
            .args(args)
            .env("LAMEDUCK_LOG", "debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start lameduck run");
        // Until the wrapper names its admin address, or ends without one (then nothing
        // listens on the placeholder, and the test's own assertions say why).
        let admin = wait_for(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = logged_addr(&text, "admin endpoints", "addr=") {
                return Some(addr);
            }
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
        })
        .unwrap_or_else(|| {
            panic!(
                "lameduck run named no admin address within 10 s; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Self { child, log, admin }
    }

    /// Starts `lameduck run --proxy 127.0.0.1:0=UPSTREAM FLAGS... -- sleep 30` and waits until
    /// it is ready: a proxy in front of an app the test serves itself. Its address is
    /// [`Wrapper::proxy_addr`].
    pub fn start_proxy(dir: &TempDir, upstream: SocketAddr, flags: &[&str]) -> Self {
        let proxy = format!("127.0.0.1:0={upstream}");
        let mut args = vec!["--proxy", proxy.as_str()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sleep", "30"]);
        let wrapper = Self::start(dir, &args);
        wrapper.wait_ready();
        wrapper
    }

    /// Where the drain proxies listen, in `--proxy` order, as they logged it once bound (a
    /// `--proxy 127.0.0.1:0=…` gets its port from the kernel).
    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.log_text()
            .lines()
            .filter(|line| line.contains("drain proxy"))
            .filter_map(|line| logged_addr(line, "drain proxy", "listen="))
            .collect()
    }

    /// The first drain proxy's address ([`Wrapper::proxy_addrs`]), once logged (at most 10 s;
    /// then it panics with the log).
    pub fn proxy_addr(&self) -> SocketAddr {
        wait_for(Duration::from_secs(10), || {
            self.proxy_addrs().first().copied()
        })
        .unwrap_or_else(|| panic!("no drain proxy address in the log:\n{}", self.log_text()))
    }

    /// Stops the wrapper at once (a second SIGTERM skips the drain) and waits for its exit.
    pub fn stop_at_once(&mut self) {
        self.signal(Signal::SIGTERM);
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(5));
    }

    /// Its process ID.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the wrapper");
    }

    /// The admin `/readyz` status, if the admin listener answers.
    pub fn readyz(&self) -> Option<u16> {
        get(self.admin, "/readyz").ok().map(|r| r.status)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        wait_for(Duration::from_secs(10), || {
            (self.readyz() == Some(200)).then_some(())
        })
        .unwrap_or_else(|| panic!("never ready; log:\n{}", self.log_text()));
    }

    /// Waits for the wrapper to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        match wait_for(limit, || child.try_wait().expect("try_wait")) {
            Some(status) => status,
            None => panic!(
                "lameduck run did not exit within {limit:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in the `field` (e.g. `addr=`) of the first log line that contains `message`.
pub fn logged_addr(log: &str, message: &str, field: &str) -> Option<SocketAddr> {
    log.lines()
        .find(|line| line.contains(message))?
        .split_whitespace()
        .find_map(|word| word.strip_prefix(field))
        .and_then(|addr| addr.parse().ok())
}

/// Runs `lameduck ARGS` to completion (bounded) and returns status, stdout, stderr.
pub fn lameduck(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let mut child = Command::new(lameduck_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lameduck");
    let status = wait_for(limit, || child.try_wait().expect("try_wait")).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("lameduck {args:?} did not finish within {limit:?}")
    });
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (status, out, err)
}

/// The PID of the process-group guard a wrapper logged (at debug level) that it started.
pub fn guard_pid(log: &str) -> Option<i32> {
    let line = log
        .lines()
        .find(|line| line.contains("guarding the app's process group"))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("pid="))
        .and_then(|pid| pid.parse().ok())
}

/// `sh -c` script that runs the demo app in the background and logs the stop signal to `$0`.
/// Stop signals go to the whole process group, so the app (naive: it dies at once) gets it too.
pub const NAIVE_APP_LOGGING_STOP: &str = r#"trap 'echo stop-signal >> "$0"; exit 0' TERM; "$1" demo-app --listen "$2" --on-sigterm exit & wait"#;

/// `lameduck run --proxy` in front of the demo app, with a drain wait long enough (1.5 s) to
/// act during it; returns the wrapper, ready, and the proxy's address.
pub fn start_proxied_demo_app(dir: &TempDir) -> (Wrapper, SocketAddr) {
    let upstream = app_addr();
    let proxy = format!("127.0.0.1:0={upstream}");
    let up = upstream.to_string();
    let bin = lameduck_bin();
    let wrapper = Wrapper::start(
        dir,
        &[
            "--proxy",
            &proxy,
            "--grace",
            "6",
            "--min-wait",
            "1500ms",
            "--quiet-window",
            "300ms",
            "--close-timeout",
            "2s",
            "--",
            &bin.to_string_lossy(),
            "demo-app",
            "--listen",
            &up,
        ],
    );
    wrapper.wait_ready();
    let listen = wrapper.proxy_addr();
    (wrapper, listen)
}
