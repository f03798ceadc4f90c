//! `rooftop incidents`, `rooftop ack ID`, `rooftop resolve ID`: read and update the
//! incidents the agent keeps in the store; the agent picks acknowledgements and manual
//! resolves up before it next evaluates the probe.

use std::process::ExitCode;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_FAILED, load_config};
use crate::runner::fmt_ms;
use crate::store::{IncidentRow, IncidentStore};

fn open(cfg: &ConfigArgs) -> Result<IncidentStore, ExitCode> {
    let config = load_config(&cfg.config)?;
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    IncidentStore::open_in(&state_dir).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CANNOT_RUN)
    })
}

fn since(r: &IncidentRow, now: chrono::DateTime<chrono::Utc>) -> String {
    let end = r.resolved_at.unwrap_or(now);
    fmt_ms((end - r.opened_at).num_milliseconds().max(0) as f64)
}

pub async fn list(cfg: &ConfigArgs, open_only: bool, as_json: bool) -> ExitCode {
    let store = match open(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rows = match store.list(open_only).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    if rows.is_empty() {
        println!(
            "{}",
            if open_only {
                "no open incidents"
            } else {
                "no incidents"
            }
        );
        return ExitCode::SUCCESS;
    }
    let now = chrono::Utc::now();
    println!(
        "{:<44} {:<4} {:<13} {:<20} {:>9}  {:<26} REASON",
        "INCIDENT", "SEV", "STATE", "OPENED", "FOR", "PROBE"
    );
    for r in rows {
        let state = if r.flapping && r.resolved_at.is_none() {
            format!("{} (flap)", r.state)
        } else {
            r.state.clone()
        };
        println!(
            "{:<44} {:<4} {:<13} {:<20} {:>9}  {:<26} {}{}",
            r.id,
            r.severity,
            state,
            r.opened_at.format("%Y-%m-%d %H:%M:%S"),
            since(&r, now),
            r.probe,
            r.reason,
            r.error_class
                .as_ref()
                .map(|c| format!(" [{c} at {}]", r.failed_step.clone().unwrap_or_default()))
                .unwrap_or_default()
        );
        if let (Some(at), Some(by)) = (r.acked_at, &r.acked_by) {
            println!(
                "{:<6}acknowledged by {by} after {}",
                "",
                fmt_ms((at - r.opened_at).num_milliseconds().max(0) as f64)
            );
        }
    }
    ExitCode::SUCCESS
}

/// `ack` (resolve = false) or `resolve` (true).
pub async fn update(cfg: &ConfigArgs, id: &str, by: Option<String>, resolve: bool) -> ExitCode {
    let store = match open(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let by = by
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let now = chrono::Utc::now();
    let done = if resolve {
        store.resolve(id, &by, now).await
    } else {
        store.acknowledge(id, &by, now).await
    };
    match done {
        Ok(true) => {
            println!(
                "{id} {} by {by}",
                if resolve { "resolved" } else { "acknowledged" }
            );
            ExitCode::SUCCESS
        }
        Ok(false) => {
            match store.get(id).await {
                Ok(Some(r)) => eprintln!("error: {id} is already {}", r.state),
                Ok(None) => eprintln!("error: no incident {id} (see `rooftop incidents`)"),
                Err(e) => eprintln!("error: {e}"),
            }
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}
