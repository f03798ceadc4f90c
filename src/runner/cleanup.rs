//! Cleanup: deleting the synthetic records a run created, with retries and backoff, within
//! a time budget of its own, and replaying ledger entries left behind by an earlier run.
//!
//! A cleanup succeeds on any 2xx, or 404/410 (the record is already gone), unless the
//! cleanup step sets its own `expect`. One that runs out of time or attempts stays in the
//! ledger for a later replay: a hung delete delays a run by its budget, never loses a record.
//!
//! A sweep (`find`) that finds nothing after a run that did not succeed is not final: the
//! dealer's sync job may create the downstream record later, so its entry is kept for one
//! re-sweep [`resweep_delay`] later. The running agent replays what is due ([`due_in_run`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use super::http::Response;
use super::{CleanupRun, Runner, assert, http, ms};
use crate::model::{CleanupStep, Probe, Request};
use crate::secrets::Masker;
use crate::store::LedgerEntry;
use crate::synthetic::Synthetic;
use crate::template::Context;

/// First wait between cleanup attempts; doubles each time, capped at `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The most a run's cleanup may take, however long the probe's `timeout`.
pub const CLEANUP_CAP: Duration = Duration::from_secs(120);
/// The least a run's cleanup gets, however short the probe's `timeout` (room for a
/// retry or two after a slow first attempt).
pub const CLEANUP_FLOOR: Duration = Duration::from_secs(10);

/// The time a run's cleanup gets, from when its steps end: the probe's `timeout`, but
/// at least `CLEANUP_FLOOR` and at most `CLEANUP_CAP`. A run so ends within its `timeout`
/// plus `CLEANUP_CAP`; a replayed ledger entry gets the same budget for itself.
pub fn cleanup_budget(probe_timeout: Duration) -> Duration {
    probe_timeout.clamp(CLEANUP_FLOOR, CLEANUP_CAP)
}

/// The least a re-sweep waits after the empty sweep, and the most.
pub const RESWEEP_FLOOR: Duration = Duration::from_secs(10);
pub const RESWEEP_CAP: Duration = Duration::from_secs(30 * 60);
/// The wait of a probe without polls (nothing says how long its sync jobs take).
pub const RESWEEP_WITHOUT_POLLS: Duration = Duration::from_secs(2 * 60);

/// How long after a sweep that found nothing its re-sweep waits: the probe's longest
/// `poll.within` (the time its own steps give a sync job to create a downstream record),
/// at least `RESWEEP_FLOOR` and at most `RESWEEP_CAP`; `RESWEEP_WITHOUT_POLLS` for a
/// probe that does not poll.
pub fn resweep_delay(probe: &Probe) -> Duration {
    probe
        .steps
        .iter()
        .filter_map(|s| s.poll.map(|p| p.within))
        .max()
        .map_or(RESWEEP_WITHOUT_POLLS, |w| {
            w.clamp(RESWEEP_FLOOR, RESWEEP_CAP)
        })
}

/// How long the running agent waits after a failed cleanup attempt before it tries the
/// entry again: a system that is down is not hammered every minute.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5 * 60);
/// Slack past the latest end of a run (its `timeout` plus its cleanup budget) before the
/// agent treats the run's entries as leftovers rather than the run's own business.
pub const RUN_END_SLACK: Duration = Duration::from_secs(60);

/// Whether the running agent replays `entry` (of `probe`) at `now`: a re-sweep whose time
/// has come, or a leftover whose run cannot still be in flight in this process (created
/// more than the probe's `timeout` + [`cleanup_budget`] + `RUN_END_SLACK` ago) and whose
/// last attempt ended at least `RETRY_FAILED_AFTER` ago. Entries whose cleanup step no
/// longer exists are left for a person (they were named at start).
pub fn due_in_run(entry: &LedgerEntry, probe: &Probe, now: DateTime<Utc>) -> bool {
    if probe.cleanup_step(&entry.record.cleanup).is_none() {
        return false;
    }
    if entry.awaiting_resweep() {
        return !entry.resweep_not_due(now);
    }
    let run_over = entry.record.created_at
        + chrono_duration(probe.timeout + cleanup_budget(probe.timeout) + RUN_END_SLACK);
    let retry_at = entry
        .last_attempt
        .map(|t| t + chrono_duration(RETRY_FAILED_AFTER));
    now >= run_over && retry_at.is_none_or(|t| now >= t)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
}

/// Whose cleanup a cleanup is: it decides whether a sweep that finds nothing is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupOf {
    /// A run that succeeded: its downstream records existed when it ended, and what its
    /// sweeps do not find now is not there.
    SucceededRun,
    /// A run that failed, timed out or was interrupted: a sync job may still create a
    /// downstream record.
    UnfinishedRun,
    /// A ledger entry replayed (after a kill, or a cleanup that failed).
    Replay,
    /// The one re-sweep of an entry whose sweep found nothing.
    Resweep,
}

impl CleanupOf {
    /// True when a sweep that found nothing is done with its entry.
    pub fn empty_sweep_is_final(self) -> bool {
        matches!(self, CleanupOf::SucceededRun | CleanupOf::Resweep)
    }
}

/// What one successful cleanup attempt did.
struct Cleaned {
    /// The last delete's status (`None`: a sweep found nothing to delete).
    status: Option<u16>,
    /// How many records a sweep found (`None`: not a sweep).
    found: Option<usize>,
}

/// The time one cleanup has: every attempt, backoff and request of it ends by `deadline`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub deadline: Instant,
    /// How long that was when the cleanup started (for messages).
    pub allowed: Duration,
}

impl Budget {
    /// `allowed` from now.
    pub fn starting_now(allowed: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + allowed,
            allowed,
        }
    }

    /// An equal share of what is left until `end` for the next of `remaining` cleanups:
    /// one hung delete cannot starve the others, and time one leaves unused goes to the
    /// ones after it.
    pub fn share_of(end: Instant, remaining: usize) -> Budget {
        let left = end.saturating_duration_since(Instant::now());
        Budget::starting_now(left / remaining.max(1) as u32)
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Values a cleanup step's templates read that the run never produced (vars and
/// captures only; `env.*` and `secret.*` problems may be fixed later, so they are retried).
fn missing_values(step: &CleanupStep, ctx: &Context) -> Vec<String> {
    let mut sources = Vec::new();
    step.request.template_sources(&mut sources);
    if let Some(f) = &step.find {
        f.request.template_sources(&mut sources);
    }
    let bind = step.find.as_ref().map(|f| f.bind.as_str());
    let mut missing: Vec<String> = sources
        .into_iter()
        .filter_map(|s| crate::template::analyze(s).ok())
        .flatten()
        .filter_map(|name| name.split('.').next().map(str::to_string))
        .filter(|head| {
            !crate::template::RESERVED.contains(&head.as_str())
                && Some(head.as_str()) != bind
                && ctx.get(head).is_none()
        })
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Why one cleanup attempt failed.
struct CleanupFailure {
    status: Option<u16>,
    message: String,
    /// Rendering problems will not go away by retrying; transport and HTTP errors may.
    retryable: bool,
}

/// A cleanup's error once its time ran out: the last attempt's, or why none was made,
/// and that the record stays in the ledger.
fn out_of_time_error(last: Option<String>, attempts: u32, budget: Budget) -> String {
    let allowed = http::whole_ms(budget.allowed);
    match last {
        Some(e) => format!(
            "{e} (stopped after {attempts} attempt{}: the {allowed} this cleanup had ran out; the record stays in the cleanup ledger for a later cleanup)",
            if attempts == 1 { "" } else { "s" }
        ),
        None => format!(
            "not attempted: the run's cleanup time ran out before it (its share was {allowed}); the record stays in the cleanup ledger for a later cleanup"
        ),
    }
}

/// Result of replaying one ledger entry.
#[derive(Debug, Clone)]
pub struct LedgerReplay {
    pub entry: LedgerEntry,
    pub result: Result<CleanupRun, String>,
}

impl Runner {
    /// Runs one cleanup step with retries within `budget`, then updates its ledger entry:
    /// removed when done, kept with the error when failed, kept for a re-sweep when a
    /// sweep found nothing and `of` says that is not final.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_cleanup(
        &self,
        probe: &Probe,
        of: CleanupOf,
        step: &CleanupStep,
        created_by: &str,
        values: BTreeMap<String, Value>,
        ledger_id: i64,
        trace_id: &str,
        masker: &Masker,
        budget: Budget,
    ) -> CleanupRun {
        let started = Instant::now();
        let mut ctx = Context::new(
            self.env.clone(),
            self.secrets.clone(),
            Arc::new(Synthetic::new("cleanup")),
            "cleanup",
            &probe.name,
            masker.clone(),
        );
        for (k, v) in values {
            ctx.set(&k, v);
        }
        let mut item = CleanupRun {
            name: step.name.clone(),
            created_by: created_by.to_string(),
            success: false,
            attempts: 0,
            status: None,
            error: None,
            duration_ms: 0.0,
        };
        let missing = missing_values(step, &ctx);
        if !missing.is_empty() {
            // Retrying cannot help: the value was never captured. Say so once, loudly
            // (the run's cleanup fails), and stop retrying it.
            item.error = Some(format!(
                "the record's id is unknown: {} never captured (the create request got no usable answer); find the record by its synthetic tag and delete it by hand",
                missing
                    .iter()
                    .map(|m| format!("`{m}` was"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            item.duration_ms = ms(started.elapsed());
            if let Err(e) = self.ledger.remove(ledger_id).await {
                item.error = Some(format!("cleanup ledger update failed: {e}"));
            }
            return item;
        }
        let mut wait = FIRST_BACKOFF;
        let mut out_of_time = false;
        let mut found = None;
        for attempt in 0..=step.retries {
            if attempt > 0 {
                // A retry needs time to be sent in: never sleep to the end of the budget.
                if wait >= budget.left() {
                    out_of_time = true;
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
            if budget.left().is_zero() {
                out_of_time = true;
                break;
            }
            item.attempts += 1;
            match self.cleanup_once(&ctx, step, trace_id, budget).await {
                Ok(cleaned) => {
                    item.status = cleaned.status;
                    found = cleaned.found;
                    item.success = true;
                    item.error = None;
                    break;
                }
                Err(fail) => {
                    item.status = fail.status;
                    item.error = Some(masker.mask(&fail.message));
                    if !fail.retryable {
                        break;
                    }
                }
            }
        }
        if out_of_time && !item.success {
            item.error = Some(out_of_time_error(item.error.take(), item.attempts, budget));
        }
        item.duration_ms = ms(started.elapsed());
        let now = self.clock.now();
        let r = if item.success && found == Some(0) && !of.empty_sweep_is_final() {
            // Done for now (the run's report says succeeded), but not finished.
            let at = now + chrono_duration(resweep_delay(probe));
            self.ledger
                .mark_resweep(ledger_id, item.attempts, now, at)
                .await
        } else if item.success {
            self.ledger.remove(ledger_id).await
        } else {
            self.ledger
                .record_failure(
                    ledger_id,
                    item.attempts,
                    item.error.clone().unwrap_or_default(),
                    now,
                )
                .await
        };
        if let Err(e) = r {
            item.success = false;
            item.error = Some(format!("cleanup ledger update failed: {e}"));
        }
        item
    }

    /// One attempt: the listing (for a sweep), then one delete per target, each request
    /// within what is left of `budget`.
    async fn cleanup_once(
        &self,
        ctx: &Context,
        step: &CleanupStep,
        trace_id: &str,
        budget: Budget,
    ) -> Result<Cleaned, CleanupFailure> {
        let targets: Vec<Option<Value>> = match &step.find {
            None => vec![None],
            Some(find) => {
                let resp = self
                    .send_cleanup_request(ctx, &find.request, trace_id, "find: ", budget)
                    .await?;
                if !(200..300).contains(&resp.status) {
                    return Err(CleanupFailure {
                        status: Some(resp.status),
                        message: format!("find: HTTP {}", resp.status),
                        retryable: true,
                    });
                }
                let doc = resp.json().ok_or_else(|| CleanupFailure {
                    status: Some(resp.status),
                    message: "find: response is not JSON".into(),
                    retryable: true,
                })?;
                find.each
                    .query(&doc)
                    .all()
                    .into_iter()
                    .cloned()
                    .map(Some)
                    .collect()
            }
        };
        let found = step.find.as_ref().map(|_| targets.len());
        let mut status = None;
        for target in targets {
            let mut c = ctx.clone();
            if let (Some(v), Some(find)) = (target, &step.find) {
                c.set(&find.bind, v);
            }
            let resp = self
                .send_cleanup_request(&c, &step.request, trace_id, "", budget)
                .await?;
            status = Some(resp.status);
            // 404/410 always mean "already gone" (e.g. a replay after the delete had
            // succeeded); a custom `expect` sets the condition for the other answers.
            let ok = matches!(resp.status, 404 | 410)
                || match &step.expect {
                    Some(e) => assert::check(e, &resp, &c).passed(),
                    None => (200..300).contains(&resp.status),
                };
            if !ok {
                return Err(CleanupFailure {
                    status: Some(resp.status),
                    message: format!("HTTP {}", resp.status),
                    retryable: true,
                });
            }
        }
        Ok(Cleaned { status, found })
    }

    /// Renders and sends one cleanup request, its timeout cut to what is left of
    /// `budget`; `label` prefixes its error messages.
    async fn send_cleanup_request(
        &self,
        ctx: &Context,
        request: &Request,
        trace_id: &str,
        label: &str,
        budget: Budget,
    ) -> Result<Response, CleanupFailure> {
        let mut out = Runner::render_request(ctx, request).map_err(|(_, m)| CleanupFailure {
            status: None,
            message: format!("{label}{m}"),
            // Rendering will not get better by retrying.
            retryable: false,
        })?;
        let left = budget.left();
        let cut = left < out.timeout;
        out.timeout = out.timeout.min(left);
        let tp = http::traceparent(trace_id, &http::new_span_id());
        self.http.send(&out, &tp).await.map_err(|f| CleanupFailure {
            status: None,
            message: if cut && f.timed_out {
                format!(
                    "{label}{}: no answer before the cleanup's time ran out",
                    f.class
                )
            } else {
                format!("{label}{}: {}", f.class, f.message)
            },
            retryable: true,
        })
    }

    /// Replays ledger entries (all, or one probe's), except re-sweeps not yet due (the
    /// running agent, or a later start, does those). Entries whose probe or cleanup step
    /// no longer exists are reported and kept: a person must decide about them.
    pub async fn replay_ledger(
        &self,
        probes: &[Probe],
        only: Option<&str>,
    ) -> Result<Vec<LedgerReplay>, crate::store::StoreError> {
        let now = self.clock.now();
        let probes: Vec<&Probe> = probes.iter().collect();
        self.replay_entries(&probes, only, |e, _| !e.resweep_not_due(now))
            .await
    }

    /// The running agent's retry: replays the entries [`due_in_run`] now.
    pub async fn replay_due(
        &self,
        probes: &[&Probe],
    ) -> Result<Vec<LedgerReplay>, crate::store::StoreError> {
        let now = self.clock.now();
        self.replay_entries(probes, None, |e, p| {
            p.is_some_and(|p| due_in_run(e, p, now))
        })
        .await
    }

    /// Replays the entries (all, or one probe's) that `pick` chooses, given their probe.
    async fn replay_entries(
        &self,
        probes: &[&Probe],
        only: Option<&str>,
        pick: impl Fn(&LedgerEntry, Option<&Probe>) -> bool,
    ) -> Result<Vec<LedgerReplay>, crate::store::StoreError> {
        let probe_of = |e: &LedgerEntry| probes.iter().copied().find(|p| p.name == e.record.probe);
        // Entries of a run still in progress in another rooftop process are its business.
        let entries: Vec<LedgerEntry> = self
            .ledger
            .pending(only.map(str::to_string))
            .await?
            .into_iter()
            .filter(|e| !e.owned_by_a_live_run() && pick(e, probe_of(e)))
            .collect();
        let mut out = Vec::new();
        // Like a run's own cleanup: newest step first, one step's records in listed order.
        let mut ordered = Vec::new();
        for group in entries
            .chunk_by(|a, b| {
                a.record.run_id == b.record.run_id && a.record.created_by == b.record.created_by
            })
            .rev()
        {
            ordered.extend(group.iter().cloned());
        }
        for entry in ordered {
            let Some(probe) = probe_of(&entry) else {
                out.push(LedgerReplay {
                    result: Err(format!(
                        "probe `{}` is no longer configured; delete the record by hand",
                        entry.record.probe
                    )),
                    entry,
                });
                continue;
            };
            let Some(step) = probe.cleanup_step(&entry.record.cleanup) else {
                out.push(LedgerReplay {
                    result: Err(format!(
                        "probe `{}` has no cleanup step `{}` any more",
                        entry.record.probe, entry.record.cleanup
                    )),
                    entry,
                });
                continue;
            };
            let masker = Masker::default();
            let of = match entry.resweep_after {
                Some(_) => CleanupOf::Resweep,
                None => CleanupOf::Replay,
            };
            let run = self
                .run_cleanup(
                    probe,
                    of,
                    step,
                    &entry.record.created_by,
                    entry.record.context.clone(),
                    entry.id,
                    &http::new_trace_id(),
                    &masker,
                    Budget::starting_now(cleanup_budget(probe.timeout)),
                )
                .await;
            out.push(LedgerReplay {
                entry,
                result: Ok(run),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;

    use crate::clock::ManualClock;
    use crate::store::{Ledger, NewEntry};

    /// The sandbox's survey list on 127.0.0.1: `GET /surveys`, `DELETE /surveys/{id}`.
    #[derive(Clone, Default)]
    pub(crate) struct Surveys(pub(crate) Arc<Mutex<Vec<String>>>);

    pub(crate) async fn surveys_server() -> (String, Surveys) {
        let surveys = Surveys::default();
        let app = axum::Router::new()
            .route(
                "/surveys",
                axum::routing::get(|State(s): State<Surveys>| async move {
                    axum::Json(serde_json::json!({"items": s.0.lock().unwrap().clone()}))
                }),
            )
            .route(
                "/surveys/{id}",
                axum::routing::delete(
                    |State(s): State<Surveys>, UrlPath(id): UrlPath<String>| async move {
                        s.0.lock().unwrap().retain(|x| *x != id);
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(surveys.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("127.0.0.1:{}", addr.port()), surveys)
    }

    /// A probe whose `close-ro` creates what `delete-surveys` sweeps from `addr`.
    pub(crate) fn sweeping_probe(addr: &str) -> Probe {
        let text = format!(
            "name: t\ntimeout: 5s\nsteps:\n  - name: close-ro\n    request: {{method: POST, url: \"http://{addr}/close\"}}\n    creates: {{cleanup: delete-surveys}}\n\
             cleanup:\n  - name: delete-surveys\n    find:\n      request: {{url: \"http://{addr}/surveys\"}}\n      each: \"$.items[*]\"\n      as: survey\n    request: {{method: DELETE, url: \"http://{addr}/surveys/{{{{ survey }}}}\"}}\n"
        );
        crate::config::load_probe_text(
            std::path::Path::new("t.yaml"),
            &text,
            &Default::default(),
            &BTreeMap::new(),
        )
        .unwrap()
    }

    pub(crate) fn runner(state: &std::path::Path, clock: &ManualClock) -> Runner {
        Runner {
            http: http::HttpClient::new(&http::HttpSettings {
                max_body_bytes: 1 << 20,
                verify_tls: true,
            })
            .unwrap(),
            env: Arc::default(),
            secrets: Arc::default(),
            ledger: Ledger::open_in(state).unwrap(),
            clock: Arc::new(clock.clone()),
        }
    }

    pub(crate) fn t0() -> DateTime<Utc> {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    /// A ledger entry of the probe's `close-ro`, written at `t0`.
    pub(crate) async fn entry_of_close_ro(r: &Runner) -> i64 {
        r.ledger
            .record(NewEntry {
                run_id: "run-1".into(),
                probe: "t".into(),
                cleanup: "delete-surveys".into(),
                created_by: "close-ro".into(),
                context: BTreeMap::new(),
                created_at: t0(),
            })
            .await
            .unwrap()
    }

    async fn sweep(r: &Runner, probe: &Probe, of: CleanupOf, id: i64) -> CleanupRun {
        let step = probe.cleanup_step("delete-surveys").unwrap();
        r.run_cleanup(
            probe,
            of,
            step,
            "close-ro",
            BTreeMap::new(),
            id,
            &http::new_trace_id(),
            &Masker::default(),
            Budget::starting_now(Duration::from_secs(5)),
        )
        .await
    }

    #[tokio::test]
    async fn an_empty_sweep_after_a_failed_run_keeps_its_entry_for_one_resweep() {
        let (addr, surveys) = surveys_server().await;
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let r = runner(state.path(), &clock);
        let probe = sweeping_probe(&addr);
        let id = entry_of_close_ro(&r).await;

        let item = sweep(&r, &probe, CleanupOf::UnfinishedRun, id).await;
        assert!(item.success, "{item:#?}");
        let left = r.ledger.pending(None).await.unwrap();
        assert_eq!(left.len(), 1);
        let at = t0() + chrono::Duration::minutes(2);
        assert_eq!(left[0].resweep_after, Some(at), "{left:#?}");
        assert!(left[0].awaiting_resweep(), "waiting is not a leftover");

        // Not due yet: a replay (the next start, `rooftop cleanup`) leaves it alone.
        assert!(
            r.replay_ledger(std::slice::from_ref(&probe), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(r.replay_due(&[&probe]).await.unwrap().is_empty());

        // The sync job created the survey; the re-sweep, once due, deletes it.
        surveys.0.lock().unwrap().push("S-1".into());
        clock.advance(chrono::Duration::minutes(2));
        let replays = r.replay_due(&[&probe]).await.unwrap();
        assert_eq!(replays.len(), 1);
        assert!(replays[0].result.as_ref().is_ok_and(|c| c.success));
        assert!(surveys.0.lock().unwrap().is_empty());
        assert!(r.ledger.pending(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_resweep_that_finds_nothing_again_removes_its_entry() {
        let (addr, _surveys) = surveys_server().await;
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let r = runner(state.path(), &clock);
        let probe = sweeping_probe(&addr);
        let id = entry_of_close_ro(&r).await;
        // A leftover of a killed run, replayed at start: its empty sweep is not final.
        let replays = r
            .replay_ledger(std::slice::from_ref(&probe), None)
            .await
            .unwrap();
        assert!(replays[0].result.as_ref().is_ok_and(|c| c.success));
        let left = r.ledger.pending(None).await.unwrap();
        assert!(left.len() == 1 && left[0].id == id && left[0].awaiting_resweep());

        clock.advance(chrono::Duration::minutes(3));
        let replays = r
            .replay_ledger(std::slice::from_ref(&probe), None)
            .await
            .unwrap();
        assert!(replays[0].result.as_ref().is_ok_and(|c| c.success));
        assert!(r.ledger.pending(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_successful_runs_empty_sweep_is_final() {
        let (addr, _surveys) = surveys_server().await;
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let r = runner(state.path(), &clock);
        let probe = sweeping_probe(&addr);
        let id = entry_of_close_ro(&r).await;
        let item = sweep(&r, &probe, CleanupOf::SucceededRun, id).await;
        assert!(item.success, "{item:#?}");
        assert!(r.ledger.pending(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_run_whose_sweep_deletes_something_is_done() {
        let (addr, surveys) = surveys_server().await;
        surveys.0.lock().unwrap().push("S-1".into());
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let r = runner(state.path(), &clock);
        let probe = sweeping_probe(&addr);
        let id = entry_of_close_ro(&r).await;
        let item = sweep(&r, &probe, CleanupOf::UnfinishedRun, id).await;
        assert!(item.success && item.status == Some(204), "{item:#?}");
        assert!(r.ledger.pending(None).await.unwrap().is_empty());
    }

    #[test]
    fn the_resweep_waits_for_the_longest_poll_between_the_floor_and_the_cap() {
        // Its runbooks are checked where the bundled probes are loaded, not here.
        let without_runbooks: String =
            include_str!("../../probes/appointment-to-ro-to-survey.yaml")
                .lines()
                .filter(|l| !l.trim_start().starts_with("runbook:"))
                .map(|l| format!("{l}\n"))
                .collect();
        let bundled = crate::config::load_probe_text(
            std::path::Path::new("appointment-to-ro-to-survey.yaml"),
            &without_runbooks,
            &Default::default(),
            &BTreeMap::new(),
        )
        .unwrap();
        // `survey-triggered` polls for 20 minutes, `ro-in-dms` for 15.
        assert_eq!(resweep_delay(&bundled), Duration::from_secs(20 * 60));
        assert_eq!(
            resweep_delay(&sweeping_probe("127.0.0.1:1")),
            RESWEEP_WITHOUT_POLLS
        );
    }

    #[test]
    fn the_running_agent_retries_what_is_due_and_leaves_runs_in_flight_alone() {
        let probe = sweeping_probe("127.0.0.1:1");
        let entry = |resweep: Option<i64>, last_attempt: Option<i64>, error: bool| LedgerEntry {
            id: 1,
            record: NewEntry {
                run_id: "run-1".into(),
                probe: "t".into(),
                cleanup: "delete-surveys".into(),
                created_by: "close-ro".into(),
                context: BTreeMap::new(),
                created_at: t0(),
            },
            attempts: 1,
            last_error: error.then(|| "HTTP 503".to_string()),
            pending: false,
            owner_pid: None,
            resweep_after: resweep.map(|m| t0() + chrono::Duration::minutes(m)),
            last_attempt: last_attempt.map(|m| t0() + chrono::Duration::minutes(m)),
        };
        let at = |m: i64| t0() + chrono::Duration::minutes(m);
        // A re-sweep: due at its time, not before.
        assert!(!due_in_run(&entry(Some(2), Some(0), false), &probe, at(1)));
        assert!(due_in_run(&entry(Some(2), Some(0), false), &probe, at(2)));
        // A failed cleanup: its run (5 s + a 10 s budget + 60 s slack) may be in flight
        // for 75 s; then it is retried 5 minutes after its last attempt.
        assert!(!due_in_run(
            &entry(None, None, true),
            &probe,
            t0() + chrono::Duration::seconds(74)
        ));
        assert!(due_in_run(
            &entry(None, None, true),
            &probe,
            t0() + chrono::Duration::seconds(75)
        ));
        assert!(!due_in_run(&entry(None, Some(1), true), &probe, at(5)));
        assert!(due_in_run(&entry(None, Some(1), true), &probe, at(6)));
        // A re-sweep that failed is a failed cleanup again.
        assert!(!due_in_run(&entry(Some(2), Some(2), true), &probe, at(3)));
        assert!(due_in_run(&entry(Some(2), Some(2), true), &probe, at(7)));
        // A cleanup step that is gone is for a person, not for a retry every minute.
        let mut gone = entry(None, None, true);
        gone.record.cleanup = "delete-nothing".into();
        assert!(!due_in_run(&gone, &probe, at(60)));
    }

    #[test]
    fn only_a_successful_run_or_a_resweep_makes_an_empty_sweep_final() {
        assert!(CleanupOf::SucceededRun.empty_sweep_is_final());
        assert!(CleanupOf::Resweep.empty_sweep_is_final());
        assert!(!CleanupOf::UnfinishedRun.empty_sweep_is_final());
        assert!(!CleanupOf::Replay.empty_sweep_is_final());
    }

    #[test]
    fn the_cleanup_budget_is_the_probe_timeout_between_the_floor_and_the_cap() {
        let secs = Duration::from_secs;
        assert_eq!(cleanup_budget(secs(2)), CLEANUP_FLOOR);
        assert_eq!(cleanup_budget(secs(45)), secs(45));
        assert_eq!(cleanup_budget(secs(15 * 60)), CLEANUP_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn each_cleanup_gets_an_equal_share_of_what_is_left() {
        let end = Instant::now() + Duration::from_secs(9);
        let first = Budget::share_of(end, 3);
        assert_eq!(first.allowed, Duration::from_secs(3));
        // The first one finished in 1 s: the other two share the 8 s left.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(Budget::share_of(end, 2).allowed, Duration::from_secs(4));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(Budget::share_of(end, 1).allowed, Duration::ZERO);
        assert_eq!(Budget::share_of(end, 0).left(), Duration::ZERO);
    }

    #[test]
    fn a_cleanup_out_of_time_says_so_and_that_its_record_is_kept() {
        let budget = Budget::starting_now(Duration::from_micros(4_999_700));
        let e = out_of_time_error(Some("HTTP 503".into()), 2, budget);
        assert_eq!(
            e,
            "HTTP 503 (stopped after 2 attempts: the 4s 999ms this cleanup had ran out; the record stays in the cleanup ledger for a later cleanup)"
        );
        let e = out_of_time_error(None, 0, Budget::starting_now(Duration::ZERO));
        assert!(e.starts_with("not attempted: "), "{e}");
        assert!(e.contains("stays in the cleanup ledger"), "{e}");
    }
}
