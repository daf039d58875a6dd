//! A real haproxy router (not built yet).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Endpoint, RouterError};
use crate::events::{PodId, RouterId};
use crate::scenario::RouterKind;

pub(crate) struct HaproxyRouter {
    addr: SocketAddr,
}

impl HaproxyRouter {
    pub async fn start(
        _id: RouterId,
        _retry: bool,
        _timeout: Duration,
        _dir: PathBuf,
    ) -> Result<Self, RouterError> {
        Err(RouterError::Missing {
            binary: "haproxy",
            kind: RouterKind::Haproxy,
            package: "haproxy",
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn add(&self, _ep: Endpoint) -> Result<(), RouterError> {
        Ok(())
    }

    pub async fn remove(&self, _pod: PodId) -> Result<(), RouterError> {
        Ok(())
    }

    pub async fn shutdown(&self) {}
}
