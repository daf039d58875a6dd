//! Helpers for the `lameduck run` tests: the binary, temp dirs, ports, bounded waits, a raw
//! HTTP/1.1 client and an event log shared with child processes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `lameduck` binary under test.
pub const LAMEDUCK: &str = env!("CARGO_BIN_EXE_lameduck");

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lameduck-run-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback address with a port that was free a moment ago, and that this test process has
/// not handed out before: the kernel often gives a just-released port to the next bind, so two
/// calls in a row would otherwise return the same port (a proxy told to forward to itself).
pub fn free_addr() -> SocketAddr {
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

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `lameduck run`, its stderr captured to a file. Killed on drop if still running.
pub struct Wrapper {
    pub child: Child,
    pub log: PathBuf,
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
        let mut child = Command::new(LAMEDUCK)
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

    /// Starts `lameduck run --proxy LISTEN=UPSTREAM FLAGS... -- sleep 30` and waits until it
    /// is ready: a proxy in front of an app the test serves itself.
    pub fn start_proxy(
        dir: &TempDir,
        listen: SocketAddr,
        upstream: SocketAddr,
        flags: &[&str],
    ) -> Self {
        let proxy = proxy_arg(listen, upstream);
        let mut args = vec!["--proxy", proxy.as_str()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sleep", "30"]);
        let wrapper = Self::start(dir, &args);
        wrapper.wait_ready();
        wrapper
    }

    /// Stops the wrapper at once (a second SIGTERM skips the drain) and waits for its exit.
    pub fn stop_at_once(&mut self) {
        self.signal(Signal::SIGTERM);
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(5));
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

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

/// A child process of a test, killed (by its PID) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let mut child = Command::new(LAMEDUCK)
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

/// Appends one line to an event log shared with child processes (`echo x >> log`).
pub fn event(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("event log");
    // One write per line: `writeln!` may write the text and the newline separately, and
    // threads logging at once would interleave them.
    file.write_all(format!("{line}\n").as_bytes())
        .expect("write event");
}

/// The lines of an event log.
pub fn events(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether process `pid` exists (a zombie counts as existing).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` runs (exists and is not a zombie waiting for its parent).
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
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

/// `(pid, state)` of every process whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(0);
        if ppid == parent {
            found.push((pid, state));
        }
    }
    found
}

/// One HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client connection (raw, so `Connection: close` is visible).
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Self::from_stream(TcpStream::connect_timeout(&addr, Duration::from_secs(2))?)
    }

    /// A connection opened (and perhaps written to) by the test itself.
    pub fn from_stream(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Sends `GET path` and reads the response.
    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.read_response()
    }

    /// Sends `GET path` without waiting for the response (read it with [`Conn::receive`]).
    pub fn send(&mut self, path: &str) -> std::io::Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())
    }

    /// Reads the response to a request sent with [`Conn::send`].
    pub fn receive(&mut self) -> std::io::Result<Response> {
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(eof());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(eof());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Whether the server closed the connection (reads EOF within `limit`).
    pub fn closed_by_server(&mut self, limit: Duration) -> bool {
        let _ = self.reader.get_ref().set_read_timeout(Some(limit));
        let mut byte = [0_u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    Conn::open(addr)?.get(path)
}

/// `sh -c` script that runs the demo app in the background and logs the stop signal to `$0`.
/// Stop signals go to the whole process group, so the app (naive: it dies at once) gets it too.
pub const NAIVE_APP_LOGGING_STOP: &str = r#"trap 'echo stop-signal >> "$0"; exit 0' TERM; "$1" demo-app --listen "$2" --on-sigterm exit & wait"#;

pub fn proxy_arg(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!("{listen}={upstream}")
}

/// `lameduck run --proxy` in front of the demo app, with a drain wait long enough (1.5 s) to
/// act during it; returns the wrapper, ready, and the proxy's address.
pub fn start_proxied_demo_app(dir: &TempDir) -> (Wrapper, SocketAddr) {
    let (listen, upstream) = (free_addr(), free_addr());
    let proxy = proxy_arg(listen, upstream);
    let up = upstream.to_string();
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
            LAMEDUCK,
            "demo-app",
            "--listen",
            &up,
        ],
    );
    wrapper.wait_ready();
    (wrapper, listen)
}

/// An HTTP/1.1 app on `app` that answers every request with `n<count> for=<X-Forwarded-For>`,
/// counting requests in `served`. Its keep-alive timeout is short: it closes a connection idle
/// for 200ms, so pooled connections go stale while a proxy still holds them.
pub fn serve_forwarded_for_echo(app: TcpListener, counter: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut pending = Vec::new();
                let mut buf = [0_u8; 1024];
                for _ in 0..1000 {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return, // closed, or idle for 200ms
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    let forwarded_for = head
                        .lines()
                        .find_map(|line| line.strip_prefix("x-forwarded-for:"))
                        .map(|value| value.trim().to_owned())
                        .unwrap_or_default();
                    pending.drain(..end + 4);
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let body = format!("n{n} for={forwarded_for}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A TCP app on `app` that echoes the bytes of its first `connections` connections.
pub fn serve_echo(app: TcpListener, connections: usize) {
    std::thread::spawn(move || {
        for stream in app.incoming().take(connections).flatten() {
            std::thread::spawn(move || {
                let Ok(mut reader) = stream.try_clone() else {
                    return;
                };
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
}
