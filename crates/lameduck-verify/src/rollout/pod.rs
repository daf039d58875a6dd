//! One replica: its live state as the executor, the prober and the kubelet see it, the errors
//! of starting it, and how all of its processes are killed. Separate from the executor so the
//! rollout logic reads without the bookkeeping of a single pod.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::PodId;
use crate::scenario::PortRef;

/// A replica could not be started or never became ready.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The command could not be started.
    #[error("cannot start replica command {command:?}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No free port or no log file.
    #[error("replica setup: {0}")]
    Io(#[source] std::io::Error),
    /// The replica did not pass its readiness probe in time.
    #[error(
        "replica pod-{pod} did not become ready within {timeout:?}: is the command listening on {{port}} ({addr})? \
         last probe: {last}; command: {command:?}; its output: {log}"
    )]
    NotReady {
        /// The pod.
        pod: PodId,
        /// Time allowed.
        timeout: Duration,
        /// Address probed.
        addr: String,
        /// Last probe result.
        last: String,
        /// The command line.
        command: String,
        /// Log file of the replica.
        log: String,
    },
    /// The replica exited before it became ready.
    #[error(
        "replica pod-{pod} exited ({status}) before it became ready; command: {command:?}; its output: {log}"
    )]
    ExitedEarly {
        /// The pod.
        pod: PodId,
        /// Exit status.
        status: String,
        /// The command line.
        command: String,
        /// Log file of the replica.
        log: String,
    },
}

/// Live state of one replica.
#[derive(Debug)]
pub(crate) struct PodState {
    pub id: PodId,
    pub revision: u32,
    pub port: u16,
    pub admin_port: u16,
    pub app_port: u16,
    pub pid: u32,
    pub command: String,
    pub log: PathBuf,
    /// `LAMEDUCK_VERIFY_POD` of every process of this replica (inherited by its children).
    pub(super) marker: String,
    pub(super) ready: AtomicBool,
    pub(super) ready_at: Mutex<Option<Instant>>,
    pub(super) published: AtomicBool,
    pub(super) terminating: AtomicBool,
    pub(super) exited: AtomicBool,
    pub(super) exit_status: Mutex<Option<String>>,
    pub(super) last_probe: Mutex<String>,
    pub(super) changed: Notify,
}

impl PodState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    pub fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::SeqCst)
    }
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }
    pub(super) fn available(&self, min_ready: Duration) -> bool {
        self.is_ready()
            && self
                .ready_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some_and(|t| t.elapsed() >= min_ready)
    }
    pub(super) fn port_of(&self, r: PortRef) -> u16 {
        match r {
            PortRef::Port => self.port,
            PortRef::Admin => self.admin_port,
            PortRef::App => self.app_port,
        }
    }
    pub(super) async fn wait_exit(&self, until: Instant) -> bool {
        loop {
            let notified = self.changed.notified();
            if self.has_exited() {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.has_exited();
            }
        }
    }
}

/// Kills every process of `pod`, as the end of its container's PID namespace would: its process
/// group, and every process that carries its `LAMEDUCK_VERIFY_POD` marker (children that made
/// their own process group, such as the app under `lameduck run`). Each by its PID.
pub(super) async fn kill_all(pod: &PodState) {
    if let Ok(pid) = i32::try_from(pod.pid)
        && !pod.has_exited()
    {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let marker = format!("LAMEDUCK_VERIFY_POD={}", pod.marker);
    let pids = tokio::task::spawn_blocking(move || marked_processes(&marker))
        .await
        .unwrap_or_default();
    for pid in pids {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// PIDs whose environment holds exactly `entry` (this process excluded).
fn marked_processes(entry: &str) -> Vec<Pid> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}
