//! `readiness-probe-missing`: a serving container without a readinessProbe.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "readiness-probe-missing",
    severity: Severity::Error,
    summary: "A container that serves traffic has no readinessProbe",
    explanation: "Without a readinessProbe a pod is added to its Services' endpoints as soon as the \
        container starts, before the app listens, and a rolling update counts it as available at \
        once, so the old pods are removed while the new ones still refuse connections.",
    fix: "Add a readinessProbe that succeeds only once the app accepts requests (an HTTP health \
        path, or `lameduck probe` / lameduck's probe endpoint when it wraps the app).",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !ctx.is_served(w) {
            continue;
        }
        for c in workload
            .serving_containers()
            .filter(|c| c.readiness.is_none())
        {
            let message = format!(
                "{} serves traffic but has no readinessProbe",
                container_label(c.name)
            );
            out.emit(workload.object, c.node.pos, message);
        }
    }
}
