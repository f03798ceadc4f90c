//! The probe runner: executes one probe against real HTTP systems and returns a `ProbeRun`.
//!
//! It knows nothing of schedulers, exporters or alerting. Created records go to the cleanup
//! ledger before the next step; cleanup runs after success, failure or timeout.

pub mod assert;
pub mod cleanup;
pub mod http;
pub mod poll;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
pub use crate::model::run::*;
use crate::model::{Body, Probe, Request, Step};
use crate::secrets::{Masker, SecretStore};
use crate::store::{Ledger, NewEntry};
use crate::synthetic::Synthetic;
use crate::template::Context;
use http::{Failure, HttpClient, OutgoingRequest, Response};
use poll::{Attempt, Window};
use sync::EventWindow;

/// Live progress for a terminal; the runner calls it as things happen.
#[derive(Debug, Clone)]
pub enum Progress {
    StepStarted {
        step: String,
    },
    PollAttempt {
        step: String,
        attempt: u32,
        elapsed: Duration,
        status: Option<u16>,
        hit: bool,
    },
    StepFinished {
        step: Box<StepRun>,
    },
    CleanupFinished {
        item: CleanupRun,
    },
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Everything a run needs from outside; shared by all runs.
#[derive(Clone)]
pub struct Runner {
    pub http: HttpClient,
    /// `env.*` for templates: the process environment over `rooftop.yaml`'s `env:`.
    pub env: Arc<BTreeMap<String, String>>,
    pub secrets: Arc<SecretStore>,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
}

impl Runner {
    /// Renders a `rooftop.yaml` value that may use `env.*` and `secret.*` (OTLP headers,
    /// later SMTP settings).
    pub fn render_setting(&self, source: &str) -> Result<String, String> {
        let ctx = Context::new(
            self.env.clone(),
            self.secrets.clone(),
            Arc::new(Synthetic::new("settings")),
            "settings",
            "rooftop.yaml",
            Masker::default(),
        );
        ctx.render(source).map_err(|e| e.to_string())
    }
}

/// State of one run in progress.
struct RunState {
    t0: Instant,
    ctx: Context,
    trace_id: String,
    wall_start: chrono::DateTime<chrono::Utc>,
    windows: Vec<Option<EventWindow>>,
    /// The probe's deadline.
    deadline: Instant,
}

/// Why a run did not succeed: outcome, class, failed step, message.
type RunFailure = (Outcome, Option<ErrorClass>, Option<String>, Option<String>);

/// What a step produced besides its report.
struct StepResult {
    run: StepRun,
    /// The request reached the system and was accepted (2xx): a record may exist.
    accepted: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A step's report before anything has happened: successful until shown otherwise.
/// Polls of one step kept in its report (the count is always exact in `attempts`).
const MAX_POLL_RECORDS: usize = 200;

fn blank_step_run(step: &Step, started: Duration) -> StepRun {
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
fn not_run(step: &Step, started: Duration, class: ErrorClass, message: String) -> StepRun {
    StepRun {
        outcome: Outcome::Error,
        error_class: Some(class),
        message: Some(message),
        ..blank_step_run(step, started)
    }
}

/// Outcome and class of a response judged against its expectation.
fn judge(resp: &Response, verdict: &assert::Verdict) -> (Outcome, Option<ErrorClass>) {
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

/// How a poll attempt's answer counts.
fn poll_kind(resp: &Response, until: &assert::Verdict) -> Attempt {
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

/// The start of a response body for a message, masked before it is cut (so no prefix
/// of a secret survives the cut).
fn body_snippet(resp: &Response, masker: &Masker) -> String {
    let text = masker.mask(&resp.text());
    let t = text.trim();
    if t.is_empty() {
        return String::new();
    }
    let short: String = t.chars().take(160).collect();
    format!(
        "; body: {short}{}",
        if t.chars().count() > 160 { "…" } else { "" }
    )
}

impl Runner {
    /// Runs a probe once. Never panics on bad input or bad answers: every problem becomes
    /// an outcome in the returned `ProbeRun`.
    pub async fn run(&self, probe: &Probe, progress: Option<&ProgressFn>) -> ProbeRun {
        self.run_until(probe, progress, None).await
    }

    /// Runs a probe once, cut short when `stop` turns true: the step in flight ends as
    /// `interrupted`, no further step starts, and the cleanup of whatever the run created
    /// still runs (it is not interrupted; the caller bounds it with its stop deadline).
    pub async fn run_until(
        &self,
        probe: &Probe,
        progress: Option<&ProgressFn>,
        stop: Option<watch::Receiver<bool>>,
    ) -> ProbeRun {
        let run_id = format!("run-{}", &http::new_span_id()[..12]);
        let masker = Masker::default();
        let ctx = Context::new(
            self.env.clone(),
            self.secrets.clone(),
            Arc::new(Synthetic::new(&run_id)),
            &run_id,
            &probe.name,
            masker.clone(),
        );
        let t0 = Instant::now();
        let deadline = t0 + probe.timeout;
        let mut st = RunState {
            t0,
            ctx,
            trace_id: http::new_trace_id(),
            wall_start: self.clock.now(),
            windows: Vec::new(),
            deadline,
        };
        let mut steps = Vec::new();
        let mut created: Vec<(i64, String, String)> = Vec::new();
        let mut failure: Option<RunFailure> = None;

        // vars, in order.
        for (name, value) in &probe.vars {
            match st.ctx.render_value(value) {
                Ok(v) => st.ctx.set(name, v),
                Err(e) => {
                    failure = Some((
                        Outcome::Error,
                        Some(ErrorClass::Template),
                        None,
                        Some(format!("var `{name}`: {e}")),
                    ));
                    break;
                }
            }
        }

        if failure.is_none() {
            for step in &probe.steps {
                if let Some(p) = progress {
                    p(&Progress::StepStarted {
                        step: step.name.clone(),
                    });
                }
                let started = st.t0.elapsed();
                // Records are entered in the ledger as pending *before* the request that
                // creates them is sent: whatever happens next (no answer, a timeout, a
                // kill), the ledger knows a record may exist.
                let pending = if step.creates.is_empty() {
                    Ok(Vec::new())
                } else {
                    let entries: Vec<NewEntry> = step
                        .creates
                        .iter()
                        .map(|cleanup| NewEntry {
                            run_id: run_id.clone(),
                            probe: probe.name.clone(),
                            cleanup: cleanup.clone(),
                            created_by: step.name.clone(),
                            context: ledger_context(&st.ctx),
                            created_at: self.clock.now(),
                        })
                        .collect();
                    self.ledger.record_all(entries).await
                };
                let ids = match pending {
                    Ok(ids) => ids,
                    Err(e) => {
                        // A record we could not track is never created.
                        let run = not_run(
                            step,
                            started,
                            ErrorClass::Ledger,
                            format!(
                                "not sent: the cleanup ledger cannot record what this step creates: {e}"
                            ),
                        );
                        failure = Some((
                            Outcome::Error,
                            Some(ErrorClass::Ledger),
                            Some(step.name.clone()),
                            run.message.clone(),
                        ));
                        steps.push(run);
                        break;
                    }
                };
                let interrupted = || StepResult {
                    run: not_run(
                        step,
                        started,
                        ErrorClass::Interrupted,
                        "interrupted: the agent is stopping".into(),
                    ),
                    accepted: false,
                };
                let timed =
                    tokio::time::timeout_at(deadline, self.run_step(&mut st, step, progress));
                let result = match stopped(stop.clone(), timed).await {
                    None => interrupted(),
                    Some(timed) => match timed {
                        Ok(r) => r,
                        Err(_) => StepResult {
                            run: not_run(
                                step,
                                started,
                                ErrorClass::ProbeTimeout,
                                format!(
                                    "probe timeout of {} reached during this step",
                                    humantime::format_duration(probe.timeout)
                                ),
                            ),
                            accepted: false,
                        },
                    },
                };
                let mut run = result.run;
                run.duration_ms = ms(st.t0.elapsed()) - run.started_ms;
                if st.windows.len() < steps.len() + 1 {
                    st.windows.push(None);
                }
                if !ids.is_empty() {
                    let status = run.request.as_ref().and_then(|r| r.status);
                    // Not created: the system answered with a non-2xx status, or the
                    // request never left (refused connection, DNS, TLS, template).
                    let answered_no = status.is_some_and(|c| !(200..300).contains(&c));
                    let never_sent = status.is_none()
                        && matches!(
                            run.error_class,
                            Some(
                                ErrorClass::Dns
                                    | ErrorClass::Connect
                                    | ErrorClass::Tls
                                    | ErrorClass::Template
                                    | ErrorClass::Secret
                            )
                        );
                    let refused = !result.accepted && (answered_no || never_sent);
                    let update = if result.accepted {
                        // Confirmed, with the captures the cleanup needs.
                        self.ledger
                            .confirm(ids.clone(), ledger_context(&st.ctx))
                            .await
                    } else if refused {
                        self.ledger.remove_all(ids.clone()).await
                    } else {
                        // Sent without an answer (timeout, reset, probe timeout): it may
                        // exist; cleanup says so if its id was never captured.
                        Ok(())
                    };
                    if let Err(e) = update {
                        run.outcome = Outcome::Error;
                        run.error_class = Some(ErrorClass::Ledger);
                        run.message = Some(format!("cleanup ledger update failed: {e}"));
                    }
                    if !refused {
                        for (id, cleanup) in ids.into_iter().zip(&step.creates) {
                            created.push((id, cleanup.clone(), step.name.clone()));
                        }
                    }
                }
                if let Some(p) = progress {
                    p(&Progress::StepFinished {
                        step: Box::new(run.clone()),
                    });
                }
                let outcome = run.outcome;
                if outcome != Outcome::Success {
                    failure = Some((
                        outcome,
                        run.error_class,
                        Some(run.name.clone()),
                        run.message.clone(),
                    ));
                }
                steps.push(run);
                if outcome != Outcome::Success {
                    break;
                }
            }
        }
        let duration = st.t0.elapsed();
        let finished_at = self.clock.now();

        // Cleanup whatever happened above: the newest step's records first; within one
        // step in the order its `creates` lists them (delete the source, then sweep what
        // it propagated to).
        let mut report = CleanupReport::default();
        let mut ordered: Vec<&(i64, String, String)> = Vec::new();
        for group in created.chunk_by(|a, b| a.2 == b.2).rev() {
            ordered.extend(group.iter());
        }
        for (id, name, created_by) in ordered {
            let Some(cs) = probe.cleanup_step(name) else {
                continue;
            };
            let item = self
                .run_cleanup(
                    probe,
                    cs,
                    created_by,
                    st.ctx.values().clone(),
                    *id,
                    &st.trace_id,
                    &masker,
                )
                .await;
            if let Some(p) = progress {
                p(&Progress::CleanupFinished { item: item.clone() });
            }
            report.items.push(item);
        }
        report.outcome = if report.items.is_empty() {
            CleanupOutcome::NotNeeded
        } else if report.items.iter().all(|i| i.success) {
            CleanupOutcome::Success
        } else {
            CleanupOutcome::Failed
        };

        let (outcome, error_class, failed_step, message) =
            failure.unwrap_or((Outcome::Success, None, None, None));
        let runbook = failed_step
            .as_ref()
            .and_then(|name| probe.steps.iter().find(|s| &s.name == name))
            .and_then(|s| s.runbook.as_ref())
            .or(probe.runbook.as_ref())
            .filter(|_| outcome != Outcome::Success)
            .map(|r| r.to_string());
        ProbeRun {
            run_id,
            probe: probe.name.clone(),
            trace_id: st.trace_id,
            started_at: st.wall_start,
            finished_at,
            duration_ms: ms(duration),
            outcome,
            error_class,
            failed_step,
            message: message.map(|m| masker.mask(&m)),
            labels: probe.labels.clone(),
            runbook,
            steps,
            cleanup: report,
        }
    }

    /// Renders a request template with the run's context.
    fn render_request(
        ctx: &Context,
        req: &Request,
    ) -> Result<OutgoingRequest, (ErrorClass, String)> {
        let fail = |what: &str, e: crate::template::RenderError, source: &str| match ctx
            .secret_problem(source)
        {
            Some(m) => (ErrorClass::Secret, m),
            None => (ErrorClass::Template, format!("{what}: {e}")),
        };
        let url = ctx.render(&req.url).map_err(|e| fail("url", e, &req.url))?;
        let mut out = OutgoingRequest {
            method: req.method.clone(),
            url,
            headers: Default::default(),
            body: None,
            timeout: req.timeout,
        };
        match &req.body {
            Body::None => {}
            Body::Json(v) => {
                let rendered = ctx.render_value(v).map_err(|e| {
                    let src = serde_json::to_string(v).unwrap_or_default();
                    fail("json body", e, &src)
                })?;
                out.body = Some(serde_json::to_vec(&rendered).unwrap_or_default());
                out.header("content-type", "application/json")
                    .map_err(|m| (ErrorClass::Template, m))?;
            }
            Body::Text(t) => {
                out.body = Some(ctx.render(t).map_err(|e| fail("body", e, t))?.into_bytes())
            }
        }
        for (name, value) in &req.headers {
            let v = ctx
                .render(value)
                .map_err(|e| fail(&format!("header {name}"), e, value))?;
            out.header(name, &v)
                .map_err(|m| (ErrorClass::Template, m))?;
        }
        Ok(out)
    }

    async fn run_step(
        &self,
        st: &mut RunState,
        step: &Step,
        progress: Option<&ProgressFn>,
    ) -> StepResult {
        let started = st.t0.elapsed();
        let masker = st.ctx.masker().clone();
        let mut run = blank_step_run(step, started);
        let finish = |mut run: StepRun,
                      st: &RunState,
                      outcome: Outcome,
                      class: Option<ErrorClass>,
                      message: Option<String>,
                      accepted: bool| {
            run.outcome = outcome;
            run.error_class = class;
            run.message = message.map(|m| masker.mask(&m));
            run.duration_ms = ms(st.t0.elapsed()) - run.started_ms;
            StepResult { run, accepted }
        };

        let out = match Self::render_request(&st.ctx, &step.request) {
            Ok(o) => o,
            Err((class, m)) => return finish(run, st, Outcome::Error, Some(class), Some(m), false),
        };

        // Send once, or poll until the condition holds.
        type Payload = (
            Result<Response, Failure>,
            RequestRecord,
            Option<assert::Verdict>,
        );
        let (payload, poll_result): (Payload, Option<poll::PollResult<()>>) =
            match (&step.until, &step.poll) {
                (Some(until), Some(plan)) => {
                    let last: std::sync::Mutex<Option<Payload>> = std::sync::Mutex::new(None);
                    let polls: std::sync::Mutex<Vec<RequestRecord>> =
                        std::sync::Mutex::new(Vec::new());
                    let (t0, ctx, trace_id, masker_ref, last_ref, polls_ref) =
                        (st.t0, &st.ctx, st.trace_id.as_str(), &masker, &last, &polls);
                    let poll_started = Instant::now();
                    // The final attempt must fit before the probe's own deadline, so a poll
                    // cut short still reports its polls and last answer.
                    let cap = st.deadline.checked_sub(step.request.timeout);
                    let result = poll::poll_until(plan, t0, cap, |n| {
                        let out = out.clone();
                        async move {
                            let (res, rec) = self.send(t0, &out, trace_id, masker_ref).await;
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
                        }
                    })
                    .await;
                    run.polls = polls.into_inner().unwrap_or_else(|p| p.into_inner());
                    let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
                    let Some(payload) = last else {
                        return finish(
                            run,
                            st,
                            Outcome::Error,
                            Some(ErrorClass::Protocol),
                            Some("no poll attempt was made".into()),
                            false,
                        );
                    };
                    (payload, Some(result))
                }
                _ => {
                    let (res, rec) = self.send(st.t0, &out, &st.trace_id, &masker).await;
                    ((res, rec, None), None)
                }
            };
        let (res, record, until_verdict) = payload;
        run.attempts = poll_result.as_ref().map_or(1, |p| p.attempts);
        let window = Window {
            sent: Duration::from_secs_f64(record.sent_ms / 1000.0),
            received: Duration::from_secs_f64((record.sent_ms + record.total_ms) / 1000.0),
        };
        run.request = Some(record);

        // Polling that ended without a hit.
        if let Some(pr) = &poll_result
            && pr.end != Attempt::Hit
        {
            let within = step
                .poll
                .map(|p| humantime::format_duration(p.within).to_string())
                .unwrap_or_default();
            if let Some(v) = &until_verdict {
                run.assertions = v.results.clone();
            }
            return match (&res, pr.end) {
                (Err(f), _) => {
                    let m = format!("{} (after {} polls over {within})", f.message, pr.attempts);
                    finish(run, st, Outcome::Error, Some(f.class), Some(m), false)
                }
                (Ok(resp), Attempt::Fatal) => {
                    let class = if matches!(resp.status, 401 | 403) {
                        ErrorClass::Auth
                    } else {
                        ErrorClass::Http4xx
                    };
                    let m = format!(
                        "polling stopped: HTTP {}{}",
                        resp.status,
                        body_snippet(resp, &masker)
                    );
                    finish(run, st, Outcome::Error, Some(class), Some(m), false)
                }
                (Ok(resp), Attempt::Transient) => {
                    let v = until_verdict.as_ref();
                    let (class, detail) = match v.and_then(|v| v.problem.clone()) {
                        Some((c, m)) => (c, m),
                        None => match resp.status {
                            429 => (ErrorClass::RateLimited, "HTTP 429".to_string()),
                            s if s >= 500 => (
                                ErrorClass::Http5xx,
                                format!("HTTP {s}{}", body_snippet(resp, &masker)),
                            ),
                            s => (ErrorClass::Http4xx, format!("HTTP {s}")),
                        },
                    };
                    let m = format!("{detail} (last of {} polls over {within})", pr.attempts);
                    finish(run, st, Outcome::Error, Some(class), Some(m), false)
                }
                (Ok(_), _) => {
                    let why = until_verdict
                        .as_ref()
                        .and_then(|v| v.first_failure())
                        .unwrap_or_default();
                    let cut = st
                        .deadline
                        .checked_sub(step.request.timeout)
                        .is_some_and(|c| c < Instant::now());
                    let m = if cut {
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
                    finish(
                        run,
                        st,
                        Outcome::SyncTimeout,
                        Some(ErrorClass::SyncTimeout),
                        Some(m),
                        false,
                    )
                }
            };
        }

        let resp = match res {
            Ok(r) => r,
            Err(f) => {
                // A 2xx whose body could not be read still created the record.
                let accepted = f.status.is_some_and(|c| (200..300).contains(&c));
                return finish(
                    run,
                    st,
                    Outcome::Error,
                    Some(f.class),
                    Some(f.message),
                    accepted,
                );
            }
        };
        let accepted = (200..300).contains(&resp.status);

        // The final response must also satisfy `expect`.
        let verdict = assert::check(&step.expect, &resp, &st.ctx);
        if let Some(u) = until_verdict {
            run.assertions = u.results;
        }
        run.assertions.extend(verdict.results.iter().cloned());
        let (mut outcome, mut class) = judge(&resp, &verdict);
        let mut message = verdict.first_failure().map(|m| {
            if verdict.status_passed() {
                m
            } else {
                format!("{m}{}", body_snippet(&resp, &masker))
            }
        });

        // Captures, from any accepted response (cleanup may need them even after a failure).
        if accepted {
            let (values, problem) = assert::capture(&step.captures, &resp);
            for (name, v) in values {
                run.captures.insert(name.clone(), masker.mask_value(&v));
                st.ctx.set(&name, v);
            }
            if let Some((c, m)) = problem
                && outcome == Outcome::Success
            {
                outcome = if c == ErrorClass::InvalidJson {
                    Outcome::Error
                } else {
                    Outcome::Failed
                };
                class = Some(c);
                message = Some(m);
            }
        }

        // Event window and sync latency.
        let event = match &poll_result {
            Some(pr) => {
                let since = step
                    .sync
                    .as_ref()
                    .and_then(|s| st.windows.get(s.since_index).copied().flatten());
                EventWindow::of_poll(pr.last_miss, pr.hit.unwrap_or(window), since.as_ref())
            }
            None => EventWindow::of_request(window),
        };
        if let (Some(spec), Some(pr)) = (&step.sync, &poll_result)
            && let Some(Some(since)) = st.windows.get(spec.since_index)
        {
            let l = sync::latency(since, &event);
            let (downstream_ms, skew) = match spec
                .timestamp
                .as_ref()
                .and_then(|name| st.ctx.get(name))
                .and_then(|v| v.as_str().map(str::to_string))
            {
                Some(ts) => match chrono::DateTime::parse_from_rfc3339(&ts) {
                    Ok(t) => {
                        let (d, s) = sync::downstream_latency(
                            st.wall_start,
                            since,
                            t.with_timezone(&chrono::Utc),
                            &l,
                        );
                        (Some(d), s)
                    }
                    Err(_) => (None, false),
                },
                None => (None, false),
            };
            let slo_ms = step.slo_sync_latency.map(ms);
            run.sync = Some(SyncMeasurement {
                since: spec.since.clone(),
                lower_ms: ms(l.lower),
                upper_ms: ms(l.upper),
                estimate_ms: ms(l.estimate),
                width_ms: ms(l.width()),
                polls: pr.attempts,
                downstream_ms,
                skew_suspected: skew,
                slo_ms,
                slo_breached: slo_ms.is_some_and(|s| ms(l.estimate) > s),
            });
        }
        st.windows.push(Some(event));
        finish(run, st, outcome, class, message, accepted)
    }

    /// Sends one request and records its timings.
    async fn send(
        &self,
        t0: Instant,
        out: &OutgoingRequest,
        trace_id: &str,
        masker: &Masker,
    ) -> (Result<Response, Failure>, RequestRecord) {
        let span_id = http::new_span_id();
        let tp = http::traceparent(trace_id, &span_id);
        let sent = t0.elapsed();
        let res = self.http.send(out, &tp).await;
        let mut record = RequestRecord {
            method: out.method.to_string(),
            url: masker.mask(&out.url),
            status: None,
            span_id,
            sent_ms: ms(sent),
            ttfb_ms: None,
            total_ms: 0.0,
            response_bytes: None,
        };
        match &res {
            Ok(r) => {
                record.status = Some(r.status);
                record.ttfb_ms = Some(ms(r.ttfb));
                record.total_ms = ms(r.total);
                record.response_bytes = Some(r.body.len() as u64);
            }
            Err(f) => {
                record.status = f.status;
                record.total_ms = ms(f.elapsed);
            }
        }
        (res, record)
    }
}

/// Vars and captures for the ledger; a value that would reveal a secret is not stored.
fn ledger_context(ctx: &Context) -> BTreeMap<String, Value> {
    let masker = ctx.masker();
    ctx.values()
        .iter()
        .map(|(k, v)| {
            let text = v.to_string();
            if masker.reveals(&text) {
                (k.clone(), masker.mask_value(v))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// Why a runner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RunnerInitError {
    #[error(transparent)]
    Http(#[from] http::ClientError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `work`, unless `stop` turns true first (`None`: never stops).
async fn stopped<F: std::future::Future>(
    stop: Option<watch::Receiver<bool>>,
    work: F,
) -> Option<F::Output> {
    let Some(mut stop) = stop else {
        return Some(work.await);
    };
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        out = work => Some(out),
        // A dropped sender never stops the run.
        _ = async {
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => None,
    }
}

impl Runner {
    /// A runner for a validated config. `process_env` is the environment snapshot: it wins
    /// over `rooftop.yaml`'s `env:` for `env.*`, and feeds secret lookup.
    pub fn from_config(
        config: &crate::config::Config,
        process_env: BTreeMap<String, String>,
        state_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Runner, RunnerInitError> {
        let http = HttpClient::new(&http::HttpSettings {
            max_body_bytes: config.agent.max_body_bytes,
            verify_tls: config.agent.verify_tls,
        })?;
        let mut env = config.agent.env.clone();
        env.extend(process_env.clone());
        Ok(Runner {
            http,
            env: Arc::new(env),
            secrets: Arc::new(SecretStore::new(config.agent.secrets.clone(), process_env)),
            ledger: Ledger::open_in(state_dir)?,
            clock,
        })
    }
}
