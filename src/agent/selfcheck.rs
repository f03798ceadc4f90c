//! The agent watching itself: a built-in probe, `rooftop-agent`, whose "run" every 30 s
//! is a look at the agent's own health — the store takes writes, the scheduler loop
//! turns, the state directory's disk has room, the outbox is not stuck. Its runs go the
//! way of every probe's (history, metrics, alert rules, incidents, pages), so a disk
//! filling up or pages piling up in the outbox page the on-call like a DMS outage does.
//! What it cannot page about (the agent dead, the store gone) the heartbeat covers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Judge;
use super::health::Readiness;
use crate::config::Config;
use crate::model::{
    CleanupReport, ErrorClass, Fire, Outcome, Probe, ProbeRun, Runbook, Schedule, Severity,
};
use crate::store::outbox::OutboxStore;
use crate::store::reserve::disk_space;

pub use crate::model::SELF_PROBE;
use crate::model::SelfMonitoring;
/// The runbook the self-check's pages link to, when the config directory has it.
const RUNBOOK: &str = "runbooks/rooftop-agent.md";

/// The `rooftop-agent` probe for this configuration: P2, the default alert rules, the
/// `rooftop-agent` runbook if the config directory has one.
pub fn self_probe(config: &Config) -> Probe {
    let runbook = match std::fs::read_to_string(config.dir.join(RUNBOOK)) {
        Ok(text) => Some(Runbook::File {
            path: PathBuf::from(RUNBOOK),
            text: crate::config::validate::parse_runbook(&text),
        }),
        Err(_) => None,
    };
    let labels: BTreeMap<String, String> = [("flow", "agent"), ("connector", "rooftop")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Probe {
        name: SELF_PROBE.into(),
        description: Some(
            "The agent itself: store writable, scheduler turning, disk room, outbox moving".into(),
        ),
        schedule: Schedule::Every(config.agent.self_monitoring.check_every),
        timeout: Duration::from_secs(10),
        severity: Severity::P2,
        runbook,
        labels,
        connector: Some("rooftop".into()),
        vars: Vec::new(),
        steps: Vec::new(),
        cleanup: Vec::new(),
        alert: config.defaults.alert.clone(),
        depend_on: Vec::new(),
        source: PathBuf::from("(built in)"),
    }
}

/// What is wrong with the disk, if anything: under `min_free` bytes or 5 % free (SQLite
/// needs room for its WAL and checkpoints).
pub fn disk_problem(free: u64, total: u64, min_free: u64) -> Option<String> {
    let pct = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    (free < min_free || pct < 5.0).then(|| {
        format!(
            "disk: {} MB free ({pct:.1} %) on the state directory's filesystem",
            free / 1_000_000
        )
    })
}

/// What is wrong with the outbox, if anything: a page pending longer than `stuck_after`
/// (every channel that should carry it failing).
pub fn outbox_problem(
    pending: u64,
    oldest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stuck_after: Duration,
) -> Option<String> {
    let age = (now - oldest?).to_std().ok()?;
    (age > stuck_after).then(|| {
        format!(
            "outbox: {pending} page(s) pending, the oldest for {} (see `rooftop incidents` for each channel's last error)",
            rounded(age)
        )
    })
}

/// Whole minutes (at least one second) for a message: `16m`, `2h 5m`, `40s`.
fn rounded(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let secs = if secs >= 60 { secs / 60 * 60 } else { secs };
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// What is wrong with OTLP export, if anything: a signal failing for longer than
/// `after` (the collector or the WAN down; past the bounded queues, spans and logs are
/// dropped, cumulative metrics catch up when it returns).
pub fn export_problem(outages: &[(&str, Duration)], after: Duration) -> Option<String> {
    let long: Vec<String> = outages
        .iter()
        .filter(|(_, d)| *d > after)
        .map(|(s, d)| format!("{s} for {}", rounded(*d)))
        .collect();
    (!long.is_empty()).then(|| {
        format!(
            "telemetry: OTLP export failing ({}): the collector or the WAN is down; probing and paging go on",
            long.join(", ")
        )
    })
}

/// What is wrong with the scheduler's pace, if anything: a fire that started more than
/// `after` behind its schedule since the last look.
pub fn lag_problem(worst: Duration, after: Duration) -> Option<String> {
    (worst > after).then(|| {
        format!(
            "scheduler: a fire started {:.1}s late (over {}): more probes than `scheduler.max_concurrent` runs, or a starved machine",
            worst.as_secs_f64(),
            rounded(after)
        )
    })
}

/// One look at the agent, as a run of `rooftop-agent`.
fn as_run(problems: &[String], at: DateTime<Utc>, probe: &Probe) -> ProbeRun {
    let failed = !problems.is_empty();
    ProbeRun {
        run_id: format!("{SELF_PROBE}-{}", at.timestamp_millis()),
        probe: SELF_PROBE.into(),
        trace_id: format!("{:032x}", at.timestamp_millis()),
        started_at: at,
        finished_at: at,
        duration_ms: 0.0,
        outcome: if failed {
            Outcome::Failed
        } else {
            Outcome::Success
        },
        error_class: failed.then_some(ErrorClass::Agent),
        failed_step: failed.then(|| "self-check".to_string()),
        message: failed.then(|| problems.join("; ")),
        labels: probe.labels.clone(),
        runbook: failed
            .then(|| probe.runbook.as_ref().map(|r| r.to_string()))
            .flatten(),
        steps: Vec::new(),
        cleanup: CleanupReport::default(),
    }
}

/// Looks at the agent every `check_every` and hands the result to the judge.
pub(super) fn spawn(
    settings: SelfMonitoring,
    probe: Arc<Probe>,
    ready: Arc<Readiness>,
    outbox: OutboxStore,
    state_dir: PathBuf,
    judge: Judge,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let telemetry = judge.telemetry.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(settings.check_every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = judge.clock.now();
            let mut problems = ready.problems();
            if let Some((free, total)) = disk_space(&state_dir)
                && let Some(p) = disk_problem(free, total, settings.min_free_disk)
            {
                problems.push(p);
            }
            match outbox.pending_age().await {
                Ok((n, oldest)) => {
                    problems.extend(outbox_problem(n, oldest, now, settings.outbox_stuck_after))
                }
                Err(e) => problems.push(format!("outbox: cannot be read: {e}")),
            }
            problems.extend(export_problem(
                &telemetry.export_outages(),
                settings.export_failing_after,
            ));
            problems.extend(lag_problem(
                ready.take_worst_lag(),
                settings.scheduler_lag_after,
            ));
            let run = as_run(&problems, now, &probe);
            let fire = Fire {
                scheduled: now,
                lag: Duration::ZERO,
                catch_up: None,
            };
            judge.finished(&probe, &run, fire).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_failing_past_the_threshold_is_a_problem_named_per_signal() {
        let after = SelfMonitoring::default().export_failing_after;
        assert_eq!(after, Duration::from_secs(900));
        let min = |m: u64| Duration::from_secs(m * 60 + 7);
        assert_eq!(export_problem(&[], after), None);
        assert_eq!(export_problem(&[("traces", min(14))], after), None);
        assert_eq!(
            export_problem(&[("metrics", min(16)), ("logs", min(3))], after).as_deref(),
            Some(
                "telemetry: OTLP export failing (metrics for 16m): the collector or the WAN is down; probing and paging go on"
            )
        );
        let both = export_problem(&[("metrics", min(125)), ("traces", min(20))], after).unwrap();
        assert!(
            both.contains("(metrics for 2h 5m, traces for 20m)"),
            "{both}"
        );
    }

    #[test]
    fn a_fire_later_than_the_threshold_is_a_lagging_scheduler() {
        let after = SelfMonitoring::default().scheduler_lag_after;
        assert_eq!(lag_problem(Duration::ZERO, after), None);
        assert_eq!(lag_problem(Duration::from_secs(30), after), None);
        assert_eq!(
            lag_problem(Duration::from_millis(42_500), after).as_deref(),
            Some(
                "scheduler: a fire started 42.5s late (over 30s): more probes than `scheduler.max_concurrent` runs, or a starved machine"
            )
        );
    }

    #[test]
    fn a_disk_is_nearly_full_under_512_mb_or_5_percent() {
        let gb = 1_000_000_000;
        let min = SelfMonitoring::default().min_free_disk;
        assert_eq!(disk_problem(100 * gb, 200 * gb, min), None);
        assert_eq!(
            disk_problem(400_000_000, 200 * gb, min).as_deref(),
            Some("disk: 400 MB free (0.2 %) on the state directory's filesystem")
        );
        assert_eq!(
            disk_problem(4 * gb, 100 * gb, min).as_deref(),
            Some("disk: 4000 MB free (4.0 %) on the state directory's filesystem")
        );
    }

    #[test]
    fn an_outbox_is_stuck_when_a_page_waits_over_half_an_hour() {
        let now: DateTime<Utc> = "2026-12-02T12:00:00Z".parse().unwrap();
        let ago = |m| Some(now - chrono::Duration::minutes(m));
        let stuck = SelfMonitoring::default().outbox_stuck_after;
        assert_eq!(outbox_problem(0, None, now, stuck), None);
        assert_eq!(outbox_problem(2, ago(29), now, stuck), None);
        assert_eq!(
            outbox_problem(3, ago(42), now, stuck).as_deref(),
            Some(
                "outbox: 3 page(s) pending, the oldest for 42m (see `rooftop incidents` for each channel's last error)"
            )
        );
    }
}
