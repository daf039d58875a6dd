//! `statefulset-ondelete`: a StatefulSet whose pods are only updated when deleted by hand.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "statefulset-ondelete",
    severity: Severity::Warning,
    summary: "StatefulSet uses the OnDelete update strategy",
    explanation: "With OnDelete a changed template is applied only when someone deletes each pod: \
        no readiness gating between pods, no partition, no pause. Such manual rollouts usually \
        delete several pods at once, which takes down quorum or every replica.",
    fix: "Use updateStrategy RollingUpdate (with a partition for staged rollouts); if OnDelete is \
        required by an operator, ignore this check with the reason.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in ctx
        .workloads
        .iter()
        .filter(|w| w.object.kind == "StatefulSet")
    {
        let Some(kind) = workload
            .object
            .root
            .path(&["spec", "updateStrategy"])
            .and_then(|s| s.entry("type"))
        else {
            continue;
        };
        if kind.value.as_str() == Some("OnDelete") {
            out.emit(workload.object, kind.value.pos, "updateStrategy OnDelete: pods are replaced only when deleted by hand, without readiness gating".to_owned());
        }
    }
}
