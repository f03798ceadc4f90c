//! Polling for an asynchronous result: the schedule (wait `interval`, grow it by
//! `backoff` up to `max_interval`, a last attempt exactly at the `within` deadline), and a
//! step's poll loop on it: send, judge each answer against `until`, explain a miss.
//!
//! Waiting goes through `tokio::time`, so tests run the schedule on paused time.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::assert::{self, Verdict};
use super::http::{Failure, OutgoingRequest, Response};
use super::request::body_snippet;
use super::step::{Ending, Sent};
use super::{ErrorClass, Outcome, Progress, ProgressFn, RequestRecord, RunState, Runner};
use crate::model::{Expect, Poll, Step};

/// Polls of one step kept in its report (the count is always exact in `attempts`).
const MAX_POLL_RECORDS: usize = 200;

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
    /// Polling stopped at `cap` (the probe's own deadline), before `within` was over.
    pub capped: bool,
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
    let within = start + plan.within;
    let (deadline, capped) = match cap {
        Some(c) if c < within => (c, true),
        _ => (within, false),
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
                    capped: false,
                };
            }
            Attempt::Fatal => {
                return PollResult {
                    end: Attempt::Fatal,
                    last: payload,
                    attempts: n,
                    last_miss,
                    hit: None,
                    capped: false,
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
                capped,
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

/// How a poll attempt's answer counts.
fn poll_kind(resp: &Response, until: &Verdict) -> Attempt {
    if until.passed() {
        return Attempt::Hit;
    }
    match resp.status {
        401 | 403 => Attempt::Fatal,
        // Not there yet.
        404 => Attempt::Miss,
        // Busy or conflicting right now: may clear up.
        408 | 409 | 425 | 429 => Attempt::Transient,
        400..=499 => Attempt::Fatal,
        500..=599 => Attempt::Transient,
        _ if until.problem.is_some() => Attempt::Transient,
        _ => Attempt::Miss,
    }
}

/// The last attempt of a poll: its answer, its record, its `until` verdict.
type Payload = (Result<Response, Failure>, RequestRecord, Option<Verdict>);

impl Runner {
    /// Sends a step's rendered request `out` on `plan` until `until` holds, reporting each
    /// attempt as progress. The final attempt must fit before the probe's own deadline, so
    /// a poll cut short still reports its polls and last answer. Returns the polls kept
    /// for the report and the last attempt (none only if no attempt was made).
    pub(super) async fn poll_step(
        &self,
        st: &RunState,
        step: &Step,
        until: &Expect,
        plan: &Poll,
        out: &OutgoingRequest,
        progress: Option<&ProgressFn>,
    ) -> (Vec<RequestRecord>, Option<Sent>) {
        let last: Mutex<Option<Payload>> = Mutex::new(None);
        let polls: Mutex<Vec<RequestRecord>> = Mutex::new(Vec::new());
        let (ctx, last_ref, polls_ref) = (&st.ctx, &last, &polls);
        let poll_started = Instant::now();
        let cap = Some(last_poll_start(
            st.deadline,
            poll_started,
            step.request.timeout,
        ));
        let result = poll_until(plan, st.t0, cap, |n| async move {
            // No attempt may outlast the probe: late ones get what is left of its time.
            let (res, rec) = self.send_within_probe(st, out).await;
            let (kind, verdict) = match &res {
                Ok(resp) => {
                    let v = assert::check(until, resp, ctx);
                    (poll_kind(resp, &v), Some(v))
                }
                Err(_) => (Attempt::Transient, None),
            };
            if let Some(p) = progress {
                p(&Progress::PollAttempt {
                    step: step.name.clone(),
                    attempt: n,
                    elapsed: poll_started.elapsed(),
                    status: rec.status,
                    hit: kind == Attempt::Hit,
                });
            }
            if let Ok(mut p) = polls_ref.lock()
                && p.len() < MAX_POLL_RECORDS
            {
                p.push(rec.clone());
            }
            if let Ok(mut slot) = last_ref.lock() {
                *slot = Some((res, rec, verdict));
            }
            (kind, ())
        })
        .await;
        let polls = polls.into_inner().unwrap_or_else(|p| p.into_inner());
        let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
        let sent = last.map(|(res, record, until)| Sent {
            res,
            record,
            until,
            poll: Some(result),
        });
        (polls, sent)
    }
}

/// The last moment a poll starts an attempt: `deadline` (the probe's) less a reserve for
/// that last attempt — the request timeout, but never more than a quarter of the time
/// left when polling started. A request timeout longer than what remains of the probe
/// (30 s default against a 20 s probe) so still leaves three quarters of it for polling,
/// instead of a cap already in the past and a single poll.
pub(super) fn last_poll_start(
    deadline: Instant,
    poll_started: Instant,
    request_timeout: Duration,
) -> Instant {
    let left = deadline.saturating_duration_since(poll_started);
    deadline - request_timeout.min(left / 4)
}

/// How a step whose polling ended without a hit ends: with the last attempt's transport
/// error, the answer that stopped polling, the problem that kept recurring, or a sync
/// timeout naming what the last answer showed.
pub(super) fn missed_poll_ending(
    st: &RunState,
    step: &Step,
    res: &Result<Response, Failure>,
    pr: &PollResult<()>,
    until: Option<&Verdict>,
) -> Ending {
    let within = step
        .poll
        .map(|p| humantime::format_duration(p.within).to_string())
        .unwrap_or_default();
    let masker = st.ctx.masker();
    match (res, pr.end) {
        (Err(f), _) => {
            let m = format!("{} (after {} polls over {within})", f.message, pr.attempts);
            Ending::error(f.class, m)
        }
        (Ok(resp), Attempt::Fatal) => {
            let class = if matches!(resp.status, 401 | 403) {
                ErrorClass::Auth
            } else {
                ErrorClass::Http4xx
            };
            let snippet = body_snippet(resp, masker);
            Ending::error(
                class,
                format!("polling stopped: HTTP {}{snippet}", resp.status),
            )
        }
        (Ok(resp), Attempt::Transient) => {
            let (class, detail) = transient_problem(resp, until, &body_snippet(resp, masker));
            let m = format!("{detail} (last of {} polls over {within})", pr.attempts);
            Ending::error(class, m)
        }
        (Ok(_), _) => {
            let why = until.and_then(|v| v.first_failure()).unwrap_or_default();
            let m = if pr.capped {
                format!(
                    "not synced before the probe timeout ({} polls); last answer: {why}",
                    pr.attempts
                )
            } else {
                format!(
                    "not synced within {within} ({} polls); last answer: {why}",
                    pr.attempts
                )
            };
            Ending {
                outcome: Outcome::SyncTimeout,
                class: Some(ErrorClass::SyncTimeout),
                message: Some(m),
                accepted: false,
            }
        }
    }
}

/// Class and description of the problem a poll's last transient answer showed: an error
/// status is the cause whatever its body (a 503 with an HTML page is `http_5xx`, not
/// `invalid_json`: the body of an error page was never meant to be the record); only an
/// answer with a success status is judged by the `until` condition's own problem
/// (`snippet`: the body, for a 5xx).
fn transient_problem(
    resp: &Response,
    until: Option<&Verdict>,
    snippet: &str,
) -> (ErrorClass, String) {
    match resp.status {
        429 => (ErrorClass::RateLimited, "HTTP 429".to_string()),
        s @ 500.. => (ErrorClass::Http5xx, format!("HTTP {s}{snippet}")),
        s @ 400..=499 => (ErrorClass::Http4xx, format!("HTTP {s}")),
        s => match until.and_then(|v| v.problem.clone()) {
            Some((c, m)) => (c, m),
            None => (ErrorClass::Protocol, format!("HTTP {s}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::test_support::{assertion_result, response};

    fn resp(status: u16) -> Response {
        response(status, "")
    }

    fn missed(problem: Option<assert::Problem>) -> Verdict {
        Verdict {
            results: vec![assertion_result("$.status", false)],
            problem,
        }
    }

    #[test]
    fn each_answer_counts_as_a_hit_miss_transient_or_fatal() {
        let hit = Verdict {
            results: Vec::new(),
            problem: None,
        };
        assert_eq!(poll_kind(&resp(200), &hit), Attempt::Hit);
        let kind = |status| poll_kind(&resp(status), &missed(None));
        assert_eq!(kind(200), Attempt::Miss);
        assert_eq!(kind(404), Attempt::Miss);
        for busy in [408, 409, 425, 429, 500, 503] {
            assert_eq!(kind(busy), Attempt::Transient, "HTTP {busy}");
        }
        for fatal in [400, 401, 403, 422] {
            assert_eq!(kind(fatal), Attempt::Fatal, "HTTP {fatal}");
        }
        let unreadable = missed(Some((ErrorClass::InvalidJson, "not JSON".into())));
        assert_eq!(poll_kind(&resp(200), &unreadable), Attempt::Transient);
    }

    #[test]
    fn a_transient_miss_names_the_condition_problem_else_the_status() {
        let problem = missed(Some((ErrorClass::InvalidJson, "not JSON".into())));
        let with_problem = transient_problem(&resp(200), Some(&problem), "");
        assert_eq!(with_problem, (ErrorClass::InvalidJson, "not JSON".into()));
        let by_status = |status| transient_problem(&resp(status), None, "; body: down");
        let limited = (ErrorClass::RateLimited, "HTTP 429".into());
        assert_eq!(by_status(429), limited);
        let down = (ErrorClass::Http5xx, "HTTP 503; body: down".into());
        assert_eq!(by_status(503), down);
        assert_eq!(by_status(409), (ErrorClass::Http4xx, "HTTP 409".into()));
    }

    /// Regression: a poll that rode out 503s with an HTML error page until its window
    /// ended was reported as `invalid_json` (the `until` condition could not parse the
    /// page) instead of `http_5xx`, the page's real cause.
    #[test]
    fn an_error_status_is_the_cause_even_when_its_body_is_not_json() {
        let not_json = missed(Some((ErrorClass::InvalidJson, "not JSON".into())));
        let snippet = "; body: <html>busy</html>";
        let down = transient_problem(&resp(503), Some(&not_json), snippet);
        let expected = (ErrorClass::Http5xx, format!("HTTP 503{snippet}"));
        assert_eq!(down, expected);
        let limited = transient_problem(&resp(429), Some(&not_json), "");
        assert_eq!(limited.0, ErrorClass::RateLimited);
        let busy = transient_problem(&resp(409), Some(&not_json), "");
        assert_eq!(busy.0, ErrorClass::Http4xx);
        // Only a success status is judged by its body.
        let unparsable = transient_problem(&resp(200), Some(&not_json), "");
        assert_eq!(unparsable.0, ErrorClass::InvalidJson);
    }

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

    #[test]
    fn the_last_poll_start_keeps_a_reserve_of_at_most_a_quarter_of_the_time_left() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(20);
        // A 30 s request timeout against 20 s left: 15 s of polling, not a cap in the past.
        assert_eq!(
            last_poll_start(deadline, now, Duration::from_secs(30)),
            now + Duration::from_secs(15)
        );
        // A short request timeout is the whole reserve.
        assert_eq!(
            last_poll_start(deadline, now, Duration::from_secs(2)),
            now + Duration::from_secs(18)
        );
        // Past the deadline already: the cap is the deadline (one last attempt, cut).
        assert_eq!(
            last_poll_start(now, now + Duration::from_secs(1), Duration::from_secs(30)),
            now
        );
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
