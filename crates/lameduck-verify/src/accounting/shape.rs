//! How the report's pairs and triples are written in JSON: as objects with named fields
//! (`{"start": 2.0, "stop": 31.5}`), not Rust's tuples as arrays.

use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::events::RouterId;

fn pairs<S: Serializer>(s: S, fields: &[(&str, f64)]) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(fields.len()))?;
    for (name, value) in fields {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// `{"start", "stop"}` of the load.
pub(super) fn window<S: Serializer>(w: &(f64, f64), s: S) -> Result<S::Ok, S::Error> {
    pairs(s, &[("start", w.0), ("stop", w.1)])
}

/// `{"started", "finished"}` of a preStop hook, or null.
pub(super) fn span<S: Serializer>(span: &Option<(f64, f64)>, s: S) -> Result<S::Ok, S::Error> {
    match span {
        Some((started, finished)) => pairs(s, &[("started", *started), ("finished", *finished)]),
        None => s.serialize_none(),
    }
}

/// `{"p50", "p99", "max"}` in milliseconds.
pub(super) fn latency<S: Serializer>(ms: &[f64; 3], s: S) -> Result<S::Ok, S::Error> {
    pairs(s, &[("p50", ms[0]), ("p99", ms[1]), ("max", ms[2])])
}

/// `[{"router", "t"}]`: when each router withdrew a pod.
pub(super) fn withdrawals<S: Serializer>(
    withdrawals: &[(RouterId, f64)],
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Withdrawal {
        router: RouterId,
        t: f64,
    }
    let mut seq = s.serialize_seq(Some(withdrawals.len()))?;
    for &(router, t) in withdrawals {
        seq.serialize_element(&Withdrawal { router, t })?;
    }
    seq.end()
}
