//! The PID-1 supervisor of `lameduck run`.
//!
//! `lameduck run -- CMD` is a container entrypoint for apps that stop (or die) the moment they
//! get SIGTERM. It runs `CMD` in its own process group and does what PID 1 must (reap every
//! zombie, forward signals, exit with the child's code), and it puts the lameduck drain in front
//! of the app's stop:
//!
//! ```text
//! SIGTERM ─► Draining (/readyz 503, traffic still served) ─► drain wait ends by evidence
//!         ─► Closing (proxy stops accepting, in-flight requests finish)
//!         ─► stop signal to the app's process group ─► app exits ─► exit with its code
//!                                      └─ at the budget's forced close: SIGKILL the group
//! ```
//!
//! The lifecycle, budget and drain wait are the shared core (`lameduck-core`), driven through
//! the `lameduck` library handle; the optional drain proxy is `lameduck-proxy`.

mod balance;
mod child;
mod error;
mod guard;
mod probe;
mod proxy;
mod reaper;
mod signals;
mod supervisor;

pub use child::{ChildExit, ForwardTo};
pub use error::{NOT_EXECUTABLE, NOT_FOUND, RunError, SETUP_FAILED};
pub use guard::{GUARD_SUBCOMMAND, guard_main};
pub use lameduck::Builder;
pub use lameduck_core::{SETTINGS, Settings, parse_duration, parse_duration_value, parse_signal};
pub use lameduck_proxy::{
    ClientAddress, DEFAULT_DETECT_TIMEOUT, Protocol, ProxySpec, SpecError, UpstreamProtocol,
};
pub use lameduck_settings::app::TargetError;
pub use nix::sys::signal::Signal;
pub use probe::{ProbeError, Target, check, request_drain};
pub use supervisor::{LEFTOVER_GRACE, ProxyConfig, RunConfig, run};
