//! The library's error type.

use std::net::SocketAddr;

/// What can go wrong setting up or running lameduck.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `LAMEDUCK_*` setting is invalid.
    #[error(transparent)]
    Config(#[from] lameduck_core::ConfigError),
    /// `LAMEDUCK_ADMIN_ADDR` is not a socket address.
    #[error("LAMEDUCK_ADMIN_ADDR: {value:?} is not an address like 0.0.0.0:8686")]
    AdminAddr {
        /// The value as given.
        value: String,
    },
    /// The admin listener could not bind.
    #[error("cannot listen for the admin endpoints on {addr}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The serving listener failed for good.
    #[error("listener failed")]
    Listener(#[source] std::io::Error),
}
