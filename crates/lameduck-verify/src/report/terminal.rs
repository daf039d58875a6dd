//! The terminal summary: one column per run, then a per-pod table for each run.

use std::fmt::Write as _;

use crate::accounting::Report;
use crate::load::Outcome;
use crate::scenario::Clients;

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "0%".into()
    } else {
        format!("{:.3}%", n as f64 * 100.0 / of as f64)
    }
}

fn opt(v: Option<f64>, signed: bool) -> String {
    match v {
        Some(x) if signed => format!("{x:+.2}s"),
        Some(x) => format!("{x:.2}s"),
        None => "-".into(),
    }
}

/// Renders the reports for a terminal (plain text, no colours).
#[must_use]
pub fn render_terminal(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let sc = &first.scenario;
    let routers: Vec<String> = sc
        .routers
        .iter()
        .map(|r| {
            format!(
                "{}×{}{}",
                r.kind,
                r.count,
                if r.retry { " (retry)" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "lameduck verify: {} replicas, {} rolling update(s), maxSurge {} maxUnavailable {}, routers {}, propagation {}, load {} ({}), seed {}",
        sc.replicas,
        sc.rollouts,
        sc.max_surge,
        sc.max_unavailable,
        routers.join(" + "),
        sc.propagation,
        sc.load.clients_described(),
        sc.load.protocol,
        sc.seed
    );
    let labels: Vec<String> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.label.is_empty() {
                format!("run {}", i + 1)
            } else {
                r.label.clone()
            }
        })
        .collect();
    let w = labels.iter().map(String::len).max().unwrap_or(0).max(18);
    let row = |out: &mut String, name: &str, cells: Vec<String>| {
        let _ = write!(out, "  {name:<34}");
        for c in cells {
            let _ = write!(out, "{c:>w$}  ");
        }
        out.push('\n');
    };
    out.push('\n');
    row(&mut out, "", labels.clone());
    row(
        &mut out,
        "requests started",
        reports.iter().map(|r| r.load.started.to_string()).collect(),
    );
    row(
        &mut out,
        "achieved rate (req/s)",
        reports
            .iter()
            .map(|r| match r.scenario.load.clients {
                Clients::Open => {
                    format!("{:.0} of {:.0}", r.load.achieved_rate, r.load.target_rate)
                }
                Clients::Closed => {
                    format!("{:.0} of ≤ {:.0}", r.load.achieved_rate, r.load.target_rate)
                }
            })
            .collect(),
    );
    row(
        &mut out,
        "failed",
        reports
            .iter()
            .map(|r| format!("{} ({})", r.load.failed, pct(r.load.failed, r.load.started)))
            .collect(),
    );
    for class in Outcome::FAILURES {
        if reports
            .iter()
            .any(|r| r.failures_by_class.contains_key(class.name()))
        {
            row(
                &mut out,
                &format!("  {}", class.name()),
                reports
                    .iter()
                    .map(|r| {
                        r.failures_by_class
                            .get(class.name())
                            .copied()
                            .unwrap_or(0)
                            .to_string()
                    })
                    .collect(),
            );
        }
    }
    for phase in ["serving", "pre_stop", "stopping", "gone", "unknown"] {
        if reports
            .iter()
            .any(|r| r.failures_by_phase.contains_key(phase))
        {
            row(
                &mut out,
                &format!("  while pod {phase}"),
                reports
                    .iter()
                    .map(|r| {
                        r.failures_by_phase
                            .get(phase)
                            .copied()
                            .unwrap_or(0)
                            .to_string()
                    })
                    .collect(),
            );
        }
    }
    if reports.iter().any(|r| r.load.ok_after_retry > 0) {
        row(
            &mut out,
            "ok only after a router retry",
            reports
                .iter()
                .map(|r| r.load.ok_after_retry.to_string())
                .collect(),
        );
    }
    row(
        &mut out,
        "exposure (router-seconds)",
        reports
            .iter()
            .map(|r| format!("{:.2}", r.exposure))
            .collect(),
    );
    row(
        &mut out,
        "termination t0→exit (max)",
        reports
            .iter()
            .map(|r| {
                opt(
                    r.pods
                        .iter()
                        .filter_map(|p| p.termination_seconds)
                        .reduce(f64::max),
                    false,
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "exit − last withdrawal (min)",
        reports
            .iter()
            .map(|r| {
                opt(
                    r.pods
                        .iter()
                        .filter_map(|p| p.exit_after_last_withdrawal)
                        .reduce(f64::min),
                    true,
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "latency p50 / p99 (ms)",
        reports
            .iter()
            .map(|r| format!("{:.1} / {:.1}", r.load.latency_ms[0], r.load.latency_ms[1]))
            .collect(),
    );
    row(
        &mut out,
        "testbed CPU (routers, load, accounting)",
        reports
            .iter()
            .map(|r| {
                format!(
                    "{:.1}s in {:.1}s",
                    r.testbed.cpu_seconds, r.testbed.wall_seconds
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "accounting invariant",
        reports
            .iter()
            .map(|r| {
                if r.invariant_holds {
                    "holds".to_string()
                } else {
                    "VIOLATED".into()
                }
            })
            .collect(),
    );
    row(
        &mut out,
        "verdict",
        reports
            .iter()
            .map(|r| {
                if r.passed {
                    format!("PASS (≤ {})", r.scenario.max_failures)
                } else {
                    format!("FAIL (> {})", r.scenario.max_failures)
                }
            })
            .collect(),
    );
    for (r, label) in reports.iter().zip(&labels) {
        let _ = writeln!(
            out,
            "\n  {label}: terminated pods (times in s since start; withdrawal = last router to stop routing)"
        );
        let _ = writeln!(
            out,
            "    {:<7} {:>6} {:>7} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8}  failures",
            "pod", "t0", "signal", "exit", "t0→exit", "last wd", "exit−wd", "exposure", "status"
        );
        for p in r.pods.iter().filter(|p| p.deleted.is_some()) {
            let classes: Vec<String> = p
                .failures_by_class
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                out,
                "    pod-{:<3} {:>6} {:>7} {:>8} {:>8} {:>9} {:>10} {:>9.2} {:>8}  {}{}",
                p.id,
                opt(p.deleted, false),
                opt(p.stop_signal, false),
                opt(p.exited, false),
                opt(p.termination_seconds, false),
                opt(p.last_withdrawal, false),
                opt(p.exit_after_last_withdrawal, true),
                p.exposure,
                p.exit_status.as_deref().unwrap_or("-"),
                p.failures,
                if classes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", classes.join(", "))
                }
            );
        }
        for e in &r.router_errors {
            let _ = writeln!(out, "    router error: {e}");
        }
    }
    out
}
