//! The demo's paging: the agent's own incident tracking, outbox and e-mail channel, with
//! every page written into a folder instead of sent — e-mail as `.eml` through lettre's file
//! transport, SMS as the exact text a phone would show — so a person sees what the
//! on-call engineer would get.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::model::{
    Contact, EmailDestination, EmailSettings, EscalationPolicy, EscalationStep, Severity, Target,
};
use crate::notify::sms::sms_text;
use crate::notify::{Channel, Delivery, Notice, SendFuture};

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

/// Turns the embedded config into the demo's paging: pages written into `folder` (e-mail
/// as `.eml`, SMS as text), the bundled runbooks beside them so their links open, two
/// on-call people, every severity routed to both. Returns the channels the agent cannot
/// build from settings (the SMS folder).
pub fn page_into_folder(
    config: &mut Config,
    folder: &Path,
) -> std::io::Result<Vec<Arc<dyn Channel>>> {
    std::fs::create_dir_all(folder)?;
    for (path, text) in super::embedded::RUNBOOKS {
        let target = folder.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(target, text)?;
    }
    let agent = &mut config.agent;
    agent.rooftop_id = "demo-motors".into();
    agent.rooftop_name = Some("Demo Motors (sandbox)".into());
    let a = &mut agent.alerting;
    a.contacts = demo_contacts();
    let everyone: Vec<Target> = a
        .contacts
        .iter()
        .map(|c| Target::Contact(c.name.clone()))
        .collect();
    a.routes = [Severity::P1, Severity::P2, Severity::P3, Severity::P4]
        .into_iter()
        .map(|s| {
            let policy = EscalationPolicy {
                name: format!("routes.{s}"),
                steps: vec![EscalationStep {
                    notify: everyone.clone(),
                    wait: None,
                }],
                repeat: 0,
                remind_after_ack: None,
            };
            (s, policy)
        })
        .collect();
    a.email = Some(EmailSettings {
        from: "rooftop demo <rooftop@rooftop-demo.example>".into(),
        destination: EmailDestination::Folder(folder.to_path_buf()),
    });
    a.prefer = vec!["sms".into(), "email".into()];
    a.runbook_base_url = Some(format!("file://{}", folder.display()));
    let sms: Arc<dyn Channel> = Arc::new(SmsFolder {
        dir: folder.to_path_buf(),
        n: AtomicU64::new(0),
    });
    Ok(vec![sms])
}

/// Pages written into `folder` so far: (e-mails, SMS).
pub fn written(folder: &Path) -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir(folder)
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
