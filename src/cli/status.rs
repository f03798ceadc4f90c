//! `rooftop status` and `rooftop history`: read the run history the agent writes.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, fmt_ms, load_config};
use crate::config::diagnostic::did_you_mean;
use crate::store::RunStore;

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
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open(cfg, &config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = chrono::Utc::now();
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
        .map(|(p, st)| {
            let next = crate::scheduler::next_fire(
                &p.schedule,
                crate::scheduler::spread(&p.name, &p.schedule),
                now,
            );
            (p, next, st)
        })
        .collect();
    if as_json {
        let probes: Vec<_> = rows
            .iter()
            .map(|(p, next, st)| {
                json!({
                    "probe": p.name,
                    "schedule": p.schedule.to_string(),
                    "next_run": next.map(|t| t.to_rfc3339()),
                    "severity": p.severity,
                    "last": st.last,
                    "windows": st.windows,
                    "sync": st.sync,
                    "errors_24h": st.errors_24h.iter().map(|(c, e, n)| json!({"connector": c, "error_class": e, "count": n})).collect::<Vec<_>>(),
                })
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
        "{:<30} {:<13} {:<10} {:>7} {:>7} {:>7}  {:<28} NEXT RUN",
        "PROBE", "LAST", "AT", "OK 1h", "OK 24h", "OK 7d", "SYNC p50 / p95 / p99 (24h)"
    );
    for (p, next, st) in &rows {
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
        let mut sync = st.sync.iter().map(|s| {
            format!(
                "{}: {} / {} / {}",
                s.step,
                fmt_ms(s.p50_ms as f64),
                fmt_ms(s.p95_ms as f64),
                fmt_ms(s.p99_ms as f64)
            )
        });
        println!(
            "{:<30} {:<13} {:<10} {:>7} {:>7} {:>7}  {:<28} {}",
            p.name,
            last,
            at,
            ratio(0),
            ratio(1),
            ratio(2),
            sync.next().unwrap_or_default(),
            next.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "never".into())
        );
        for s in sync {
            println!("{:<80}{s}", "");
        }
        for (connector, class, n) in &st.errors_24h {
            println!("{:<6}{n} × {class} on {connector} (24h)", "");
        }
    }
    ExitCode::SUCCESS
}

pub async fn history(cfg: &ConfigArgs, probe: &str, since: Duration, as_json: bool) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
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
    let from = chrono::Utc::now()
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
            r.error_class
                .map(|c| format!("[{c} at {}] ", r.failed_step.unwrap_or_default()))
                .unwrap_or_default(),
            if r.cleanup == "failed" {
                "CLEANUP FAILED"
            } else {
                ""
            }
        );
    }
    ExitCode::SUCCESS
}
