//! `single-replica`: a served workload with fewer than two replicas.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "single-replica",
    severity: Severity::Warning,
    summary: "A workload that serves traffic runs fewer than 2 replicas",
    explanation: "With one replica every node drain, eviction and (for StatefulSets or \
        maxSurge 0) every rollout leaves the Service without a ready endpoint for as long as the \
        replacement takes to start and pass readiness.",
    fix: "Run at least 2 replicas (or an HPA with minReplicas >= 2), spread over nodes, with a \
        PodDisruptionBudget of maxUnavailable: 1.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !ctx.is_served(w) {
            continue;
        }
        let Some(replicas) = ctx.replicas(w) else {
            continue;
        };
        if replicas.count == 1 {
            let message = format!(
                "serves traffic with a single replica ({}): every drain or restart is an outage",
                replicas.source
            );
            let pos = match &replicas.entry {
                Some(e) if replicas.source.starts_with("replicas") => e.key.pos,
                _ => workload
                    .spec()
                    .map_or(workload.object.root.pos, |s| s.key.pos),
            };
            out.emit(workload.object, pos, message);
        }
    }
}
