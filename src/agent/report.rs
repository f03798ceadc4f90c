//! What the running agent tells its operator, as typed events: a run finished, an
//! incident moved, the pager decided, a fire was skipped. `rooftop run` prints them as
//! log lines (`Lines`); `rooftop demo` feeds its live table. The agent never prints a
//! run or an incident itself.

use chrono::{DateTime, Utc};

use super::replies::{Level, ReplyEvent};
use crate::alerting::Action;
use crate::model::{Fire, Probe, ProbeRun};
use crate::notify::pager::Paged;
use crate::telemetry::Telemetry;

/// One thing worth telling.
#[derive(Debug)]
pub enum Report<'a> {
    /// A run finished, was stored and was fed to the alert rules.
    Run {
        probe: &'a Probe,
        run: &'a ProbeRun,
        fire: &'a Fire,
    },
    /// A run cut short by the stop (not stored, not judged: it says nothing of the
    /// dealer's systems); its cleanup ran.
    Interrupted { probe: &'a Probe, run: &'a ProbeRun },
    /// An incident action of the tracker: opened, reopened, acknowledged, resolved (with
    /// its words in `line`), or one with nothing to say (a run attached to it).
    Incident {
        probe: &'a Probe,
        action: &'a Action,
        line: Option<&'a str>,
        at: DateTime<Utc>,
    },
    /// What the pager did with an incident action.
    Paged {
        probe: &'a Probe,
        paged: &'a Paged,
        at: DateTime<Utc>,
    },
    /// A fire skipped because the probe's previous run was still going.
    SkippedOverlap {
        probe: &'a Probe,
        scheduled: DateTime<Utc>,
    },
    /// Something went wrong that the agent survives (a store write, a page not queued).
    Warning(&'a str),
    /// What an SMS reply did (an acknowledgement, a code that matched nothing), or a
    /// reply poll that failed.
    SmsReply(&'a ReplyEvent),
}

/// Records the metrics an event stands for: the same event then makes the log line, so
/// the two cannot drift (a run counted is a run logged, and the other way round).
pub fn record(telemetry: &Telemetry, report: &Report<'_>) {
    match report {
        Report::Run { run, .. } => telemetry.observe_run(run),
        Report::Incident { probe, action, .. } => {
            telemetry.observe_incident(&probe.name, &probe.severity.to_string(), action)
        }
        Report::SkippedOverlap { probe, .. } => telemetry.observe_skip(&probe.name),
        Report::Interrupted { .. }
        | Report::Paged { .. }
        | Report::Warning(_)
        | Report::SmsReply(_) => {}
    }
}

/// Records `report`'s metrics, then hands it to `reporter`.
pub fn tell(telemetry: &Telemetry, reporter: &dyn Reporter, report: Report<'_>) {
    record(telemetry, &report);
    reporter.report(report);
}

/// Where reports go.
pub trait Reporter: Send + Sync {
    fn report(&self, report: Report<'_>);
}

/// `rooftop run`'s log: one `tracing` event per run and per incident, with the run's
/// fields (`probe`, `run_id`, `outcome`, `error_class`, …) for the journal's JSON and its
/// line for a terminal (stdout; warnings on stderr). See `cli::logging`.
#[derive(Debug, Default)]
pub struct Lines;

impl Reporter for Lines {
    fn report(&self, report: Report<'_>) {
        match report {
            Report::Run { run, fire, .. } => {
                let catch_up = if fire.catch_up.is_some() {
                    "  (catch-up)"
                } else {
                    ""
                };
                tracing::info!(
                    probe = %run.probe,
                    run_id = %run.run_id,
                    trace_id = %run.trace_id,
                    outcome = run.outcome.as_str(),
                    error_class = run.error_class.map(|c| c.as_str()),
                    failed_step = run.failed_step.as_deref(),
                    duration_ms = run.duration_ms,
                    lag_ms = fire.lag.as_secs_f64() * 1000.0,
                    "{}{catch_up}  {}",
                    run.summary_line(),
                    run.run_id
                );
            }
            Report::Interrupted { run, .. } => tracing::info!(
                probe = %run.probe,
                run_id = %run.run_id,
                outcome = "interrupted",
                "{}  {}  (interrupted by the stop; not judged)",
                run.summary_line(),
                run.run_id
            ),
            Report::Incident {
                probe,
                line: Some(line),
                ..
            } => tracing::info!(
                probe = %probe.name,
                severity = %probe.severity,
                connector = probe.connector.as_deref(),
                "{line}"
            ),
            Report::Incident { line: None, .. } => {}
            Report::Paged { probe, paged, .. } => {
                if let Some(line) = paged.describe() {
                    tracing::info!(probe = %probe.name, "{line}");
                }
            }
            Report::SkippedOverlap { probe, scheduled } => tracing::info!(
                probe = %probe.name,
                skipped = "overlap",
                "{} {:<28} skipped: overlap (the run before {} is still going)",
                scheduled.format("%H:%M:%S"),
                probe.name,
                scheduled.to_rfc3339()
            ),
            Report::Warning(w) => tracing::warn!("{w}"),
            Report::SmsReply(e) => match e.level() {
                Level::Info => tracing::info!("{}", e.describe()),
                Level::Warn => tracing::warn!("{}", e.describe()),
                Level::Debug => tracing::debug!("{}", e.describe()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Keeps what it was told, as the kind of event.
    #[derive(Default)]
    struct Kept(Mutex<Vec<&'static str>>);

    impl Reporter for Kept {
        fn report(&self, r: Report<'_>) {
            let kind = match r {
                Report::Run { .. } => "run",
                Report::Incident { line: Some(_), .. } => "incident line",
                Report::Incident { line: None, .. } => "incident",
                _ => "other",
            };
            self.0.lock().unwrap().push(kind);
        }
    }

    /// A sample in `/metrics` whose line starts with `name` and mentions `probe` and
    /// `label` (series order varies from run to run).
    fn sample(text: &str, name: &str, probe: &str, label: &str) -> Option<f64> {
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains(&format!("probe=\"{probe}\""))
                    && l.contains(label)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn one_event_makes_the_metric_and_the_line() {
        let config = crate::config::load(std::path::Path::new(".")).unwrap();
        let resolved =
            crate::telemetry::settings::resolve(&config.agent.telemetry, &[], &BTreeMap::new())
                .unwrap();
        let telemetry = Telemetry::start(&config.agent, &config.probes, &resolved).unwrap();
        let probe = &config.probes[0];
        let at = crate::clock::Clock::now(&crate::clock::SystemClock);
        let run: ProbeRun = serde_json::from_value(serde_json::json!({
            "run_id": "run-1", "probe": probe.name, "trace_id": "t",
            "started_at": at, "finished_at": at, "duration_ms": 12.0,
            "outcome": "failed", "error_class": "http5xx", "failed_step": "submit-lead",
            "message": null, "labels": {}, "runbook": null, "steps": [],
            "cleanup": crate::model::CleanupReport::default(),
        }))
        .unwrap();
        let fire = Fire {
            scheduled: at,
            lag: std::time::Duration::ZERO,
            catch_up: None,
        };
        let kept = Kept::default();
        tell(
            &telemetry,
            &kept,
            Report::Run {
                probe,
                run: &run,
                fire: &fire,
            },
        );
        let open = crate::model::sample_open("inc-1", at);
        let action = Action::Opened(open);
        // An action with no words is still counted.
        tell(
            &telemetry,
            &kept,
            Report::Incident {
                probe,
                action: &action,
                line: None,
                at,
            },
        );
        assert_eq!(*kept.0.lock().unwrap(), ["run", "incident"]);
        let text = telemetry.prometheus_text();
        assert_eq!(
            sample(
                &text,
                "rooftop_probe_runs_total",
                &probe.name,
                "outcome=\"failed\""
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("incident") && l.contains(&probe.name)),
            "the incident is in the metrics too:\n{text}"
        );
    }
}
