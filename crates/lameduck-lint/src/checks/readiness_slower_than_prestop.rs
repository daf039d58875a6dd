//! `readiness-slower-than-prestop`: where a terminating or draining pod's readiness still
//! decides its traffic, the probe reports it ready after the app stopped serving.

use super::{Check, Out, container_label, probe_field};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::{PreStopKind, secs};
use crate::yaml::Node;

pub(crate) static CHECK: Check = Check {
    id: "readiness-slower-than-prestop",
    severity: Severity::Warning,
    summary: "readinessProbe periodSeconds × failureThreshold is longer than the shutdown delay, \
        where readiness still routes traffic",
    explanation: "When a pod is deleted, the EndpointSlice controller marks its endpoints \
        ready=false at once, whatever the probe says (k8s.io/endpointslice podToEndpoint: ready = \
        serving && !terminating), so for most traffic the probe's timing does not matter. It \
        matters where readiness still routes: (1) kube-proxy falls back to endpoints that are \
        serving and terminating when a Service has no ready endpoint, separately for Cluster and \
        Local traffic (pkg/proxy/topology.go CategorizeEndpoints); serving is the pod's readiness, \
        so with a single replica, or under externalTrafficPolicy: Local on a node whose only pod \
        is terminating (whose healthCheckNodePort keeps answering 200 meanwhile), traffic goes to \
        the pod until the kubelet has seen periodSeconds × failureThreshold of failed probes; \
        (2) a `lameduck run` pod drained without being deleted (POST /drain, lameduck gate's \
        hold) stays a ready endpoint until that many probes failed, while lameduck's drain \
        wait lasts at most max-wait. If that detection time is longer than the preStop delay \
        (or max-wait), the pod is still routed to after the app stopped serving.",
    fix: "Lower readinessProbe periodSeconds and/or failureThreshold (e.g. 2 s × 2) so that \
        readiness turns false within the preStop delay or lameduck's max-wait, or lengthen the \
        delay; for (1), run 2+ replicas with a surge, or use externalTrafficPolicy: Cluster.",
    run,
};

/// Why the fallback to serving-terminating endpoints applies to workload `w`, if it does.
fn fallback_reason(ctx: &Context<'_>, w: usize) -> Option<String> {
    let local = ctx.services_of(w).find(|service| {
        service
            .root
            .path(&["spec", "externalTrafficPolicy"])
            .and_then(Node::as_str)
            == Some("Local")
    });
    if let Some(service) = local {
        return Some(format!(
            "Service {} has externalTrafficPolicy Local: a node whose only pod terminates routes \
             to it while it reports serving",
            service.name
        ));
    }
    ctx.replicas(w).filter(|r| r.count <= 1).map(|r| {
        format!(
            "{}: with no other ready endpoint kube-proxy routes to the terminating pod while it \
             reports serving",
            r.source
        )
    })
}

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        let fallback = fallback_reason(ctx, w);
        for c in &workload.containers {
            let Some(ready) = c.readiness else { continue };
            let period = probe_field(&ready.value, "periodSeconds");
            let failures = probe_field(&ready.value, "failureThreshold");
            let detect = period * failures;
            let prestop = c
                .pre_stop
                .as_ref()
                .filter(|p| p.kind != PreStopKind::LameduckWait)
                .and_then(|p| p.seconds);
            // Deletion: the pod is routed to through the fallback until readiness fails.
            let deletion_delay = match (
                &c.lameduck.as_ref().filter(|run| run.settings_read()),
                prestop,
            ) {
                (Some(run), p) => Some((
                    p.unwrap_or(0.0) + run.max_wait.seconds,
                    format!(
                        "preStop {} + lameduck max-wait {}",
                        secs(p.unwrap_or(0.0)),
                        secs(run.max_wait.seconds)
                    ),
                )),
                (None, Some(p)) => Some((p, format!("preStop {}", secs(p)))),
                (None, None) => None,
            };
            let problem = match (
                &fallback,
                deletion_delay,
                &c.lameduck.as_ref().filter(|run| run.settings_read()),
            ) {
                (Some(why), Some((delay, what)), _) if detect > delay => Some(format!(
                    "the shutdown delay of {} ({what}); {why}",
                    secs(delay)
                )),
                // A drain without deletion: the endpoint stays ready until readiness fails.
                (_, _, Some(run)) if detect > run.max_wait.seconds => Some(format!(
                    "lameduck's max-wait of {} ({}): a pod drained without being deleted (POST \
                     /drain, the gate's hold) stays a ready endpoint until then",
                    secs(run.max_wait.seconds),
                    run.max_wait.source
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                let message = format!(
                    "{}: readiness takes up to {} ({}×{}) to fail, longer than {problem}",
                    container_label(c.name),
                    secs(detect),
                    failures,
                    secs(period),
                );
                out.emit(workload.object, ready.key.pos, message);
            }
        }
    }
}
