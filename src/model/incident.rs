//! Incident data: an open incident, a probe's alerting state and how an incident ended.
//! The state machine that moves them lives in `alerting::incident`.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rules::{Breach, Fact};

/// An incident while it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    /// Stable: `inc-<probe>-<opened ms>`; notification dedup keys derive from it.
    pub id: String,
    pub opened_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub acked_by: Option<String>,
    /// What opened it.
    pub breaches: Vec<Breach>,
    /// Error class and step of the run that opened it.
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub last_message: Option<String>,
    /// The failing runs, oldest first (capped).
    pub runs: Vec<String>,
    pub flapping: bool,
    pub successes_in_row: u32,
}

/// Where a probe stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    Quiet,
    Open(Open),
}

/// A probe's alerting state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeAlerts {
    pub probe: String,
    pub phase: Phase,
    /// Recent runs, oldest first (bounded by the rules' horizon and depth).
    pub facts: VecDeque<Fact>,
    /// The incident that last recovered, and when: failing again within the flap window
    /// reopens it (flapping) instead of paging a new one.
    pub recovered: Option<(Open, DateTime<Utc>)>,
}

/// How an incident ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// `resolve_after` successes in a row (and no flapping).
    Recovery,
    /// A person (`rooftop resolve`).
    Manual,
}

/// Why an incident is open, in words (after a restart the breaches are not known until
/// the next evaluation: "still failing").
pub fn incident_reason(open: &Open) -> String {
    if open.breaches.is_empty() {
        "still failing".into()
    } else {
        open.breaches
            .iter()
            .map(Breach::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}
