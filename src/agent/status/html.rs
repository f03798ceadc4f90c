//! The status page's HTML. Every value from the configuration or the store goes through
//! `escape_html` (or `encode_uri_component` in a link); the only markup is written here.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::chart::{self, Cell, Line};
use super::{Detail, Health, Overview, ProbeView};
use crate::model::escape::{encode_uri_component, escape_html as esc};
use crate::model::fmt_ms;
use crate::store::IncidentRow;
use crate::store::rollups::{DayCell, RunLine, SyncSeries, totals};

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232b;background:#f4f6f8}
header{background:#1d2b3a;color:#fff;padding:12px 16px}
header h1{margin:0;font-size:19px}
header p{margin:2px 0 0;font-size:13px;color:#c6d0db}
main{max-width:1100px;margin:0 auto;padding:12px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px 14px;margin:0 0 12px}
h2{font-size:16px;margin:0 0 8px}
h3{font-size:15px;margin:0}
a{color:#0b5cad}
.summary{display:flex;flex-wrap:wrap;gap:8px 20px}
.summary b{font-size:18px}
.probe{border-top:1px solid #eceff2;padding:10px 0}
.probe:first-of-type{border-top:0}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 10px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.up{background:#2e9e44}.failing{background:#d0342c}.nodata{background:#8a919c}
.muted{color:#5b636e;font-size:13px}
.uptime{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:13px;margin:4px 0}
.bar{display:block;width:100%;height:22px;margin:2px 0 0}
.chart{display:block;width:100%;max-width:600px;height:auto}
.label{font-size:12px;color:#5b636e;margin-top:6px}
.why{color:#a4231c;font-size:13px;margin:4px 0}
.row{border-top:1px solid #eceff2;padding:6px 0;font-size:14px}
.row:first-of-type{border-top:0}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
.axis{display:flex;justify-content:space-between;font-size:12px;color:#5b636e;max-width:600px}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 3px 0 10px;vertical-align:-1px}
footer{color:#5b636e;font-size:12px;text-align:center;padding:8px 0 20px}
@media (max-width:600px){body{font-size:14px}main{padding:8px}section{padding:10px}}
";

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %b %-d, %H:%M").to_string()
}

/// `4 min ago`, `2 h ago`, `3 d ago`.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3_599 => format!("{} min ago", s / 60),
        3_600..=172_799 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn pct(runs: u64, ok: u64) -> String {
    if runs == 0 {
        "–".into()
    } else {
        let p = ok as f64 * 100.0 / runs as f64;
        if p >= 99.995 || p == 0.0 {
            format!("{p:.0} %")
        } else {
            format!("{p:.2} %")
        }
    }
}

fn document(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\
         <header><h1>{t}</h1><p>{s}</p></header><main>{body}</main>\
         <footer>rooftop {v} · read-only · refreshes every minute</footer></body></html>",
        t = esc(title),
        s = esc(subtitle),
        v = env!("CARGO_PKG_VERSION"),
    )
}

/// A short page with a title and a sentence (errors, the token request).
pub fn message(title: &str, text: &str) -> String {
    document(
        title,
        "rooftop status",
        &format!("<section><p>{}</p></section>", esc(text)),
    )
}

fn badge(h: Health) -> &'static str {
    match h {
        Health::Up => "<span class=\"badge up\">OK</span>",
        Health::Failing => "<span class=\"badge failing\">FAILING</span>",
        Health::NoData => "<span class=\"badge nodata\">NO DATA</span>",
    }
}

fn day_cells(days: &[DayCell]) -> Vec<Cell> {
    days.iter()
        .map(|d| Cell {
            ratio: d.ratio(),
            title: if d.runs == 0 {
                format!("{}: no runs", d.day)
            } else {
                format!(
                    "{}: {} of {} runs succeeded ({})",
                    d.day,
                    d.successes,
                    d.runs,
                    pct(d.runs, d.successes)
                )
            },
        })
        .collect()
}

fn uptimes(v: &ProbeView) -> String {
    let span = |n: usize| totals(&v.days[v.days.len().saturating_sub(n)..]);
    let (r24, s24) = v.day_ratio;
    let mut out = format!(
        "<div class=\"uptime\"><span>24 h <b>{}</b></span>",
        pct(r24, s24)
    );
    for (label, n) in [("7 d", 7), ("30 d", 30), ("90 d", 90)] {
        let (r, s) = span(n);
        let _ = write!(out, "<span>{label} <b>{}</b></span>", pct(r, s));
    }
    out.push_str("</div>");
    out
}

fn recent_bar(v: &ProbeView, tz: Tz) -> String {
    let cells: Vec<Cell> = v
        .recent
        .iter()
        .map(|c| Cell {
            ratio: (c.runs > 0).then(|| c.successes as f64 / c.runs as f64),
            title: match (&c.outcome, c.duration_ms) {
                (Some(o), d) => format!(
                    "{}: {o}{}{}",
                    local(c.at, tz),
                    d.map(|d| format!(" in {}", fmt_ms(d))).unwrap_or_default(),
                    c.failed_step
                        .as_ref()
                        .map(|s| format!(" at step {s}"))
                        .unwrap_or_default()
                ),
                (None, _) if c.runs == 0 => format!("{}: no runs", local(c.at, tz)),
                (None, _) => format!(
                    "from {}: {} of {} runs succeeded",
                    local(c.at, tz),
                    c.successes,
                    c.runs
                ),
            },
        })
        .collect();
    if cells.is_empty() {
        return "<div class=\"label\">Last 24 hours: no runs</div>".into();
    }
    let what = if v.recent.iter().all(|c| c.outcome.is_some()) {
        "one cell per run"
    } else {
        "15-minute cells"
    };
    format!(
        "<div class=\"label\">Last 24 hours ({what})</div>{}",
        chart::bar(&cells, "last 24 hours")
    )
}

fn sync_charts(
    series: &[SyncSeries],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    x_from: &str,
    x_to: &str,
) -> String {
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| (t - from).num_milliseconds() as f64 / span;
    let mut out = String::new();
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let all: Vec<u64> = s.points.iter().map(|p| p.measurements).collect();
        let last = s.points.last().map(|p| (p.p50_ms, p.p95_ms));
        let _ = write!(
            out,
            "<div class=\"label\">Sync latency of <b>{}</b>: p50 <span style=\"color:#1f6feb\">━</span> p95 <span style=\"color:#d0342c\">━</span>{} · {} measurements</div>",
            esc(&s.step),
            last.map(|(a, b)| format!(" (latest {} / {})", fmt_ms(a as f64), fmt_ms(b as f64)))
                .unwrap_or_default(),
            all.iter().sum::<u64>()
        );
        let top = s
            .points
            .iter()
            .map(|p| p.p95_ms.max(p.p50_ms))
            .max()
            .unwrap_or(0);
        let _ = write!(
            out,
            "<div class=\"axis\"><span>{}</span></div>",
            esc(&fmt_ms(chart::nice_ceiling(top as f64)))
        );
        out.push_str(&chart::lines(
            &[
                Line {
                    name: "p50",
                    colour: "#1f6feb",
                    points: s
                        .points
                        .iter()
                        .map(|p| (x(p.at), p.p50_ms as f64))
                        .collect(),
                },
                Line {
                    name: "p95",
                    colour: "#d0342c",
                    points: s
                        .points
                        .iter()
                        .map(|p| (x(p.at), p.p95_ms as f64))
                        .collect(),
                },
            ],
            &format!("sync latency of {}", s.step),
        ));
        let _ = write!(
            out,
            "<div class=\"axis\"><span>{}</span><span>{}</span></div>",
            esc(x_from),
            esc(x_to)
        );
    }
    out
}

/// Why a run failed: its step, error class and (masked) message.
fn why(l: &RunLine) -> String {
    let r = &l.run;
    format!(
        "<div class=\"why\">{}{}{}</div>",
        r.failed_step
            .as_ref()
            .map(|s| format!("Step <b>{}</b> ", esc(s)))
            .unwrap_or_default(),
        r.error_class
            .as_ref()
            .map(|c| format!("[{}] ", esc(c)))
            .unwrap_or_default(),
        l.message.as_deref().map(esc).unwrap_or_default()
    )
}

fn probe_block(v: &ProbeView, o: &Overview, link: bool) -> String {
    let p = &v.probe;
    let name = if link {
        format!(
            "<a href=\"/status/probe/{}{}\">{}</a>",
            encode_uri_component(&p.name),
            esc(&o.token_query),
            esc(&p.name)
        )
    } else {
        esc(&p.name)
    };
    let mut out = format!(
        "<div class=\"probe\" id=\"probe-{}\"><div class=\"head\"><h3>{name}</h3>{}<span class=\"muted\">{} · {} · {}</span></div>",
        esc(&p.name),
        badge(v.health()),
        esc(&p.severity.to_string()),
        esc(p.connector_label()),
        esc(&p.schedule.to_string()),
    );
    if let Some(d) = &p.description {
        let _ = write!(out, "<div class=\"muted\">{}</div>", esc(d));
    }
    match &v.last {
        Some(l) => {
            let r = &l.run;
            let _ = write!(
                out,
                "<div class=\"muted\">Last run {} ({}): {} in {}</div>",
                esc(&ago(r.finished_at, o.now)),
                esc(&local(r.finished_at, o.tz)),
                esc(&r.outcome),
                esc(&fmt_ms(r.duration_ms))
            );
            if r.outcome != "success" && r.outcome != "skipped" {
                out.push_str(&why(l));
            }
        }
        None => out.push_str("<div class=\"muted\">No runs in the history yet.</div>"),
    }
    if let Some(i) = &v.incident {
        let _ = write!(
            out,
            "<div class=\"why\">Incident {} ({}) opened {}{}</div>",
            esc(&i.id),
            esc(i.state.as_str()),
            esc(&local(i.opened_at, o.tz)),
            i.acked_by
                .as_ref()
                .map(|b| format!(", acknowledged by {}", esc(b)))
                .unwrap_or_default()
        );
    }
    out.push_str(&uptimes(v));
    let _ = write!(
        out,
        "<div class=\"label\">Last {} days ({} days, one cell per day)</div>{}",
        v.days.len(),
        esc(o.tz.name()),
        chart::bar(&day_cells(&v.days), "daily health")
    );
    out.push_str(&recent_bar(v, o.tz));
    out.push_str(&sync_charts(
        &v.sync,
        o.now - chrono::Duration::hours(24),
        o.now,
        "24 h ago",
        "now",
    ));
    out.push_str("</div>");
    out
}

fn incident_rows(rows: &[IncidentRow], o: &Overview) -> String {
    let mut out = String::new();
    for i in rows {
        let acked = match (&i.acked_by, i.acked_at) {
            (Some(b), Some(at)) => {
                format!(" · acknowledged by {} at {}", esc(b), esc(&local(at, o.tz)))
            }
            (Some(b), None) => format!(" · acknowledged by {}", esc(b)),
            (None, Some(at)) => format!(" · acknowledged at {}", esc(&local(at, o.tz))),
            (None, None) if i.resolved_at.is_none() => " · <b>not acknowledged</b>".into(),
            (None, None) => String::new(),
        };
        let _ = write!(
            out,
            "<div class=\"row\"><b>{}</b> <a href=\"/status/probe/{}{}\">{}</a> · {} · opened {}{acked}{}<div class=\"muted\">{}</div></div>",
            esc(&i.severity.to_string()),
            encode_uri_component(&i.probe),
            esc(&o.token_query),
            esc(&i.probe),
            esc(i.state.as_str()),
            esc(&local(i.opened_at, o.tz)),
            i.resolved_at
                .map(|t| format!(" · resolved {}", esc(&local(t, o.tz))))
                .unwrap_or_default(),
            esc(&i.reason),
        );
    }
    out
}

fn header_sections(o: &Overview) -> String {
    let failing = o
        .probes
        .iter()
        .filter(|v| v.health() == Health::Failing)
        .count();
    let mut out = String::new();
    if !o.probes.is_empty() {
        let _ = write!(
            out,
            "<section><div class=\"summary\"><span><b>{}</b> of {} healthy</span><span><b>{}</b> failing</span><span><b>{}</b> open incident{}</span><span><b>{}</b> synthetic record{} awaiting cleanup</span></div></section>",
            o.probes.len() - failing,
            o.probes.len(),
            failing,
            o.open.len(),
            if o.open.len() == 1 { "" } else { "s" },
            o.leftovers,
            if o.leftovers == 1 { "" } else { "s" },
        );
    }
    if !o.open.is_empty() {
        let _ = write!(
            out,
            "<section><h2>Open incidents</h2>{}</section>",
            incident_rows(&o.open, o)
        );
    }
    if !o.on_call.is_empty() || !o.windows.is_empty() {
        out.push_str("<section><h2>On call now</h2>");
        if o.on_call.is_empty() {
            out.push_str("<div class=\"muted\">No rotations configured.</div>");
        }
        for (rotation, who, until) in &o.on_call {
            let _ = write!(
                out,
                "<div>{}: <b>{}</b>{}</div>",
                esc(rotation),
                who.as_deref().map(esc).unwrap_or_else(|| "nobody".into()),
                until
                    .map(|u| format!(
                        " <span class=\"muted\">until {}</span>",
                        esc(&local(u, o.tz))
                    ))
                    .unwrap_or_default()
            );
        }
        if !o.windows.is_empty() {
            out.push_str("<h2 style=\"margin-top:10px\">Time windows in effect</h2>");
            for (w, until) in &o.windows {
                let _ = write!(
                    out,
                    "<div><b>{}</b>{}</div>",
                    esc(w),
                    until
                        .map(|u| format!(
                            " <span class=\"muted\">until {}</span>",
                            esc(&local(u, o.tz))
                        ))
                        .unwrap_or_default()
                );
            }
        }
        out.push_str("</section>");
    }
    out
}

const LEGEND: &str = "<div class=\"muted legend\">Cells:<span style=\"background:#2e9e44\"></span>all runs succeeded<span style=\"background:#e0a21a\"></span>90 % or more<span style=\"background:#d0342c\"></span>under 90 %<span style=\"background:#c9ced6\"></span>no runs</div>";

/// `/status`.
pub fn overview(o: &Overview) -> String {
    let mut body = header_sections(o);
    // Grouped by flow, in the order the flows first appear.
    let mut probes: Vec<&ProbeView> = o.probes.iter().collect();
    // Failing first (stable: otherwise in the configuration's order).
    probes.sort_by_key(|v| v.health() != Health::Failing);
    let mut flows: Vec<&str> = Vec::new();
    for v in &probes {
        let f = v
            .probe
            .labels
            .get("flow")
            .map(String::as_str)
            .unwrap_or("other");
        if !flows.contains(&f) {
            flows.push(f);
        }
    }
    for f in flows {
        let _ = write!(body, "<section><h2>Flow: {}</h2>", esc(f));
        for v in probes.iter().filter(|v| {
            v.probe
                .labels
                .get("flow")
                .map(String::as_str)
                .unwrap_or("other")
                == f
        }) {
            body.push_str(&probe_block(v, o, true));
        }
        body.push_str("</section>");
    }
    body.push_str(LEGEND);
    if !o.resolved.is_empty() {
        let _ = write!(
            body,
            "<section><h2>Resolved in the last 7 days</h2>{}</section>",
            incident_rows(&o.resolved, o)
        );
    }
    document(
        &format!("{} — integration status", o.title),
        &format!("As of {} ({})", local(o.now, o.tz), o.tz.name()),
        &body,
    )
}

/// `/status/probe/<name>`.
pub fn detail(d: &Detail) -> String {
    let o = &d.overview;
    let mut body = format!(
        "<p><a href=\"/status{}\">← all probes</a></p><section>{}</section>",
        esc(&o.token_query),
        probe_block(&d.view, o, false)
    );
    if d.daily_sync.iter().any(|s| !s.points.is_empty()) {
        let from = o.now - chrono::Duration::days(30);
        let _ = write!(
            body,
            "<section><h2>Sync latency, daily, last 30 days</h2>{}</section>",
            sync_charts(&d.daily_sync, from, o.now, "30 d ago", "today")
        );
    }
    if !d.incidents.is_empty() {
        let _ = write!(
            body,
            "<section><h2>Incidents (open and resolved in the last 7 days)</h2>{}</section>",
            incident_rows(&d.incidents, o)
        );
    }
    body.push_str("<section><h2>Last runs</h2>");
    for l in &d.runs {
        let r = &l.run;
        let ok = r.outcome == "success" || r.outcome == "skipped";
        let _ = write!(
            body,
            "<div class=\"row\"><span class=\"dot\" style=\"background:{}\"></span>{} · <b>{}</b> · {} · cleanup {}",
            chart::colour(Some(if ok { 1.0 } else { 0.0 })),
            esc(&local(r.finished_at, o.tz)),
            esc(&r.outcome),
            esc(&fmt_ms(r.duration_ms)),
            esc(&r.cleanup),
        );
        if !ok {
            body.push_str(&why(l));
        }
        body.push_str("</div>");
    }
    if d.runs.is_empty() {
        body.push_str("<div class=\"muted\">No runs in the history yet.</div>");
    }
    body.push_str("</section>");
    body.push_str(LEGEND);
    document(
        &format!("{} — {}", o.title, d.view.probe.name),
        &format!("As of {} ({})", local(o.now, o.tz), o.tz.name()),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::model::{IncidentState, Probe, Schedule, Severity};
    use crate::store::rollups::{RecentCell, RunLine};
    use crate::store::runs::RunRow;

    const EVIL: &str = "<img src=x onerror=alert(1)>\"'&";

    fn probe() -> Arc<Probe> {
        let labels: BTreeMap<String, String> = [("flow", EVIL), ("connector", EVIL)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(Probe {
            name: "lead<b>".into(),
            description: Some(EVIL.into()),
            schedule: Schedule::Every(std::time::Duration::from_secs(60)),
            timeout: std::time::Duration::from_secs(10),
            severity: Severity::P1,
            runbook: None,
            labels,
            connector: Some(EVIL.into()),
            vars: Vec::new(),
            steps: Vec::new(),
            cleanup: Vec::new(),
            alert: Default::default(),
            depend_on: Vec::new(),
            source: "probes/x.yaml".into(),
        })
    }

    fn sample() -> Overview {
        let now: DateTime<Utc> = "2026-12-04T18:00:00Z".parse().unwrap();
        let run = RunRow {
            run_id: "r1".into(),
            probe: "lead<b>".into(),
            finished_at: now,
            duration_ms: 12.0,
            outcome: "failed".into(),
            error_class: Some(EVIL.into()),
            failed_step: Some(EVIL.into()),
            cleanup: "success".into(),
            trigger: "schedule".into(),
            lag_ms: None,
        };
        let incident = IncidentRow {
            id: "inc-1".into(),
            probe: "lead<b>".into(),
            severity: Severity::P1,
            connector: EVIL.into(),
            state: IncidentState::Open,
            opened_at: now,
            acked_at: None,
            acked_by: Some(EVIL.into()),
            resolved_at: None,
            resolved_by: None,
            flapping: false,
            error_class: None,
            failed_step: None,
            reason: EVIL.into(),
            runs: vec![],
            last_message: None,
            group: None,
            reopens: 0,
        };
        Overview {
            title: EVIL.into(),
            now,
            tz: chrono_tz::America::Toronto,
            probes: vec![ProbeView {
                probe: probe(),
                last: Some(RunLine {
                    run,
                    message: Some(EVIL.into()),
                }),
                days: vec![],
                recent: vec![RecentCell {
                    at: now,
                    runs: 1,
                    successes: 0,
                    outcome: Some("failed".into()),
                    failed_step: Some(EVIL.into()),
                    duration_ms: Some(12.0),
                }],
                day_ratio: (1, 0),
                sync: vec![],
                incident: Some(incident.clone()),
            }],
            open: vec![incident],
            resolved: vec![],
            on_call: vec![(EVIL.into(), Some(EVIL.into()), Some(now))],
            windows: vec![(EVIL.into(), None)],
            leftovers: 2,
            token_query: "?token=a%22b".into(),
        }
    }

    #[test]
    fn nothing_from_the_config_or_the_store_is_printed_unescaped() {
        let html = overview(&sample());
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>\""), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;"));
        // A probe's name in a link is a URI component.
        assert!(
            html.contains("href=\"/status/probe/lead%3Cb%3E?token=a%22b\""),
            "{html}"
        );
        assert!(html.contains("badge failing"));
        assert!(html.contains("<b>2</b> synthetic records awaiting cleanup"));
    }

    #[test]
    fn a_probe_that_never_ran_says_so() {
        let mut o = sample();
        o.probes[0].last = None;
        o.probes[0].incident = None;
        o.probes[0].recent.clear();
        o.probes[0].day_ratio = (0, 0);
        let html = overview(&o);
        assert!(html.contains("badge nodata"));
        assert!(html.contains("No runs in the history yet."));
        assert!(html.contains("Last 24 hours: no runs"));
        assert!(html.contains("24 h <b>–</b>"));
    }
}
