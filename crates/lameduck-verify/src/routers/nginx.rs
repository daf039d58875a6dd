//! A real nginx router (not built yet).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Endpoint, RouterError};
use crate::events::{PodId, RouterId};
use crate::scenario::RouterKind;

pub(crate) struct NginxRouter {
    addr: SocketAddr,
}

impl NginxRouter {
    pub async fn start(
        _id: RouterId,
        _retry: bool,
        _timeout: Duration,
        _dir: PathBuf,
    ) -> Result<Self, RouterError> {
        Err(RouterError::Missing {
            binary: "nginx",
            kind: RouterKind::Nginx,
            package: "nginx",
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
