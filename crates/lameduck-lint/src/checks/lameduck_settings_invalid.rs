//! `lameduck-settings-invalid`: drain settings of `lameduck run` that it will refuse.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "lameduck-settings-invalid",
    severity: Severity::Error,
    summary: "`lameduck run` will refuse its command line or drain settings and exit at start",
    explanation: "`lameduck run` reads its flags and LAMEDUCK_* variables and validates them \
        before it starts the app, and exits with status 2 when a flag is unknown or its value \
        does not parse (a duration, a --proxy LISTEN=UPSTREAM that would forward to itself, a \
        protocol word), when proxy flags do not fit together (x-forwarded-for on a TCP proxy), \
        when min-wait is longer than max-wait, or when the grace period, less the preStop time, \
        the safety margin and the force-close grace, cannot hold min-wait and the close \
        timeout: the container then crash-loops and the rollout stalls. lint reads the \
        container's `lameduck run` arguments with run's own command-line definition, its \
        LAMEDUCK_* variables as run would see them, and validates with run's own code \
        (crate lameduck-settings), so the message is the one `lameduck run` would print; \
        `lameduck run --check` with the same arguments and environment shows the whole plan.",
    fix: "Correct the flag or value named (durations such as 5s, 500ms, 1m30s or plain \
        seconds; `lameduck run --help` lists the flags), keep min-wait <= max-wait, and give \
        the pod a grace period that holds the preStop time, the safety margin, min-wait and the \
        close timeout (or shorten those).",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let Some(run) = &c.lameduck else { continue };
            for error in run.invalid.iter().chain(&run.refused) {
                let message = format!("{}: {error}", container_label(c.name));
                out.emit(workload.object, run.pos, message);
            }
        }
    }
}
