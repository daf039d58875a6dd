//! The HTML report: one self-contained page (no scripts, no external resources), one section per
//! run, each with its summary and an inline SVG timeline: a row per pod (starting, serving,
//! deleted before the stop signal, after the stop signal, killed), the moment each router withdrew
//! it, and every failed request on the same time axis.

use std::fmt::Write as _;

use crate::accounting::{PodReport, Report};
use crate::load::Outcome;

const ROUTER_COLOURS: [&str; 8] = [
    "#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#2ca02c",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn class_colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#2ca02c",
        Outcome::Refused => "#d62728",
        Outcome::Reset => "#ff7f0e",
        Outcome::Timeout => "#7f3fbf",
        Outcome::Status5xx => "#b8860b",
        Outcome::Protocol => "#555555",
    }
}

/// Renders the reports as one self-contained HTML page.
#[must_use]
pub fn render_html(reports: &[Report]) -> String {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lameduck verify report</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\n\
         h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-top:1px solid #ccc;padding-top:16px}\n\
         table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}\n\
         th:first-child,td:first-child{text-align:left}.pass{color:#2a7a2a;font-weight:bold}.fail{color:#c0392b;font-weight:bold}\n\
         .legend span{display:inline-block;margin-right:14px;font-size:13px}.sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px}\n\
         svg text{font-size:11px;font-family:system-ui,sans-serif}\n</style></head><body>\n<h1>lameduck verify</h1>\n",
    );
    if reports.len() > 1 {
        comparison(&mut h, reports);
    }
    for (i, r) in reports.iter().enumerate() {
        section(&mut h, r, i);
    }
    h.push_str("</body></html>\n");
    h
}

fn comparison(h: &mut String, reports: &[Report]) {
    h.push_str("<table id=\"comparison\"><tr><th></th>");
    for r in reports {
        let _ = write!(h, "<th>{}</th>", esc(&r.label));
    }
    h.push_str("</tr>");
    type Cell = fn(&Report) -> String;
    let rows: [(&str, Cell); 4] = [
        ("requests", |r| r.load.started.to_string()),
        ("failed", |r| r.load.failed.to_string()),
        ("exposure (router-seconds)", |r| {
            format!("{:.2}", r.exposure)
        }),
        ("verdict", |r| {
            if r.passed {
                "PASS".into()
            } else {
                "FAIL".into()
            }
        }),
    ];
    for (name, f) in rows {
        let _ = write!(h, "<tr><td>{name}</td>");
        for r in reports {
            let _ = write!(h, "<td>{}</td>", f(r));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
}

fn section(h: &mut String, r: &Report, idx: usize) {
    let sc = &r.scenario;
    let title = if r.label.is_empty() {
        format!("Run {}", idx + 1)
    } else {
        r.label.clone()
    };
    let verdict = if r.passed {
        "<span class=\"pass\">PASS</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    };
    let _ = writeln!(h, "<h2 id=\"run-{idx}\">{} — {verdict}</h2>", esc(&title));
    let routers: Vec<String> = r
        .routers
        .iter()
        .map(|x| format!("r{} {} ({})", x.id, x.kind, x.propagation))
        .collect();
    let _ = writeln!(
        h,
        "<p><code>{}</code><br>{} replicas, {} rolling update(s), maxSurge {}, maxUnavailable {}, grace {}, preStop {:?}; \
         routers: {}; load {} ({}); seed {}.</p>",
        esc(&sc.command.join(" ")),
        sc.replicas,
        sc.rollouts,
        sc.max_surge,
        sc.max_unavailable,
        sc.grace,
        sc.pre_stop,
        esc(&routers.join(", ")),
        esc(&sc.load.clients_described()),
        sc.load.protocol,
        sc.seed
    );
    let _ = write!(
        h,
        "<table><tr><td>requests started</td><td>{}</td></tr><tr><td>succeeded</td><td>{}</td></tr>\
         <tr><td>failed</td><td>{} ({:.3}%)</td></tr>",
        r.load.started,
        r.load.ok,
        r.load.failed,
        if r.load.started == 0 {
            0.0
        } else {
            r.load.failed as f64 * 100.0 / r.load.started as f64
        }
    );
    for (k, v) in &r.failures_by_class {
        let _ = write!(h, "<tr><td>&nbsp;&nbsp;{k}</td><td>{v}</td></tr>");
    }
    for (k, v) in &r.failures_by_phase {
        let _ = write!(h, "<tr><td>&nbsp;&nbsp;while pod {k}</td><td>{v}</td></tr>");
    }
    let _ = writeln!(
        h,
        "<tr><td>exposure</td><td>{:.2} router-seconds</td></tr><tr><td>achieved rate</td><td>{:.0} req/s</td></tr>\
         <tr><td>accounting invariant</td><td>{}</td></tr></table>",
        r.exposure,
        r.load.achieved_rate,
        if r.invariant_holds {
            "holds"
        } else {
            "VIOLATED"
        }
    );
    timeline(h, r, idx);
    pod_table(h, r);
}

fn timeline(h: &mut String, r: &Report, idx: usize) {
    let end = r
        .load_window
        .1
        .max(r.pods.iter().filter_map(|p| p.exited).fold(0.0, f64::max))
        .max(1.0);
    let (left, width, row) = (90.0, 1100.0, 26.0);
    let x = |t: f64| left + (t / end).clamp(0.0, 1.0) * width;
    let pods: Vec<&PodReport> = r.pods.iter().collect();
    let rows = pods.len() + 1; // + the "no pod" row
    let top = 20.0;
    let chart_h = 60.0;
    let height = top + rows as f64 * row + chart_h + 40.0;
    let _ = writeln!(
        h,
        "<div class=\"legend\"><span><i class=\"sw\" style=\"background:#c7c7c7\"></i>starting</span>\
         <span><i class=\"sw\" style=\"background:#98df8a\"></i>serving</span>\
         <span><i class=\"sw\" style=\"background:#ffd966\"></i>deleted (t0), before the stop signal</span>\
         <span><i class=\"sw\" style=\"background:#f4a261\"></i>after the stop signal</span>\
         <span>✕ SIGKILL</span><span>│ router withdrew it (colour = router)</span>\
         {}</div>",
        Outcome::FAILURES
            .iter()
            .map(|o| format!(
                "<span><i class=\"sw\" style=\"background:{};border-radius:6px\"></i>{}</span>",
                class_colour(*o),
                o.name()
            ))
            .collect::<String>()
    );
    let _ = writeln!(
        h,
        "<svg id=\"timeline-{idx}\" class=\"timeline\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        left + width + 20.0,
        left + width + 20.0
    );
    // Axis with a tick per second (or per 5 s for long runs).
    let step = if end > 60.0 {
        10.0
    } else if end > 20.0 {
        5.0
    } else {
        1.0
    };
    let axis_y = top + rows as f64 * row;
    let mut t = 0.0;
    while t <= end {
        let _ = write!(
            h,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{axis_y}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{t:.0}s</text>",
            x(t),
            axis_y + 12.0
        );
        t += step;
    }
    let (lw0, lw1) = r.load_window;
    let _ = write!(
        h,
        "<rect x=\"{:.1}\" y=\"4\" width=\"{:.1}\" height=\"6\" fill=\"#dde\"><title>load {lw0:.2}s–{lw1:.2}s</title></rect>",
        x(lw0),
        (x(lw1) - x(lw0)).max(1.0)
    );
    for (i, p) in pods.iter().enumerate() {
        let y = top + i as f64 * row;
        let _ = write!(
            h,
            "<g class=\"pod\" id=\"pod-{idx}-{}\"><text x=\"4\" y=\"{:.1}\">pod-{} r{}</text>",
            p.id,
            y + 15.0,
            p.id,
            p.revision
        );
        let stop = p.exited.unwrap_or(end);
        let ready = p.ready.unwrap_or(stop);
        let deleted = p.deleted.unwrap_or(stop).max(ready.min(stop));
        let signal = p.stop_signal.unwrap_or(stop).max(deleted);
        for (a, b, colour, name) in [
            (p.started, ready.min(stop), "#c7c7c7", "starting"),
            (ready, deleted, "#98df8a", "serving"),
            (
                deleted,
                signal.min(stop),
                "#ffd966",
                "deleted, before stop signal",
            ),
            (signal, stop, "#f4a261", "after stop signal"),
        ] {
            if b > a {
                let _ = write!(
                    h,
                    "<rect class=\"phase\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{colour}\"><title>pod-{} {name}: {a:.2}s–{b:.2}s</title></rect>",
                    x(a),
                    y + 4.0,
                    (x(b) - x(a)).max(0.5),
                    p.id
                );
            }
        }
        if let Some(k) = p.killed {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c00\" text-anchor=\"middle\">✕<title>SIGKILL at {k:.2}s</title></text>",
                x(k),
                y + 15.0
            );
        }
        for (rid, t) in &p.withdrawals {
            let c = ROUTER_COLOURS[usize::from(*rid) % ROUTER_COLOURS.len()];
            let _ = write!(
                h,
                "<line class=\"withdrawal\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{c}\" stroke-width=\"2\"><title>router r{rid} withdrew pod-{3} at {t:.2}s</title></line>",
                x(*t),
                y + 1.0,
                y + 21.0,
                p.id
            );
        }
        h.push_str("</g>");
    }
    let none_y = top + pods.len() as f64 * row;
    let _ = write!(h, "<text x=\"4\" y=\"{:.1}\">no pod</text>", none_y + 15.0);
    // Failures: one dot each, on the row of their pod, jittered by router so routers separate.
    let index: std::collections::HashMap<u32, usize> =
        pods.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    for f in r.failures.iter().take(20_000) {
        let row_i = f
            .pod
            .and_then(|p| index.get(&p).copied())
            .unwrap_or(pods.len());
        let y = top + row_i as f64 * row + 8.0 + f64::from(f.router % 3) * 5.0;
        let _ = write!(
            h,
            "<circle class=\"failure\" cx=\"{:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{}\"><title>{} at {:.3}s via r{} (pod {})</title></circle>",
            x(f.t),
            class_colour(f.outcome),
            f.outcome.name(),
            f.t,
            f.router,
            f.pod.map_or("?".into(), |p| p.to_string())
        );
    }
    // Successes per 100 ms under the rows.
    let base = axis_y + chart_h + 20.0;
    let max = r.ok_per_bucket.iter().copied().max().unwrap_or(1).max(1);
    let mut path = String::new();
    for (i, n) in r.ok_per_bucket.iter().enumerate() {
        let t = lw0 + i as f64 * 0.1;
        let yy = base - f64::from(*n) / f64::from(max) * (chart_h - 10.0);
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            x(t),
            yy
        );
    }
    let _ = write!(
        h,
        "<text x=\"4\" y=\"{:.1}\">ok / 100 ms</text><path d=\"{}\" fill=\"none\" stroke=\"#2ca02c\"/>",
        base - chart_h / 2.0,
        path.trim_end()
    );
    h.push_str("</svg>\n");
}

fn pod_table(h: &mut String, r: &Report) {
    h.push_str(
        "<table class=\"pods\"><tr><th>pod</th><th>rev</th><th>ready</th><th>t0</th><th>stop signal</th><th>exit</th>\
         <th>t0→exit</th><th>last withdrawal</th><th>exit − last withdrawal</th><th>exposure</th><th>failures</th></tr>\n",
    );
    let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.2}s"));
    for p in &r.pods {
        let classes: Vec<String> = p
            .failures_by_class
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>pod-{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{} {}</td></tr>",
            p.id,
            p.revision,
            f(p.ready),
            f(p.deleted),
            f(p.stop_signal),
            f(p.exited),
            if p.killed.is_some() { " (killed)" } else { "" },
            f(p.termination_seconds),
            f(p.last_withdrawal),
            p.exit_after_last_withdrawal
                .map_or("–".into(), |x| format!("{x:+.2}s")),
            p.exposure,
            p.failures,
            esc(&classes.join(", "))
        );
    }
    h.push_str("</table>\n");
}
