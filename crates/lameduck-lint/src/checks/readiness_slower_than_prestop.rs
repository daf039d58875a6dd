//! `readiness-slower-than-prestop`: the pod still reports ready after the app stopped serving.

use super::{Check, Out, container_label, probe_field};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::{PreStopKind, secs};

pub(crate) static CHECK: Check = Check {
    id: "readiness-slower-than-prestop",
    severity: Severity::Warning,
    summary: "readinessProbe periodSeconds × failureThreshold is longer than the shutdown delay",
    explanation: "A terminating pod stays in its EndpointSlice with terminating=true and serving = \
        its last readiness result (KEP-1672). kube-proxy sends traffic to serving terminating \
        endpoints when no ready endpoint is left, and other consumers read the same condition. \
        The kubelet needs up to periodSeconds × failureThreshold to notice that readiness fails; \
        if that is longer than the preStop delay (or lameduck's max-wait), the pod is still \
        reported serving while the app already refuses connections.",
    fix: "Lower readinessProbe periodSeconds and/or failureThreshold (e.g. 2 s × 2) so that \
        readiness turns false within the preStop delay, or lengthen the delay.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let Some(ready) = c.readiness else { continue };
            let prestop = c
                .pre_stop
                .as_ref()
                .filter(|p| p.kind != PreStopKind::LameduckWait);
            let (delay, what) = match (&c.lameduck, prestop.and_then(|p| p.seconds)) {
                (Some(run), p) => {
                    let p = p.unwrap_or(0.0);
                    (
                        p + run.max_wait.seconds,
                        format!(
                            "preStop {} + lameduck max-wait {}",
                            secs(p),
                            secs(run.max_wait.seconds)
                        ),
                    )
                }
                (None, Some(p)) => (p, format!("preStop {}", secs(p))),
                (None, None) => continue,
            };
            let period = probe_field(&ready.value, "periodSeconds");
            let failures = probe_field(&ready.value, "failureThreshold");
            let detect = period * failures;
            if detect > delay {
                let message = format!(
                    "{}: readiness takes up to {} ({}×{}) to fail, longer than the shutdown delay of {} ({what})",
                    container_label(c.name),
                    secs(detect),
                    failures,
                    secs(period),
                    secs(delay),
                );
                out.emit(workload.object, ready.key.pos, message);
            }
        }
    }
}
