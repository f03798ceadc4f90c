//! What the running agent tells its operator, as typed events: a run finished, an
//! incident moved, the pager decided, a fire was skipped. `rooftop run` prints them as
//! log lines (`Lines`); `rooftop demo` feeds its live table. The agent never prints a
//! run or an incident itself.

use chrono::{DateTime, Utc};

use super::replies::{Level, ReplyEvent};
use crate::model::{Fire, Probe, ProbeRun};
use crate::notify::pager::Paged;

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
    /// An incident opened, reopened, was acknowledged or resolved (the tracker's words).
    Incident {
        probe: &'a Probe,
        line: &'a str,
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
            Report::Incident { probe, line, .. } => tracing::info!(
                probe = %probe.name,
                severity = %probe.severity,
                connector = probe.connector.as_deref(),
                "{line}"
            ),
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
