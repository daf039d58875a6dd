//! A guard process that ends the app's process group if `lameduck run` is killed.
//!
//! The app's parent-death signal (see `child::spawn`) ends the app's main process, but not what
//! it started: nginx's workers, for one, run on after their master is SIGKILLed. Nothing can run
//! in a process after SIGKILL, so a second, tiny process does it: `lameduck run` holds the
//! write end of a pipe whose read end is the guard's stdin. The kernel closes that end however
//! `lameduck run` ends; the guard reads end-of-file and SIGKILLs the app's process group, unless
//! `lameduck run` said first that the group is gone (the normal exit).
//!
//! In a container, `lameduck run` is PID 1, and the kernel kills every process of the
//! container when PID 1 dies: no guard is started there.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::unistd::{Pid, pipe2};

/// The hidden subcommand of the `lameduck` binary that runs [`guard_main`].
pub const GUARD_SUBCOMMAND: &str = "guard-process-group";

/// What `lameduck run` writes before it exits normally: the group is gone, nothing to do.
const RELEASED: &[u8] = b"released\n";

/// The most a guard reads from its pipe (it expects [`RELEASED`] or nothing).
const MAX_MESSAGE: u64 = 64;

/// `lameduck run`'s end of a running guard.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pipe: std::fs::File,
    pid: Pid,
}

impl GroupGuard {
    /// Starts `program GUARD_SUBCOMMAND PGID` in a process group of its own (so a signal to
    /// `lameduck run`'s group does not reach it) with the read end of a new pipe as stdin.
    pub(crate) fn start(program: &OsString, pgid: Pid) -> std::io::Result<Self> {
        // Close-on-exec on both ends: neither the app nor the guard's own children keep the
        // write end open, or the guard would not see `lameduck run` die.
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        let child = Command::new(program)
            .arg(GUARD_SUBCOMMAND)
            .arg(pgid.as_raw().to_string())
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
        Ok(Self {
            pipe: std::fs::File::from(write),
            pid,
        })
    }

    /// The guard's process id (the reaper collects it like any other child).
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Tells the guard the group is gone; it exits without signalling anything.
    pub(crate) fn release(mut self) {
        if let Err(error) = self.pipe.write_all(RELEASED) {
            tracing::debug!(%error, "the process-group guard is gone already");
        }
    }
}

/// The guard process: waits for end-of-file on stdin, then SIGKILLs process group `pgid` unless
/// it was released. Termination signals are blocked, so a Ctrl-C or a signal meant for
/// `lameduck run` does not end the guard first. Returns the exit code.
pub fn guard_main(pgid: &str) -> u8 {
    let pgid = match pgid.parse::<i32>() {
        Ok(pgid) if pgid > 1 => Pid::from_raw(pgid),
        _ => {
            eprintln!("lameduck {GUARD_SUBCOMMAND}: {pgid:?} is not a process group id");
            return 2;
        }
    };
    let mut blocked = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
        Signal::SIGALRM,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        blocked.add(signal);
    }
    let _ = blocked.thread_block();
    let mut message = Vec::new();
    // Blocks until `lameduck run` writes and closes, or dies (end-of-file either way).
    let _ = std::io::stdin().take(MAX_MESSAGE).read_to_end(&mut message);
    if message == RELEASED {
        return 0;
    }
    // An error is ESRCH: the group had ended too.
    if killpg(pgid, Signal::SIGKILL).is_ok() {
        eprintln!(
            "lameduck {GUARD_SUBCOMMAND}: lameduck run ended without stopping its app; killed \
             the app's process group {pgid}"
        );
    }
    0
}
