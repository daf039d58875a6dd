//! `min-ready-seconds-unset`: a served Deployment counts a pod available the instant it is ready.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "min-ready-seconds-unset",
    severity: Severity::Info,
    summary: "minReadySeconds is not set on a Deployment or Rollout that serves traffic",
    explanation: "Without minReadySeconds a new pod counts as available the moment its first \
        readiness probe passes, and the rollout immediately terminates an old pod, before \
        routers (kube-proxy, ingress, load balancers) have even added the new endpoint. A pod \
        that crashes seconds after becoming ready also does not stop the rollout.",
    fix: "Set spec.minReadySeconds to at least the endpoint propagation time (e.g. 5-10 s).",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !matches!(workload.object.kind.as_str(), "Deployment" | "Rollout") || !ctx.is_served(w) {
            continue;
        }
        let Some(spec) = workload.spec() else {
            continue;
        };
        if spec
            .value
            .get("minReadySeconds")
            .and_then(|n| n.as_i64())
            .unwrap_or(0)
            == 0
        {
            out.emit(workload.object, spec.key.pos, "minReadySeconds is unset: new pods count as available before routers send them traffic".to_owned());
        }
    }
}
