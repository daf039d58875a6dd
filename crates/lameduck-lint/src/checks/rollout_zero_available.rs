//! `rollout-zero-available`: a rolling update may take every pod down at once.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::{int_or_percent, percent_of};
use crate::yaml::{Entry, Node};

pub(crate) static CHECK: Check = Check {
    id: "rollout-zero-available",
    severity: Severity::Error,
    summary: "Rolling update allows zero available pods (maxUnavailable >= replicas)",
    explanation: "maxUnavailable is how many pods a rolling update may take down before new ones \
        are ready. When it is at least the replica count (replicas 1 with maxUnavailable 1, or \
        100%), every old pod may be terminated before any new pod is ready: the Service has no \
        endpoint and all requests fail until the new pods pass readiness.",
    fix: "Set maxUnavailable: 0 with maxSurge: 1 (or more) so new pods become ready before old \
        ones go, and run at least 2 replicas.",
    run,
};

type Rolling<'a> = (
    Option<&'a Entry>,
    Option<&'a Entry>,
    &'static str,
    &'static str,
);

/// `(maxUnavailable, maxSurge, their defaults)` of a rolling update.
pub(crate) fn rolling<'a>(object_kind: &str, spec: &'a Node) -> Option<Rolling<'a>> {
    let params = match object_kind {
        "Deployment" => {
            let strategy = spec.get("strategy");
            if strategy
                .and_then(|s| s.get("type"))
                .and_then(Node::as_str)
                .is_some_and(|t| t != "RollingUpdate")
            {
                return None;
            }
            strategy.and_then(|s| s.get("rollingUpdate"))
        }
        "Rollout" => Some(spec.path(&["strategy", "canary"])?),
        "StatefulSet" => spec.path(&["updateStrategy", "rollingUpdate"]),
        _ => return None,
    };
    let mu = params.and_then(|p| p.entry("maxUnavailable"));
    let ms = params.and_then(|p| p.entry("maxSurge"));
    match object_kind {
        "StatefulSet" => Some((mu, None, "1", "0")),
        _ => Some((mu, ms, "25%", "25%")),
    }
}

fn resolve(entry: Option<&Entry>, default: &str, total: i64, round_up: bool) -> i64 {
    entry
        .and_then(|e| int_or_percent(&e.value, total, round_up))
        .or_else(|| percent_of(default, total, round_up))
        .unwrap_or(0)
}

fn run(ctx: &Context<'_>, out: &mut Out) {
    for (w, workload) in ctx.workloads.iter().enumerate() {
        if !ctx.is_served(w) {
            continue;
        }
        let (Some(replicas), Some(spec)) = (ctx.replicas(w), workload.spec()) else {
            continue;
        };
        let Some((mu, ms, mu_default, ms_default)) = rolling(&workload.object.kind, &spec.value)
        else {
            continue;
        };
        if workload.object.kind == "StatefulSet" && mu.is_none() {
            continue;
        }
        let total = replicas.count;
        if total <= 0 {
            continue;
        }
        let mut unavailable = resolve(mu, mu_default, total, false);
        let surge = resolve(ms, ms_default, total, true);
        if unavailable == 0 && surge == 0 {
            unavailable = 1;
        }
        if unavailable >= total {
            let given = mu.and_then(|e| e.value.as_str()).unwrap_or(mu_default);
            let message = format!(
                "maxUnavailable {given} allows {unavailable} of {total} pods ({}) down during a rollout: zero available",
                replicas.source
            );
            let pos = mu.map_or(spec.key.pos, |e| e.key.pos);
            out.emit(workload.object, pos, message);
        }
    }
}
