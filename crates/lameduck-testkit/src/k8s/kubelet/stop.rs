//! The end of pods: a deletion (preStop, SIGTERM, SIGKILL at the deadline, final DELETE)
//! and the kubelet going away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};

use super::{FakeKubelet, PodProcess, Running, Shared, probe, uid_of};

/// How long a pod's process is given to install its signal handlers before the kubelet's
/// SIGTERMs when it stops.
const HANDLERS_INSTALLED: Duration = Duration::from_millis(500);

/// How long the pods' processes get to exit after the kubelet's two SIGTERMs when it stops.
const STOP_PODS_GRACE: Duration = Duration::from_secs(3);

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.main.abort();
        let mut state = self.shared.state.lock().expect("kubelet state");
        // A pod the main task starts after this (its abort takes effect at its next await)
        // is stopped when its `Running` drops.
        state.stopping = true;
        let mut running: Vec<Running> = state.pods.drain().map(|(_, pod)| pod).collect();
        drop(state);
        let mut processes: Vec<(PodProcess, Instant)> = Vec::new();
        for pod in &mut running {
            for task in &pod.tasks {
                task.abort();
            }
            if let Some(process) = pod.process.take() {
                processes.push((process, pod.started));
            }
        }
        stop_processes(processes);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            stop_processes(vec![(process, self.started)]);
        }
    }
}

/// Stops pod processes as a kubelet that goes away would: SIGTERM twice (a wrapper such as
/// `lameduck run` drains on the first and on the second stops its app's process group at
/// once), then SIGKILL (by dropping them) for what is left after [`STOP_PODS_GRACE`]. A
/// SIGKILL alone would orphan a wrapper's app. A process started a moment ago may not handle
/// SIGTERM yet, and would die of it without stopping its children: it is given
/// [`HANDLERS_INSTALLED`] first.
fn stop_processes(mut processes: Vec<(PodProcess, Instant)>) {
    processes.retain_mut(|(process, _)| process.wait_exit(Duration::ZERO).is_none());
    let Some(youngest) = processes.iter().map(|(_, started)| started.elapsed()).min() else {
        return;
    };
    std::thread::sleep(HANDLERS_INSTALLED.saturating_sub(youngest));
    for (process, _) in &processes {
        signal(process.pid(), nix::sys::signal::Signal::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(50));
    for (process, _) in &processes {
        signal(process.pid(), nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_PODS_GRACE;
    for (process, _) in &mut processes {
        let _ = process.wait_exit(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The kubelet's part of a deletion: preStop, SIGTERM, SIGKILL at the deadline, final DELETE.
pub(super) fn begin_termination(shared: &Arc<Shared>, pod: &Pod) {
    let uid = uid_of(pod);
    let mut state = shared.state.lock().expect("kubelet state");
    let Some(running) = state.pods.get_mut(&uid) else {
        return; // never started here (e.g. unscheduled); the API server deletes it itself
    };
    if running.terminating {
        return;
    }
    running.terminating = true;
    // Probers stop: a terminating pod's readiness no longer matters to the endpoints.
    for task in running.tasks.drain(..) {
        task.abort();
    }
    let task = tokio::spawn(terminate(Arc::clone(shared), pod.clone()));
    running.tasks.push(task);
}

async fn terminate(shared: Arc<Shared>, pod: Pod) {
    let uid = uid_of(&pod);
    let grace = Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30),
    );
    let deadline = Instant::now() + grace;
    let net = {
        let state = shared.state.lock().expect("kubelet state");
        state.pods.get(&uid).map(|p| p.net.clone())
    };
    if let (Some(net), Some(spec)) = (net, pod.spec.as_ref()) {
        for container in &spec.containers {
            probe::pre_stop(container, &net, deadline).await;
        }
    }
    let pid = {
        let state = shared.state.lock().expect("kubelet state");
        state
            .pods
            .get(&uid)
            .and_then(|p| p.process.as_ref())
            .map(PodProcess::pid)
    };
    if let Some(pid) = pid {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
        // A preStop still running at the deadline gets a one-off 2 s extension in the real
        // kubelet; the process itself gets none.
        while Instant::now() < deadline && process_running(&shared, &uid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if process_running(&shared, &uid) {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let limit = Instant::now() + Duration::from_secs(5);
        while Instant::now() < limit && process_running(&shared, &uid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, "fake kubelet: final delete: {e}"),
    }
}

fn process_running(shared: &Shared, uid: &str) -> bool {
    let mut state = shared.state.lock().expect("kubelet state");
    state
        .pods
        .get_mut(uid)
        .and_then(|p| p.process.as_mut())
        .is_some_and(|process| process.wait_exit(Duration::ZERO).is_none())
}

pub(super) fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}
