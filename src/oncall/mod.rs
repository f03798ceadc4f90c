//! Who is on call, and whether a time window is active, at an instant: pure functions over
//! the validated `model::OnCall`. No I/O and no wall clock — every function takes the
//! instant — so paging, `rooftop oncall` and the DST tests agree and run deterministically.
//!
//! Local wall times become instants by `clock::resolve_local`: a time that happens twice
//! (fall back) counts at its first occurrence, one that does not exist (spring forward) at
//! the first instant after the gap. See docs/oncall.md for the rules in prose.

mod rotation;
mod window;

use chrono::{DateTime, Utc};

pub use rotation::{coverage, gaps, shifts, who, who_with};
pub use window::{rule_matches, rules_active, window_active, window_next_change};

/// How far searches for the next or previous change go (either way) before giving up; a
/// span with no end (or no beginning) within it is cut there.
pub const HORIZON_DAYS: i64 = 400;

/// Who is on call in a rotation at an instant, and for which span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallNow {
    /// A contact name (of `alerting.contacts`).
    pub contact: String,
    /// When this person's turn began (a handoff, an override's start, a restriction
    /// opening…); cut at `HORIZON_DAYS` before the instant asked about when earlier.
    pub shift_start: DateTime<Utc>,
    /// When it ends (exclusive): the instant to ask again.
    pub shift_end: DateTime<Utc>,
    pub via: Via,
}

/// Why this person is the one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Their turn in the rotation (also: a contact a target names directly).
    Rotation,
    /// An override puts them there.
    Override { note: Option<String> },
    /// The rotation has nobody (outside its restrictions, before its start): its
    /// fallback, a contact or whoever is on call in the fallback rotation.
    Fallback,
}

impl Via {
    /// `rotation`, `override` or `fallback` (JSON and tables).
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Rotation => "rotation",
            Via::Override { .. } => "override",
            Via::Fallback => "fallback",
        }
    }
}

/// One span of a schedule: someone on call from `start` to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub contact: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub via: Via,
}

/// `t + d`, saturating at chrono's range (callers pass real instants; this only keeps an
/// absurd `--at` from panicking).
fn plus(t: DateTime<Utc>, d: chrono::Duration) -> DateTime<Utc> {
    t.checked_add_signed(d)
        .unwrap_or(if d < chrono::Duration::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

fn horizon() -> chrono::Duration {
    chrono::Duration::days(HORIZON_DAYS)
}
