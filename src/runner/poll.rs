//! Polling for an asynchronous result: wait `interval`, grow it by `backoff` up to
//! `max_interval`, and make a last attempt exactly at the `within` deadline.
//!
//! Waiting goes through `tokio::time`, so tests run the schedule on paused time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::Poll;

/// When one attempt was sent and answered, as offsets from the run's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub sent: Duration,
    pub received: Duration,
}

impl Window {
    pub fn mid(&self) -> Duration {
        (self.sent + self.received) / 2
    }
}

/// What an attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The condition holds.
    Hit,
    /// A valid answer: not there yet.
    Miss,
    /// No usable answer (transport error, 5xx, 429): keep polling, it may recover.
    Transient,
    /// Polling cannot succeed (credentials rejected, bad request): stop now.
    Fatal,
}

/// How polling ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PollResult<T> {
    pub end: Attempt,
    /// The last attempt's payload (the hit, or what was seen at the deadline).
    pub last: T,
    pub attempts: u32,
    /// The last attempt that got a valid "not there yet" answer.
    pub last_miss: Option<Window>,
    /// The attempt that hit.
    pub hit: Option<Window>,
}

/// Runs `attempt` until it hits, fails fatally, or the `within` deadline passes (or
/// `cap`, when earlier: the last moment a final attempt still fits in the probe's
/// timeout). `t0` is the run's start; windows are offsets from it.
pub async fn poll_until<T, F, Fut>(
    plan: &Poll,
    t0: Instant,
    cap: Option<Instant>,
    mut attempt: F,
) -> PollResult<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = (Attempt, T)>,
{
    let start = Instant::now();
    let deadline = match cap {
        Some(c) => (start + plan.within).min(c),
        None => start + plan.within,
    };
    let mut wait = plan.interval;
    let mut n = 0;
    let mut last_miss = None;
    loop {
        n += 1;
        let sent = Instant::now();
        let (kind, payload) = attempt(n).await;
        let received = Instant::now();
        let window = Window {
            sent: sent - t0,
            received: received - t0,
        };
        match kind {
            Attempt::Hit => {
                return PollResult {
                    end: Attempt::Hit,
                    last: payload,
                    attempts: n,
                    last_miss,
                    hit: Some(window),
                };
            }
            Attempt::Fatal => {
                return PollResult {
                    end: Attempt::Fatal,
                    last: payload,
                    attempts: n,
                    last_miss,
                    hit: None,
                };
            }
            Attempt::Miss => last_miss = Some(window),
            Attempt::Transient => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return PollResult {
                end: kind,
                last: payload,
                attempts: n,
                last_miss,
                hit: None,
            };
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
        wait = next_wait(wait, plan);
    }
}

fn next_wait(current: Duration, plan: &Poll) -> Duration {
    current.mul_f64(plan.backoff).min(plan.max_interval)
}

/// The offsets at which attempts are sent when every attempt misses instantly: the poll
/// load a schedule puts on a dealer's system, shown by `rooftop once` and the docs.
pub fn attempt_offsets(plan: &Poll) -> Vec<Duration> {
    let mut out = vec![Duration::ZERO];
    let mut t = Duration::ZERO;
    let mut wait = plan.interval;
    while t < plan.within {
        t = (t + wait).min(plan.within);
        out.push(t);
        wait = next_wait(wait, plan);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(interval: u64, backoff: f64, max: u64, within: u64) -> Poll {
        Poll {
            interval: Duration::from_secs(interval),
            backoff,
            max_interval: Duration::from_secs(max),
            within: Duration::from_secs(within),
        }
    }

    #[test]
    fn offsets_grow_then_cap_then_stop_at_the_deadline() {
        let secs: Vec<u64> = attempt_offsets(&plan(2, 2.0, 10, 30))
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(secs, vec![0, 2, 6, 14, 24, 30]);
        let fixed: Vec<u64> = attempt_offsets(&plan(5, 1.0, 5, 20))
            .iter()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(fixed, vec![0, 5, 10, 15, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_on_schedule_until_the_record_appears() {
        let t0 = Instant::now();
        let appears_at = Duration::from_secs(13);
        let p = plan(2, 2.0, 10, 30);
        let mut seen = Vec::new();
        let result = poll_until(&p, t0, None, |_| {
            let now = t0.elapsed();
            seen.push(now.as_secs());
            async move {
                (
                    if now >= appears_at {
                        Attempt::Hit
                    } else {
                        Attempt::Miss
                    },
                    now,
                )
            }
        })
        .await;
        assert_eq!(seen, vec![0, 2, 6, 14]);
        assert_eq!(result.end, Attempt::Hit);
        assert_eq!(result.attempts, 4);
        assert_eq!(result.last_miss.unwrap().sent, Duration::from_secs(6));
        assert_eq!(result.hit.unwrap().received, Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_after_a_last_attempt_at_the_deadline() {
        let t0 = Instant::now();
        let result = poll_until(&plan(2, 2.0, 10, 30), t0, None, |_| async {
            (Attempt::Miss, ())
        })
        .await;
        assert_eq!(result.end, Attempt::Miss);
        assert_eq!(result.attempts, 6);
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_keep_polling_and_fatal_stops() {
        let t0 = Instant::now();
        let r = poll_until(&plan(1, 1.0, 1, 10), t0, None, |n| async move {
            (
                if n < 3 {
                    Attempt::Transient
                } else {
                    Attempt::Hit
                },
                n,
            )
        })
        .await;
        assert_eq!((r.end, r.attempts, r.last_miss), (Attempt::Hit, 3, None));
        let r = poll_until(&plan(1, 1.0, 1, 10), t0, None, |_| async {
            (Attempt::Fatal, ())
        })
        .await;
        assert_eq!((r.end, r.attempts), (Attempt::Fatal, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cap_before_within_ends_polling_early() {
        let t0 = Instant::now();
        let cap = Some(t0 + Duration::from_secs(7));
        let r = poll_until(&plan(2, 1.0, 2, 30), t0, cap, |_| async {
            (Attempt::Miss, ())
        })
        .await;
        assert_eq!(
            (r.end, r.attempts),
            (Attempt::Miss, 5),
            "attempts at 0, 2, 4, 6 and 7 s"
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(7));
    }
}
