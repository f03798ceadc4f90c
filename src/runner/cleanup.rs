//! Cleanup: deleting the synthetic records a run created, with retries and backoff, within
//! a time budget of its own, and replaying ledger entries left behind by an earlier run.
//!
//! A cleanup succeeds on any 2xx, or 404/410 (the record is already gone), unless the
//! cleanup step sets its own `expect`. One that runs out of time or attempts stays in the
//! ledger for a later replay: a hung delete delays a run by its budget, never loses a record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    /// Runs one cleanup step with retries within `budget`, then updates its ledger entry.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_cleanup(
        &self,
        probe: &Probe,
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
                Ok(status) => {
                    item.status = status;
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
        let r = if item.success {
            self.ledger.remove(ledger_id).await
        } else {
            self.ledger
                .record_failure(
                    ledger_id,
                    item.attempts,
                    item.error.clone().unwrap_or_default(),
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
    ) -> Result<Option<u16>, CleanupFailure> {
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
        Ok(status)
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

    /// Replays ledger entries (all, or one probe's). Entries whose probe or cleanup step no
    /// longer exists are reported and kept: a person must decide about them.
    pub async fn replay_ledger(
        &self,
        probes: &[Probe],
        only: Option<&str>,
    ) -> Result<Vec<LedgerReplay>, crate::store::StoreError> {
        // Entries of a run still in progress in another rooftop process are its business.
        let entries: Vec<LedgerEntry> = self
            .ledger
            .pending(only.map(str::to_string))
            .await?
            .into_iter()
            .filter(|e| !e.owned_by_a_live_run())
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
            let Some(probe) = probes.iter().find(|p| p.name == entry.record.probe) else {
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
            let run = self
                .run_cleanup(
                    probe,
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
mod tests {
    use super::*;

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
