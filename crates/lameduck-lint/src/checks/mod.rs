//! The checks, one per file, and the registry that runs them.

use crate::context::Context;
use crate::finding::{Finding, ObjectRef, Severity};
use crate::source::Object;
use crate::yaml::Pos;

mod external_traffic_local_no_surge;
mod gate_annotations_invalid;
mod grace_period_too_short;
mod invalid_ignore;
mod lameduck_budget_mismatch;
mod lameduck_proxy_bypassed;
mod lameduck_settings_invalid;
mod liveness_equals_readiness;
mod liveness_without_startup_probe;
mod min_ready_seconds_unset;
mod no_shutdown_delay;
mod pdb_blocks_eviction;
mod pdb_missing;
mod pdb_single_replica;
mod prestop_needs_shell;
mod progress_deadline_unset;
mod readiness_probe_missing;
mod readiness_slower_than_prestop;
mod recreate_strategy;
mod rollout_zero_available;
mod single_replica;
mod statefulset_ondelete;

/// Annotation that suppresses findings on an object: `"<check-id>: <reason>"`, one per line.
pub const IGNORE_ANNOTATION: &str = "lameduck.dev/ignore";

/// A check: its documentation and the function that runs it.
pub struct Check {
    /// Stable ID, used in output, config and ignore annotations.
    pub id: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One line: what the check finds.
    pub summary: &'static str,
    /// Why it matters, in terms of Kubernetes' termination timeline.
    pub explanation: &'static str,
    /// How to fix it.
    pub fix: &'static str,
    pub(crate) run: fn(&Context<'_>, &mut Out),
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .field("severity", &self.severity)
            .finish()
    }
}

/// Every check, in the order `--list` shows them.
pub static CHECKS: &[&Check] = &[
    &readiness_probe_missing::CHECK,
    &liveness_equals_readiness::CHECK,
    &liveness_without_startup_probe::CHECK,
    &no_shutdown_delay::CHECK,
    &grace_period_too_short::CHECK,
    &lameduck_budget_mismatch::CHECK,
    &lameduck_settings_invalid::CHECK,
    &lameduck_proxy_bypassed::CHECK,
    &prestop_needs_shell::CHECK,
    &readiness_slower_than_prestop::CHECK,
    &rollout_zero_available::CHECK,
    &recreate_strategy::CHECK,
    &single_replica::CHECK,
    &statefulset_ondelete::CHECK,
    &pdb_missing::CHECK,
    &pdb_blocks_eviction::CHECK,
    &pdb_single_replica::CHECK,
    &external_traffic_local_no_surge::CHECK,
    &gate_annotations_invalid::CHECK,
    &min_ready_seconds_unset::CHECK,
    &progress_deadline_unset::CHECK,
    &invalid_ignore::CHECK,
];

/// The check with this ID.
pub fn find(id: &str) -> Option<&'static Check> {
    CHECKS.iter().copied().find(|c| c.id == id)
}

/// Where a running check reports.
pub struct Out {
    check: &'static str,
    severity: Severity,
    findings: Vec<Finding>,
}

impl Out {
    /// Reports a finding on `object` at `pos`.
    pub fn emit(&mut self, object: &Object, pos: Pos, message: String) {
        let suppressed = if self.check == invalid_ignore::CHECK.id {
            None
        } else {
            ignore_reason(object, self.check)
        };
        self.findings.push(Finding {
            check: self.check,
            severity: self.severity,
            message,
            file: object.file.clone(),
            pos,
            object: ObjectRef::of(object),
            suppressed,
        });
    }
}

/// The entries of an object's ignore annotation: (check id, reason, line offset).
pub(crate) fn ignore_entries(text: &str) -> impl Iterator<Item = (usize, &str, Option<&str>)> {
    text.lines()
        .enumerate()
        .map(str_trim)
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, line)| match line.split_once(':') {
            Some((id, reason)) => (i, id.trim(), Some(reason.trim()).filter(|r| !r.is_empty())),
            None => (i, line, None),
        })
}

fn str_trim((i, l): (usize, &str)) -> (usize, &str) {
    (i, l.trim())
}

fn ignore_reason(object: &Object, check: &str) -> Option<String> {
    let text = object.annotation(IGNORE_ANNOTATION)?.as_str()?;
    ignore_entries(text)
        .find(|(_, id, reason)| *id == check && reason.is_some())
        .and_then(|(_, _, r)| r.map(str::to_owned))
}

/// Runs every enabled check over the context and returns the findings sorted by file, position
/// and check.
pub(crate) fn run_all(ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Out {
        check: "",
        severity: Severity::Info,
        findings: Vec::new(),
    };
    for check in CHECKS {
        let Some(severity) = ctx.config.severity_of(check.id, check.severity) else {
            continue;
        };
        out.check = check.id;
        out.severity = severity;
        (check.run)(ctx, &mut out);
    }
    let mut findings = out.findings;
    findings.sort_by(|a, b| {
        (&a.file, a.pos, a.check, &a.message).cmp(&(&b.file, b.pos, b.check, &b.message))
    });
    findings
}

/// Seconds of a probe's field with its Kubernetes default.
pub(crate) fn probe_field(probe: &crate::yaml::Node, key: &str) -> f64 {
    let default = match key {
        "periodSeconds" => 10.0,
        "failureThreshold" => 3.0,
        "timeoutSeconds" | "successThreshold" => 1.0,
        _ => 0.0,
    };
    probe.get(key).and_then(|n| n.as_f64()).unwrap_or(default)
}

/// `container "name"` or `container #i` for messages.
pub(crate) fn container_label(name: &str) -> String {
    if name.is_empty() {
        "a container".to_owned()
    } else {
        format!("container {name:?}")
    }
}

/// Where to point for a finding about the object as a whole: its `metadata.name` value.
pub(crate) fn name_pos(object: &Object) -> Pos {
    object
        .root
        .path(&["metadata", "name"])
        .map_or(object.root.pos, |n| n.pos)
}
