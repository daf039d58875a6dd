//! A control-plane daemon: its output goes to a log file (the API server writes a lot), and it
//! is stopped by PID when dropped, also while a failing test unwinds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Error;

/// How long a daemon gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running daemon.
#[derive(Debug)]
pub(crate) struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program` with `args`, writing stdout and stderr to `<dir>/<name>.log`.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|source| Error::io(&log, source))?;
        let err = out.try_clone().map_err(|source| Error::io(&log, source))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::io(program, source))?;
        Ok(Self { name, child, log })
    }

    /// The daemon's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with the end of its log if the daemon has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                what: self.name,
                status: status.to_string(),
                log: self.log_tail(),
            }),
            Err(source) => Err(Error::io(&self.log, source)),
        }
    }

    /// The last lines of its log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log, 25)
    }

    /// The log file's path.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; waits for the exit either way.
    pub(crate) fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
