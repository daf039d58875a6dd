//! `lameduck-settings-invalid`: drain settings of `lameduck run` that it will refuse.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::secs;

pub(crate) static CHECK: Check = Check {
    id: "lameduck-settings-invalid",
    severity: Severity::Error,
    summary: "`lameduck run` drain settings are not durations, or min-wait exceeds max-wait",
    explanation: "`lameduck run` validates its settings at start and exits when one is not a \
        duration or when min-wait is longer than max-wait: the container then crash-loops and the \
        rollout stalls.",
    fix: "Use durations such as 5s, 500ms, 1m30s or plain seconds, and keep min-wait <= max-wait.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let Some(run) = &c.lameduck else { continue };
            for (source, value) in &run.invalid {
                let message = format!(
                    "{}: {source} {value:?} is not a duration",
                    container_label(c.name)
                );
                out.emit(workload.object, run.pos, message);
            }
            if run.min_wait.seconds > run.max_wait.seconds {
                let message = format!(
                    "{}: min-wait {} ({}) is longer than max-wait {} ({})",
                    container_label(c.name),
                    secs(run.min_wait.seconds),
                    run.min_wait.source,
                    secs(run.max_wait.seconds),
                    run.max_wait.source
                );
                out.emit(workload.object, run.pos, message);
            }
        }
    }
}
