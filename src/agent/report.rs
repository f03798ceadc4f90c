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

/// `rooftop run`'s log: one line per run and per incident on stdout, warnings on stderr.
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
                println!("{}{catch_up}  {}", run.summary_line(), run.run_id);
            }
            Report::Interrupted { run, .. } => println!(
                "{}  {}  (interrupted by the stop; not judged)",
                run.summary_line(),
                run.run_id
            ),
            Report::Incident { line, .. } => println!("{line}"),
            Report::Paged { paged, .. } => {
                if let Some(line) = paged.describe() {
                    println!("{line}");
                }
            }
            Report::SkippedOverlap { probe, scheduled } => println!(
                "{} {:<28} skipped: overlap (the run before {} is still going)",
                scheduled.format("%H:%M:%S"),
                probe.name,
                scheduled.to_rfc3339()
            ),
            Report::Warning(w) => eprintln!("warning: {w}"),
            Report::SmsReply(e) => match e.level() {
                Level::Info => println!("{}", e.describe()),
                Level::Warn => eprintln!("warning: {}", e.describe()),
                Level::Debug => eprintln!("debug: {}", e.describe()),
            },
        }
    }
}
