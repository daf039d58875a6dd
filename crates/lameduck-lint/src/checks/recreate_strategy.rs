//! `recreate-strategy`: a served Deployment that stops every pod before starting new ones.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "recreate-strategy",
    severity: Severity::Warning,
    summary: "A Deployment that serves traffic uses the Recreate strategy",
    explanation: "Recreate terminates every old pod before it creates any new one, so each rollout \
        is an outage lasting the shutdown plus the start and readiness of the new pods.",
    fix: "Use RollingUpdate (maxUnavailable: 0, maxSurge: 1). If two versions must never run \
        together (e.g. a ReadWriteOnce volume), ignore this check with the reason.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if workload.object.kind != "Deployment" || !ctx.is_served(w) {
            continue;
        }
        let Some(kind) = workload
            .object
            .root
            .path(&["spec", "strategy"])
            .and_then(|s| s.entry("type"))
        else {
            continue;
        };
        if kind.value.as_str() == Some("Recreate") {
            out.emit(workload.object, kind.value.pos, "strategy Recreate stops every pod before new ones start: each rollout is an outage".to_owned());
        }
    }
}
