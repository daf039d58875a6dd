//! A real nginx in the ingress role, driven by reloads.
//!
//! Every endpoint change rewrites the `upstream` block (atomically, by rename) and sends SIGHUP
//! to the master process: new workers take the new configuration, old workers finish their
//! requests and close their keep-alive connections, as with ingress-nginx when its dynamic
//! (Lua) balancer is off. Old workers close their idle client keep-alive connections on a
//! reload, which races with clients sending on them: a failure caused by nginx, not by the app.
//! So that the verdict is about the app, clients get one request per connection here
//! (`keepalive_timeout 0`); upstream connections are pooled (`keepalive 64`). Responses carry `$upstream_addr` in `x-lameduck-pod`. No retries
//! (`proxy_next_upstream off`) unless `retry` (then one, on another server).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Endpoint, RouterError, find_binary, free_port, stop_child};
use crate::events::{PodId, RouterId};
use crate::scenario::RouterKind;

pub(crate) struct NginxRouter {
    addr: SocketAddr,
    dir: PathBuf,
    state: tokio::sync::Mutex<State>,
}

struct State {
    endpoints: BTreeMap<PodId, SocketAddr>,
    child: Option<tokio::process::Child>,
}

impl NginxRouter {
    pub async fn start(
        id: RouterId,
        retry: bool,
        timeout: Duration,
        dir: PathBuf,
    ) -> Result<Self, RouterError> {
        let binary = find_binary("nginx").ok_or(RouterError::Missing {
            binary: "nginx",
            kind: RouterKind::Nginx,
            package: "nginx",
        })?;
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| RouterError::io("nginx dir", e))?;
        let port = free_port().map_err(|e| RouterError::io("nginx port", e))?;
        let d = dir.display();
        let next = if retry {
            "proxy_next_upstream error timeout http_502;\n            proxy_next_upstream_tries 2;"
        } else {
            "proxy_next_upstream off;"
        };
        let secs = timeout.as_secs().max(1);
        let user = if nix::unistd::Uid::effective().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let cfg = format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/tmp;\n    proxy_temp_path {d}/tmp;\n\
             \x20   fastcgi_temp_path {d}/tmp;\n    uwsgi_temp_path {d}/tmp;\n    scgi_temp_path {d}/tmp;\n\
             \x20   map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}\n\
             \x20   include {d}/upstream.conf;\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n        keepalive_timeout 0;\n\
             \x20       location / {{\n            proxy_pass http://be;\n            proxy_http_version 1.1;\n\
             \x20           proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;\n\
             \x20           proxy_connect_timeout 1s;\n            proxy_read_timeout {secs}s;\n            proxy_buffering off;\n\
             \x20           {next}\n            add_header x-lameduck-pod $upstream_addr always;\n        }}\n    }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), cfg)
            .map_err(|e| RouterError::io("nginx config", e))?;
        let router = Self {
            addr: ([127, 0, 0, 1], port).into(),
            dir: dir.clone(),
            state: tokio::sync::Mutex::new(State {
                endpoints: BTreeMap::new(),
                child: None,
            }),
        };
        router.write_upstream(&BTreeMap::new())?;
        let log = std::fs::File::create(dir.join("nginx.log"))
            .map_err(|e| RouterError::io("nginx log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| RouterError::io("nginx log", e))?;
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RouterError::io("start nginx", e))?;
        router.state.lock().await.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(router.addr).await.is_ok() {
                tracing::debug!(router = id, "nginx up on {}", router.addr);
                return Ok(router);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(dir.join("nginx.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        router.shutdown().await;
        Err(RouterError::Rejected {
            kind: RouterKind::Nginx,
            message: format!("did not start: {}", log.trim()),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn write_upstream(&self, endpoints: &BTreeMap<PodId, SocketAddr>) -> Result<(), RouterError> {
        let mut s = String::from("upstream be {\n");
        if endpoints.is_empty() {
            // An upstream needs a server: a down one makes nginx answer 502.
            s.push_str("    server 127.0.0.1:9 down;\n");
        }
        for addr in endpoints.values() {
            s.push_str(&format!("    server {addr} max_fails=0;\n"));
        }
        s.push_str("    keepalive 64;\n}\n");
        let tmp = self.dir.join("upstream.conf.tmp");
        std::fs::write(&tmp, s).map_err(|e| RouterError::io("nginx upstream", e))?;
        std::fs::rename(&tmp, self.dir.join("upstream.conf"))
            .map_err(|e| RouterError::io("nginx upstream", e))
    }

    async fn apply(
        &self,
        change: impl FnOnce(&mut BTreeMap<PodId, SocketAddr>),
    ) -> Result<(), RouterError> {
        let mut st = self.state.lock().await;
        change(&mut st.endpoints);
        self.write_upstream(&st.endpoints)?;
        let pid = st
            .child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .and_then(|p| i32::try_from(p).ok());
        match pid {
            Some(pid) => {
                kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| RouterError::Rejected {
                    kind: RouterKind::Nginx,
                    message: format!("reload: {e}"),
                })
            }
            None => Err(RouterError::Rejected {
                kind: RouterKind::Nginx,
                message: "nginx is not running".into(),
            }),
        }
    }

    pub async fn add(&self, ep: Endpoint) -> Result<(), RouterError> {
        self.apply(|eps| {
            eps.insert(ep.pod, ep.addr);
        })
        .await
    }

    pub async fn remove(&self, pod: PodId) -> Result<(), RouterError> {
        self.apply(|eps| {
            eps.remove(&pod);
        })
        .await
    }

    pub async fn shutdown(&self) {
        if let Some(child) = self.state.lock().await.child.take() {
            stop_child(child).await;
        }
    }
}
