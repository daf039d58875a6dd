//! `pdb-blocks-eviction`: a PodDisruptionBudget that no eviction can ever satisfy.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::int_or_percent;

pub(crate) static CHECK: Check = Check {
    id: "pdb-blocks-eviction",
    severity: Severity::Error,
    summary: "PodDisruptionBudget blocks every eviction (maxUnavailable 0, or minAvailable >= replicas)",
    explanation: "A PDB that allows zero disruptions makes every eviction fail: `kubectl drain`, \
        cluster upgrades and the cluster autoscaler hang on these pods until someone deletes the \
        PDB by hand, at which point nothing protects them any more.",
    fix: "Use maxUnavailable: 1 (or a minAvailable lower than the replica count), so drains \
        proceed one pod at a time.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (p, pdb) in ctx.pdbs.iter().enumerate() {
        let Some(spec) = pdb.root.get("spec") else {
            continue;
        };
        if let Some(mu) = spec.entry("maxUnavailable") {
            if int_or_percent(&mu.value, 100, true) == Some(0) {
                out.emit(
                    pdb,
                    mu.key.pos,
                    "maxUnavailable 0 allows no eviction: node drains hang on these pods"
                        .to_owned(),
                );
            }
            continue;
        }
        let Some(min) = spec.entry("minAvailable") else {
            continue;
        };
        let mut any = false;
        for (w, _) in ctx.workloads_of_pdb(p) {
            any = true;
            let Some(replicas) = ctx.replicas(w) else {
                continue;
            };
            if replicas.count < 2 {
                continue;
            }
            if let Some(needed) =
                int_or_percent(&min.value, replicas.count, true).filter(|n| *n >= replicas.count)
            {
                let workload = &ctx.workloads[w];
                let message = format!(
                    "minAvailable {needed} with {} ({}) allows no eviction: node drains hang on these pods",
                    workload.object.display_name(),
                    replicas.source
                );
                out.emit(pdb, min.key.pos, message);
            }
        }
        if !any && min.value.as_str().map(str::trim) == Some("100%") {
            out.emit(
                pdb,
                min.key.pos,
                "minAvailable 100% allows no eviction: node drains hang on these pods".to_owned(),
            );
        }
    }
}
