//! What a run created: ledger entries written as pending before a creating step is sent,
//! settled from the step's answer (confirmed, removed, or left as maybe-created), and
//! cleaned up newest step first when the run ends, whatever its outcome.
//! Sending the cleanup requests themselves is `cleanup.rs`'s job.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::time::Instant;

use super::cleanup::{Budget, CleanupOf, cleanup_budget};
use super::{
    CleanupOutcome, CleanupReport, CleanupRun, ErrorClass, Outcome, Progress, ProgressFn, RunState,
    Runner, StepRun,
};
use crate::model::{Probe, Step};
use crate::store::{NewEntry, StoreError};
use crate::template::Context;

/// A record a step may have created, and the ledger entry that tracks it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Created {
    pub ledger_id: i64,
    /// The cleanup step that deletes it.
    pub cleanup: String,
    /// The step that created it.
    pub created_by: String,
}

/// What a creating step's answer says about the records it was to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordFate {
    /// Accepted (2xx): the records exist; the ledger keeps the captures cleanup needs.
    Confirmed,
    /// Answered with a non-2xx status, or never sent: nothing was created.
    Refused,
    /// Sent without a usable answer (timeout, reset, probe timeout): they may exist.
    MaybeCreated,
}

/// Decides a creating step's [`RecordFate`] from whether it was accepted, the status it
/// got (if any) and its error class.
pub(super) fn record_fate(
    accepted: bool,
    status: Option<u16>,
    class: Option<ErrorClass>,
) -> RecordFate {
    if accepted {
        return RecordFate::Confirmed;
    }
    let answered_no = status.is_some_and(|c| !(200..300).contains(&c));
    // The request never left: refused connection, DNS, TLS, template, secret.
    let never_sent = status.is_none()
        && matches!(
            class,
            Some(
                ErrorClass::Dns
                    | ErrorClass::Connect
                    | ErrorClass::Tls
                    | ErrorClass::Template
                    | ErrorClass::Secret
            )
        );
    if answered_no || never_sent {
        RecordFate::Refused
    } else {
        RecordFate::MaybeCreated
    }
}

/// The order cleanup runs in: the newest step's records first; within one step in the
/// order its `creates` lists them (delete the source, then sweep what it propagated to).
pub(super) fn cleanup_order(created: &[Created]) -> Vec<&Created> {
    created
        .chunk_by(|a, b| a.created_by == b.created_by)
        .rev()
        .flatten()
        .collect()
}

/// The cleanup's overall outcome from its items.
fn cleanup_outcome(items: &[CleanupRun]) -> CleanupOutcome {
    if items.is_empty() {
        CleanupOutcome::NotNeeded
    } else if items.iter().all(|i| i.success) {
        CleanupOutcome::Success
    } else {
        CleanupOutcome::Failed
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

impl Runner {
    /// Enters what `step` creates in the ledger as pending, *before* its request is sent:
    /// whatever happens next (no answer, a timeout, a kill), the ledger knows a record
    /// may exist. Returns the entries' ids (none for a step that creates nothing).
    pub(super) async fn record_pending_creates(
        &self,
        st: &RunState,
        probe: &Probe,
        step: &Step,
    ) -> Result<Vec<i64>, StoreError> {
        if step.creates.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<NewEntry> = step
            .creates
            .iter()
            .map(|cleanup| NewEntry {
                run_id: st.run_id.clone(),
                probe: probe.name.clone(),
                cleanup: cleanup.clone(),
                created_by: step.name.clone(),
                context: ledger_context(&st.ctx),
                created_at: self.clock.now(),
            })
            .collect();
        self.ledger.record_all(entries).await
    }

    /// Settles the pending entries `ids` of `step` from its report `run`: confirms them
    /// with the captures cleanup needs, removes them, or leaves them (maybe created). A
    /// failed ledger update makes the step an error. Returns what cleanup must delete.
    pub(super) async fn settle_ledger_after_step(
        &self,
        st: &RunState,
        step: &Step,
        ids: Vec<i64>,
        accepted: bool,
        run: &mut StepRun,
    ) -> Vec<Created> {
        if ids.is_empty() {
            return Vec::new();
        }
        let status = run.request.as_ref().and_then(|r| r.status);
        let fate = record_fate(accepted, status, run.error_class);
        let update = match fate {
            RecordFate::Confirmed => {
                self.ledger
                    .confirm(ids.clone(), ledger_context(&st.ctx))
                    .await
            }
            RecordFate::Refused => self.ledger.remove_all(ids.clone()).await,
            // Cleanup says so if the record's id was never captured.
            RecordFate::MaybeCreated => Ok(()),
        };
        if let Err(e) = update {
            run.outcome = Outcome::Error;
            run.error_class = Some(ErrorClass::Ledger);
            run.message = Some(format!("cleanup ledger update failed: {e}"));
        }
        if fate == RecordFate::Refused {
            return Vec::new();
        }
        ids.into_iter()
            .zip(&step.creates)
            .map(|(ledger_id, cleanup)| Created {
                ledger_id,
                cleanup: cleanup.clone(),
                created_by: step.name.clone(),
            })
            .collect()
    }

    /// Deletes what the run created, in [`cleanup_order`], within the run's cleanup
    /// budget (from now: the steps have ended), each cleanup getting an equal share of
    /// what is left when it starts. Not interrupted by a stop: the budget bounds it, and
    /// the caller's stop deadline too (a cleanup cut off there stays in the ledger).
    pub(super) async fn clean_up_created(
        &self,
        probe: &Probe,
        st: &RunState,
        created: &[Created],
        of: CleanupOf,
        progress: Option<&ProgressFn>,
    ) -> CleanupReport {
        let end = Instant::now() + cleanup_budget(probe.timeout);
        let todo: Vec<_> = cleanup_order(created)
            .into_iter()
            .filter_map(|c| probe.cleanup_step(&c.cleanup).map(|cs| (c, cs)))
            .collect();
        let mut items = Vec::new();
        for (i, (c, cs)) in todo.iter().enumerate() {
            let item = self
                .run_cleanup(
                    probe,
                    of,
                    cs,
                    &c.created_by,
                    st.ctx.values().clone(),
                    c.ledger_id,
                    &st.trace_id,
                    st.ctx.masker(),
                    Budget::share_of(end, todo.len() - i),
                )
                .await;
            if let Some(p) = progress {
                p(&Progress::CleanupFinished { item: item.clone() });
            }
            items.push(item);
        }
        CleanupReport {
            outcome: cleanup_outcome(&items),
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_step_confirms_its_records() {
        assert_eq!(record_fate(true, Some(201), None), RecordFate::Confirmed);
        // A 2xx whose body could not be read still created the record.
        let unreadable = Some(ErrorClass::InvalidJson);
        assert_eq!(
            record_fate(true, Some(200), unreadable),
            RecordFate::Confirmed
        );
    }

    #[test]
    fn a_non_2xx_answer_or_a_request_that_never_left_is_refused() {
        let http4xx = Some(ErrorClass::Http4xx);
        assert_eq!(record_fate(false, Some(422), http4xx), RecordFate::Refused);
        let http5xx = Some(ErrorClass::Http5xx);
        assert_eq!(record_fate(false, Some(503), http5xx), RecordFate::Refused);
        for class in [
            ErrorClass::Dns,
            ErrorClass::Connect,
            ErrorClass::Tls,
            ErrorClass::Template,
            ErrorClass::Secret,
        ] {
            assert_eq!(
                record_fate(false, None, Some(class)),
                RecordFate::Refused,
                "{class:?}"
            );
        }
    }

    #[test]
    fn a_request_sent_without_an_answer_may_have_created_its_records() {
        for class in [
            ErrorClass::Timeout,
            ErrorClass::ProbeTimeout,
            ErrorClass::Interrupted,
        ] {
            assert_eq!(
                record_fate(false, None, Some(class)),
                RecordFate::MaybeCreated,
                "{class:?}"
            );
        }
    }

    fn created(ledger_id: i64, cleanup: &str, created_by: &str) -> Created {
        Created {
            ledger_id,
            cleanup: cleanup.into(),
            created_by: created_by.into(),
        }
    }

    #[test]
    fn cleanup_runs_newest_step_first_and_in_listed_order_within_a_step() {
        let all = [
            created(1, "delete_customer", "create_customer"),
            created(2, "delete_deal", "create_deal"),
            created(3, "sweep_deal_copies", "create_deal"),
            created(4, "delete_appointment", "book"),
        ];
        let ids: Vec<i64> = cleanup_order(&all).iter().map(|c| c.ledger_id).collect();
        assert_eq!(ids, vec![4, 2, 3, 1]);
        assert!(cleanup_order(&[]).is_empty());
    }

    #[test]
    fn cleanup_outcome_is_not_needed_success_or_failed() {
        let item = |success| CleanupRun {
            name: "delete".into(),
            created_by: "create".into(),
            success,
            attempts: 1,
            status: None,
            error: None,
            duration_ms: 0.0,
        };
        assert_eq!(cleanup_outcome(&[]), CleanupOutcome::NotNeeded);
        assert_eq!(cleanup_outcome(&[item(true)]), CleanupOutcome::Success);
        let mixed = [item(true), item(false)];
        assert_eq!(cleanup_outcome(&mixed), CleanupOutcome::Failed);
    }
}
