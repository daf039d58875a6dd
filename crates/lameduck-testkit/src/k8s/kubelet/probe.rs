//! The kubelet's probes and preStop hooks, run against a pod's loopback ports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::status::container_readiness;
use super::{PodNet, Shared};

/// The container port a probe or hook names (by number or by the container port's name).
fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The port `probe` connects to, if it is an `httpGet` or `tcpSocket` probe.
pub(super) fn probe_port(probe: &Probe, container: &Container) -> Option<u16> {
    if let Some(get) = &probe.http_get {
        return resolve_port(&get.port, container);
    }
    probe
        .tcp_socket
        .as_ref()
        .and_then(|tcp| resolve_port(&tcp.port, container))
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

/// Probes one container's readiness with the kubelet's thresholds (initial delay, period,
/// timeout, success and failure thresholds) and reports each change. It runs for as long as
/// the pod does: the kubelet aborts it when termination starts or the pod is forgotten.
pub(super) async fn readiness(
    shared: Arc<Shared>,
    uid: String,
    index: usize,
    container: Container,
    net: PodNet,
) {
    let Some(probe) = container.readiness_probe.clone() else {
        return;
    };
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let successes_needed = probe.success_threshold.unwrap_or(1).max(1);
    let failures_needed = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let (mut ready, mut successes, mut failures) = (false, 0, 0);
    loop {
        let ok = tokio::time::timeout(timeout, check(&probe, &container, &net))
            .await
            .unwrap_or(false);
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let verdict = if !ready && successes >= successes_needed {
            Some(true)
        } else if ready && failures >= failures_needed {
            Some(false)
        } else {
            None
        };
        if let Some(now) = verdict {
            ready = now;
            container_readiness(&shared, &uid, index, ready).await;
        }
        tokio::time::sleep(period).await;
    }
}

/// One probe: `httpGet` succeeds on a status in 200..400, `tcpSocket` on a connect; `exec`
/// cannot run in a container that does not exist, so it counts as a success (said once in
/// the log).
async fn check(probe: &Probe, container: &Container, net: &PodNet) -> bool {
    if let Some(get) = &probe.http_get {
        return http_get(get, container, net).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(addr) = resolve_port(&tcp.port, container).and_then(|p| net.loopback(p)) else {
            return false;
        };
        return tokio::net::TcpStream::connect(addr).await.is_ok();
    }
    if probe.exec.is_some() {
        tracing::info!(container = %container.name, "fake kubelet: exec probe counted as passing");
    }
    true
}

async fn http_get(get: &HTTPGetAction, container: &Container, net: &PodNet) -> bool {
    let Some(addr) = resolve_port(&get.port, container).and_then(|p| net.loopback(p)) else {
        return false;
    };
    let path = get.path.as_deref().unwrap_or("/");
    crate::get_once(addr, path)
        .await
        .is_ok_and(|reply| (200..400).contains(&reply.status.as_u16()))
}

/// The container's `preStop` hook: `sleep` and `httpGet` run as the kubelet runs them (an
/// `httpGet` against the loopback port); `exec` is skipped with a log line, since it would run
/// on this machine rather than in a container. Never past `deadline`.
pub(super) async fn pre_stop(container: &Container, net: &PodNet, deadline: Instant) {
    let Some(hook) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if let Some(sleep) = &hook.sleep {
        let wanted = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        tokio::time::sleep(wanted.min(left)).await;
    } else if let Some(get) = &hook.http_get {
        let _ = tokio::time::timeout(left, http_get(get, container, net)).await;
    } else if hook.exec.is_some() {
        tracing::info!(container = %container.name, "fake kubelet: exec preStop hook skipped");
    }
}
