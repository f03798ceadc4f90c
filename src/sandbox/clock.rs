//! The sandbox clock: one `tokio::time::Instant` origin mapped to UTC, so source and
//! propagation timestamps come from the same monotonic clock (paused time included)
//! and render as RFC 3339 UTC with microseconds.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use tokio::time::Instant;

/// A moment as both a monotonic instant (for scheduling) and UTC (for records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub at: Instant,
    pub utc: DateTime<Utc>,
}

/// Maps tokio instants to UTC with microsecond resolution.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: Instant,
    origin_utc: DateTime<Utc>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    // The simulator keeps its own clock (it uses nothing of the agent's).
    #[allow(clippy::disallowed_methods)]
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
            origin_utc: Utc::now().trunc_subsecs(6),
        }
    }

    /// The instant the sandbox started; batch ticks count from here.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The UTC time of an instant, truncated to microseconds.
    pub fn utc_at(&self, at: Instant) -> DateTime<Utc> {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        let micros = i64::try_from(micros).unwrap_or(i64::MAX);
        self.origin_utc + chrono::Duration::microseconds(micros)
    }

    pub fn now(&self) -> Stamp {
        let at = Instant::now();
        Stamp {
            at,
            utc: self.utc_at(at),
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-01-02T03:04:05.123456Z`.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Milliseconds (fractional, microsecond precision) from `from` to `to`.
pub fn millis_between(from: &DateTime<Utc>, to: &DateTime<Utc>) -> f64 {
    let micros = (*to - *from).num_microseconds().unwrap_or(i64::MAX);
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stamps_follow_tokio_time_in_micros() {
        let clock = Clock::new();
        let a = clock.now();
        tokio::time::advance(Duration::from_micros(1_234_567)).await;
        let b = clock.now();
        assert_eq!(millis_between(&a.utc, &b.utc), 1234.567);
        let text = rfc3339(&b.utc);
        assert!(text.ends_with('Z'));
        assert_eq!(text.split('.').nth(1).map(str::len), Some(7), "{text}");
    }
}
