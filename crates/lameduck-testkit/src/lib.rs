//! Test support shared by lameduck's integration tests: child processes whose output can be
//! awaited line by line, `lameduck run` under test, HTTP clients (async with hyper, blocking by
//! hand) that expose what the server did to the connection, a temporary directory, and waits
//! bounded in count and time.

pub mod apps;
pub mod blocking_http;
mod child;
mod http;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod process;
pub mod wrapper;

pub use child::{Child, example_path};
pub use http::{Http1Conn, Reply, get_once, raw_connect};
pub use nix::sys::signal::Signal;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it returns `Some`, for at most `limit`.
///
/// Bounded in time and, through `every`, in count.
pub async fn poll_until<T, F, Fut>(limit: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// `found` (something a test needs), or `None` after a `SKIPPED` notice naming `what` and
/// `how` to get it. Under `CI=true` a missing one fails the test instead: CI installs
/// everything the tests use.
pub fn needed_or_skip<T>(found: Option<T>, what: &str, how: &str) -> Option<T> {
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is needed by this test ({how})"
        );
        eprintln!("SKIPPED: {what} is missing ({how})");
    }
    found
}

/// Where a program from a Debian package is installed (daemons live in `sbin`, which a test's
/// `PATH` may not hold).
pub fn installed(program: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .into_iter()
    .map(|dir| Path::new(dir).join(program))
    .find(|path| path.is_file())
}
