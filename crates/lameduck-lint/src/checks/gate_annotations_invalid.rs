//! `gate-annotations-invalid`: a pod template opted in to `lameduck gate`, or carrying its
//! annotations, that the gate cannot act on as written.

use super::{Check, Out};
use crate::context::Context;
use crate::finding::Severity;
use crate::workload::parse_duration;

pub(crate) static CHECK: Check = Check {
    id: "gate-annotations-invalid",
    severity: Severity::Error,
    summary: "`lameduck gate` annotations the gate cannot use, or an opted-in pod it cannot take out of traffic",
    explanation: "lameduck gate takes an opted-in pod (label lameduck.dev/gate: enabled) out of \
        traffic before it admits its deletion: through lameduck's admin port \
        (lameduck.dev/admin-port) or the readiness gate lameduck.dev/serving. A pod with neither \
        is let go at once, unprotected; an admin port that is not a port number, a \
        lameduck.dev/max-hold that is not a duration, a hold policy other than best-effort or \
        strict, or a prepare URL that is not http:// makes the gate fall back to its defaults or \
        skip the pod, with a warning only in its own log.",
    fix: "Annotate lameduck.dev/admin-port with the port of lameduck's admin endpoints (8686 by \
        default) or add readinessGates: [{conditionType: lameduck.dev/serving}]; write \
        max-hold as a duration (10m), hold-policy as best-effort or strict, prepare-url as \
        http://$(POD_IP):PORT/PATH.",
    run,
};

const OPT_IN: &str = "lameduck.dev/gate";
const ADMIN_PORT: &str = "lameduck.dev/admin-port";
const MAX_HOLD: &str = "lameduck.dev/max-hold";
const HOLD_POLICY: &str = "lameduck.dev/hold-policy";
const PREPARE_URL: &str = "lameduck.dev/prepare-url";
const SERVING: &str = "lameduck.dev/serving";

fn run(ctx: &Context<'_>, out: &mut Out) {
    for workload in &ctx.workloads {
        let object = workload.object;
        let annotation = |key: &str| workload.template_annotations.and_then(|a| a.get(key));
        let value = |key: &str| annotation(key).and_then(|n| n.as_str().map(str::to_owned));
        if let Some(node) = annotation(ADMIN_PORT) {
            let port = node
                .as_str()
                .map(str::to_owned)
                .or_else(|| node.as_i64().map(|i| i.to_string()));
            if port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
                .is_none_or(|p| p == 0)
            {
                out.emit(object, node.pos, format!("{ADMIN_PORT} {:?} is not a port number: the gate cannot reach lameduck's admin endpoints and lets the pod go unprotected", port.unwrap_or_default()));
            }
        }
        if let (Some(node), Some(text)) = (annotation(MAX_HOLD), value(MAX_HOLD))
            && parse_duration(&text).is_none()
        {
            out.emit(
                object,
                node.pos,
                format!("{MAX_HOLD} {text:?} is not a duration: the gate uses its default"),
            );
        }
        if let (Some(node), Some(text)) = (annotation(HOLD_POLICY), value(HOLD_POLICY))
            && text != "best-effort"
            && text != "strict"
        {
            out.emit(object, node.pos, format!("{HOLD_POLICY} {text:?} is neither best-effort nor strict: the gate uses its default"));
        }
        if let (Some(node), Some(text)) = (annotation(PREPARE_URL), value(PREPARE_URL))
            && !text.starts_with("http://")
        {
            out.emit(object, node.pos, format!("{PREPARE_URL} {text:?} is not an http:// URL: the gate cannot ask the hook and never finds the pod ready to go"));
        }
        let opted_in = workload
            .labels
            .iter()
            .any(|&(k, v)| k == OPT_IN && v == "enabled");
        let gated = workload
            .pod_spec
            .value
            .get("readinessGates")
            .is_some_and(|gates| {
                gates
                    .items()
                    .iter()
                    .any(|g| g.get("conditionType").and_then(|c| c.as_str()) == Some(SERVING))
            });
        if opted_in && annotation(ADMIN_PORT).is_none() && !gated {
            out.emit(object, workload.pod_spec.key.pos, format!("the pod template is opted in to lameduck gate ({OPT_IN}: enabled) but the gate has no way to take it out of traffic: no {ADMIN_PORT} annotation and no readiness gate {SERVING}"));
        }
    }
}
