//! `external-traffic-local-no-surge`: `externalTrafficPolicy: Local` over pods that roll without
//! a surge.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::int_or_percent;
use crate::yaml::Node;

pub(crate) static CHECK: Check = Check {
    id: "external-traffic-local-no-surge",
    severity: Severity::Warning,
    summary: "Service with externalTrafficPolicy: Local selects pods that roll without a surge",
    explanation: "With externalTrafficPolicy: Local a node only forwards load-balancer traffic to \
        pods on that same node, and the cloud load balancer learns through a health check \
        (healthCheckNodePort) that lags by its interval × threshold. When a node's only pod is \
        replaced without a new one starting first (DaemonSet maxSurge 0, StatefulSet, Recreate, \
        maxSurge 0), the load balancer keeps sending to that node while it has no local \
        endpoint; kube-proxy (1.28+) falls back to the terminating pod only while it still \
        reports serving, so the pod must keep serving through the whole drain.",
    fix: "Give the rollout a surge (DaemonSet updateStrategy.rollingUpdate.maxSurge: 1 with \
        maxUnavailable: 0; Deployment maxSurge >= 1), keep the pod serving while terminating \
        (preStop delay or `lameduck run`), or use externalTrafficPolicy: Cluster.",
    run,
};

fn no_surge(kind: &str, spec: &Node, replicas: i64) -> Option<&'static str> {
    let text = |path: &[&str]| spec.path(path).and_then(Node::as_str);
    match kind {
        "DaemonSet" => {
            if text(&["updateStrategy", "type"]) == Some("OnDelete") {
                return Some("DaemonSet with updateStrategy OnDelete");
            }
            let surge = spec
                .path(&["updateStrategy", "rollingUpdate", "maxSurge"])
                .and_then(|n| int_or_percent(n, 1, true));
            (surge.unwrap_or(0) == 0).then_some("DaemonSet rolls with maxSurge 0")
        }
        "StatefulSet" => Some("StatefulSet pods are replaced without a surge"),
        "Deployment" => {
            if text(&["strategy", "type"]) == Some("Recreate") {
                return Some("Deployment uses Recreate");
            }
            let surge = spec
                .path(&["strategy", "rollingUpdate", "maxSurge"])
                .and_then(|n| int_or_percent(n, replicas, true));
            (surge == Some(0)).then_some("Deployment rolls with maxSurge 0")
        }
        "Rollout" => {
            let surge = spec
                .path(&["strategy", "canary", "maxSurge"])
                .and_then(|n| int_or_percent(n, replicas, true));
            (surge == Some(0)).then_some("Rollout canary with maxSurge 0")
        }
        _ => None,
    }
}

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (s, service) in ctx.services.iter().enumerate() {
        let Some(policy) = service
            .root
            .path(&["spec"])
            .and_then(|sp| sp.entry("externalTrafficPolicy"))
        else {
            continue;
        };
        if policy.value.as_str() != Some("Local") {
            continue;
        }
        for (w, workload) in ctx.workloads_of_service(s) {
            let Some(spec) = workload.object.root.get("spec") else {
                continue;
            };
            let replicas = ctx.replicas(w).map_or(1, |r| r.count);
            if let Some(why) = no_surge(&workload.object.kind, spec, replicas) {
                let message = format!(
                    "externalTrafficPolicy Local, but {} has no surge ({why}): nodes lose their only local endpoint during a rollout",
                    workload.object.display_name()
                );
                out.emit(service, policy.key.pos, message);
            }
        }
    }
}
