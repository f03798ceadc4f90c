//! On-call data as validated: rotations (members, handoff rule, restrictions, overrides,
//! fallback), named time windows (change windows, blackouts, business hours), severity
//! policies, escalation policies and the route rules that use windows. Pure data: who is
//! on call at an instant and whether a window is active are `oncall`'s functions;
//! escalating an incident is `alerting::escalation`'s.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use super::probe::Severity;

/// `oncall` and `time_windows` of `rooftop.yaml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnCall {
    /// In the order of the file.
    pub rotations: Vec<Rotation>,
    /// In the order of the file.
    pub windows: Vec<TimeWindow>,
}

impl OnCall {
    pub fn rotation(&self, name: &str) -> Option<&Rotation> {
        self.rotations.iter().find(|r| r.name == name)
    }

    pub fn window(&self, name: &str) -> Option<&TimeWindow> {
        self.windows.iter().find(|w| w.name == name)
    }
}

/// A rotation: members take turns, handing over at a wall-clock time in `timezone`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub name: String,
    pub timezone: Tz,
    /// Contact names (of `alerting.contacts`), in turn order; never empty.
    pub members: Vec<String>,
    pub handoff: Handoff,
    /// The local date on which `members[0]`'s first shift starts, at the handoff time.
    pub start: NaiveDate,
    /// When the rotation covers at all (e.g. only 18:00–08:00 and weekends), in the
    /// rotation's zone; empty: always. Outside them `fallback` is on call.
    pub restrictions: Vec<WindowRule>,
    /// Who is on call when the rotation has nobody (outside its restrictions).
    pub fallback: Option<Target>,
    /// Replacements for a span; a later override wins over an earlier one.
    pub overrides: Vec<Override>,
}

/// When one shift hands over to the next, in local wall-clock terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Every day at `at`.
    Daily { at: NaiveTime },
    /// Every week on `on` at `at`.
    Weekly { on: Weekday, at: NaiveTime },
    /// Every `days` days at `at`, counted from the rotation's start date.
    EveryDays { days: u32, at: NaiveTime },
}

impl Handoff {
    /// The local time of day of the handoff.
    pub fn at(&self) -> NaiveTime {
        match self {
            Handoff::Daily { at } | Handoff::Weekly { at, .. } | Handoff::EveryDays { at, .. } => {
                *at
            }
        }
    }

    /// Whole days per shift.
    pub fn days(&self) -> u32 {
        match self {
            Handoff::Daily { .. } => 1,
            Handoff::Weekly { .. } => 7,
            Handoff::EveryDays { days, .. } => (*days).max(1),
        }
    }
}

/// Someone else on call for a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The contact who takes the shift.
    pub who: String,
    /// Only when this member would be on call (default: whoever is).
    pub replaces: Option<String>,
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub until: DateTime<Utc>,
    pub note: Option<String>,
}

/// Whom a page goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A contact by name.
    Contact(String),
    /// Whoever is on call in the rotation; `offset` 1 is the member after them (the
    /// secondary), 2 the one after that.
    Rotation { name: String, offset: u32 },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Contact(c) => f.write_str(c),
            Target::Rotation { name, offset: 0 } => write!(f, "rotation {name}"),
            Target::Rotation { name, offset } => write!(f, "rotation {name} (+{offset})"),
        }
    }
}

/// A named time window: active while any of its rules matches, in its own zone.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWindow {
    pub name: String,
    pub timezone: Tz,
    /// Never empty.
    pub rules: Vec<WindowRule>,
}

/// One rule of a window: every field that is set must match (an empty list: any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowRule {
    pub weekdays: Vec<Weekday>,
    /// Minutes after local midnight, start inclusive, end exclusive (end ≤ 1440, `24:00`),
    /// start < end.
    pub times: Vec<(u32, u32)>,
    /// Inclusive ranges of days of the month; negative counts from the end (`-1` the
    /// last day). Both ends have the same sign.
    pub days_of_month: Vec<(i32, i32)>,
    /// Inclusive ranges of months, 1–12.
    pub months: Vec<(u32, u32)>,
    /// Inclusive ranges of local dates.
    pub dates: Vec<(NaiveDate, NaiveDate)>,
}

/// What a severity means for paging (`alerting.severities`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityPolicy {
    /// How long each escalation step waits for an acknowledgement; `None`: no
    /// escalation past the first step.
    pub ack_within: Option<Duration>,
    /// While unacknowledged, the people of the current step are paged again this often.
    pub renotify: Option<Duration>,
    /// Personal channels a page of this severity may use, in order (empty: all of
    /// `alerting.prefer`).
    pub channels: Vec<String>,
}

impl SeverityPolicy {
    /// The defaults: P1 acknowledged within 15 minutes (the source article), P2 30
    /// minutes, P3 4 hours, P4 no deadline; no re-notification.
    pub fn default_for(severity: Severity) -> SeverityPolicy {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        SeverityPolicy {
            ack_within: match severity {
                Severity::P1 => minutes(15),
                Severity::P2 => minutes(30),
                Severity::P3 => minutes(240),
                Severity::P4 => None,
            },
            renotify: None,
            channels: Vec::new(),
        }
    }
}

/// An escalation policy: steps tried in order until someone acknowledges.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationPolicy {
    pub name: String,
    /// Never empty.
    pub steps: Vec<EscalationStep>,
    /// After the last step, start over this many more times.
    pub repeat: u32,
    /// An acknowledged incident still open this long after the acknowledgement: a
    /// reminder to whoever acknowledged it.
    pub remind_after_ack: Option<Duration>,
}

/// One step: who is paged, and how long it waits (default: the severity's `ack_within`).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    /// Never empty.
    pub notify: Vec<Target>,
    pub wait: Option<Duration>,
}

/// A route rule over a time window (`alerting.windows`).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRoute {
    pub window: String,
    pub action: WindowAction,
    /// Empty: every severity (for `promote`: compared before promotion).
    pub severities: Vec<Severity>,
    /// Empty: every connector.
    pub connectors: Vec<String>,
    /// Empty: every probe.
    pub probes: Vec<String>,
}

/// What a route rule does while its window is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAction {
    /// A change window: the incident is recorded and shown, nobody is paged (checks
    /// keep running; resolves of pages already sent are never muted).
    Mute,
    /// The page is held until the window ends.
    Delay,
    /// The incident pages at this severity (a month-end blackout makes a DMS failure P1).
    Promote(Severity),
}

impl WindowAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            WindowAction::Mute => "mute",
            WindowAction::Delay => "delay",
            WindowAction::Promote(_) => "promote",
        }
    }
}
