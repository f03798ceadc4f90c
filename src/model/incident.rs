//! Incident data: an open incident, a probe's alerting state and how an incident ended.
//! The state machine that moves them lives in `alerting::incident`.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UnknownValue;
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

/// An unacknowledged incident opened at `at` by two failed runs in a row (HTTP 503 at
/// step `book`), with no runs recorded: the fixture the pager's and the store's tests
/// share.
#[cfg(test)]
pub fn sample_open(id: &str, at: DateTime<Utc>) -> Open {
    Open {
        id: id.into(),
        opened_at: at,
        acked_at: None,
        acked_by: None,
        breaches: vec![Breach::Failures { failed: 2, of: 2 }],
        error_class: Some("http_5xx".into()),
        failed_step: Some("book".into()),
        last_message: Some("HTTP 503".into()),
        runs: vec![],
        flapping: false,
        successes_in_row: 0,
    }
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

/// Where a stored incident stands (derived from its acknowledgement and resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

super::stored_as_text!(IncidentState, "incident state",
    Open => "open", Acknowledged => "acknowledged", Resolved => "resolved");

/// How a stored incident ended, as the store spells it: `recovery`, `manual` (the agent
/// saw a person resolve it) or `manual:<who>` (`rooftop resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Recovery,
    Manual { who: Option<String> },
}

impl Resolution {
    /// What ended it, without who.
    pub fn resolved_by(&self) -> ResolvedBy {
        match self {
            Resolution::Recovery => ResolvedBy::Recovery,
            Resolution::Manual { .. } => ResolvedBy::Manual,
        }
    }
}

impl From<ResolvedBy> for Resolution {
    fn from(by: ResolvedBy) -> Resolution {
        match by {
            ResolvedBy::Recovery => Resolution::Recovery,
            ResolvedBy::Manual => Resolution::Manual { who: None },
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Recovery => f.write_str("recovery"),
            Resolution::Manual { who: None } => f.write_str("manual"),
            Resolution::Manual { who: Some(who) } => write!(f, "manual:{who}"),
        }
    }
}

impl FromStr for Resolution {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Resolution, UnknownValue> {
        match s.split_once(':') {
            _ if s == "recovery" => Ok(Resolution::Recovery),
            _ if s == "manual" => Ok(Resolution::Manual { who: None }),
            Some(("manual", who)) => Ok(Resolution::Manual {
                who: Some(who.to_string()),
            }),
            _ => Err(UnknownValue {
                what: "resolution",
                value: s.to_string(),
                expected: &["recovery", "manual", "manual:<who>"],
            }),
        }
    }
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
