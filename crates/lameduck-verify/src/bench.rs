//! Support for benchmarks of the testbed's parts (not a stable API).

use std::net::SocketAddr;

use crate::routers::{Endpoint, RouterError, l7::L7Router};

/// Starts an embedded L7 router on a free loopback port, routing to `backends` (no retries),
/// and returns its address. It serves until the runtime ends.
pub async fn serve_l7(backends: &[SocketAddr]) -> Result<SocketAddr, RouterError> {
    let router = L7Router::start(0, false).await?;
    for (i, addr) in backends.iter().enumerate() {
        router.table().add(Endpoint {
            pod: u32::try_from(i).unwrap_or(u32::MAX),
            addr: *addr,
        });
    }
    Ok(router.addr())
}
