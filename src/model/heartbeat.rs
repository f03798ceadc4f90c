//! A validated heartbeat check (`heartbeats/*.yaml`): a dealership batch job (the nightly
//! parts price-file import, the DMS-to-CRM export) that pings rooftop when it runs. Not
//! the agent's own outgoing dead-man's switch (`self_monitoring.heartbeat`, the
//! `HeartbeatTarget` of `probe.rs`): this one is passive, the job calls in.
//!
//! A check is judged like a probe: `as_probe` is the built-in `Probe` (no steps) its pings
//! and missed deadlines are runs of.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::probe::{Probe, Runbook, Schedule, Severity};
use super::rules::{AlertRules, FireRule};

/// The longest body of a ping kept (the end of the job's output, in the run's message):
/// longer is cut at the front.
pub const MAX_PING_BODY: usize = 10 * 1024;

/// Bounds of the default grace time: a tenth of the interval between deadlines, at least
/// this much.
pub const MIN_DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// ... and at most this much (a nightly job gets an hour).
pub const MAX_DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// One heartbeat check.
#[derive(Debug, Clone)]
pub struct HeartbeatCheck {
    pub name: String,
    pub description: Option<String>,
    /// When the job is expected to ping: `every` counts from its last ping, `cron` is the
    /// job's own schedule in its time zone.
    pub schedule: Schedule,
    /// How long after a deadline a ping still counts (and how long a `/start` may go
    /// without a finish) before the check is down.
    pub grace: Duration,
    pub severity: Severity,
    pub runbook: Option<Runbook>,
    pub labels: BTreeMap<String, String>,
    /// `labels.connector`, checked.
    pub connector: Option<String>,
    /// The token a ping must carry, as a template (`{{ secret.price_file_ping }}`):
    /// rendered when the agent starts, never logged.
    pub token: String,
    /// One missed deadline or failure opens an incident, one success resolves it, unless
    /// the check's `alert:` says otherwise.
    pub alert: AlertRules,
    /// The file it came from.
    pub source: PathBuf,
}

/// The alert rules of a heartbeat check before its own `alert:`: `base` (the agent's)
/// with one failure to open and one success to resolve. A nightly job that missed its
/// deadline does not get a second chance until tomorrow night.
pub fn heartbeat_alert_base(base: &AlertRules) -> AlertRules {
    AlertRules {
        fire: FireRule::Consecutive(1),
        resolve_after: 1,
        ..base.clone()
    }
}

/// The default grace time for an interval of `period` between deadlines: a tenth of it,
/// between `MIN_DEFAULT_GRACE` and `MAX_DEFAULT_GRACE`.
pub fn default_grace(period: Duration) -> Duration {
    (period / 10).clamp(MIN_DEFAULT_GRACE, MAX_DEFAULT_GRACE)
}

impl HeartbeatCheck {
    /// The check as a built-in probe with no steps: its runs are synthesized from pings
    /// and missed deadlines, then stored, exported, judged and paged like any probe's.
    pub fn as_probe(&self) -> Probe {
        Probe {
            name: self.name.clone(),
            description: self.description.clone(),
            schedule: self.schedule.clone(),
            timeout: self.grace,
            severity: self.severity,
            runbook: self.runbook.clone(),
            labels: self.labels.clone(),
            connector: self.connector.clone(),
            vars: Vec::new(),
            steps: Vec::new(),
            cleanup: Vec::new(),
            alert: self.alert.clone(),
            depend_on: Vec::new(),
            source: self.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grace_is_a_tenth_of_the_period_within_a_minute_and_an_hour() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(default_grace(h(24)), h(1));
        assert_eq!(default_grace(h(1)), Duration::from_secs(360));
        assert_eq!(default_grace(Duration::from_secs(120)), MIN_DEFAULT_GRACE);
    }

    #[test]
    fn a_heartbeat_opens_on_one_failure_and_resolves_on_one_success() {
        let r = heartbeat_alert_base(&AlertRules::default());
        assert_eq!(r.fire, FireRule::Consecutive(1));
        assert_eq!(r.resolve_after, 1);
        assert_eq!(r.flap_changes, AlertRules::default().flap_changes);
    }
}
