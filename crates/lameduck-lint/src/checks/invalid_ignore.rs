//! `invalid-ignore`: an ignore annotation without a reason or naming an unknown check.

use super::{Check, IGNORE_ANNOTATION, Out, find, ignore_entries};
use crate::context::Context;
use crate::finding::Severity;

pub(crate) static CHECK: Check = Check {
    id: "invalid-ignore",
    severity: Severity::Error,
    summary: "lameduck.dev/ignore names an unknown check or gives no reason",
    explanation: "An ignore is a decision someone has to be able to review later, so it must say \
        why. An ignore without a reason, or for a check ID that does not exist (a typo, or a \
        renamed check), suppresses nothing and is reported instead.",
    fix: "Write one `<check-id>: <reason>` per line, with IDs from `lameduck lint --list`.",
    run,
};

fn run(ctx: &Context<'_>, out: &mut Out) {
    for object in ctx.objects {
        let Some(entry) = object
            .root
            .path(&["metadata", "annotations"])
            .and_then(|a| a.entry(IGNORE_ANNOTATION))
        else {
            continue;
        };
        let text = entry.value.as_str().unwrap_or("");
        for (_, id, reason) in ignore_entries(text) {
            if find(id).is_none() {
                out.emit(
                    object,
                    entry.key.pos,
                    format!("{IGNORE_ANNOTATION} names unknown check {id:?}"),
                );
            } else if reason.is_none() {
                out.emit(object, entry.key.pos, format!("{IGNORE_ANNOTATION} for {id} gives no reason, so it is not applied (write \"{id}: <reason>\")"));
            }
        }
    }
}
