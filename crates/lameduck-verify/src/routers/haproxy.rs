//! A real HAProxy (2.6+) in the ingress role, driven through its runtime API.
//!
//! The backend is a `server-template` of disabled slots; adding a pod sets a slot's address and
//! puts it in `ready` state, withdrawing it puts the slot in `maint` (no new requests; requests in
//! flight finish), as HAProxy-based ingress controllers do without reloads. Every response carries
//! the chosen server's address in `x-lameduck-pod` (also HAProxy's own 502/503s), so failures are
//! attributed to pods. No retries unless `retry` (then one, on another server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{Endpoint, RouterError, find_binary, free_port, stop_child};
use crate::events::{PodId, RouterId};
use crate::scenario::RouterKind;

/// Server slots in the backend: pod N uses slot N + 1.
pub(crate) const SLOTS: u32 = 512;

pub(crate) struct HaproxyRouter {
    addr: SocketAddr,
    socket: PathBuf,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

impl HaproxyRouter {
    pub async fn start(
        id: RouterId,
        retry: bool,
        timeout: Duration,
        dir: PathBuf,
    ) -> Result<Self, RouterError> {
        let binary = find_binary("haproxy").ok_or(RouterError::Missing {
            binary: "haproxy",
            kind: RouterKind::Haproxy,
            package: "haproxy",
        })?;
        std::fs::create_dir_all(&dir).map_err(|e| RouterError::io("haproxy dir", e))?;
        let port = free_port().map_err(|e| RouterError::io("haproxy port", e))?;
        let socket = dir.join("admin.sock");
        let retries = if retry {
            "retries 1\n    option redispatch 1\n    retry-on conn-failure empty-response"
        } else {
            "retries 0"
        };
        let timeout_ms = timeout.as_millis().max(1000);
        let cfg = format!(
            "global\n    stats socket {sock} mode 600 level admin\n    maxconn 4000\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client {timeout_ms}ms\n    timeout server {timeout_ms}ms\n\
             \x20   timeout http-keep-alive 60s\n    timeout tunnel 1h\n    option http-keep-alive\n    {retries}\n\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
             \x20   http-after-response set-header x-lameduck-pod %si:%sp\n\n\
             backend be\n    balance roundrobin\n    http-reuse safe\n\
             \x20   server-template p 1-{SLOTS} 127.0.0.1:9 disabled\n",
            sock = socket.display()
        );
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).map_err(|e| RouterError::io("haproxy config", e))?;
        let log = std::fs::File::create(dir.join("haproxy.log"))
            .map_err(|e| RouterError::io("haproxy log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| RouterError::io("haproxy log", e))?;
        let child = tokio::process::Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RouterError::io("start haproxy", e))?;
        let router = Self {
            addr: ([127, 0, 0, 1], port).into(),
            socket,
            child: tokio::sync::Mutex::new(Some(child)),
        };
        // Ready when the runtime API answers and the frontend accepts.
        for _ in 0..100 {
            if router.command("show info").await.is_ok()
                && tokio::net::TcpStream::connect(router.addr).await.is_ok()
            {
                tracing::debug!(router = id, "haproxy up on {}", router.addr);
                return Ok(router);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
        router.shutdown().await;
        Err(RouterError::Rejected {
            kind: RouterKind::Haproxy,
            message: format!("did not start: {}", log.trim()),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn command(&self, cmd: &str) -> Result<String, RouterError> {
        let mut s = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| RouterError::io("haproxy runtime API", e))?;
        s.write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| RouterError::io("haproxy runtime API", e))?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .map_err(|_| RouterError::Rejected {
                kind: RouterKind::Haproxy,
                message: format!("`{cmd}` timed out"),
            })?
            .map_err(|e| RouterError::io("haproxy runtime API", e))?;
        Ok(out)
    }

    async fn expect_empty(&self, cmd: &str) -> Result<(), RouterError> {
        let out = self.command(cmd).await?;
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(RouterError::Rejected {
                kind: RouterKind::Haproxy,
                message: format!("`{cmd}`: {}", out.trim()),
            })
        }
    }

    fn slot(pod: PodId) -> Result<u32, RouterError> {
        if pod + 1 > SLOTS {
            return Err(RouterError::Rejected {
                kind: RouterKind::Haproxy,
                message: format!("more than {SLOTS} pods in one run"),
            });
        }
        Ok(pod + 1)
    }

    pub async fn add(&self, ep: Endpoint) -> Result<(), RouterError> {
        let slot = Self::slot(ep.pod)?;
        let out = self
            .command(&format!(
                "set server be/p{slot} addr {} port {}",
                ep.addr.ip(),
                ep.addr.port()
            ))
            .await?;
        if !out.contains("changed") && !out.trim().is_empty() && !out.contains("no need to change")
        {
            return Err(RouterError::Rejected {
                kind: RouterKind::Haproxy,
                message: out.trim().to_owned(),
            });
        }
        self.expect_empty(&format!("set server be/p{slot} state ready"))
            .await
    }

    pub async fn remove(&self, pod: PodId) -> Result<(), RouterError> {
        let slot = Self::slot(pod)?;
        self.expect_empty(&format!("set server be/p{slot} state maint"))
            .await
    }

    pub async fn shutdown(&self) {
        if let Some(child) = self.child.lock().await.take() {
            stop_child(child).await;
        }
    }
}
