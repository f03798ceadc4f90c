//! Notifications: what a page says (`Notice`) and the channels that carry it, one file
//! each behind the `Channel` trait (email, sms, webhook, pagerduty). Channels only
//! deliver and report how it went; retries, deduplication, fallback and persistence
//! belong to the outbox.

mod delivery;
pub mod email;
mod group_state;
mod http;
pub mod outbox;
pub mod pager;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Contact;

pub mod pagerduty;
pub mod sms;
pub mod webhook;

/// Why a notice is sent (in the model: the outbox stores it).
pub use crate::model::NoticeKind;

/// Sync latency of one step in the run that triggered the notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncFigure {
    pub step: String,
    pub estimate_ms: f64,
    pub lower_ms: f64,
    pub upper_ms: f64,
    pub slo_ms: Option<f64>,
}

/// Everything a page says. Secrets never reach it: messages were masked by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub incident_id: String,
    /// `P1`…`P4`.
    pub severity: String,
    pub rooftop_id: String,
    pub rooftop_name: Option<String>,
    pub probe: String,
    pub flow: String,
    pub connector: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it opened, in words ("2 failed runs in a row").
    pub reason: String,
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub last_message: Option<String>,
    pub sync: Vec<SyncFigure>,
    /// Link to the full runbook.
    pub runbook_url: Option<String>,
    /// The runbook's *Impact assessment* and *Immediate mitigations* sections, inline.
    pub runbook_impact: Option<String>,
    pub runbook_mitigations: Option<String>,
    /// Signed, expiring acknowledge link, when the agent's listener is reachable.
    pub ack_url: Option<String>,
    /// Other probes on the same connector whose incidents opened together with this one
    /// (grouped into this page).
    pub also_affected: Vec<String>,
    /// Probes failing because this one is (they `depend_on` it): their incidents page
    /// nobody on their own while this one is open.
    #[serde(default)]
    pub dependents: Vec<String>,
    /// Lines about this page itself: escalated from whom, a reminder, sent inside a
    /// change window, promoted by a blackout.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Notice {
    /// `Toronto North Honda` or the rooftop id.
    pub fn rooftop_label(&self) -> &str {
        self.rooftop_name.as_deref().unwrap_or(&self.rooftop_id)
    }
}

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The provider accepted it (its message id, if it gave one).
    Accepted { provider_id: Option<String> },
    /// Try again later (after `after` when the provider said so, e.g. Retry-After).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (invalid number, recipient opted out): fall back to the next
    /// channel.
    Rejected { reason: String },
}

/// Where an accepted message is, when the channel can tell (SMS delivery receipts).
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// Not final yet (queued, sending, sent to the carrier), or the status request
    /// failed: ask again later.
    Pending { status: String },
    /// The handset has it.
    Delivered,
    /// The carrier gave up (unreachable handset, landline, carrier filtering): fall back
    /// to the next channel.
    Undelivered { reason: String },
}

/// A boxed future, so channels can sit behind `dyn Channel`.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;
/// A boxed delivery-status future.
pub type ConfirmFuture<'a> = Pin<Box<dyn Future<Output = Confirmation> + Send + 'a>>;

/// One way to reach people.
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// `email`, `sms`, `webhook`, `pagerduty`.
    fn name(&self) -> &'static str;
    /// Whether this channel can reach `contact` (an e-mail address for email, a phone for
    /// SMS). By default a channel has no per-person addressing (webhook, PagerDuty): it
    /// reaches the team (`None`), never a person; personal channels override this.
    fn reaches(&self, contact: Option<&Contact>) -> bool {
        contact.is_none()
    }
    /// One delivery attempt.
    fn send<'a>(&'a self, notice: &'a Notice, contact: Option<&'a Contact>) -> SendFuture<'a>;
    /// Whether accepted messages report delivery later (`confirm` is then polled with
    /// the provider's id).
    fn confirms(&self) -> bool {
        false
    }
    /// Where the message the provider accepted as `provider_id` is now.
    fn confirm<'a>(&'a self, provider_id: &'a str) -> ConfirmFuture<'a> {
        let _ = provider_id;
        Box::pin(async { Confirmation::Delivered })
    }
}

/// A realistic notice, for channel tests and previews.
pub fn sample_notice(kind: NoticeKind) -> Notice {
    Notice {
        kind,
        incident_id: "inc-appointment-to-ro-to-survey-1790000000000".into(),
        severity: "P2".into(),
        rooftop_id: "toronto-north".into(),
        rooftop_name: Some("Toronto North Honda".into()),
        probe: "appointment-to-ro-to-survey".into(),
        flow: "service-appointment".into(),
        connector: "crm-to-dms".into(),
        opened_at: DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
        resolved_at: None,
        reason: "2 failed runs in a row".into(),
        error_class: Some("sync_timeout".into()),
        failed_step: Some("ro-in-dms".into()),
        last_message: Some("no RO after 15 polls over 15m".into()),
        sync: vec![SyncFigure {
            step: "ro-in-dms".into(),
            estimate_ms: 900_000.0,
            lower_ms: 890_000.0,
            upper_ms: 910_000.0,
            slo_ms: Some(300_000.0),
        }],
        runbook_url: Some("https://runbooks.example/runbooks/ro-not-created.md".into()),
        runbook_impact: Some("Service advisors cannot see today's appointments as ROs.".into()),
        runbook_mitigations: Some("1. Check the DMS sync job.\n2. Restart the connector.".into()),
        ack_url: Some("http://127.0.0.1:9464/ack/inc-1?sig=abc".into()),
        also_affected: vec![],
        dependents: vec![],
        notes: vec![],
    }
}
