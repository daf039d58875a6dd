//! A child process under test, killed by PID when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The path of a cargo example of the package under test (`cargo test` builds examples into
/// `target/<profile>/examples/`, next to the test binary's `deps/` directory). A filtered run
/// such as `cargo test --test it` does not rebuild them.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name:?} is not built: run the whole package's tests (`cargo test -p lameduck`, which \
         builds examples) or `cargo build --examples` first"
    );
    path
}

/// A running child with its stdout as awaited lines and its stderr collected.
pub struct Child {
    child: std::process::Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Signalled when the stderr reader reached the end of the pipe.
    stderr_done: Receiver<()>,
}

impl Child {
    /// Spawns `program` with `args` and extra `env`.
    pub fn spawn(
        program: impl AsRef<Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut command = Command::new(program.as_ref());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut child = command.spawn()?;
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        let (done, stderr_done) = channel();
        std::thread::spawn(move || {
            let mut buf = [0_u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            let _ = done.send(());
        });
        Ok(Self {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            stderr_done,
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child (and only to it, by PID).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, signal).expect("signal the child");
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        if let Some(found) = self.stdout.iter().find_map(|l| l.strip_prefix(prefix)) {
            return Some(found.to_owned());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.strip_prefix(prefix).map(str::to_owned);
                    self.stdout.push(line);
                    if found.is_some() {
                        return found;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The socket address printed after `prefix` (e.g. `"listening on "`).
    pub fn wait_for_addr(&mut self, prefix: &str) -> std::net::SocketAddr {
        let line = self
            .wait_for_line(prefix, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no {prefix:?} line; stderr:\n{}", self.stderr()));
        line.trim().parse().expect("an address")
    }

    /// Waits for the child to exit, at most `limit`, and then for the rest of its stderr (at
    /// most 2 s more: a process it left behind may hold the pipe), so [`Child::stderr`] holds
    /// everything it wrote; an exit seen before the reader thread read the last bytes made a
    /// test find an empty message.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Every stdout line read so far, plus those that arrive within `limit`.
    pub fn stdout_lines(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.stdout.push(line);
        }
        self.stdout.clone()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
