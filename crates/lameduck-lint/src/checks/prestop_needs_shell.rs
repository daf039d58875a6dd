//! `prestop-needs-shell`: a preStop exec that needs a shell or a `sleep` binary.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::PreStopKind;

pub(crate) static CHECK: Check = Check {
    id: "prestop-needs-shell",
    severity: Severity::Warning,
    summary: "preStop runs a shell or the `sleep` binary, which the image may lack",
    explanation: "Distroless and scratch images have no /bin/sh and no sleep. An exec preStop hook \
        whose program is missing fails at once: the kubelet records a FailedPreStopHook event and \
        sends SIGTERM immediately, so the shutdown delay silently does not exist.",
    fix: "Use the native sleep action (`lifecycle.preStop.sleep.seconds: 5`, Kubernetes 1.34+) or \
        a binary that ships with the app: `preStop.exec.command: [lameduck, sleep, 5s]`.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let Some(p) = &c.pre_stop else { continue };
            let needs = match p.kind {
                PreStopKind::Shell => "a shell",
                PreStopKind::SleepBinary => "a `sleep` binary",
                _ => continue,
            };
            let message = format!(
                "{}: preStop exec needs {needs} ({:?}) in the image; without one the hook fails and there is no delay",
                container_label(c.name),
                p.program
            );
            out.emit(workload.object, p.pos, message);
        }
    }
}
