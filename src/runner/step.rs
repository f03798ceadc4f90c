//! One HTTP step: render its request, send it once (or poll it, `poll.rs`), judge the
//! final answer against `expect`, take its captures into the run's context, and record
//! its event window and sync latency. The ledger bookkeeping around a creating step is
//! `created.rs`'s; the step loop, the probe deadline and stopping are `mod.rs`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::assert::{self, Verdict};
use super::http::{Failure, OutgoingRequest, Response};
use super::poll::{self, Attempt, PollResult, Window};
use super::request::{body_snippet, redirect_note};
use super::sync::{self, EventWindow};
use super::{
    ErrorClass, Outcome, ProgressFn, RequestRecord, RunState, Runner, StepRun, SyncMeasurement, ms,
};
use crate::model::{Step, SyncSpec};
use crate::template::Context;

/// What a step produced besides its report.
pub(super) struct StepResult {
    pub run: StepRun,
    /// The request reached the system and was accepted (2xx): a record may exist.
    pub accepted: bool,
}

/// How a step ended, before it is written into its report.
pub(super) struct Ending {
    pub outcome: Outcome,
    pub class: Option<ErrorClass>,
    pub message: Option<String>,
    /// See [`StepResult::accepted`].
    pub accepted: bool,
}

impl Ending {
    /// An error before or instead of an accepted answer.
    pub fn error(class: ErrorClass, message: String) -> Self {
        Ending {
            outcome: Outcome::Error,
            class: Some(class),
            message: Some(message),
            accepted: false,
        }
    }
}

/// What sending a step produced: its last answer and that answer's record.
pub(super) struct Sent {
    pub res: Result<Response, Failure>,
    pub record: RequestRecord,
    /// The last poll attempt's `until` verdict (none for a step sent once, or when the
    /// last attempt got no answer).
    pub until: Option<Verdict>,
    /// How polling ended; none for a step sent once.
    pub poll: Option<PollResult<()>>,
}

/// A step's report before anything has happened: successful until shown otherwise.
pub(super) fn blank_step_run(step: &Step, started: Duration) -> StepRun {
    StepRun {
        name: step.name.clone(),
        outcome: Outcome::Success,
        error_class: None,
        message: None,
        started_ms: ms(started),
        duration_ms: 0.0,
        request: None,
        attempts: 0,
        polls: Vec::new(),
        assertions: Vec::new(),
        captures: BTreeMap::new(),
        sync: None,
    }
}

/// The report of a step that was cut off or never sent.
pub(super) fn not_run(
    step: &Step,
    started: Duration,
    class: ErrorClass,
    message: String,
) -> StepRun {
    StepRun {
        outcome: Outcome::Error,
        error_class: Some(class),
        message: Some(message),
        ..blank_step_run(step, started)
    }
}

/// Writes how the step ended into its report (message masked) and closes its duration.
fn finish(mut run: StepRun, st: &RunState, end: Ending) -> StepResult {
    run.outcome = end.outcome;
    run.error_class = end.class;
    run.message = end.message.map(|m| st.ctx.masker().mask(&m));
    run.duration_ms = ms(st.t0.elapsed()) - run.started_ms;
    StepResult {
        run,
        accepted: end.accepted,
    }
}

impl Runner {
    /// Runs one step to its end; never fails: every problem becomes the step's outcome.
    pub(super) async fn run_step(
        &self,
        st: &mut RunState,
        step: &Step,
        progress: Option<&ProgressFn>,
    ) -> StepResult {
        let mut run = blank_step_run(step, st.t0.elapsed());
        let out = match Self::render_request(&st.ctx, &step.request) {
            Ok(o) => o,
            Err((class, m)) => return finish(run, st, Ending::error(class, m)),
        };
        let Some(sent) = self.send_or_poll(st, step, &out, progress, &mut run).await else {
            let m = "no poll attempt was made".into();
            return finish(run, st, Ending::error(ErrorClass::Protocol, m));
        };
        let Sent {
            res,
            record,
            until,
            poll,
        } = sent;
        run.attempts = poll.as_ref().map_or(1, |p| p.attempts);
        let window = Window {
            sent: Duration::from_secs_f64(record.sent_ms / 1000.0),
            received: Duration::from_secs_f64((record.sent_ms + record.total_ms) / 1000.0),
        };
        run.request = Some(record);

        if let Some(pr) = &poll
            && pr.end != Attempt::Hit
        {
            if let Some(v) = &until {
                run.assertions = v.results.clone();
            }
            return finish(
                run,
                st,
                poll::missed_poll_ending(st, step, &res, pr, until.as_ref()),
            );
        }
        let resp = match res {
            Ok(r) => r,
            // A 2xx whose body could not be read still created the record.
            Err(f) => {
                let accepted = f.status.is_some_and(|c| (200..300).contains(&c));
                return finish(
                    run,
                    st,
                    Ending {
                        accepted,
                        ..Ending::error(f.class, f.message)
                    },
                );
            }
        };
        let mut end = judge_final_response(step, &resp, &st.ctx, until, &mut run);
        // From any accepted response: cleanup may need them even after a failure.
        if end.accepted {
            take_captures(step, &resp, &mut st.ctx, &mut run, &mut end);
        }
        record_event_window(st, step, poll.as_ref(), window, &mut run);
        finish(run, st, end)
    }

    /// Sends the step's rendered request `out` once, or polls it until its `until`
    /// holds (keeping the polls in `run`); none when a poll made no attempt.
    async fn send_or_poll(
        &self,
        st: &RunState,
        step: &Step,
        out: &OutgoingRequest,
        progress: Option<&ProgressFn>,
        run: &mut StepRun,
    ) -> Option<Sent> {
        if let (Some(until), Some(plan)) = (&step.until, &step.poll) {
            let (polls, last) = self.poll_step(st, step, until, plan, out, progress).await;
            run.polls = polls;
            return last;
        }
        let (res, record) = self.send_within_probe(st, out).await;
        Some(Sent {
            res,
            record,
            until: None,
            poll: None,
        })
    }
}

/// Outcome and class of a response judged against its expectation.
fn judge(resp: &Response, verdict: &Verdict) -> (Outcome, Option<ErrorClass>) {
    if verdict.passed() {
        return (Outcome::Success, None);
    }
    if !verdict.status_passed() {
        return match resp.status {
            401 | 403 => (Outcome::Error, Some(ErrorClass::Auth)),
            429 => (Outcome::Error, Some(ErrorClass::RateLimited)),
            500..=599 => (Outcome::Error, Some(ErrorClass::Http5xx)),
            400..=499 => (Outcome::Failed, Some(ErrorClass::Http4xx)),
            _ => (Outcome::Failed, Some(ErrorClass::Assertion)),
        };
    }
    match &verdict.problem {
        Some((class, _)) => (Outcome::Error, Some(*class)),
        None => (Outcome::Failed, Some(ErrorClass::Assertion)),
    }
}

/// Checks the final answer against `expect` (after a poll's `until`): fills the step's
/// assertions and says how it ends, before captures.
fn judge_final_response(
    step: &Step,
    resp: &Response,
    ctx: &Context,
    until: Option<Verdict>,
    run: &mut StepRun,
) -> Ending {
    let verdict = assert::check(&step.expect, resp, ctx);
    if let Some(u) = until {
        run.assertions = u.results;
    }
    run.assertions.extend(verdict.results.iter().cloned());
    let (outcome, class) = judge(resp, &verdict);
    let message = verdict.first_failure().map(|m| {
        if verdict.status_passed() {
            m
        } else {
            let masker = ctx.masker();
            format!(
                "{m}{}{}",
                redirect_note(resp, masker),
                body_snippet(resp, masker)
            )
        }
    });
    Ending {
        outcome,
        class,
        message,
        accepted: (200..300).contains(&resp.status),
    }
}

/// Takes the step's captures into the report (masked) and the run's context; a capture
/// problem fails a step that had otherwise succeeded.
fn take_captures(
    step: &Step,
    resp: &Response,
    ctx: &mut Context,
    run: &mut StepRun,
    end: &mut Ending,
) {
    let (values, problem) = assert::capture(&step.captures, resp);
    for (name, v) in values {
        run.captures
            .insert(name.clone(), ctx.masker().mask_value(&v));
        ctx.set(&name, v);
    }
    if let Some((c, m)) = problem
        && end.outcome == Outcome::Success
    {
        end.outcome = if c == ErrorClass::InvalidJson {
            Outcome::Error
        } else {
            Outcome::Failed
        };
        end.class = Some(c);
        end.message = Some(m);
    }
}

/// Records when the step's event happened (for a later step's `sync.since`) and, for a
/// poll synced to an earlier step, its sync latency.
fn record_event_window(
    st: &mut RunState,
    step: &Step,
    poll: Option<&PollResult<()>>,
    window: Window,
    run: &mut StepRun,
) {
    let since = step
        .sync
        .as_ref()
        .and_then(|s| st.windows.get(s.since_index).copied().flatten());
    let event = match poll {
        Some(pr) => EventWindow::of_poll(pr.last_miss, pr.hit.unwrap_or(window), since.as_ref()),
        None => EventWindow::of_request(window),
    };
    if let (Some(spec), Some(pr), Some(since)) = (&step.sync, poll, &since) {
        run.sync = Some(measure_sync(st, step, spec, since, &event, pr.attempts));
    }
    st.windows.push(Some(event));
}

/// Sync latency of `event` since the earlier step's window, with the downstream
/// system's own timestamp when the step captured one.
fn measure_sync(
    st: &RunState,
    step: &Step,
    spec: &SyncSpec,
    since: &EventWindow,
    event: &EventWindow,
    polls: u32,
) -> SyncMeasurement {
    let l = sync::latency(since, event);
    let (downstream_ms, skew) = match downstream_timestamp(&st.ctx, spec) {
        Some(t) => {
            let (d, s) = sync::downstream_latency(st.wall_start, since, t, &l);
            (Some(d), s)
        }
        None => (None, false),
    };
    let slo_ms = step.slo_sync_latency.map(ms);
    SyncMeasurement {
        since: spec.since.clone(),
        lower_ms: ms(l.lower),
        upper_ms: ms(l.upper),
        estimate_ms: ms(l.estimate),
        width_ms: ms(l.width()),
        polls,
        downstream_ms,
        skew_suspected: skew,
        slo_ms,
        slo_breached: slo_ms.is_some_and(|s| ms(l.estimate) > s),
    }
}

/// The downstream record's own timestamp (`sync.timestamp` names a capture), when it is
/// an RFC 3339 string.
fn downstream_timestamp(ctx: &Context, spec: &SyncSpec) -> Option<DateTime<Utc>> {
    let value = ctx.get(spec.timestamp.as_ref()?)?;
    let parsed = DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
    Some(parsed.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AssertionResult;
    use crate::runner::test_support::{assertion_result as result, response};

    fn resp(status: u16) -> Response {
        response(status, "")
    }

    fn verdict(results: Vec<AssertionResult>, problem: Option<assert::Problem>) -> Verdict {
        Verdict { results, problem }
    }

    #[test]
    fn a_passing_verdict_is_a_success() {
        let v = verdict(vec![result("status", true), result("$.id", true)], None);
        assert_eq!(judge(&resp(201), &v), (Outcome::Success, None));
    }

    #[test]
    fn a_wrong_status_is_classed_by_the_status() {
        let v = verdict(vec![result("status", false)], None);
        let judged = |status| judge(&resp(status), &v);
        assert_eq!(judged(401), (Outcome::Error, Some(ErrorClass::Auth)));
        assert_eq!(judged(403), (Outcome::Error, Some(ErrorClass::Auth)));
        assert_eq!(judged(429), (Outcome::Error, Some(ErrorClass::RateLimited)));
        assert_eq!(judged(502), (Outcome::Error, Some(ErrorClass::Http5xx)));
        assert_eq!(judged(422), (Outcome::Failed, Some(ErrorClass::Http4xx)));
        assert_eq!(judged(302), (Outcome::Failed, Some(ErrorClass::Assertion)));
    }

    #[test]
    fn a_right_status_with_a_failed_check_or_a_problem() {
        let failed = verdict(vec![result("status", true), result("$.id", false)], None);
        let expected = (Outcome::Failed, Some(ErrorClass::Assertion));
        assert_eq!(judge(&resp(200), &failed), expected);
        let problem = Some((ErrorClass::InvalidJson, "not JSON".to_string()));
        let unreadable = verdict(vec![result("status", true)], problem);
        let expected = (Outcome::Error, Some(ErrorClass::InvalidJson));
        assert_eq!(judge(&resp(200), &unreadable), expected);
    }
}
