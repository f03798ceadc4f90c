//! Sync-latency arithmetic: an event happened inside a known window; the propagated record
//! appeared after the last poll that missed and before the first that hit. The true
//! latency therefore lies in `(last_miss.sent − event.hi, hit.received − event.lo]`.
//!
//! Pure functions on offsets from the run's start; no clocks read here.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::poll::Window;

/// Bounds on when a step's event happened: `lo < event <= hi`, best estimate `est`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventWindow {
    pub lo: Duration,
    pub hi: Duration,
    pub est: Duration,
}

impl EventWindow {
    /// A record created by a request exists from some instant between send and response.
    pub fn of_request(w: Window) -> Self {
        EventWindow {
            lo: w.sent,
            hi: w.received,
            est: w.mid(),
        }
    }

    /// A record found by polling appeared after the last miss was sent and before the
    /// hit was answered. Without a miss, the lower bound is the upstream event itself, or
    /// the run's start when there is none.
    pub fn of_poll(last_miss: Option<Window>, hit: Window, since: Option<&EventWindow>) -> Self {
        match (last_miss, since) {
            (Some(m), _) => EventWindow {
                lo: m.sent,
                hi: hit.received,
                est: (m.mid() + hit.mid()) / 2,
            },
            (None, Some(s)) => EventWindow {
                lo: s.lo,
                hi: hit.received,
                est: (s.est + hit.mid()) / 2,
            },
            // Found at once and not created by this run: it may predate the run.
            (None, None) => EventWindow {
                lo: Duration::ZERO,
                hi: hit.received,
                est: hit.mid(),
            },
        }
    }
}

/// A latency interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub lower: Duration,
    pub upper: Duration,
    pub estimate: Duration,
}

impl Latency {
    pub fn width(&self) -> Duration {
        self.upper - self.lower
    }

    pub fn contains(&self, d: Duration) -> bool {
        d >= self.lower && d <= self.upper
    }
}

/// Propagation latency from `since`'s event to `seen`'s event.
pub fn latency(since: &EventWindow, seen: &EventWindow) -> Latency {
    let lower = seen.lo.saturating_sub(since.hi);
    let upper = seen.hi.saturating_sub(since.lo).max(lower);
    let estimate = seen.est.saturating_sub(since.est).clamp(lower, upper);
    Latency {
        lower,
        upper,
        estimate,
    }
}

/// How far outside the interval a downstream timestamp may fall before the clocks of the
/// two systems are suspected to disagree.
pub const SKEW_TOLERANCE: Duration = Duration::from_secs(1);

/// Latency according to the downstream record's own timestamp, measured from the wall-clock
/// estimate of the upstream event; and whether it disagrees with the polled interval.
pub fn downstream_latency(
    run_started_wall: DateTime<Utc>,
    since: &EventWindow,
    downstream_ts: DateTime<Utc>,
    interval: &Latency,
) -> (f64, bool) {
    let event_wall = run_started_wall
        + chrono::Duration::from_std(since.est).unwrap_or_else(|_| chrono::Duration::zero());
    let ms = (downstream_ts - event_wall)
        .num_microseconds()
        .unwrap_or(i64::MAX) as f64
        / 1000.0;
    let lo = interval.lower.as_secs_f64() * 1000.0 - SKEW_TOLERANCE.as_secs_f64() * 1000.0;
    let hi = interval.upper.as_secs_f64() * 1000.0 + SKEW_TOLERANCE.as_secs_f64() * 1000.0;
    (ms, ms < lo || ms > hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn w(sent: u64, received: u64) -> Window {
        Window {
            sent: ms(sent),
            received: ms(received),
        }
    }

    #[test]
    fn interval_from_last_miss_and_first_hit() {
        // POST answered between 100 and 140 ms; last miss sent at 2100, hit answered at 4150.
        let created = EventWindow::of_request(w(100, 140));
        let seen = EventWindow::of_poll(Some(w(2100, 2120)), w(4100, 4150), Some(&created));
        let l = latency(&created, &seen);
        assert_eq!(l.lower, ms(2100 - 140));
        assert_eq!(l.upper, ms(4150 - 100));
        // Estimate: middle of the miss and hit midpoints, minus the creation midpoint.
        assert_eq!(l.estimate, Duration::from_micros(3_117_500 - 120_000));
        assert_eq!(l.width(), ms(4050 - 1960));
    }

    #[test]
    fn every_true_latency_consistent_with_the_observations_is_inside() {
        // Brute force: for every creation instant in the POST window and every propagation
        // instant the polls allow, the true latency lies inside the reported interval.
        let post = w(100, 140);
        let (miss, hit) = (w(2100, 2120), w(4100, 4150));
        let l = latency(
            &EventWindow::of_request(post),
            &EventWindow::of_poll(Some(miss), hit, None),
        );
        for c in post.sent.as_millis()..=post.received.as_millis() {
            for p in (miss.sent.as_millis() + 1)..=hit.received.as_millis() {
                assert!(l.contains(ms((p - c) as u64)), "c={c} p={p} {l:?}");
            }
        }
    }

    #[test]
    fn first_poll_hit_gives_a_zero_lower_bound() {
        let created = EventWindow::of_request(w(0, 50));
        let seen = EventWindow::of_poll(None, w(60, 80), Some(&created));
        let l = latency(&created, &seen);
        assert_eq!(l.lower, Duration::ZERO);
        assert_eq!(l.upper, ms(80));
        assert!(l.estimate <= l.upper);
    }

    #[test]
    fn chained_sync_uses_the_upstream_poll_window() {
        let created = EventWindow::of_request(w(0, 10));
        let ro = EventWindow::of_poll(Some(w(1000, 1010)), w(2000, 2010), Some(&created));
        let survey = EventWindow::of_poll(Some(w(5000, 5010)), w(6000, 6010), Some(&ro));
        let l = latency(&ro, &survey);
        assert_eq!(l.lower, ms(5000 - 2010));
        assert_eq!(l.upper, ms(6010 - 1000));
    }

    #[test]
    fn downstream_timestamp_and_skew() {
        let start: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let created = EventWindow::of_request(w(0, 100));
        let seen = EventWindow::of_poll(Some(w(2000, 2010)), w(4000, 4010), Some(&created));
        let l = latency(&created, &seen);
        let ts: DateTime<Utc> = "2026-11-22T10:00:03Z".parse().unwrap();
        let (d, skew) = downstream_latency(start, &created, ts, &l);
        assert_eq!(d, 2950.0);
        assert!(!skew);
        let late: DateTime<Utc> = "2026-11-22T10:02:00Z".parse().unwrap();
        assert!(downstream_latency(start, &created, late, &l).1);
    }
}
