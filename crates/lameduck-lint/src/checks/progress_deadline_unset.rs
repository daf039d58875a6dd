//! `progress-deadline-unset`: a served Deployment relies on the default progress deadline.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "progress-deadline-unset",
    severity: Severity::Info,
    summary: "progressDeadlineSeconds is not set on a Deployment or Rollout that serves traffic",
    explanation: "progressDeadlineSeconds decides when a stuck rollout is reported as failed \
        (condition Progressing=False), which is what `kubectl rollout status`, CI pipelines and \
        Argo CD wait for. Left unset it is 600 s, so a broken rollout holds the pipeline for ten \
        minutes with capacity reduced by maxUnavailable.",
    fix: "Set spec.progressDeadlineSeconds to a little more than a normal rollout takes.",
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
        if spec.value.get("progressDeadlineSeconds").is_none() {
            out.emit(workload.object, spec.key.pos, "progressDeadlineSeconds is unset: a stuck rollout is reported only after the default 600s".to_owned());
        }
    }
}
