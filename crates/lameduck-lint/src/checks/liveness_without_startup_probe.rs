//! `liveness-without-startup-probe`: a liveness probe that can kill a slow starter.

use super::{Check, Out, container_label, probe_field};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::secs;

pub(crate) static CHECK: Check = Check {
    id: "liveness-without-startup-probe",
    severity: Severity::Warning,
    summary: "livenessProbe can kill a slow-starting container and there is no startupProbe",
    explanation: "The kubelet restarts a container whose liveness probe fails for \
        initialDelaySeconds + periodSeconds × failureThreshold. A start that takes longer (cold \
        caches, migrations, a slow node during a rollout) is killed and restarted in a loop, so \
        the new pods never become ready and the rollout stalls or, with maxUnavailable, loses \
        capacity. A startupProbe holds liveness off until the app has started once.",
    fix: "Add a startupProbe (same handler, failureThreshold × periodSeconds covering the slowest \
        start), or raise the liveness budget above slowStartSeconds (default 60 s).",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let Some(live) = c.liveness else { continue };
            if c.startup.is_some() {
                continue;
            }
            let p = &live.value;
            let budget = probe_field(p, "initialDelaySeconds")
                + probe_field(p, "periodSeconds") * probe_field(p, "failureThreshold");
            if budget < ctx.config.slow_start {
                let message = format!(
                    "{}: livenessProbe restarts the container if it is not up after {} ({}s delay + {}×{}s) and there is no startupProbe",
                    container_label(c.name),
                    secs(budget),
                    probe_field(p, "initialDelaySeconds"),
                    probe_field(p, "failureThreshold"),
                    probe_field(p, "periodSeconds"),
                );
                out.emit(workload.object, live.key.pos, message);
            }
        }
    }
}
