//! The pager's side of escalation: what the time windows do to a page (mute, delay,
//! promote), holding a dependent probe's page while its dependency fails, starting an
//! incident's escalation, and the tick that moves every open escalation on (deadline →
//! next step, renotify, reminder, a hold lifting) from the facts in the store. The
//! decisions are `alerting::escalation`'s; this loads their facts, queues their pages
//! and saves their state after the pages are in the outbox.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Paged, Pager};
use crate::alerting::escalation::{Escalation, Facts, Hold, Page, Phase, Why, advance};
use crate::clock::Clock;
use crate::model::{EscalationPolicy, OnCall, Probe, Severity, Target, WindowAction};
use crate::notify::{Notice, NoticeKind};
use crate::store::StoreError;
use crate::store::escalations::EscalationRow;
use crate::store::outbox::DeliveryState;

/// How often open escalations are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Who is on call and which windows are active.
pub trait OnCallView: Send + Sync + std::fmt::Debug {
    /// Contact names to page for `target` at `at`.
    fn who(&self, target: &Target, at: DateTime<Utc>) -> Vec<String>;
    /// `Some(end)` while `window` is active at `at`.
    fn window_until(&self, window: &str, at: DateTime<Utc>) -> Option<DateTime<Utc>>;
}

/// The agent's on-call data (`oncall`, `time_windows`): rotations resolved DST-correct,
/// windows in their own zones.
impl OnCallView for OnCall {
    fn who(&self, target: &Target, at: DateTime<Utc>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in crate::oncall::who_with(self, target, at) {
            if !out.contains(&n.contact) {
                out.push(n.contact);
            }
        }
        out
    }

    fn window_until(&self, window: &str, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let w = self.window(window)?;
        if !crate::oncall::window_active(w, at) {
            return None;
        }
        // Active with no end in sight (every day, all day): hold for a year; it is
        // re-checked every tick anyway.
        Some(crate::oncall::window_next_change(w, at).unwrap_or(at + chrono::Duration::days(366)))
    }
}

/// The on-call data a running agent pages by, replaced whole by a reload (`oncall:` and
/// `time_windows:` apply without a restart: an override for someone off sick is the
/// edit made at 2 a.m.). Escalations in progress page whoever is on call at their next
/// step.
#[derive(Debug, Default)]
pub struct LiveOnCall(std::sync::RwLock<OnCall>);

impl LiveOnCall {
    pub fn new(oncall: OnCall) -> Self {
        LiveOnCall(std::sync::RwLock::new(oncall))
    }

    /// Swaps in `oncall`; true if it differs from what was there.
    pub fn replace(&self, oncall: OnCall) -> bool {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        if *g == oncall {
            return false;
        }
        *g = oncall;
        true
    }

    /// A copy of what is there now (the status page's "who is on call").
    pub fn snapshot(&self) -> OnCall {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, OnCall> {
        // A panic while holding the lock cannot leave a half-written OnCall (it is
        // replaced whole), so a poisoned lock is still good data.
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl OnCallView for LiveOnCall {
    fn who(&self, target: &Target, at: DateTime<Utc>) -> Vec<String> {
        self.read().who(target, at)
    }

    fn window_until(&self, window: &str, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.read().window_until(window, at)
    }
}

/// What the time windows do to a page of `probe` now.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Effects {
    pub severity: Severity,
    pub hold: Option<Hold>,
    pub notes: Vec<String>,
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn minutes(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl Pager {
    /// Mute, delay and promote rules whose windows are active and that match the probe;
    /// a change window that is active but does not mute this page is said in the page.
    pub(super) fn effects(&self, probe: &Probe, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects {
            severity: probe.severity,
            hold: None,
            notes: Vec::new(),
        };
        for r in &self.window_routes {
            let Some(until) = self.oncall.window_until(&r.window, now) else {
                continue;
            };
            let matches = (r.severities.is_empty() || r.severities.contains(&probe.severity))
                && (r.connectors.is_empty()
                    || probe
                        .connector
                        .as_ref()
                        .is_some_and(|c| r.connectors.contains(c)))
                && (r.probes.is_empty() || r.probes.contains(&probe.name));
            match (r.action, matches) {
                // Mute wins over delay; the first matching rule of each kind holds.
                (WindowAction::Mute, true) if !matches!(fx.hold, Some(Hold::Muted { .. })) => {
                    fx.hold = Some(Hold::Muted {
                        window: r.window.clone(),
                        until,
                    });
                }
                (WindowAction::Mute, false) => {
                    let note = format!(
                        "Sent during change window `{}` (until {}).",
                        r.window,
                        hhmm(until)
                    );
                    if !fx.notes.contains(&note) {
                        fx.notes.push(note);
                    }
                }
                (WindowAction::Delay, true) if fx.hold.is_none() => {
                    fx.hold = Some(Hold::Delayed {
                        window: r.window.clone(),
                        until,
                    });
                }
                (WindowAction::Promote(to), true) if to < fx.severity => {
                    fx.notes.push(format!(
                        "Promoted from {} to {to}: window `{}` is active.",
                        probe.severity, r.window
                    ));
                    fx.severity = to;
                }
                _ => {}
            }
        }
        fx
    }

    /// The policy pages of `severity` follow (none configured: nobody personally; the
    /// shared channels still hear of it).
    pub(super) fn policy(&self, severity: Severity) -> EscalationPolicy {
        self.routes
            .get(&severity)
            .cloned()
            .unwrap_or_else(|| EscalationPolicy {
                name: format!("routes.{severity}"),
                steps: Vec::new(),
                repeat: 0,
                remind_after_ack: None,
            })
    }

    /// The open incident of a probe `probe` depends on, if one is failing.
    pub(super) async fn failing_dependency(
        &self,
        probe: &Probe,
    ) -> Result<Option<crate::store::IncidentRow>, StoreError> {
        if probe.depend_on.is_empty() {
            return Ok(None);
        }
        Ok(self
            .incidents
            .list(true)
            .await?
            .into_iter()
            .find(|r| probe.depend_on.contains(&r.probe) && r.resolved_at.is_none()))
    }

    /// Holds the page of `notice`'s incident while its dependency's incident `dep` is
    /// open, and lists it on that incident's pages.
    pub(super) async fn hold_for_dependency(
        &self,
        probe: &Probe,
        notice: Notice,
        dep: &crate::store::IncidentRow,
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        let leader = dep.group.clone().unwrap_or_else(|| dep.id.clone());
        let hold = Hold::Dependency {
            probe: dep.probe.clone(),
            incident: dep.id.clone(),
            grace_secs: recovery_grace(probe).as_secs(),
        };
        let policy = self.policy(probe.severity);
        let e = Escalation::new(
            &notice.incident_id,
            &policy,
            probe.severity,
            NoticeKind::Trigger.as_str(),
            Some(hold.clone()),
        );
        self.incidents
            .set_group(&notice.incident_id, &notice.incident_id)
            .await?;
        self.save(&e, &notice, now).await?;
        self.add_dependent(&leader, &probe.name).await?;
        Ok(Paged::Held(hold.describe()))
    }

    /// Lists `probe` on the pages of `leader` not sent yet and on its escalation's later
    /// pages.
    async fn add_dependent(&self, leader: &str, probe: &str) -> Result<(), StoreError> {
        for r in self.outbox.for_incident(leader).await? {
            if r.state != DeliveryState::Pending
                || !matches!(r.entry.kind, NoticeKind::Trigger | NoticeKind::Flapping)
            {
                continue;
            }
            let Ok(mut n) = serde_json::from_str::<Notice>(&r.entry.notice) else {
                continue;
            };
            if !n.dependents.iter().any(|p| p == probe) {
                n.dependents.push(probe.to_string());
                let json = serde_json::to_string(&n).unwrap_or_default();
                self.outbox.amend_pending(&r.entry.key, json).await?;
            }
        }
        if let Some(row) = self.escalations.get(leader).await?
            && let Ok(mut n) = serde_json::from_str::<Notice>(&row.notice)
            && !n.dependents.iter().any(|p| p == probe)
        {
            n.dependents.push(probe.to_string());
            self.escalations
                .save(EscalationRow {
                    notice: serde_json::to_string(&n).unwrap_or_default(),
                    ..row
                })
                .await?;
        }
        Ok(())
    }

    /// The probes whose pages `incident` holds (for its resolve notice).
    pub(super) async fn dependents_of(&self, incident: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for row in self.escalations.held_by(incident).await? {
            if let Ok(n) = serde_json::from_str::<Notice>(&row.notice)
                && !out.contains(&n.probe)
            {
                out.push(n.probe);
            }
        }
        Ok(out)
    }

    /// Starts (or, after a reopen, restarts) the escalation of `notice`'s incident and
    /// queues its first pages, due at `due`.
    pub(super) async fn escalate_new(
        &self,
        mut e: Escalation,
        mut notice: Notice,
        fx: Effects,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        notice.severity = fx.severity.to_string();
        notice.notes = fx.notes;
        let policy = self.policy(fx.severity);
        let facts = Facts {
            hold: fx.hold.clone(),
            ..Facts::default()
        };
        e.severity = fx.severity;
        let (e, pages) = advance(
            e,
            &policy,
            &self.severity_policy(fx.severity),
            &facts,
            now,
            &|t, at| self.oncall.who(t, at),
        );
        let queued = self.queue_pages(&e, &notice, &pages, due, now).await?;
        self.save(&e, &notice, now).await?;
        self.escalation_wake.notify_one();
        Ok(match (&e.phase, fx.hold) {
            (Phase::Held { .. }, Some(h)) => Paged::Held(h.describe()),
            _ => queued,
        })
    }

    /// Closes the escalation of `leader` (resolved).
    pub(super) async fn close_escalation(
        &self,
        leader: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(row) = self.escalations.get(leader).await? else {
            return Ok(());
        };
        let Ok(mut e) = serde_json::from_str::<Escalation>(&row.state) else {
            return Ok(());
        };
        if e.is_active() {
            e.phase = Phase::Closed;
            e.log.push(format!("{} resolved", now.format("%H:%M:%S")));
            let notice = serde_json::from_str::<Notice>(&row.notice).ok();
            if let Some(n) = notice {
                self.save(&e, &n, now).await?;
            }
        }
        // Pages it held for dependents may go out now (next tick).
        self.escalation_wake.notify_one();
        Ok(())
    }

    /// The escalation of `leader` as stored, to resume after a reopen.
    pub(super) async fn stored_escalation(
        &self,
        leader: &str,
    ) -> Result<Option<Escalation>, StoreError> {
        Ok(self
            .escalations
            .get(leader)
            .await?
            .and_then(|r| serde_json::from_str(&r.state).ok()))
    }

    pub(super) async fn has_escalation(&self, incident: &str) -> Result<bool, StoreError> {
        Ok(self.escalations.get(incident).await?.is_some())
    }

    async fn save(
        &self,
        e: &Escalation,
        notice: &Notice,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let held_by = match &e.phase {
            Phase::Held {
                hold: Hold::Dependency { incident, .. },
            } => Some(incident.clone()),
            _ => None,
        };
        self.escalations
            .save(EscalationRow {
                incident: e.incident.clone(),
                active: e.is_active(),
                due: e.next_due(),
                held_by,
                state: serde_json::to_string(e).unwrap_or_default(),
                notice: serde_json::to_string(notice).unwrap_or_default(),
                updated_at: now,
            })
            .await
    }

    /// The outbox entries of `pages`, queued at `due`.
    async fn queue_pages(
        &self,
        e: &Escalation,
        base: &Notice,
        pages: &[Page],
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        let mut entries = Vec::new();
        for p in pages {
            let mut n = base.clone();
            n.incident_id = e.incident.clone();
            if let Some(note) = why_note(&p.why, e) {
                n.notes.insert(0, note);
            }
            if matches!(n.kind, NoticeKind::Trigger | NoticeKind::Flapping) {
                n.ack_url = self.ack.as_ref().map(|a| a.link(&e.incident, now));
            }
            entries.extend(
                self.router
                    .plan_page(&n, &p.key_part, &p.contacts, p.shared),
            );
        }
        self.queue(entries, due).await
    }

    /// Moves every open escalation on: returns how many notifications were queued.
    pub async fn escalate(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut queued = 0;
        for row in self.escalations.active().await? {
            let (Ok(e), Ok(notice)) = (
                serde_json::from_str::<Escalation>(&row.state),
                serde_json::from_str::<Notice>(&row.notice),
            ) else {
                continue;
            };
            let facts = self.facts(&e, now).await?;
            let policy = self.policy(e.severity);
            let before = e.clone();
            let (e, pages) = advance(
                e,
                &policy,
                &self.severity_policy(before.severity),
                &facts,
                now,
                &|t, at| self.oncall.who(t, at),
            );
            if let Paged::Queued(n) = self.queue_pages(&e, &notice, &pages, now, now).await? {
                queued += n;
            }
            if e != before {
                self.save(&e, &notice, now).await?;
            }
        }
        Ok(queued)
    }

    /// What the store says about `e`'s incident now.
    async fn facts(&self, e: &Escalation, now: DateTime<Utc>) -> Result<Facts, StoreError> {
        let Some(row) = self.incidents.get(&e.incident).await? else {
            return Ok(Facts {
                resolved: true,
                ..Facts::default()
            });
        };
        let resolved = row.resolved_at.is_some()
            && self
                .incidents
                .group_members(&e.incident)
                .await?
                .iter()
                .all(|m| m.resolved_at.is_some());
        let acked = row.acked_at.zip(row.acked_by.clone());
        let hold = match &e.phase {
            Phase::Held { hold } => match hold {
                Hold::Muted { window, .. } => {
                    self.oncall
                        .window_until(window, now)
                        .map(|until| Hold::Muted {
                            window: window.clone(),
                            until,
                        })
                }
                Hold::Delayed { window, .. } => {
                    self.oncall
                        .window_until(window, now)
                        .map(|until| Hold::Delayed {
                            window: window.clone(),
                            until,
                        })
                }
                Hold::Dependency {
                    incident,
                    grace_secs,
                    ..
                } => {
                    let grace = chrono::Duration::seconds(*grace_secs as i64);
                    match self.incidents.get(incident).await? {
                        Some(d) if d.resolved_at.is_none_or(|at| now < at + grace) => {
                            Some(hold.clone())
                        }
                        _ => None,
                    }
                }
            },
            _ => None,
        };
        Ok(Facts {
            acked,
            resolved,
            hold,
        })
    }

    /// Moves escalations on every second (and when woken) until `stop`.
    pub async fn run_escalations(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.escalate(clock.now()).await {
                tracing::warn!("escalation: {e}");
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.escalation_wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// How long after its dependency recovered a held probe may take to show it recovered
/// too: its own `resolve_after` runs and one more, between 10 s and 30 min.
fn recovery_grace(probe: &Probe) -> Duration {
    let runs = probe.alert.resolve_after.max(1) + 1;
    let every = match &probe.schedule {
        crate::model::Schedule::Every(d) => *d,
        crate::model::Schedule::Cron { .. } => Duration::from_secs(15 * 60),
    };
    every
        .saturating_mul(runs)
        .clamp(Duration::from_secs(10), Duration::from_secs(30 * 60))
}

/// The line a page carries about why it is sent now.
fn why_note(why: &Why, e: &Escalation) -> Option<String> {
    match why {
        Why::First => None,
        Why::Released { hold } => Some(match hold {
            Hold::Muted { window, .. } => {
                format!("Muted during change window `{window}`; still failing after it ended.")
            }
            Hold::Delayed { window, .. } => {
                format!("Held until window `{window}` ended; still failing.")
            }
            Hold::Dependency { probe, .. } => format!(
                "Held while `{probe}` (a dependency) was failing; it recovered, this still fails."
            ),
        }),
        Why::Escalated {
            step,
            steps,
            round,
            waited,
            skipped,
        } => {
            let before: Vec<&str> = e
                .paged
                .iter()
                .filter(|p| !e.current.contains(p))
                .map(String::as_str)
                .collect();
            let mut s = format!(
                "ESCALATED to step {} of {steps}{}: not acknowledged within {}",
                step + 1,
                if *round > 0 {
                    format!(" (round {})", round + 1)
                } else {
                    String::new()
                },
                minutes(*waited)
            );
            if !before.is_empty() {
                s.push_str(&format!(" by {}", before.join(", ")));
            }
            if !skipped.is_empty() {
                s.push_str(&format!(
                    "; skipped step {} (nobody on call)",
                    skipped
                        .iter()
                        .map(|k| (k + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            s.push('.');
            Some(s)
        }
        Why::Renotify { count } => Some(format!("Not acknowledged yet (reminder {count}).")),
        Why::Reminder { acked_by, acked_at } => Some(format!(
            "REMINDER: acknowledged by {acked_by} at {} and still open.",
            hhmm(*acked_at)
        )),
    }
}
