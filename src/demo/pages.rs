//! The demo's paging: the same incident tracking and outbox as the agent, with every page
//! written into a folder instead of sent — e-mail as `.eml` through lettre's file
//! transport, SMS as the exact text a phone would show — so a person sees what the
//! on-call engineer would get.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::alerting::tracker::{Tracker, describe};
use crate::model::{Agent, Contact, Probe, Severity};
use crate::notify::email::{EmailChannel, EmailTransport};
use crate::notify::outbox::Router;
use crate::notify::pager::{Paged, Pager};
use crate::notify::sms::sms_text;
use crate::notify::{Channel, Delivery, Notice, SendFuture};
use crate::runner::ProbeRun;
use crate::store::outbox::OutboxStore;
use crate::store::{IncidentStore, RunStore};

/// SMS pages as text files: `<n>-<incident>-<kind>.txt` holding exactly the message text.
#[derive(Debug)]
pub struct SmsFolder {
    dir: PathBuf,
    n: AtomicU64,
}

impl Channel for SmsFolder {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn reaches(&self, contact: Option<&Contact>) -> bool {
        contact.is_some_and(|c| c.phone.is_some())
    }

    fn send<'a>(&'a self, notice: &'a Notice, contact: Option<&'a Contact>) -> SendFuture<'a> {
        Box::pin(async move {
            let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
            let path = self.dir.join(format!(
                "{n:03}-{}-{}.sms.txt",
                notice.incident_id,
                notice.kind.as_str()
            ));
            let to = contact.and_then(|c| c.phone.as_deref()).unwrap_or("?");
            match tokio::fs::write(&path, format!("To: {to}\n\n{}\n", sms_text(notice))).await {
                Ok(()) => Delivery::Accepted {
                    provider_id: Some(path.display().to_string()),
                },
                Err(e) => Delivery::Retry {
                    reason: format!("{}: {e}", path.display()),
                    after: None,
                },
            }
        })
    }
}

/// The demo's on-call people: one paged by SMS, one by e-mail, so both kinds of page
/// appear in the folder.
fn demo_contacts() -> Vec<Contact> {
    vec![
        Contact {
            name: "On-call technician".into(),
            email: None,
            phone: Some("+15555550100".into()),
        },
        Contact {
            name: "Service manager".into(),
            email: Some("service.manager@rooftop-demo.example".into()),
            phone: None,
        },
    ]
}

/// Incident tracking and paging for the demo.
#[derive(Debug)]
pub struct DemoPaging {
    pub tracker: Tracker,
    pub pager: Arc<Pager>,
    pub folder: PathBuf,
    /// The latest incident lines, newest last (for the live view).
    pub events: Mutex<Vec<String>>,
}

impl DemoPaging {
    pub async fn start(
        agent: &Agent,
        probes: &[Probe],
        state_dir: &Path,
        folder: &Path,
    ) -> anyhow::Result<DemoPaging> {
        std::fs::create_dir_all(folder)?;
        // The bundled runbooks next to the pages, so their links open and their sections
        // are quoted in the e-mails.
        for (path, text) in super::embedded::RUNBOOKS {
            let target = folder.join(path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(target, text)?;
        }
        let mut agent = agent.clone();
        agent.rooftop_id = "demo-motors".into();
        agent.rooftop_name = Some("Demo Motors (sandbox)".into());
        let sms: Arc<dyn Channel> = Arc::new(SmsFolder {
            dir: folder.to_path_buf(),
            n: AtomicU64::new(0),
        });
        let email: Arc<dyn Channel> = Arc::new(EmailChannel::new(
            "rooftop demo <rooftop@rooftop-demo.example>",
            EmailTransport::Folder(folder.to_path_buf()),
        )?);
        let mut routes = std::collections::BTreeMap::new();
        for s in [Severity::P1, Severity::P2, Severity::P3, Severity::P4] {
            routes.insert(s, vec![0, 1]);
        }
        let router = Router {
            contacts: demo_contacts(),
            routes,
            channels: vec![sms, email],
        };
        let pager = Arc::new(Pager::new(
            OutboxStore::open_in(state_dir)?,
            router,
            &agent,
            folder,
            Some(format!("file://{}", folder.display())),
            None,
            IncidentStore::open_in(state_dir)?,
        ));
        let tracker = Tracker::restore(
            IncidentStore::open_in(state_dir)?,
            &RunStore::open_in(state_dir)?,
            probes,
            chrono::Utc::now(),
        )
        .await?;
        Ok(DemoPaging {
            tracker,
            pager,
            folder: folder.to_path_buf(),
            events: Mutex::new(Vec::new()),
        })
    }

    /// Feeds a run; returns the incident lines it produced.
    pub async fn observe(&self, probe: &Probe, run: &ProbeRun) -> Vec<String> {
        let now = chrono::Utc::now();
        let mut lines = Vec::new();
        match self.tracker.observe(probe, run, now).await {
            Ok(actions) => {
                for a in &actions {
                    if let Some(l) = describe(probe, a) {
                        lines.push(format!("{} {l}", now.format("%H:%M:%S")));
                    }
                    // Grouping decisions are news; "queued" is what every page does.
                    match self.pager.on_action(probe, run, a, now).await {
                        Ok(p @ (Paged::Grouped { .. } | Paged::GroupStillOpen { .. })) => {
                            if let Some(l) = p.describe() {
                                lines.push(format!("{} {}", now.format("%H:%M:%S"), l.trim()));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => lines.push(format!("warning: pages not queued: {e}")),
                    }
                }
            }
            Err(e) => lines.push(format!("warning: incident tracking: {e}")),
        }
        if let Ok(mut ev) = self.events.lock() {
            ev.extend(lines.iter().cloned());
            let excess = ev.len().saturating_sub(8);
            ev.drain(..excess);
        }
        lines
    }

    /// Pages written so far: (e-mails, SMS).
    pub fn written(&self) -> (usize, usize) {
        let names: Vec<String> = std::fs::read_dir(&self.folder)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        (
            names.iter().filter(|n| n.ends_with(".eml")).count(),
            names.iter().filter(|n| n.ends_with(".sms.txt")).count(),
        )
    }
}
