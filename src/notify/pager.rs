//! From incident actions to notifications: builds the `Notice` (what failed, since when,
//! the sync figures, the runbook's impact and mitigations, the links), queues it in the
//! outbox for the people routed for the probe's severity, and runs the delivery loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use super::outbox::{Pass, Policy, Router, deliver_due};
use super::{Notice, NoticeKind, SyncFigure};
use crate::alerting::ack::AckSigner;
use crate::alerting::{Action, Open, incident_reason};
use crate::clock::Clock;
use crate::probe::{Agent, Probe, Runbook};
use crate::runner::ProbeRun;
use crate::store::StoreError;
use crate::store::outbox::OutboxStore;

/// Longest pause of the delivery loop when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

/// The text under a markdown heading named `title` (any level), up to the next heading
/// of the same or a higher level.
pub fn runbook_section(markdown: &str, title: &str) -> Option<String> {
    let mut lines = markdown.lines();
    let level = loop {
        let l = lines.next()?;
        let hashes = l.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && l[hashes..].trim().eq_ignore_ascii_case(title) {
            break hashes;
        }
    };
    let body: Vec<&str> = lines
        .take_while(|l| {
            let h = l.chars().take_while(|c| *c == '#').count();
            h == 0 || h > level
        })
        .collect();
    let text = body.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

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
}

impl Pager {
    pub fn new(
        outbox: OutboxStore,
        router: Router,
        agent: &Agent,
        config_dir: &Path,
        runbook_base_url: Option<String>,
        ack: Option<AckSigner>,
    ) -> Pager {
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
        }
    }

    /// Whether anyone can be paged at all.
    pub fn has_channels(&self) -> bool {
        !self.router.channels.is_empty()
    }

    fn runbook_url(&self, rb: &Runbook) -> String {
        match rb {
            Runbook::Url(u) => u.clone(),
            Runbook::File(p) => match &self.runbook_base_url {
                Some(base) => format!("{}/{}", base.trim_end_matches('/'), p.display()),
                None => self.config_dir.join(p).display().to_string(),
            },
        }
    }

    fn notice(
        &self,
        kind: NoticeKind,
        probe: &Probe,
        open: &Open,
        run: &ProbeRun,
        resolved_at: Option<DateTime<Utc>>,
    ) -> Notice {
        // The failed step's runbook when it has its own, else the probe's.
        let runbook = open
            .failed_step
            .as_ref()
            .and_then(|s| probe.steps.iter().find(|st| &st.name == s))
            .and_then(|st| st.runbook.clone())
            .or_else(|| probe.runbook.clone());
        let text = match &runbook {
            Some(Runbook::File(p)) => std::fs::read_to_string(self.config_dir.join(p)).ok(),
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
            connector: probe
                .labels
                .get("connector")
                .cloned()
                .unwrap_or_else(|| "-".into()),
            opened_at: open.opened_at,
            resolved_at,
            reason: incident_reason(open),
            error_class: open.error_class.clone(),
            failed_step: open.failed_step.clone(),
            last_message: open.last_message.clone(),
            sync: run
                .steps
                .iter()
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
            runbook_impact: text
                .as_deref()
                .and_then(|t| runbook_section(t, "Impact assessment")),
            runbook_mitigations: text
                .as_deref()
                .and_then(|t| runbook_section(t, "Immediate mitigations")),
            ack_url: match kind {
                NoticeKind::Trigger | NoticeKind::Flapping => self
                    .ack
                    .as_ref()
                    .map(|a| a.link(&open.id, chrono::Utc::now())),
                _ => None,
            },
            also_affected: Vec::new(),
        }
    }

    /// Queues the notifications an incident action calls for; returns how many.
    pub async fn on_action(
        &self,
        probe: &Probe,
        run: &ProbeRun,
        action: &Action,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let entries = match action {
            Action::Opened(open) => {
                let n = self.notice(NoticeKind::Trigger, probe, open, run, None);
                self.router.plan(&n, probe.severity)
            }
            Action::Reopened(open) => {
                let n = self.notice(NoticeKind::Flapping, probe, open, run, None);
                self.router.plan(&n, probe.severity)
            }
            Action::Resolved { incident, at, .. } => {
                let n = self.notice(NoticeKind::Resolve, probe, incident, run, Some(*at));
                let paged = self.outbox.for_incident(&incident.id).await?;
                self.router.plan_follow_up(&n, &paged)
            }
            _ => Vec::new(),
        };
        if entries.is_empty() {
            return Ok(0);
        }
        // Written before anything is sent: a crash from here on loses nothing.
        let n = self.outbox.enqueue(entries, now).await?;
        self.wake.notify_one();
        Ok(n)
    }

    /// Delivers until `stop`, then one last pass. Pending entries of a previous run are
    /// sent first (a restart resumes them).
    pub async fn run(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
        observe: Arc<dyn Fn(&Pass) + Send + Sync>,
    ) {
        loop {
            let now = clock.now();
            let mut jitter = rand::random::<f64>;
            match deliver_due(&self.outbox, &self.router, &self.policy, now, &mut jitter).await {
                Ok(pass) => {
                    observe(&pass);
                    for k in &pass.delivered {
                        println!("page delivered: {k}");
                    }
                    for (from, to) in &pass.fell_back {
                        println!("page fell back: {from} → {to}");
                    }
                    for k in &pass.failed {
                        eprintln!("warning: page failed: {k}");
                    }
                }
                Err(e) => eprintln!("warning: outbox: {e}"),
            }
            let wait = match self.outbox.next_due().await {
                Ok(Some(t)) => (t - clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE),
                _ => IDLE,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let mut jitter = rand::random::<f64>;
        if let Ok(pass) = deliver_due(
            &self.outbox,
            &self.router,
            &self.policy,
            clock.now(),
            &mut jitter,
        )
        .await
        {
            observe(&pass);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbook_sections_are_cut_at_the_next_heading() {
        let md = "# RO not created\n\nintro\n\n## Impact assessment\n\nAdvisors re-key ROs.\n### Detail\nkept\n\n## Immediate mitigations\n\n1. Restart.\n";
        assert_eq!(
            runbook_section(md, "Impact assessment").unwrap(),
            "Advisors re-key ROs.\n### Detail\nkept"
        );
        assert_eq!(
            runbook_section(md, "immediate mitigations").unwrap(),
            "1. Restart."
        );
        assert_eq!(runbook_section(md, "Rollback criteria"), None);
        let bundled = std::fs::read_to_string("runbooks/ro-not-created.md").unwrap();
        assert!(
            runbook_section(&bundled, "Impact assessment")
                .unwrap()
                .contains("Service Director")
        );
    }
}
