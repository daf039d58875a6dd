//! `no-shutdown-delay`: a serving container stops the moment the pod is deleted.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "no-shutdown-delay",
    severity: Severity::Error,
    summary: "A container that serves traffic has no preStop hook and no lameduck entrypoint",
    explanation: "When a pod is deleted, the endpoint is withdrawn and the container is stopped at \
        the same instant. kube-proxy, ingress controllers, DNS and cloud load balancers each apply \
        the withdrawal after their own delay, so for seconds they keep routing to a process that \
        already got SIGTERM. An app that stops accepting at SIGTERM (most do, graceful frameworks \
        included) answers those requests with connection refused, resets or 502s.",
    fix: "Delay the stop signal: `lifecycle.preStop.sleep.seconds: 5` (Kubernetes 1.34+, or 1.30+ \
        with the PodLifecycleSleepAction gate), `preStop.exec.command: [lameduck, sleep, 5s]` for \
        images without a shell, or run the app under `lameduck run --`, which keeps serving until \
        traffic has stopped arriving.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !ctx.is_served(w) {
            continue;
        }
        for c in workload
            .serving_containers()
            .filter(|c| c.pre_stop.is_none() && c.lameduck.is_none())
        {
            let message = format!(
                "{} serves traffic but stops as soon as the pod is deleted (no preStop, no `lameduck run`)",
                container_label(c.name)
            );
            out.emit(workload.object, c.node.pos, message);
        }
    }
}
