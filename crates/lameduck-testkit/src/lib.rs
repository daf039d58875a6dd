//! Test support shared by lameduck's integration tests: child processes whose output can be
//! awaited line by line, HTTP clients that expose what the server did to the connection, and
//! waits bounded in count and time.

mod child;
mod http;

pub use child::{Child, example_path};
pub use http::{Http1Conn, Reply, get_once, raw_connect};
pub use nix::sys::signal::Signal;

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
