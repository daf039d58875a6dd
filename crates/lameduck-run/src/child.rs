//! Starting the app and describing how it ended.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getppid};

use crate::RunError;

/// How the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl ChildExit {
    /// The exit code a shell would report: the code, or 128 + the signal number.
    pub fn code(self) -> u8 {
        match self {
            Self::Code(code) => u8::try_from(code & 0xff).unwrap_or(1),
            Self::Signal(signal) => 128_u8.wrapping_add(signal as u8),
        }
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => write!(f, "signal {signal} (exit code {})", self.code()),
        }
    }
}

pub use lameduck_settings::app::ForwardTo;

/// Starts `command` as the leader of a new process group, with the wrapper's stdio and
/// environment. Its exit status is collected by the reaper (`waitpid(-1)`), not by `std`.
///
/// The app gets SIGKILL if `lameduck run` dies (a parent-death signal set before exec), so a
/// killed wrapper does not leave it running unsupervised. The kernel sends that signal when the
/// *thread* that forked the app ends, not the process: so the app is forked from a thread of
/// its own that never ends, whatever thread the caller's runtime polls this from.
pub(crate) fn spawn(command: &[OsString]) -> Result<Pid, RunError> {
    let (program, _) = command.split_first().ok_or(RunError::NoCommand)?;
    let name = program.to_string_lossy().into_owned();
    let thread_failed = |source| RunError::Spawn {
        program: name.clone(),
        source,
    };
    let command = command.to_vec();
    let (sender, spawned) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("lameduck-app-parent".to_owned())
        .spawn(move || {
            let _ = sender.send(spawn_here(&command));
            // Parked for the rest of the process: the app's parent-death signal is tied to
            // this thread's life.
            loop {
                std::thread::park();
            }
        })
        .map_err(thread_failed)?;
    spawned
        .recv()
        .map_err(|_| thread_failed(std::io::Error::other("the spawning thread ended")))?
}

fn spawn_here(command: &[OsString]) -> Result<Pid, RunError> {
    let (program, args) = command.split_first().ok_or(RunError::NoCommand)?;
    let name = program.to_string_lossy().into_owned();
    let mut command = std::process::Command::new(program);
    command.args(args).process_group(0);
    die_with_parent(&mut command);
    let child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RunError::NotFound {
            program: name.clone(),
        },
        std::io::ErrorKind::PermissionDenied => RunError::NotExecutable {
            program: name.clone(),
            source,
        },
        _ if source.raw_os_error() == Some(nix::libc::ENOEXEC) => RunError::NotExecutable {
            program: name.clone(),
            source,
        },
        _ => RunError::Spawn {
            program: name.clone(),
            source,
        },
    })?;
    let pid = i32::try_from(child.id()).map_err(|_| RunError::Spawn {
        program: name,
        source: std::io::Error::other("process id out of range"),
    })?;
    // Dropping a std Child neither waits for nor kills the process; the reaper owns it now.
    drop(child);
    Ok(Pid::from_raw(pid))
}

/// Makes the process `command` starts get SIGKILL when its parent (thread) ends.
///
/// If the parent died between fork and this call, the signal would never come: the child sees
/// a new parent then and fails to start instead.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it makes two system calls (prctl, getppid) and builds errors from raw
    // numbers, without allocating or taking locks.
    unsafe {
        command.pre_exec(move || {
            prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))?;
            if u32::try_from(getppid().as_raw()) != Ok(parent) {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(ChildExit::Code(3).code(), 3);
        assert_eq!(ChildExit::Signal(Signal::SIGKILL).code(), 137);
        assert_eq!(ChildExit::Signal(Signal::SIGTERM).code(), 143);
    }
}
