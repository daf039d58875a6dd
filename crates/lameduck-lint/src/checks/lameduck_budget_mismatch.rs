//! `lameduck-budget-mismatch`: `lameduck run` plans with a grace period or preStop time that the
//! pod does not have.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::{PreStopKind, secs};

pub(crate) static CHECK: Check = Check {
    id: "lameduck-budget-mismatch",
    severity: Severity::Error,
    summary: "`lameduck run` assumes a longer grace period, or a shorter preStop, than the pod has",
    explanation: "Kubernetes does not tell a pod its terminationGracePeriodSeconds, so `lameduck \
        run` is told (--grace / LAMEDUCK_GRACE_SECONDS, default 30 s) and splits that budget, minus \
        the preStop time it is told about (LAMEDUCK_PRESTOP_SECONDS), across its drain phases. If \
        the pod's real grace period is shorter, or its preStop longer, lameduck plans past the \
        SIGKILL and in-flight requests are cut off.",
    fix: "Set --grace (or LAMEDUCK_GRACE_SECONDS) to the pod's terminationGracePeriodSeconds and \
        LAMEDUCK_PRESTOP_SECONDS to the preStop sleep.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        let (grace, grace_entry) = workload.grace();
        for c in &workload.containers {
            let Some(run) = &c.lameduck.as_ref().filter(|run| run.settings_read()) else {
                continue;
            };
            if run.grace.seconds > grace {
                let message = format!(
                    "{}: `lameduck run` assumes a grace period of {} ({}) but terminationGracePeriodSeconds is {}{}",
                    container_label(c.name),
                    secs(run.grace.seconds),
                    run.grace.source,
                    secs(grace),
                    if grace_entry.is_none() {
                        " (default)"
                    } else {
                        ""
                    },
                );
                out.emit(workload.object, run.pos, message);
            }
            let prestop = c
                .pre_stop
                .as_ref()
                .filter(|p| p.kind != PreStopKind::LameduckWait)
                .and_then(|p| p.seconds);
            if let Some(p) = prestop.filter(|p| *p > run.prestop.seconds) {
                let message = format!(
                    "{}: the preStop hook takes {} but `lameduck run` assumes {} ({}) of the grace period is used before SIGTERM",
                    container_label(c.name),
                    secs(p),
                    secs(run.prestop.seconds),
                    run.prestop.source,
                );
                out.emit(workload.object, run.pos, message);
            }
        }
    }
}
