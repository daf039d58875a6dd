//! Replicas and the rolling-update executor, on the Kubernetes timeline.
//!
//! Per deleted pod: t0 (the endpoints controller marks it not ready and every router withdraws it
//! after its own delay) → the kubelet notices after `kubeletDelay` → preStop (exec, sleep or
//! httpGet) → stop signal → SIGKILL at t0 + grace (or 2 s after a preStop that outlived the
//! grace). The grace countdown starts at t0, before preStop. When the replica's main process ends,
//! the rest of its process group is killed, as the container's PID namespace would be.
//!
//! The rollout follows the Deployment controller: new pods are created while
//! `old + new < replicas + maxSurge`; old pods are deleted while
//! `available > replicas - maxUnavailable`, where a new pod is available once it was ready for
//! `minReadySeconds`. Terminating pods count for neither (as in Kubernetes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::events::{EventKind, EventLog, PodId};
use crate::routers::{Endpoint, PodDirectory, Propagator, draw, free_port};
use crate::scenario::{Scenario, parse_signal};

mod controller;
mod kubelet;
mod pod;

use controller::{Seen, decide};
pub(crate) use kubelet::http_get;
use kubelet::{Kubelet, probe_loop};
pub use pod::PodError;
pub(crate) use pod::PodState;
use pod::kill_all;

/// Replaces `{port}`, `{admin_port}`, `{app_port}`, `{pod}`.
fn substitute(s: &str, id: PodId, port: u16, admin: u16, app: u16) -> String {
    s.replace("{port}", &port.to_string())
        .replace("{admin_port}", &admin.to_string())
        .replace("{app_port}", &app.to_string())
        .replace("{pod}", &id.to_string())
}

/// Runs the replicas and the rollouts of one scenario.
pub(crate) struct Executor {
    sc: Scenario,
    log: EventLog,
    propagator: Arc<Propagator>,
    directory: Arc<PodDirectory>,
    workdir: PathBuf,
    /// Unique per run: the prefix of every replica's `LAMEDUCK_VERIFY_POD`.
    token: String,
    pods: Vec<Arc<PodState>>,
    next_id: PodId,
    rng: Mutex<StdRng>,
    kubelets: TaskTracker,
}

impl Executor {
    pub fn new(
        sc: Scenario,
        log: EventLog,
        propagator: Arc<Propagator>,
        directory: Arc<PodDirectory>,
        workdir: PathBuf,
    ) -> Self {
        let rng = Mutex::new(StdRng::seed_from_u64(sc.seed.wrapping_add(0x5EED)));
        let token = workdir.file_name().map_or_else(
            || std::process::id().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self {
            sc,
            log,
            propagator,
            directory,
            workdir,
            token,
            pods: Vec::new(),
            next_id: 0,
            rng,
            kubelets: TaskTracker::new(),
        }
    }

    /// Every replica ever started.
    pub fn pods(&self) -> &[Arc<PodState>] {
        &self.pods
    }

    /// Live pods, and how many of them are terminating.
    pub fn counts(&self) -> (usize, usize) {
        let alive = self.pods.iter().filter(|p| !p.has_exited()).count();
        let term = self
            .pods
            .iter()
            .filter(|p| p.is_terminating() && !p.has_exited())
            .count();
        (alive, term)
    }

    fn spawn_pod(&mut self, revision: u32) -> Result<Arc<PodState>, PodError> {
        let id = self.next_id;
        self.next_id += 1;
        let (port, admin_port, app_port) = (
            free_port().map_err(PodError::Io)?,
            free_port().map_err(PodError::Io)?,
            free_port().map_err(PodError::Io)?,
        );
        let template = if revision > 0 {
            self.sc.new_command.as_ref().unwrap_or(&self.sc.command)
        } else {
            &self.sc.command
        };
        let argv: Vec<String> = template
            .iter()
            .map(|a| substitute(a, id, port, admin_port, app_port))
            .collect();
        let command = argv.join(" ");
        let log = self.workdir.join(format!("pod-{id}.log"));
        let out = std::fs::File::create(&log).map_err(PodError::Io)?;
        let err = out.try_clone().map_err(PodError::Io)?;
        let Some((program, args)) = argv.split_first() else {
            return Err(PodError::Spawn {
                command,
                source: std::io::Error::other("empty command"),
            });
        };
        let marker = format!("{}/{id}", self.token);
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .env("PORT", port.to_string())
            .env("LAMEDUCK_VERIFY_POD", &marker);
        for (k, v) in &self.sc.env {
            cmd.env(k, substitute(v, id, port, admin_port, app_port));
        }
        let mut child = cmd.spawn().map_err(|source| PodError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let pod = Arc::new(PodState {
            id,
            revision,
            port,
            admin_port,
            app_port,
            pid,
            command,
            log,
            marker,
            ready: AtomicBool::new(false),
            ready_at: Mutex::new(None),
            published: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            exit_status: Mutex::new(None),
            last_probe: Mutex::new("no probe yet".into()),
            changed: Notify::new(),
        });
        self.directory.insert(port, id);
        self.log
            .push(Some(id), None, EventKind::PodStarted { pid, revision });
        let (p, log) = (Arc::clone(&pod), self.log.clone());
        tokio::spawn(async move {
            let status = child.wait().await;
            let (code, signal) = match &status {
                Ok(s) => (s.code(), std::os::unix::process::ExitStatusExt::signal(s)),
                Err(_) => (None, None),
            };
            log.push(Some(p.id), None, EventKind::Exited { code, signal });
            *p.exit_status.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(match (code, signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (_, Some(s)) => format!("signal {s}"),
                    _ => "unknown status".into(),
                });
            // The container's PID namespace goes with its PID 1.
            kill_all(&p).await;
            p.exited.store(true, Ordering::SeqCst);
            p.changed.notify_waiters();
        });
        tokio::spawn(probe_loop(
            Arc::clone(&pod),
            self.sc.readiness.clone(),
            self.log.clone(),
        ));
        self.pods.push(Arc::clone(&pod));
        Ok(pod)
    }

    fn check_startup(&self, pod: &PodState, since: Instant) -> Result<(), PodError> {
        if pod.has_exited() && !pod.is_terminating() && !pod.available(Duration::ZERO) {
            return Err(PodError::ExitedEarly {
                pod: pod.id,
                status: pod
                    .exit_status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_default(),
                command: pod.command.clone(),
                log: tail(&pod.log),
            });
        }
        if !pod.is_ready() && since.elapsed() > self.sc.startup_timeout.0 {
            return Err(PodError::NotReady {
                pod: pod.id,
                timeout: self.sc.startup_timeout.0,
                addr: format!("127.0.0.1:{}", pod.port_of(self.sc.readiness.port)),
                last: pod
                    .last_probe
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
                command: pod.command.clone(),
                log: tail(&pod.log),
            });
        }
        Ok(())
    }

    /// Starts the first revision and puts every replica behind every router at once.
    pub async fn start_initial(&mut self) -> Result<(), PodError> {
        let started = Instant::now();
        let mut pods = Vec::new();
        for _ in 0..self.sc.replicas {
            pods.push(self.spawn_pod(0)?);
        }
        loop {
            for p in &pods {
                self.check_startup(p, started)?;
            }
            if pods.iter().all(|p| p.is_ready()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for p in &pods {
            p.published.store(true, Ordering::SeqCst);
            let _ = self
                .propagator
                .add_now(Endpoint {
                    pod: p.id,
                    addr: ([127, 0, 0, 1], p.port).into(),
                })
                .await;
        }
        Ok(())
    }

    /// Publishes readiness changes of non-terminating pods to the routers.
    fn sync_endpoints(&self) {
        for p in &self.pods {
            if p.is_terminating() || p.has_exited() {
                continue;
            }
            let ready = p.is_ready();
            if ready != p.published.load(Ordering::SeqCst) {
                p.published.store(ready, Ordering::SeqCst);
                if ready {
                    self.propagator.publish_add(Endpoint {
                        pod: p.id,
                        addr: ([127, 0, 0, 1], p.port).into(),
                    });
                } else {
                    self.propagator.publish_remove(p.id);
                }
            }
        }
    }

    /// One rolling update to `revision`; returns when every new pod is available and every old
    /// pod has exited.
    pub async fn rolling_update(&mut self, revision: u32) -> Result<(), PodError> {
        let n = self.sc.replicas as usize;
        let surge = self.sc.max_surge.resolve(self.sc.replicas, true) as usize;
        let unavailable = self.sc.max_unavailable.resolve(self.sc.replicas, false) as usize;
        let min_ready = self.sc.min_ready.0;
        let mut new: Vec<(Arc<PodState>, Instant)> = Vec::new();
        let seen = |p: &PodState, min_ready: Duration| Seen {
            id: p.id,
            ready: p.is_ready(),
            available: p.available(min_ready),
        };
        loop {
            self.sync_endpoints();
            for (p, since) in &new {
                self.check_startup(p, *since)?;
            }
            let old: Vec<Arc<PodState>> = self
                .pods
                .iter()
                .filter(|p| p.revision < revision && !p.is_terminating() && !p.has_exited())
                .cloned()
                .collect();
            let decision = decide(
                &old.iter()
                    .map(|p| seen(p, Duration::ZERO))
                    .collect::<Vec<_>>(),
                &new.iter()
                    .map(|(p, _)| seen(p, min_ready))
                    .collect::<Vec<_>>(),
                n,
                surge,
                unavailable,
            );
            for _ in 0..decision.create {
                let p = self.spawn_pod(revision)?;
                new.push((p, Instant::now()));
            }
            for id in &decision.delete {
                if let Some(p) = old.iter().find(|p| p.id == *id) {
                    self.terminate(p);
                }
            }
            if decision.done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.sync_endpoints();
        self.wait_terminations().await;
        Ok(())
    }

    /// Waits until every terminating pod exited (the kubelet tasks bound this by the grace).
    pub async fn wait_terminations(&self) {
        self.kubelets.close();
        self.kubelets.wait().await;
        self.kubelets.reopen();
    }

    /// t0 for `pod`: delete it and run the kubelet's side of its termination in the background.
    fn terminate(&self, pod: &Arc<PodState>) {
        pod.terminating.store(true, Ordering::SeqCst);
        self.log.push(Some(pod.id), None, EventKind::PodDeleted);
        if pod.published.swap(false, Ordering::SeqCst) {
            self.propagator.publish_remove(pod.id);
        }
        let t0 = Instant::now();
        let notice = draw(
            &self.sc.kubelet_delay,
            &mut self.rng.lock().unwrap_or_else(PoisonError::into_inner),
        );
        let kubelet = Kubelet {
            pod: Arc::clone(pod),
            log: self.log.clone(),
            pre_stop: self.sc.pre_stop.clone(),
            signal: parse_signal(&self.sc.stop_signal).unwrap_or(Signal::SIGTERM),
            signal_name: self.sc.stop_signal.clone(),
            grace: self.sc.grace.0,
            env: self.sc.env.clone(),
        };
        self.kubelets.spawn(kubelet.run(t0, notice));
    }

    /// Kills every replica still running (end of the run; not part of the timeline).
    pub async fn teardown(&self) {
        for p in &self.pods {
            kill_all(p).await;
        }
        let until = Instant::now() + Duration::from_secs(5);
        for p in &self.pods {
            p.wait_exit(until).await;
        }
    }
}

/// The last lines of a replica's log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        format!("(nothing; log {})", path.display())
    } else {
        format!(
            "{} (log {})",
            lines.into_iter().rev().collect::<Vec<_>>().join(" | "),
            path.display()
        )
    }
}
