//! `lameduck run` end to end, in one test binary (linked once): the supervisor and its helper
//! subcommands, the drain proxy's traffic, its message framing, protocol detection and the
//! client's address. Real child processes, real signals (sent only to processes these tests
//! started, by PID), real loopback sockets; the helpers are `lameduck-testkit`'s.

#![allow(clippy::unwrap_used)]

mod client_address;
mod detect;
mod lifecycle;
mod proxy;
mod proxy_bodies;

/// The `lameduck` binary under test, for commands that run it as an app or a helper.
const LAMEDUCK: &str = env!("CARGO_BIN_EXE_lameduck");

/// Debian's HAProxy, or `None` after a notice (a failure under `CI=true`, which installs it).
fn haproxy() -> Option<std::path::PathBuf> {
    let found = lameduck_testkit::installed("haproxy");
    lameduck_testkit::needed_or_skip(found, "haproxy", "apt-get install haproxy")
}
