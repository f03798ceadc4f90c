//! `rooftop incidents`, `rooftop ack ID`, `rooftop resolve ID`: read and update the
//! incidents the agent keeps in the store; the agent picks acknowledgements and manual
//! resolves up before it next evaluates the probe.

use crate::clock::Clock as _;
use std::process::ExitCode;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_FAILED, load_config};
use crate::alerting::escalation::{Escalation, Phase};
use crate::model::fmt_ms;
use crate::store::escalations::EscalationStore;
use crate::store::outbox::{Confirm, DeliveryState, OutboxRow, OutboxStore};
use crate::store::{IncidentRow, IncidentStore};

fn state_dir(cfg: &ConfigArgs) -> Result<std::path::PathBuf, ExitCode> {
    let config = load_config(&cfg.config)?;
    Ok(cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone()))
}

fn open(cfg: &ConfigArgs) -> Result<IncidentStore, ExitCode> {
    IncidentStore::open_in(&state_dir(cfg)?).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CANNOT_RUN)
    })
}

/// One line per notification of an incident.
fn notification_line(r: &OutboxRow) -> String {
    let to = if r.entry.contact == "-" {
        String::new()
    } else {
        format!(" → {}", r.entry.contact)
    };
    let how = match r.state {
        DeliveryState::Delivered => format!(
            "delivered {}{}",
            r.delivered_at
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default(),
            match r.confirm {
                Some(Confirm::Pending) => ", awaiting the handset's receipt",
                Some(Confirm::Handset) => ", on the handset",
                Some(Confirm::Unconfirmed) => ", no delivery receipt",
                Some(Confirm::Undelivered) | None => "",
            }
        ),
        DeliveryState::Failed => format!("FAILED: {}", r.last_error.clone().unwrap_or_default()),
        DeliveryState::Pending => format!(
            "pending (attempt {}{})",
            r.attempts + 1,
            r.last_error
                .as_ref()
                .map(|e| format!(", last: {e}"))
                .unwrap_or_default()
        ),
    };
    let fallback = if r.entry.fallback_from.is_some() {
        " (fallback)"
    } else {
        ""
    };
    format!("{} {}{to}{fallback}: {how}", r.entry.kind, r.entry.channel)
}

/// Where an escalation stands, in words.
fn escalation_phase(e: &Escalation) -> String {
    match &e.phase {
        Phase::Held { hold } => hold.describe(),
        Phase::Paging => match e.deadline {
            Some(d) => format!(
                "step {} paged, next step at {} UTC unless acknowledged",
                e.step + 1,
                d.format("%H:%M:%S")
            ),
            None => format!("step {} paged (no deadline)", e.step + 1),
        },
        Phase::Exhausted => "every step paged, nobody acknowledged".into(),
        Phase::Acknowledged { by, .. } => format!("stopped: acknowledged by {by}"),
        Phase::Closed => "closed".into(),
    }
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
    let outbox = match state_dir(cfg).and_then(|d| {
        OutboxStore::open_in(&d).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CANNOT_RUN)
        })
    }) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let mut pages = Vec::with_capacity(rows.len());
    for r in &rows {
        pages.push(outbox.for_incident(&r.id).await.unwrap_or_default());
    }
    // Each incident's escalation (step, who was paged, held by what), when it has one.
    let escalations = state_dir(cfg)
        .ok()
        .and_then(|d| EscalationStore::open_in(&d).ok());
    let mut escalated: Vec<Option<Escalation>> = Vec::with_capacity(rows.len());
    for r in &rows {
        let e = match &escalations {
            Some(s) => s
                .get(&r.id)
                .await
                .ok()
                .flatten()
                .and_then(|row| serde_json::from_str::<Escalation>(&row.state).ok()),
            None => None,
        };
        escalated.push(e);
    }
    if as_json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .zip(&pages)
            .zip(&escalated)
            .map(|((r, p), e)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["escalation"] = serde_json::to_value(e).unwrap_or_default();
                v["notifications"] = serde_json::json!(
                    p.iter()
                        .map(|n| serde_json::json!({
                            "kind": n.entry.kind,
                            "channel": n.entry.channel,
                            "contact": n.entry.contact,
                            "state": n.state,
                            "attempts": n.attempts,
                            "last_error": n.last_error,
                            "fallback_from": n.entry.fallback_from,
                            "delivered_at": n.delivered_at,
                            "confirm": n.confirm,
                        }))
                        .collect::<Vec<_>>()
                );
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
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
    let now = crate::clock::SystemClock.now();
    println!(
        "{:<44} {:<4} {:<13} {:<20} {:>9}  {:<26} REASON",
        "INCIDENT", "SEV", "STATE", "OPENED", "FOR", "PROBE"
    );
    for ((r, pages), e) in rows.into_iter().zip(pages).zip(escalated) {
        let state = if r.flapping && r.resolved_at.is_none() {
            format!("{} (flap)", r.state)
        } else {
            r.state.to_string()
        };
        println!(
            "{:<44} {:<4} {:<13} {:<20} {:>9}  {:<26} {}{}",
            r.id,
            r.severity.to_string(),
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
        if let Some(leader) = r.group.as_ref().filter(|g| **g != r.id) {
            println!(
                "{:<6}grouped into {leader}'s page (same connector and severity)",
                ""
            );
        }
        for p in &pages {
            println!("{:<6}{}", "", notification_line(p));
        }
        if let Some(e) = &e {
            println!("{:<6}escalation {}: {}", "", e.policy, escalation_phase(e));
            for line in &e.log {
                println!("{:<8}{line}", "");
            }
        }
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
    let now = crate::clock::SystemClock.now();
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
