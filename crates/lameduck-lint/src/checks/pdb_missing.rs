//! `pdb-missing`: a served multi-replica workload without a PodDisruptionBudget.

use super::{Check, Out, name_pos};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "pdb-missing",
    severity: Severity::Warning,
    summary: "A workload that serves traffic with 2+ replicas has no PodDisruptionBudget",
    explanation: "Node drains (cluster upgrades, autoscaler scale-down) evict pods through the \
        Eviction API, which only holds back when a PodDisruptionBudget says so. Without one, a \
        drain of the nodes holding all replicas evicts them all at once.",
    fix: "Add a PodDisruptionBudget selecting the pods, with maxUnavailable: 1 (or a minAvailable \
        below the replica count).",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !ctx.is_served(w) || ctx.pdbs_of(w).next().is_some() {
            continue;
        }
        let Some(replicas) = ctx.replicas(w) else {
            continue;
        };
        if replicas.count >= 2 {
            let message = format!(
                "no PodDisruptionBudget in the input selects these pods ({}): a node drain may evict them all at once",
                replicas.source
            );
            out.emit(workload.object, name_pos(workload.object), message);
        }
    }
}
