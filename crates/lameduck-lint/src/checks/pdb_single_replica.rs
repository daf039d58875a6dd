//! `pdb-single-replica`: a PodDisruptionBudget over a single replica.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::int_or_percent;

pub(crate) static CHECK: Check = Check {
    id: "pdb-single-replica",
    severity: Severity::Warning,
    summary: "PodDisruptionBudget selects a workload that runs a single replica",
    explanation: "With one replica a PDB can only do one of two wrong things: allow the eviction \
        (the pod goes and the Service has no endpoint, so the PDB protects nothing) or forbid it \
        (minAvailable 1 / maxUnavailable 0, and every node drain hangs on this pod).",
    fix: "Run at least 2 replicas with maxUnavailable: 1; a single-replica workload cannot be kept \
        up through a drain.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (p, pdb) in ctx.pdbs.iter().enumerate() {
        let Some(spec) = pdb.root.entry("spec") else {
            continue;
        };
        for (w, workload) in ctx.workloads_of_pdb(p) {
            let Some(replicas) = ctx.replicas(w).filter(|r| r.count == 1) else {
                continue;
            };
            let blocks = spec
                .value
                .get("maxUnavailable")
                .map(|n| int_or_percent(n, 1, true) == Some(0))
                .or_else(|| {
                    spec.value
                        .get("minAvailable")
                        .map(|n| int_or_percent(n, 1, true).is_some_and(|m| m >= 1))
                })
                .unwrap_or(false);
            let effect = if blocks {
                "blocks every node drain"
            } else {
                "lets the only pod be evicted, so protects nothing"
            };
            let message = format!(
                "selects {} which runs a single replica ({}): the budget {effect}",
                workload.object.display_name(),
                replicas.source
            );
            out.emit(pdb, spec.key.pos, message);
        }
    }
}
