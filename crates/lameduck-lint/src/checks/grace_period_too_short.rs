//! `grace-period-too-short`: preStop plus drain plus a margin do not fit in the grace period.

use super::{Check, Out, container_label};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::{Class, Container, DRAIN_ANNOTATION, PreStopKind, Workload, secs};

pub(crate) static CHECK: Check = Check {
    id: "grace-period-too-short",
    severity: Severity::Error,
    summary: "preStop + drain + margin is longer than terminationGracePeriodSeconds",
    explanation: "The grace countdown starts when the pod is deleted, before the preStop hook: \
        preStop and the app's own drain after SIGTERM share terminationGracePeriodSeconds \
        (default 30 s). At the deadline the kubelet sends SIGKILL, cutting off every request still \
        in flight, and a preStop still running is cut short (SIGTERM with a 2 s extension). The \
        drain time is read from the annotation lameduck.dev/drain-seconds, or from the drain \
        settings of `lameduck run` (max-wait plus close timeout).",
    fix: "Raise terminationGracePeriodSeconds to at least preStop + drain + margin, or shorten the \
        preStop sleep / max-wait. Declare the app's drain time with the annotation \
        lameduck.dev/drain-seconds so the arithmetic is checked.",
    run,
};

/// The shutdown timeline of one container: parts of (label, seconds).
pub(crate) fn timeline(workload: &Workload<'_>, c: &Container<'_>) -> Vec<(String, f64)> {
    let mut parts = Vec::new();
    let lameduck_wait = c
        .pre_stop
        .as_ref()
        .is_some_and(|p| p.kind == PreStopKind::LameduckWait);
    if let Some(p) = &c.pre_stop {
        match (
            &c.lameduck.as_ref().filter(|run| run.settings_read()),
            p.seconds,
        ) {
            (Some(run), _) if lameduck_wait => {
                parts.push((
                    format!(
                        "preStop `lameduck wait` up to max-wait {} ({})",
                        secs(run.max_wait.seconds),
                        run.max_wait.source
                    ),
                    run.max_wait.seconds,
                ));
            }
            (_, Some(s)) => parts.push((format!("preStop {} ({})", secs(s), describe(&p.kind)), s)),
            (_, None) => {}
        }
    }
    if let Some(drain) = workload.declared_drain() {
        parts.push((format!("drain {} ({DRAIN_ANNOTATION})", secs(drain)), drain));
    } else if let Some(run) = &c.lameduck.as_ref().filter(|run| run.settings_read()) {
        if lameduck_wait {
            parts.push((
                format!(
                    "close {} ({})",
                    secs(run.close_timeout.seconds),
                    run.close_timeout.source
                ),
                run.close_timeout.seconds,
            ));
        } else {
            let total = run.max_wait.seconds + run.close_timeout.seconds;
            parts.push((
                format!(
                    "drain {} (`lameduck run` max-wait {} {} + close {} {})",
                    secs(total),
                    secs(run.max_wait.seconds),
                    run.max_wait.source,
                    secs(run.close_timeout.seconds),
                    run.close_timeout.source
                ),
                total,
            ));
        }
    }
    parts
}

fn describe(kind: &PreStopKind) -> &'static str {
    match kind {
        PreStopKind::SleepAction => "sleep action",
        PreStopKind::Shell => "sleep in a shell",
        PreStopKind::SleepBinary => "sleep binary",
        PreStopKind::LameduckSleep => "lameduck sleep",
        PreStopKind::LameduckWait => "lameduck wait",
        PreStopKind::Exec => "exec",
        PreStopKind::Http => "httpGet",
    }
}

fn run(ctx: &Context<'_>, out: &mut Out) {
    let margin = ctx.config.grace_margin;
    for workload in ctx.workloads.iter().filter(|w| w.class != Class::Batch) {
        let (grace, grace_entry) = workload.grace();
        for c in &workload.containers {
            let parts = timeline(workload, c);
            if parts.is_empty() {
                continue;
            }
            let need: f64 = parts.iter().map(|(_, s)| s).sum::<f64>() + margin;
            if need > grace {
                let sum = parts
                    .iter()
                    .map(|(l, _)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(" + ");
                let message = format!(
                    "{}: {sum} + margin {} = {}, more than terminationGracePeriodSeconds {}{}",
                    container_label(c.name),
                    secs(margin),
                    secs(need),
                    secs(grace),
                    if grace_entry.is_none() {
                        " (default)"
                    } else {
                        ""
                    },
                );
                let pos = grace_entry.map_or(workload.pod_spec.key.pos, |e| e.key.pos);
                out.emit(workload.object, pos, message);
            }
        }
    }
}
