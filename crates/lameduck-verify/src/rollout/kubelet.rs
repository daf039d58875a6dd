//! The kubelet's side of a replica: probing it for readiness, and running its termination
//! (preStop, stop signal, SIGKILL at the end of the grace). Separate from the executor, which
//! decides when pods start and stop; these tasks carry that out per pod, on their own timers.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pod::{PodState, kill_all};
use super::substitute;
use crate::events::{EventKind, EventLog};
use crate::scenario::{PreStop, Probe};

/// The kubelet's part of one pod's termination.
pub(super) struct Kubelet {
    pub(super) pod: Arc<PodState>,
    pub(super) log: EventLog,
    pub(super) pre_stop: Option<PreStop>,
    pub(super) signal: Signal,
    pub(super) signal_name: String,
    pub(super) grace: Duration,
    pub(super) env: BTreeMap<String, String>,
}

impl Kubelet {
    pub(super) async fn run(self, t0: Instant, notice: Duration) {
        let pod = &self.pod;
        let mut deadline = t0 + self.grace;
        tokio::time::sleep_until((t0 + notice).min(deadline)).await;
        if let Some(hook) = &self.pre_stop
            && !pod.has_exited()
        {
            self.log.push(Some(pod.id), None, EventKind::PreStopStarted);
            let ok = tokio::time::timeout_at(deadline, self.pre_stop(hook))
                .await
                .unwrap_or(false);
            self.log
                .push(Some(pod.id), None, EventKind::PreStopFinished { ok });
            if Instant::now() >= deadline {
                // The kubelet grants a one-off 2 s extension after a preStop that used the grace.
                deadline = Instant::now() + Duration::from_secs(2);
            }
        }
        if !pod.has_exited() {
            if let Ok(pid) = i32::try_from(pod.pid) {
                let _ = kill(Pid::from_raw(pid), self.signal);
            }
            self.log.push(
                Some(pod.id),
                None,
                EventKind::StopSignal {
                    signal: self.signal_name.clone(),
                },
            );
        }
        if !pod.wait_exit(deadline).await {
            self.log.push(Some(pod.id), None, EventKind::Killed);
            kill_all(pod).await;
            pod.wait_exit(Instant::now() + Duration::from_secs(10))
                .await;
        }
    }

    async fn pre_stop(&self, hook: &PreStop) -> bool {
        let pod = &self.pod;
        match hook {
            PreStop::Sleep(d) => {
                tokio::time::sleep(d.0).await;
                true
            }
            PreStop::Exec(argv) => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| substitute(a, pod.id, pod.port, pod.admin_port, pod.app_port))
                    .collect();
                let Some((program, args)) = argv.split_first() else {
                    return false;
                };
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                cmd.env("PORT", pod.port.to_string());
                for (k, v) in &self.env {
                    cmd.env(
                        k,
                        substitute(v, pod.id, pod.port, pod.admin_port, pod.app_port),
                    );
                }
                match cmd.spawn() {
                    Ok(mut child) => child.wait().await.is_ok_and(|s| s.success()),
                    Err(_) => false,
                }
            }
            PreStop::Http { path, port } => {
                http_get(pod.port_of(*port), path, Duration::from_secs(3600))
                    .await
                    .is_ok()
            }
        }
    }
}

/// Probes `pod` until it terminates or exits; flips readiness per the thresholds.
pub(super) async fn probe_loop(pod: Arc<PodState>, probe: Probe, log: EventLog) {
    tokio::time::sleep(probe.initial_delay.0).await;
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    let mut tick = tokio::time::interval(probe.period.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pod.is_terminating() || pod.has_exited() {
            return;
        }
        let port = pod.port_of(probe.port);
        let res = match &probe.path {
            Some(path) => http_get(port, path, probe.timeout.0).await,
            None => tokio::time::timeout(probe.timeout.0, TcpStream::connect(("127.0.0.1", port)))
                .await
                .map_err(|_| "timeout".to_string())
                .and_then(|r| r.map(drop).map_err(|e| e.to_string())),
        };
        *pod.last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = match &res {
            Ok(()) => "ok".into(),
            Err(e) => e.clone(),
        };
        if res.is_ok() {
            ok_run += 1;
            fail_run = 0;
            if !pod.is_ready() && ok_run >= probe.success_threshold {
                *pod.ready_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                pod.ready.store(true, Ordering::SeqCst);
                log.push(Some(pod.id), None, EventKind::PodReady);
                pod.changed.notify_waiters();
            }
        } else {
            fail_run += 1;
            ok_run = 0;
            if pod.is_ready() && fail_run >= probe.failure_threshold {
                pod.ready.store(false, Ordering::SeqCst);
                log.push(Some(pod.id), None, EventKind::PodUnready);
                pod.changed.notify_waiters();
            }
        }
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close`, as the kubelet's prober does; 200–399 is ok.
pub(crate) async fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.34\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let m = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
            if m == 0 {
                return Err("connection closed before a status line".into());
            }
            n += m;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = line
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP {code}"))
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}
