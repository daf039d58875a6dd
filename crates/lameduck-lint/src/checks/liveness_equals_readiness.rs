//! `liveness-equals-readiness`: the liveness probe is the readiness probe.

use super::{Check, Out, container_label, probe_field};
use crate::context::Context;
use crate::finding::Severity;
use crate::yaml::{Node, Value};

pub(crate) static CHECK: Check = Check {
    id: "liveness-equals-readiness",
    severity: Severity::Warning,
    summary: "livenessProbe is identical to readinessProbe (same handler and thresholds)",
    explanation: "Readiness answers \"send me traffic?\", liveness answers \"restart me?\". When both \
        are the same check with the same thresholds, an overloaded or draining pod fails both at \
        the same moment: instead of being taken out of rotation it is killed, dropping its \
        in-flight requests and putting more load on the others.",
    fix: "Make liveness check only that the process is alive (a cheap endpoint that does not \
        depend on downstreams or on the drain state), with a higher failureThreshold than \
        readiness.",
    run,
};

const HANDLERS: [&str; 4] = ["httpGet", "tcpSocket", "exec", "grpc"];
const THRESHOLDS: [&str; 4] = [
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
];

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        for c in &workload.containers {
            let (Some(live), Some(ready)) = (c.liveness, c.readiness) else {
                continue;
            };
            let same_handler =
                HANDLERS
                    .iter()
                    .all(|h| match (live.value.get(h), ready.value.get(h)) {
                        (None, None) => true,
                        (Some(a), Some(b)) => same_tree(a, b),
                        _ => false,
                    });
            let same_thresholds = THRESHOLDS
                .iter()
                .all(|k| probe_field(&live.value, k) == probe_field(&ready.value, k));
            if same_handler && same_thresholds {
                let message = format!(
                    "{}: livenessProbe is the same check as readinessProbe with the same thresholds (fails {} after {}×{}s)",
                    container_label(c.name),
                    crate::workload::secs(
                        probe_field(&live.value, "periodSeconds")
                            * probe_field(&live.value, "failureThreshold")
                    ),
                    probe_field(&live.value, "failureThreshold"),
                    probe_field(&live.value, "periodSeconds"),
                );
                out.emit(workload.object, live.key.pos, message);
            }
        }
    }
}

/// Structural equality, ignoring positions and key order.
pub(crate) fn same_tree(a: &Node, b: &Node) -> bool {
    let mut todo = vec![(a, b)];
    // Bounded by the size of the smaller tree: each pair is visited once.
    while let Some((a, b)) = todo.pop() {
        match (&a.value, &b.value) {
            (Value::Scalar { text: x, .. }, Value::Scalar { text: y, .. }) if x == y => {}
            (Value::Seq(x), Value::Seq(y)) if x.len() == y.len() => todo.extend(x.iter().zip(y)),
            (Value::Map(x), Value::Map(y)) if x.len() == y.len() => {
                for e in x {
                    let Some(other) = e.key.as_str().and_then(|k| b.get(k)) else {
                        return false;
                    };
                    todo.push((&e.value, other));
                }
            }
            _ => return false,
        }
    }
    true
}
