//! From incident actions to notifications: builds the `Notice` (what failed, since when,
//! the sync figures, the runbook's impact and mitigations, the links), carries out the
//! grouping decisions of `alerting::grouping` (state loaded by `group_state`), queues the
//! notices in the outbox for the people routed for the probe's severity, and runs the
//! delivery loop (`delivery`).

mod escalate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use super::delivery::{DeliveryLoop, deliver_until_stopped};
use super::group_state;
use super::outbox::{Pass, Policy, Router};
use super::{Notice, NoticeKind, SyncFigure};
use crate::alerting::ack::AckSigner;
use crate::alerting::escalation::Escalation;
use crate::alerting::grouping::{Change, Decision, Pages, Resume, decide_group, resume_decision};
use crate::alerting::{Action, Open, ResolvedBy, incident_reason};
use crate::clock::Clock;
use crate::model::GroupSettings;
use crate::model::ProbeRun;
use crate::model::{Agent, Probe, Runbook};
use crate::model::{EscalationPolicy, Severity, SeverityPolicy, WindowRoute};
use crate::store::IncidentStore;
use crate::store::StoreError;
use crate::store::escalations::EscalationStore;
use crate::store::outbox::{DeliveryState, OutboxEntry, OutboxRow, OutboxStore};
pub use escalate::{LiveOnCall, OnCallView};

/// Builds notices and queues them.
#[derive(Debug)]
pub struct Pager {
    outbox: OutboxStore,
    router: Router,
    policy: Policy,
    config_dir: PathBuf,
    runbook_base_url: Option<String>,
    rooftop_id: String,
    rooftop_name: Option<String>,
    ack: Option<AckSigner>,
    wake: Notify,
    incidents: IncidentStore,
    group: GroupSettings,
    /// Grouping decisions one at a time (two incidents opening at once must not both
    /// lead a group).
    grouping: tokio::sync::Mutex<()>,
    escalations: EscalationStore,
    /// Severity → its escalation policy (`alerting.routes`).
    routes: BTreeMap<Severity, EscalationPolicy>,
    severities: BTreeMap<Severity, SeverityPolicy>,
    window_routes: Vec<WindowRoute>,
    oncall: Arc<dyn OnCallView>,
    escalation_wake: Notify,
}

/// What the pager did with an incident action, for the agent's log.
#[derive(Debug, Clone, PartialEq)]
pub enum Paged {
    /// Nothing to send for this action.
    Nothing,
    /// Notifications queued.
    Queued(usize),
    /// The incident joined the page of `leader` (same connector and severity).
    Grouped { leader: String },
    /// Its group still has unresolved incidents: the resolve notice waits for them.
    GroupStillOpen { leader: String, open: usize },
    /// Recorded, nobody paged yet: muted, delayed or held by a failing dependency.
    Held(String),
}

impl Paged {
    /// A line for the agent's log, if there is something to say.
    pub fn describe(&self) -> Option<String> {
        match self {
            Paged::Nothing => None,
            Paged::Queued(n) => Some(format!("  {n} notification(s) queued")),
            Paged::Grouped { leader } => Some(format!(
                "  grouped into {leader}'s page (same connector and severity): not paged again"
            )),
            Paged::GroupStillOpen { leader, open } => Some(format!(
                "  {open} other incident(s) of {leader}'s group still open: resolve notice waits for them"
            )),
            Paged::Held(why) => Some(format!("  {why}")),
        }
    }
}

/// The stores a pager works on.
#[derive(Debug, Clone)]
pub struct PagerStores {
    pub outbox: OutboxStore,
    pub incidents: IncidentStore,
    pub escalations: EscalationStore,
}

impl PagerStores {
    pub fn open_in(state_dir: &Path) -> Result<PagerStores, StoreError> {
        Ok(PagerStores {
            outbox: OutboxStore::open_in(state_dir)?,
            incidents: IncidentStore::open_in(state_dir)?,
            escalations: EscalationStore::open_in(state_dir)?,
        })
    }
}

impl Pager {
    pub fn new(
        stores: PagerStores,
        router: Router,
        agent: &Agent,
        config_dir: &Path,
        ack: Option<AckSigner>,
        oncall: Arc<dyn OnCallView>,
    ) -> Pager {
        let PagerStores {
            outbox,
            incidents,
            escalations,
        } = stores;
        let runbook_base_url = agent.alerting.runbook_base_url.clone();
        Pager {
            outbox,
            router,
            policy: Policy::default(),
            config_dir: config_dir.to_path_buf(),
            runbook_base_url,
            rooftop_id: agent.rooftop_id.clone(),
            rooftop_name: agent.rooftop_name.clone(),
            ack,
            wake: Notify::new(),
            incidents,
            group: agent.alerting.group,
            grouping: tokio::sync::Mutex::new(()),
            escalations,
            routes: agent.alerting.routes.clone(),
            severities: agent.alerting.severities.clone(),
            window_routes: agent.alerting.windows.clone(),
            oncall,
            escalation_wake: Notify::new(),
        }
    }

    fn severity_policy(&self, severity: Severity) -> SeverityPolicy {
        self.severities
            .get(&severity)
            .cloned()
            .unwrap_or_else(|| SeverityPolicy::default_for(severity))
    }

    /// Whether anyone can be paged at all.
    pub fn has_channels(&self) -> bool {
        !self.router.channels.is_empty()
    }

    fn runbook_url(&self, rb: &Runbook) -> String {
        match rb {
            Runbook::Url(u) => u.clone(),
            Runbook::File { path, .. } => match &self.runbook_base_url {
                Some(base) => format!("{}/{}", base.trim_end_matches('/'), path.display()),
                None => self.config_dir.join(path).display().to_string(),
            },
        }
    }

    fn notice(
        &self,
        kind: NoticeKind,
        probe: &Probe,
        open: &Open,
        run: Option<&ProbeRun>,
        resolved_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Notice {
        // The failed step's runbook when it has its own, else the probe's.
        let runbook = open
            .failed_step
            .as_ref()
            .and_then(|s| probe.steps.iter().find(|st| &st.name == s))
            .and_then(|st| st.runbook.clone())
            .or_else(|| probe.runbook.clone());
        // Quoted from the runbook as parsed at load: no file is read at page time.
        let quote = |title: &str| match &runbook {
            Some(Runbook::File { text, .. }) => text.section(title).map(str::to_string),
            _ => None,
        };
        Notice {
            kind,
            incident_id: open.id.clone(),
            severity: probe.severity.to_string(),
            rooftop_id: self.rooftop_id.clone(),
            rooftop_name: self.rooftop_name.clone(),
            probe: probe.name.clone(),
            flow: probe
                .labels
                .get("flow")
                .cloned()
                .unwrap_or_else(|| "-".into()),
            connector: probe.connector_label().to_string(),
            opened_at: open.opened_at,
            resolved_at,
            reason: incident_reason(open),
            error_class: open.error_class.clone(),
            failed_step: open.failed_step.clone(),
            last_message: open.last_message.clone(),
            sync: run
                .iter()
                .flat_map(|r| &r.steps)
                .filter_map(|s| {
                    s.sync.as_ref().map(|m| SyncFigure {
                        step: s.name.clone(),
                        estimate_ms: m.estimate_ms,
                        lower_ms: m.lower_ms,
                        upper_ms: m.upper_ms,
                        slo_ms: m.slo_ms,
                    })
                })
                .collect(),
            runbook_url: runbook.as_ref().map(|r| self.runbook_url(r)),
            runbook_impact: quote("Impact assessment"),
            runbook_mitigations: quote("Immediate mitigations"),
            ack_url: match kind {
                NoticeKind::Trigger | NoticeKind::Flapping => {
                    self.ack.as_ref().map(|a| a.link(&open.id, now))
                }
                _ => None,
            },
            also_affected: Vec::new(),
            dependents: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Queues the notifications an incident action calls for. The incident is already
    /// in the store (the tracker saved it).
    ///
    /// Grouping: an incident opening while another of the same connector and severity,
    /// opened within `group.window`, still has unresolved incidents in its group joins
    /// that group instead of paging: a page still waiting (`group.wait`, or retrying)
    /// gets it added to its *also affected* list; acknowledging the page acknowledges the
    /// group; the resolve notice goes once the whole group has resolved. Every notice of
    /// a group carries the leader's id (PagerDuty's `dedup_key`). The decisions are
    /// `alerting::grouping`'s; this loads their state and carries them out.
    pub async fn on_action(
        &self,
        probe: &Probe,
        run: &ProbeRun,
        action: &Action,
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        self.act(probe, Some(run), action, now).await
    }

    /// After a restart: the notifications the tracker decided on but that never reached
    /// the outbox (the process died between saving the incident and queuing its page, or
    /// its resolve) are queued now. Queuing what is already there is a no-op (the keys).
    /// Returns how many were queued.
    pub async fn resume(&self, probes: &[Probe], now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut queued = 0;
        for row in self.incidents.list(false).await? {
            let Some(probe) = probes.iter().find(|p| p.name == row.probe) else {
                continue;
            };
            // Only a leader's group and notifications bear on the decision.
            let (group, pages) = if row.group.as_deref() == Some(row.id.as_str()) {
                let (state, _) =
                    group_state::own_group(&self.incidents, &self.outbox, &row.id, false).await?;
                (state.group, state.pages)
            } else {
                (None, Pages::default())
            };
            let action = match resume_decision(&group_state::member(&row), group.as_ref(), &pages) {
                None => continue,
                Some(Resume::Page) => Action::Opened(row.to_open()),
                Some(Resume::Resolve { at }) => Action::Resolved {
                    incident: row.to_open(),
                    at: at.unwrap_or(now),
                    by: ResolvedBy::Recovery,
                },
            };
            if let Paged::Queued(n) = self.act(probe, None, &action, now).await? {
                queued += n;
            }
        }
        Ok(queued)
    }

    async fn act(
        &self,
        probe: &Probe,
        run: Option<&ProbeRun>,
        action: &Action,
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        let (change, incident) = match action {
            Action::Opened(open) => (
                Change::Opened {
                    id: &open.id,
                    severity: probe.severity,
                    connector: probe.connector.as_deref(),
                },
                open,
            ),
            Action::Reopened(open) => (Change::Reopened { id: &open.id }, open),
            Action::Resolved { incident, .. } => (Change::Resolved { id: &incident.id }, incident),
            Action::Acknowledged { id, .. } => {
                let _one_at_a_time = self.grouping.lock().await;
                let (state, rows) =
                    group_state::own_group(&self.incidents, &self.outbox, id, true).await?;
                let decision = decide_group(&state, &Change::Acknowledged { id }, &self.group, now);
                return self.acknowledge(decision, action, &rows, now).await;
            }
            Action::RunAttached { .. } | Action::Flapping { .. } => return Ok(Paged::Nothing),
        };
        if let Action::Opened(open) = action {
            if self.has_escalation(&open.id).await? {
                // Already started (a restart's resume): nothing to queue again.
                return Ok(Paged::Nothing);
            }
            if let Some(dep) = self.failing_dependency(probe).await? {
                let n = self.notice(NoticeKind::Trigger, probe, open, run, None, now);
                return self.hold_for_dependency(probe, n, &dep, now).await;
            }
        }
        let _one_at_a_time = self.grouping.lock().await;
        let (state, rows) = match change {
            Change::Opened { connector, .. } => (
                group_state::candidates(&self.incidents, connector, &self.group, now).await?,
                Vec::new(),
            ),
            _ => group_state::own_group(&self.incidents, &self.outbox, &incident.id, false).await?,
        };
        let (entries, due) = match decide_group(&state, &change, &self.group, now) {
            Decision::Join { leader } => {
                self.incidents.set_group(&incident.id, &leader).await?;
                self.add_to_waiting_page(&leader, &probe.name).await?;
                return Ok(Paged::Grouped { leader });
            }
            Decision::Lead { due } => {
                self.incidents.set_group(&incident.id, &incident.id).await?;
                let n = self.notice(NoticeKind::Trigger, probe, incident, run, None, now);
                let fx = self.effects(probe, now);
                let policy = self.policy(fx.severity);
                let e = Escalation::new(
                    &incident.id,
                    &policy,
                    fx.severity,
                    NoticeKind::Trigger.as_str(),
                    fx.hold.clone(),
                );
                return self.escalate_new(e, n, fx, due, now).await;
            }
            Decision::StillOpen { leader, open } => {
                // The group's page stands; its resolve waits for the others.
                return Ok(Paged::GroupStillOpen { leader, open });
            }
            Decision::Reopen { leader, round } => {
                let mut n = self.notice(NoticeKind::Flapping, probe, incident, run, None, now);
                n.incident_id = leader.clone();
                let fx = self.effects(probe, now);
                let cycle = super::outbox::round_kind(NoticeKind::Flapping, round);
                let policy = self.policy(fx.severity);
                let mut e = self.stored_escalation(&leader).await?.unwrap_or_else(|| {
                    Escalation::new(&leader, &policy, fx.severity, &cycle, None)
                });
                e.restart(&cycle);
                if let Some(hold) = fx.hold.clone() {
                    e.phase = crate::alerting::escalation::Phase::Held { hold };
                }
                return self.escalate_new(e, n, fx, now, now).await;
            }
            Decision::Resolve {
                leader,
                round,
                probes,
            } => {
                let Action::Resolved { at, .. } = action else {
                    return Ok(Paged::Nothing);
                };
                // The resolve mirrors the page the on-call engineer got (the leader's),
                // with every probe of the group.
                let mut n = group_state::page_notice(&rows, &leader).unwrap_or_else(|| {
                    self.notice(NoticeKind::Trigger, probe, incident, run, None, now)
                });
                n.resolved_at = Some(*at);
                n.also_affected = probes.into_iter().filter(|p| *p != n.probe).collect();
                n.dependents = self.dependents_of(&leader).await?;
                self.close_escalation(&leader, now).await?;
                (
                    self.follow_up(n, NoticeKind::Resolve, &leader, &rows, round),
                    now,
                )
            }
            Decision::Acknowledge { .. } | Decision::Nothing => return Ok(Paged::Nothing),
        };
        self.queue(entries, due).await
    }

    /// Carries out the decision on an acknowledgement: the leader's page, as an
    /// acknowledge notice, to the channels that track incidents.
    async fn acknowledge(
        &self,
        decision: Decision,
        action: &Action,
        rows: &[OutboxRow],
        now: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        let (Decision::Acknowledge { leader, round }, Action::Acknowledged { by, .. }) =
            (decision, action)
        else {
            return Ok(Paged::Nothing);
        };
        let Some(mut n) = group_state::page_notice(rows, &leader) else {
            return Ok(Paged::Nothing);
        };
        n.last_message = Some(format!("acknowledged by {by}"));
        let entries = self.follow_up(n, NoticeKind::Acknowledge, &leader, rows, round);
        self.queue(entries, now).await
    }

    /// A resolve or acknowledge notice for the group, made from `n`, for wherever the
    /// group's pages went.
    fn follow_up(
        &self,
        mut n: Notice,
        kind: NoticeKind,
        leader: &str,
        rows: &[OutboxRow],
        round: u32,
    ) -> Vec<OutboxEntry> {
        n.kind = kind;
        n.incident_id = leader.to_string();
        n.ack_url = None;
        self.router.plan_follow_up(&n, rows, round)
    }

    /// Writes the entries to the outbox, due at `due`, and wakes the delivery loop.
    async fn queue(
        &self,
        entries: Vec<OutboxEntry>,
        due: DateTime<Utc>,
    ) -> Result<Paged, StoreError> {
        if entries.is_empty() {
            return Ok(Paged::Nothing);
        }
        // Written before anything is sent: a crash from here on loses nothing.
        let n = self.outbox.enqueue(entries, due).await?;
        self.wake.notify_one();
        Ok(Paged::Queued(n))
    }

    /// Adds `probe` to the *also affected* list of the leader's pages not sent yet.
    async fn add_to_waiting_page(&self, leader: &str, probe: &str) -> Result<(), StoreError> {
        for r in self.outbox.for_incident(leader).await? {
            if r.state != DeliveryState::Pending || r.entry.kind != NoticeKind::Trigger {
                continue;
            }
            let Ok(mut n) = serde_json::from_str::<Notice>(&r.entry.notice) else {
                continue;
            };
            if n.probe != probe && !n.also_affected.iter().any(|p| p == probe) {
                n.also_affected.push(probe.to_string());
                let json = serde_json::to_string(&n).unwrap_or_default();
                self.outbox.amend_pending(&r.entry.key, json).await?;
            }
        }
        Ok(())
    }

    /// Delivers until `stop`, then one last pass. Pending entries of a previous run are
    /// sent first (a restart resumes them).
    pub async fn run(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        stop: watch::Receiver<bool>,
        observe: Arc<dyn Fn(&Pass) + Send + Sync>,
    ) {
        let d = DeliveryLoop {
            outbox: &self.outbox,
            router: &self.router,
            policy: &self.policy,
            wake: &self.wake,
        };
        deliver_until_stopped(d, clock, stop, observe).await;
    }
}

#[cfg(test)]
mod grouping_tests {
    use super::*;
    use crate::alerting::ResolvedBy;
    use crate::model::{Contact, Severity};
    use crate::notify::{Channel, Delivery, SendFuture};
    use crate::store::IncidentStore;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Accepts everything.
    #[derive(Debug)]
    struct Accept(&'static str);

    impl Channel for Accept {
        fn name(&self) -> &'static str {
            self.0
        }
        fn reaches(&self, contact: Option<&Contact>) -> bool {
            (self.0 == "email") == contact.is_some()
        }
        fn send<'a>(&'a self, _: &'a Notice, _: Option<&'a Contact>) -> SendFuture<'a> {
            Box::pin(async { Delivery::Accepted { provider_id: None } })
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn failed_run(probe: &str) -> ProbeRun {
        serde_json::from_value(serde_json::json!({
            "run_id": format!("run-{probe}"), "probe": probe, "trace_id": "t",
            "started_at": t(0), "finished_at": t(0), "duration_ms": 1.0,
            "outcome": "error", "error_class": null, "failed_step": null, "message": null,
            "labels": {}, "runbook": null, "steps": [],
            "cleanup": crate::model::CleanupReport::default(),
        }))
        .unwrap()
    }

    fn open(probe: &str, at: i64) -> Open {
        crate::model::sample_open(&format!("inc-{probe}-{at}"), t(at))
    }

    struct Rig {
        pager: Pager,
        incidents: IncidentStore,
        outbox: OutboxStore,
        probes: Vec<Probe>,
        _dir: tempfile::TempDir,
    }

    /// Four probes: three P2 on crm-to-dms, one P2 on dms-to-crm; e-mail to one person
    /// and a webhook. The first page waits `wait` seconds for the group.
    fn rig(wait: u64) -> Rig {
        rig_with(wait, Vec::new(), Arc::new(crate::model::OnCall::default()))
    }

    /// With route rules over windows, and `oncall` saying which are active.
    fn rig_with(wait: u64, windows: Vec<WindowRoute>, oncall: Arc<dyn OnCallView>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::load(Path::new(".")).unwrap();
        let mut agent = config.agent.clone();
        // The repository's rooftop.yaml is an on-call example: this rig routes by itself.
        agent.alerting.routes.clear();
        agent.alerting.severities.clear();
        agent.oncall = crate::model::OnCall::default();
        agent.alerting.windows = windows;
        agent.alerting.group.wait = Duration::from_secs(wait);
        let base = config.probes[0].clone();
        let probes = [
            ("a", "crm-to-dms"),
            ("b", "crm-to-dms"),
            ("c", "crm-to-dms"),
            ("d", "dms-to-crm"),
        ]
        .map(|(name, connector)| {
            let mut p = base.clone();
            p.name = name.into();
            p.severity = Severity::P2;
            p.labels.insert("connector".into(), connector.into());
            p.connector = Some(connector.into());
            p
        })
        .to_vec();
        agent.alerting.routes.insert(
            Severity::P2,
            EscalationPolicy {
                name: "routes.P2".into(),
                steps: vec![crate::model::EscalationStep {
                    notify: vec![crate::model::Target::Contact("Maria".into())],
                    wait: None,
                }],
                repeat: 0,
                remind_after_ack: None,
            },
        );
        let router = Router {
            contacts: vec![Contact {
                name: "Maria".into(),
                email: Some("maria@dealer.example".into()),
                phone: None,
            }],
            channels: vec![Arc::new(Accept("email")), Arc::new(Accept("webhook"))],
            severity_channels: BTreeMap::new(),
        };
        let stores = PagerStores::open_in(dir.path()).unwrap();
        let (incidents, outbox) = (stores.incidents.clone(), stores.outbox.clone());
        let pager = Pager::new(stores, router, &agent, Path::new("."), None, oncall);
        Rig {
            pager,
            incidents,
            outbox,
            probes,
            _dir: dir,
        }
    }

    impl Rig {
        fn probe(&self, name: &str) -> &Probe {
            self.probes.iter().find(|p| p.name == name).unwrap()
        }

        /// What the tracker does, then the pager.
        async fn opened(&self, name: &str, at: i64) -> Paged {
            let o = open(name, at);
            let p = self.probe(name);
            self.incidents
                .save(&o, name, Severity::P2, &p.labels["connector"], None)
                .await
                .unwrap();
            self.pager
                .on_action(p, &failed_run(name), &Action::Opened(o), t(at))
                .await
                .unwrap()
        }

        async fn resolved(&self, name: &str, opened: i64, at: i64) -> Paged {
            let o = open(name, opened);
            let p = self.probe(name);
            self.incidents
                .save(
                    &o,
                    name,
                    Severity::P2,
                    &p.labels["connector"],
                    Some((t(at), ResolvedBy::Recovery)),
                )
                .await
                .unwrap();
            let a = Action::Resolved {
                incident: o,
                at: t(at),
                by: ResolvedBy::Recovery,
            };
            self.pager
                .on_action(p, &failed_run(name), &a, t(at))
                .await
                .unwrap()
        }

        async fn keys(&self, incident: &str) -> Vec<String> {
            self.outbox
                .for_incident(incident)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.entry.key.split_once('/').unwrap().1.to_string())
                .collect()
        }
    }

    #[tokio::test]
    async fn incidents_opening_together_on_one_connector_are_one_page_and_one_resolve() {
        let r = rig(30);
        assert_eq!(r.opened("a", 0).await, Paged::Queued(2));
        let lead = "inc-a-0".to_string();
        let grouped = Paged::Grouped {
            leader: lead.clone(),
        };
        assert_eq!(r.opened("b", 5).await, grouped);
        assert_eq!(r.opened("c", 20).await, grouped);
        // Another connector pages on its own.
        assert_eq!(r.opened("d", 21).await, Paged::Queued(2));
        // The waiting page lists the others; it is due when the wait is over.
        let rows = r.outbox.for_incident(&lead).await.unwrap();
        assert_eq!(rows.len(), 2);
        for row in &rows {
            let n: Notice = serde_json::from_str(&row.entry.notice).unwrap();
            assert_eq!(n.also_affected, vec!["b", "c"]);
            assert_eq!(row.next_attempt_at, t(30));
        }
        assert!(r.outbox.for_incident("inc-b-5").await.unwrap().is_empty());

        // Acknowledging the page acknowledges the group; only the webhook hears of it.
        assert!(
            r.incidents
                .acknowledge(&lead, "maria", t(40))
                .await
                .unwrap()
        );
        for id in ["inc-b-5", "inc-c-20"] {
            let row = r.incidents.get(id).await.unwrap().unwrap();
            assert_eq!(row.acked_by.as_deref(), Some("maria"), "{id}");
            assert_eq!(row.group.as_deref(), Some(lead.as_str()));
        }
        assert!(
            r.incidents
                .get("inc-d-21")
                .await
                .unwrap()
                .unwrap()
                .acked_at
                .is_none()
        );
        let ack = |id: &str| Action::Acknowledged {
            id: id.into(),
            by: "maria".into(),
            at: t(40),
            opened_at: t(0),
        };
        let run = failed_run("a");
        assert_eq!(
            r.pager
                .on_action(r.probe("a"), &run, &ack(&lead), t(41))
                .await
                .unwrap(),
            Paged::Queued(1)
        );
        assert_eq!(
            r.pager
                .on_action(r.probe("b"), &run, &ack("inc-b-5"), t(41))
                .await
                .unwrap(),
            Paged::Nothing
        );

        // The resolve waits for the whole group, whoever recovers first.
        assert_eq!(
            r.resolved("a", 0, 100).await,
            Paged::GroupStillOpen {
                leader: lead.clone(),
                open: 2
            }
        );
        assert_eq!(
            r.resolved("c", 20, 110).await,
            Paged::GroupStillOpen {
                leader: lead.clone(),
                open: 1
            }
        );
        assert_eq!(r.resolved("b", 5, 120).await, Paged::Queued(2));
        let resolve = r
            .outbox
            .for_incident(&lead)
            .await
            .unwrap()
            .into_iter()
            .find(|row| row.entry.kind.as_str() == "resolve")
            .unwrap();
        let n: Notice = serde_json::from_str(&resolve.entry.notice).unwrap();
        assert_eq!(
            (n.probe.as_str(), n.incident_id.as_str()),
            ("a", lead.as_str())
        );
        assert_eq!(n.also_affected, vec!["b", "c"]);
        assert_eq!(n.resolved_at, Some(t(120)));
        assert_eq!(
            r.keys(&lead).await,
            vec![
                "trigger/email/Maria",
                "trigger/webhook/-",
                "acknowledge/webhook/-",
                "resolve/email/Maria",
                "resolve/webhook/-"
            ]
        );

        // Long after the window, the connector's next incident is a new page.
        assert_eq!(r.opened("b", 1000).await, Paged::Queued(2));
    }

    /// A window that is active while `open` is set, until t(3600).
    #[derive(Debug, Default)]
    struct Windows {
        open: std::sync::atomic::AtomicBool,
    }

    impl OnCallView for Windows {
        fn who(&self, target: &crate::model::Target, _: DateTime<Utc>) -> Vec<String> {
            match target {
                crate::model::Target::Contact(c) => vec![c.clone()],
                crate::model::Target::Rotation { .. } => vec![],
            }
        }
        fn window_until(&self, _: &str, _: DateTime<Utc>) -> Option<DateTime<Utc>> {
            self.open
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| t(3600))
        }
    }

    fn window_rule(action: crate::model::WindowAction, probes: &[&str]) -> WindowRoute {
        WindowRoute {
            window: "change-window".into(),
            action,
            severities: vec![],
            connectors: vec![],
            probes: probes.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn a_change_window_mutes_a_page_records_it_and_never_mutes_a_resolve() {
        let windows = Arc::new(Windows::default());
        let r = rig_with(
            0,
            vec![window_rule(crate::model::WindowAction::Mute, &["a", "d"])],
            windows.clone(),
        );
        // Before the window: `a` pages.
        assert_eq!(r.opened("a", 0).await, Paged::Queued(2));
        // Inside it: `d` is muted (recorded, nobody paged), `b` is not matched and its
        // page says it was sent during the change window.
        windows
            .open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            matches!(r.opened("d", 10).await, Paged::Held(h) if h.starts_with("muted by change window `change-window` until"))
        );
        assert!(r.outbox.for_incident("inc-d-10").await.unwrap().is_empty());
        assert_eq!(r.opened("b", 700).await, Paged::Queued(2));
        let b: Notice = serde_json::from_str(
            &r.outbox.for_incident("inc-b-700").await.unwrap()[0]
                .entry
                .notice,
        )
        .unwrap();
        assert!(
            b.notes[0].starts_with("Sent during change window `change-window`"),
            "{:?}",
            b.notes
        );
        // `a` recovers inside the window: its resolve goes out all the same.
        assert_eq!(r.resolved("a", 0, 100).await, Paged::Queued(2));
        // `d` recovers inside it: nobody was paged, nobody hears of it.
        assert_eq!(r.resolved("d", 10, 200).await, Paged::Nothing);
        // A muted incident still failing after the window pages then, saying so.
        assert!(
            matches!(r.opened("c", 1500).await, Paged::Queued(2)),
            "c is not muted"
        );
        let r2 = rig_with(
            0,
            vec![window_rule(crate::model::WindowAction::Mute, &[])],
            windows.clone(),
        );
        assert!(matches!(r2.opened("a", 0).await, Paged::Held(_)));
        assert_eq!(r2.pager.escalate(t(60)).await.unwrap(), 0, "still muted");
        windows
            .open
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r2.pager.escalate(t(3600)).await.unwrap(), 2);
        let page: Notice = serde_json::from_str(
            &r2.outbox.for_incident("inc-a-0").await.unwrap()[0]
                .entry
                .notice,
        )
        .unwrap();
        assert_eq!(
            page.notes[0],
            "Muted during change window `change-window`; still failing after it ended."
        );
    }

    #[tokio::test]
    async fn a_blackout_promotes_and_a_delay_holds_until_the_window_ends() {
        let windows = Arc::new(Windows::default());
        windows
            .open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut promote = window_rule(crate::model::WindowAction::Promote(Severity::P1), &["a"]);
        promote.window = "month-end".into();
        let r = rig_with(
            0,
            vec![
                promote,
                window_rule(crate::model::WindowAction::Delay, &["d"]),
            ],
            windows.clone(),
        );
        assert_eq!(
            r.opened("a", 0).await,
            Paged::Queued(1),
            "P1 has no route here: the webhook only"
        );
        let a: Notice = serde_json::from_str(
            &r.outbox.for_incident("inc-a-0").await.unwrap()[0]
                .entry
                .notice,
        )
        .unwrap();
        assert_eq!(a.severity, "P1");
        assert_eq!(
            a.notes,
            ["Promoted from P2 to P1: window `month-end` is active."]
        );
        assert!(
            matches!(r.opened("d", 5).await, Paged::Held(h) if h.starts_with("delayed by window"))
        );
        windows
            .open
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.pager.escalate(t(3600)).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_restart_queues_the_page_and_the_resolve_a_crash_left_unqueued() {
        let r = rig(0);
        // The tracker saved the incident; the process died before the pager ran.
        let o = open("a", 0);
        r.incidents
            .save(&o, "a", Severity::P2, "crm-to-dms", None)
            .await
            .unwrap();
        assert_eq!(r.pager.resume(&r.probes, t(5)).await.unwrap(), 2);
        assert_eq!(r.pager.resume(&r.probes, t(6)).await.unwrap(), 0, "once");
        // Resolved and saved, then the process died again before the resolve was queued.
        r.incidents
            .save(
                &o,
                "a",
                Severity::P2,
                "crm-to-dms",
                Some((t(60), ResolvedBy::Recovery)),
            )
            .await
            .unwrap();
        assert_eq!(r.pager.resume(&r.probes, t(70)).await.unwrap(), 2);
        assert_eq!(r.pager.resume(&r.probes, t(71)).await.unwrap(), 0, "once");
        assert_eq!(
            r.keys("inc-a-0").await,
            vec![
                "trigger/email/Maria",
                "trigger/webhook/-",
                "resolve/email/Maria",
                "resolve/webhook/-"
            ]
        );
        let resolve: Notice = serde_json::from_str(
            &r.outbox.for_incident("inc-a-0").await.unwrap()[2]
                .entry
                .notice,
        )
        .unwrap();
        assert_eq!(resolve.resolved_at, Some(t(60)));
    }

    #[tokio::test]
    async fn a_group_that_reopens_and_resolves_again_notifies_each_round() {
        let r = rig(0);
        assert_eq!(r.opened("a", 0).await, Paged::Queued(2));
        assert_eq!(r.resolved("a", 0, 60).await, Paged::Queued(2));
        for (reopen_at, resolve_at) in [(90, 200), (230, 400)] {
            let mut o = open("a", 0);
            o.flapping = true;
            r.incidents.reopen(&o.id).await.unwrap();
            let p = r.probe("a");
            let paged = r
                .pager
                .on_action(p, &failed_run("a"), &Action::Reopened(o), t(reopen_at))
                .await
                .unwrap();
            assert_eq!(paged, Paged::Queued(2), "reopen at {reopen_at}");
            assert_eq!(r.resolved("a", 0, resolve_at).await, Paged::Queued(2));
        }
        let keys = r.keys("inc-a-0").await;
        let kinds: Vec<&str> = keys
            .iter()
            .filter(|k| k.ends_with("/email/Maria"))
            .map(|k| k.split('/').next().unwrap())
            .collect();
        assert_eq!(
            kinds,
            vec![
                "trigger",
                "resolve",
                "flapping#2",
                "resolve#2",
                "flapping#3",
                "resolve#3"
            ]
        );
        assert_eq!(
            r.incidents.get("inc-a-0").await.unwrap().unwrap().reopens,
            2
        );
    }
}
