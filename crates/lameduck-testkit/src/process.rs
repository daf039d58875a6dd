//! Processes and files of a test: a temporary directory, bounded waits, children killed by
//! their PID when dropped, what /proc says of a process, and an event log shared with child
//! processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A temporary directory (from `tempfile`), removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new directory whose name starts with `lameduck-NAME-`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lameduck-{name}-"))
            .tempdir()
            .expect("create a temporary directory");
        Self(dir)
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.0.path()
    }
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

/// A child process of a test, killed (by its PID) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
