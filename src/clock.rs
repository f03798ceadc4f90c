//! Wall-clock reads go through `Clock` so schedules, timestamps and tests agree on "now".
//!
//! Intervals and timeouts use `tokio::time` (pausable in tests); only calendar time is here,
//! with the one rule for turning a local wall time into an instant (`resolve_local`), which
//! cron schedules, rotation handoffs and time windows share.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};

pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one production read of the system clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn advance(&self, d: chrono::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += d;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|p| *p.into_inner())
    }
}

/// A local wall time in `tz` → the instant it happens. A time that happens twice (fall
/// back) resolves to its first occurrence; one that does not exist (spring forward) to the
/// first instant after the gap (gaps are whole minutes). `None` only past chrono's range.
pub fn resolve_local(tz: &chrono_tz::Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            let mut t = naive;
            for _ in 0..(24 * 60) {
                t = t.checked_add_signed(chrono::Duration::minutes(1))?;
                let start = t.with_second(0)?;
                if let LocalResult::Single(x) | LocalResult::Ambiguous(x, _) =
                    tz.from_local_datetime(&start)
                {
                    return Some(x.with_timezone(&Utc));
                }
            }
            None
        }
    }
}
