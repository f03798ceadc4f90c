//! `rooftop status` and `rooftop history`: read the run history the agent writes.

use crate::clock::Clock as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, fmt_ms, load_config};
use crate::config::diagnostic::did_you_mean;
use crate::store::RunStore;
use crate::store::stats::ProbeStatus;

fn open(cfg: &ConfigArgs, config: &crate::config::Config) -> Result<RunStore, ExitCode> {
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    RunStore::open_in(&state_dir).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CANNOT_RUN)
    })
}

pub async fn status(cfg: &ConfigArgs, as_json: bool) -> ExitCode {
    let mut config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Heartbeat checks are listed as the probes their runs belong to; they have no next
    // run of their own (their job pings).
    let checks = config.heartbeats.len();
    config
        .probes
        .extend(config.heartbeats.iter().map(|h| h.as_probe()));
    let first_check = config.probes.len() - checks;
    let store = match open(cfg, &config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = crate::clock::SystemClock.now();
    let names = config.probes.iter().map(|p| p.name.clone()).collect();
    let statuses = match store.status(names, now).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let rows: Vec<_> = config
        .probes
        .iter()
        .zip(statuses)
        .enumerate()
        .map(|(i, (p, st))| {
            let next = crate::scheduler::next_fire(
                &p.schedule,
                crate::scheduler::spread(&p.name, &p.schedule),
                now,
            )
            .filter(|_| i < first_check);
            (p, next, st)
        })
        .collect();
    if as_json {
        let probes: Vec<_> = rows
            .iter()
            .map(|(p, next, st)| {
                let mut v = json!({
                    "probe": p.name,
                    "schedule": p.schedule.to_string(),
                    "next_run": next.map(|t| t.to_rfc3339()),
                    "severity": p.severity,
                    "labels": p.labels,
                });
                if let (Some(obj), Ok(serde_json::Value::Object(st))) =
                    (v.as_object_mut(), serde_json::to_value(st))
                {
                    obj.extend(st.into_iter().filter(|(k, _)| k != "probe"));
                }
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"generated_at": now.to_rfc3339(), "probes": probes})
            )
            .unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<30} {:<13} {:<9} {:>7} {:>7} {:>7}  {:<17} NEXT RUN",
        "PROBE", "LAST", "AT", "OK 1h", "OK 24h", "OK 7d", "RUN p50 / p95"
    );
    for (p, next, st) in &rows {
        for line in probe_lines(p, *next, st) {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// One probe in the status table: a summary row, then indented detail lines for what
/// there is to say (sync latency, steps, errors, outages).
fn probe_lines(
    p: &crate::model::Probe,
    next: Option<chrono::DateTime<chrono::Utc>>,
    st: &ProbeStatus,
) -> Vec<String> {
    let ratio = |i: usize| {
        st.windows
            .get(i)
            .and_then(|w| w.ratio)
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
    };
    let (last, at) = st
        .last
        .as_ref()
        .map_or(("never run".to_string(), "-".to_string()), |l| {
            (
                l.outcome.clone(),
                l.finished_at.format("%H:%M:%S").to_string(),
            )
        });
    let run = st.duration_24h.as_ref().map_or("-".to_string(), |d| {
        format!("{} / {}", fmt_ms(d.p50_ms as f64), fmt_ms(d.p95_ms as f64))
    });
    // A heartbeat check (a probe with no steps) runs when its job pings.
    let no_next = if p.steps.is_empty() {
        "on ping"
    } else {
        "never"
    };
    let mut lines = vec![format!(
        "{:<30} {:<13} {:<9} {:>7} {:>7} {:>7}  {:<17} {}",
        p.name,
        last,
        at,
        ratio(0),
        ratio(1),
        ratio(2),
        run,
        next.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| no_next.into())
    )];
    let pad = "      ";
    if let Some(since) = st.recovery.failing_since {
        lines.push(format!(
            "{pad}FAILING since {}",
            since.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    for s in &st.sync {
        lines.push(format!(
            "{pad}sync {}: p50 {} p95 {} p99 {} (24h, {} measurements; median interval {}, {:.1} polls)",
            s.step,
            fmt_ms(s.p50_ms as f64),
            fmt_ms(s.p95_ms as f64),
            fmt_ms(s.p99_ms as f64),
            s.measurements,
            fmt_ms(s.median_width_ms as f64),
            s.polls_mean
        ));
    }
    if !st.steps.is_empty() {
        let steps: Vec<String> = st
            .steps
            .iter()
            .map(|s| {
                let failures = if s.failures > 0 {
                    format!(" ({} failed)", s.failures)
                } else {
                    String::new()
                };
                format!(
                    "{} {}/{}{failures}",
                    s.step,
                    fmt_ms(s.duration.p50_ms as f64),
                    fmt_ms(s.duration.p95_ms as f64)
                )
            })
            .collect();
        lines.push(format!("{pad}steps p50/p95: {}", steps.join(", ")));
    }
    for e in &st.errors_24h {
        lines.push(format!(
            "{pad}{} × {} on {} (24h)",
            e.count, e.error_class, e.connector
        ));
    }
    let unusual: Vec<String> = st
        .http_status_24h
        .iter()
        .filter(|h| !(200..300).contains(&h.status))
        .map(|h| format!("{} × HTTP {} on {}", h.count, h.status, h.connector))
        .collect();
    if !unusual.is_empty() {
        lines.push(format!("{pad}{} (24h)", unusual.join(", ")));
    }
    let skipped = st
        .windows
        .get(1)
        .and_then(|w| w.outcomes.get("skipped"))
        .copied()
        .unwrap_or(0);
    if skipped > 0 {
        lines.push(format!(
            "{pad}{skipped} fires skipped: overlap (24h; runs outlast the schedule's period)"
        ));
    }
    if st.recovery.outages_7d > 0 {
        lines.push(format!(
            "{pad}{} outages in 7d, mean time to recover {}",
            st.recovery.outages_7d,
            st.recovery
                .mttr_ms
                .map_or("- (not recovered yet)".to_string(), fmt_ms)
        ));
    }
    lines
}

pub async fn history(cfg: &ConfigArgs, probe: &str, since: Duration, as_json: bool) -> ExitCode {
    let mut config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A heartbeat check's runs are stored under its name, as a probe's.
    config
        .probes
        .extend(config.heartbeats.iter().map(|h| h.as_probe()));
    if config.probe(probe).is_none() {
        eprintln!(
            "error: no probe named `{probe}` in {}",
            config.dir.display()
        );
        if let Some(h) = did_you_mean(probe, config.probes.iter().map(|p| p.name.as_str())) {
            eprintln!("  = help: {h}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    let store = match open(cfg, &config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let from = crate::clock::SystemClock.now()
        - chrono::Duration::from_std(since).unwrap_or_else(|_| chrono::Duration::days(3650));
    let runs = match store.history(probe.to_string(), from).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if runs.is_empty() {
        println!(
            "no runs of {probe} in the last {}",
            humantime::format_duration(since)
        );
    }
    for r in runs {
        println!(
            "{}  {:<18} {:<12} {:>8}  {}{}",
            r.finished_at.format("%Y-%m-%d %H:%M:%S"),
            r.run_id,
            r.outcome,
            fmt_ms(r.duration_ms),
            match (&r.error_class, r.outcome.as_str(), r.trigger.as_str()) {
                (Some(c), _, _) => format!("[{c} at {}] ", r.failed_step.unwrap_or_default()),
                (None, "skipped", _) =>
                    "skipped: overlap (the previous run was still going) ".into(),
                (None, _, "catch_up") =>
                    "(catch-up for fires missed while the agent was down) ".into(),
                _ => String::new(),
            },
            if r.cleanup == "failed" {
                "CLEANUP FAILED"
            } else {
                ""
            }
        );
    }
    ExitCode::SUCCESS
}
