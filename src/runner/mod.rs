//! The probe runner: executes one probe against real HTTP systems and returns a `ProbeRun`.
//! This file owns `Runner`, `Progress` and the run itself: vars, the step loop, the probe
//! deadline, the agent's stop, the final report. One step is `step.rs`, one request
//! `request.rs`, polling `poll.rs`, what a run created `created.rs`, deleting it `cleanup.rs`.
//!
//! It knows nothing of schedulers, exporters or alerting. Created records go to the cleanup
//! ledger before the next step; cleanup runs after success, failure or timeout.

pub mod assert;
pub mod cleanup;
mod created;
mod dns;
pub mod http;
pub mod poll;
mod request;
mod step;
pub mod sync;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
pub use crate::model::run::*;
use crate::model::{Agent, Probe, Step};
use crate::secrets::{Masker, SecretStore};
use crate::store::Ledger;
use crate::synthetic::Synthetic;
use crate::template::Context;
use cleanup::CleanupOf;
use created::Created;
use http::HttpClient;
use step::{StepResult, not_run};
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
    run_id: String,
    t0: Instant,
    ctx: Context,
    trace_id: String,
    wall_start: chrono::DateTime<chrono::Utc>,
    /// Each finished step's event window, by step index (`None`: it had none).
    windows: Vec<Option<EventWindow>>,
    /// The probe's deadline.
    deadline: Instant,
}

/// Why a run did not succeed: outcome, class, failed step, message.
type RunFailure = (Outcome, Option<ErrorClass>, Option<String>, Option<String>);

/// What the steps of a run left behind.
#[derive(Default)]
struct StepsLog {
    steps: Vec<StepRun>,
    created: Vec<Created>,
    failure: Option<RunFailure>,
}

/// How long after the probe's deadline the run's own timer cuts a step off. Every request
/// is already cut to the probe's deadline (and says which phase it was in: a DNS lookup
/// that never answered is `dns`); this timer is the backstop behind them, late enough
/// that theirs fire first, so the step keeps its request and its real cause.
const BACKSTOP_GRACE: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Runner {
    /// Runs a probe once. Never panics on bad input or bad answers: every problem becomes
    /// an outcome in the returned `ProbeRun`.
    pub async fn run(&self, probe: &Probe, progress: Option<&ProgressFn>) -> ProbeRun {
        self.run_until(probe, progress, None).await
    }

    /// Runs a probe once, cut short when `stop` turns true: the step in flight ends as
    /// `interrupted`, no further step starts, and the cleanup of whatever the run created
    /// still runs (it is not interrupted: its own budget bounds it, `cleanup::cleanup_budget`,
    /// and the caller bounds it with its stop deadline).
    pub async fn run_until(
        &self,
        probe: &Probe,
        progress: Option<&ProgressFn>,
        stop: Option<watch::Receiver<bool>>,
    ) -> ProbeRun {
        let mut st = self.start_run(probe);
        let mut log = StepsLog::default();
        match render_vars(&mut st.ctx, probe) {
            Ok(()) => {
                self.run_steps(&mut st, probe, progress, stop, &mut log)
                    .await
            }
            Err(failure) => log.failure = Some(failure),
        }
        let duration = st.t0.elapsed();
        let finished_at = self.clock.now();
        // Whatever happened above; a run that did not succeed sweeps again later.
        let of = match log.failure {
            None => CleanupOf::SucceededRun,
            Some(_) => CleanupOf::UnfinishedRun,
        };
        let cleanup = self
            .clean_up_created(probe, &st, &log.created, of, progress)
            .await;
        let (outcome, error_class, failed_step, message) =
            log.failure.unwrap_or((Outcome::Success, None, None, None));
        ProbeRun {
            runbook: runbook_for(probe, failed_step.as_deref(), outcome),
            run_id: st.run_id,
            probe: probe.name.clone(),
            trace_id: st.trace_id,
            started_at: st.wall_start,
            finished_at,
            duration_ms: ms(duration),
            outcome,
            error_class,
            failed_step,
            message: message.map(|m| st.ctx.masker().mask(&m)),
            labels: probe.labels.clone(),
            steps: log.steps,
            cleanup,
        }
    }

    /// A fresh run of `probe`: its id, context, trace and deadline.
    fn start_run(&self, probe: &Probe) -> RunState {
        let run_id = format!("run-{}", &http::new_span_id()[..12]);
        let ctx = Context::new(
            self.env.clone(),
            self.secrets.clone(),
            Arc::new(Synthetic::new(&run_id)),
            &run_id,
            &probe.name,
            Masker::default(),
        );
        let t0 = Instant::now();
        RunState {
            run_id,
            t0,
            ctx,
            trace_id: http::new_trace_id(),
            wall_start: self.clock.now(),
            windows: Vec::new(),
            deadline: t0 + probe.timeout,
        }
    }

    /// Runs the steps in order until one does not succeed, keeping the ledger in step
    /// with what each creating step may have created.
    async fn run_steps(
        &self,
        st: &mut RunState,
        probe: &Probe,
        progress: Option<&ProgressFn>,
        stop: Option<watch::Receiver<bool>>,
        log: &mut StepsLog,
    ) {
        for step in &probe.steps {
            if let Some(p) = progress {
                p(&Progress::StepStarted {
                    step: step.name.clone(),
                });
            }
            let started = st.t0.elapsed();
            if Instant::now() >= st.deadline {
                // Not sent (so nothing for the ledger): there is no time left to send it in.
                let m = format!(
                    "probe timeout of {} reached before this step",
                    humantime::format_duration(probe.timeout)
                );
                let run = not_run(step, started, ErrorClass::ProbeTimeout, m);
                log.failure = Some(failure_of(&run));
                log.steps.push(run);
                return;
            }
            let ids = match self.record_pending_creates(st, probe, step).await {
                Ok(ids) => ids,
                Err(e) => {
                    // A record we could not track is never created.
                    let m = format!(
                        "not sent: the cleanup ledger cannot record what this step creates: {e}"
                    );
                    let run = not_run(step, started, ErrorClass::Ledger, m);
                    log.failure = Some(failure_of(&run));
                    log.steps.push(run);
                    return;
                }
            };
            let result = self
                .run_step_bounded(st, probe, step, started, progress, stop.clone())
                .await;
            let mut run = result.run;
            run.duration_ms = ms(st.t0.elapsed()) - run.started_ms;
            if st.windows.len() < log.steps.len() + 1 {
                st.windows.push(None);
            }
            let created = self
                .settle_ledger_after_step(st, step, ids, result.accepted, &mut run)
                .await;
            log.created.extend(created);
            if let Some(p) = progress {
                p(&Progress::StepFinished {
                    step: Box::new(run.clone()),
                });
            }
            let failed = run.outcome != Outcome::Success;
            if failed {
                log.failure = Some(failure_of(&run));
            }
            log.steps.push(run);
            if failed {
                return;
            }
        }
    }

    /// Runs one step within the probe's deadline (its requests are cut to it; this is the
    /// backstop, `BACKSTOP_GRACE` later), unless `stop` turns true first: a step cut off
    /// either way ends as an error (probe timeout, or interrupted).
    async fn run_step_bounded(
        &self,
        st: &mut RunState,
        probe: &Probe,
        step: &Step,
        started: Duration,
        progress: Option<&ProgressFn>,
        stop: Option<watch::Receiver<bool>>,
    ) -> StepResult {
        let backstop = st.deadline + BACKSTOP_GRACE;
        let timed = tokio::time::timeout_at(backstop, self.run_step(st, step, progress));
        let (class, message) = match stopped(stop, timed).await {
            Some(Ok(result)) => return result,
            None => (
                ErrorClass::Interrupted,
                "interrupted: the agent is stopping".to_string(),
            ),
            Some(Err(_)) => (
                ErrorClass::ProbeTimeout,
                format!(
                    "probe timeout of {} reached during this step",
                    humantime::format_duration(probe.timeout)
                ),
            ),
        };
        StepResult {
            run: not_run(step, started, class, message),
            accepted: false,
        }
    }
}

/// Renders the probe's vars, in order, into the run's context.
fn render_vars(ctx: &mut Context, probe: &Probe) -> Result<(), RunFailure> {
    for (name, value) in &probe.vars {
        match ctx.render_value(value) {
            Ok(v) => ctx.set(name, v),
            Err(e) => {
                return Err((
                    Outcome::Error,
                    Some(ErrorClass::Template),
                    None,
                    Some(format!("var `{name}`: {e}")),
                ));
            }
        }
    }
    Ok(())
}

/// Why the run failed, from the report of the step that did not succeed.
fn failure_of(run: &StepRun) -> RunFailure {
    (
        run.outcome,
        run.error_class,
        Some(run.name.clone()),
        run.message.clone(),
    )
}

/// The runbook of a run that did not succeed: its failed step's, else the probe's.
fn runbook_for(probe: &Probe, failed_step: Option<&str>, outcome: Outcome) -> Option<String> {
    failed_step
        .and_then(|name| probe.steps.iter().find(|s| s.name == name))
        .and_then(|s| s.runbook.as_ref())
        .or(probe.runbook.as_ref())
        .filter(|_| outcome != Outcome::Success)
        .map(|r| r.to_string())
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
    /// A runner for the validated agent settings. `process_env` is the environment
    /// snapshot: it wins over `rooftop.yaml`'s `env:` for `env.*`, and feeds secret lookup.
    pub fn new(
        agent: &Agent,
        process_env: BTreeMap<String, String>,
        state_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Runner, RunnerInitError> {
        let http = HttpClient::new(&http::HttpSettings {
            max_body_bytes: agent.max_body_bytes,
            verify_tls: agent.verify_tls,
        })?;
        let mut env = agent.env.clone();
        env.extend(process_env.clone());
        Ok(Runner {
            http,
            env: Arc::new(env),
            secrets: Arc::new(SecretStore::new(agent.secrets.clone(), process_env)),
            ledger: Ledger::open_in(state_dir)?,
            clock,
        })
    }

    /// `Runner::new` with a loaded config's agent settings.
    pub fn from_config(
        config: &crate::config::Config,
        process_env: BTreeMap<String, String>,
        state_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Runner, RunnerInitError> {
        Runner::new(&config.agent, process_env, state_dir, clock)
    }
}
