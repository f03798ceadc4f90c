//! Acknowledging by SMS reply: every `alerting.sms.replies.poll` the agent reads the
//! replies to its pages from Twilio (it has no public URL for Twilio to call) and
//! records the acknowledgements a known contact's `ACK` / `ACK 4821` asks for
//! (`alerting::ack` decides; the escalation stops on its next tick). Each message is
//! handled once, across restarts; replies from before the first poll, or older than
//! 24 h, are never applied. A failed poll is logged and retried on the next tick.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AgentError, Report, Reporter};
use crate::alerting::ack::sms_acked_by;
use crate::alerting::ack::{OpenPage, Reply, ReplyDecision, decide_reply, parse_reply};
use crate::clock::Clock;
use crate::config::Config;
use crate::model::Contact;
use crate::notify::sms::{InboundSms, SmsInbox, SmsSettings};
use crate::runner::Runner;
use crate::store::IncidentStore;
use crate::store::replies::{HandledReply, ReplyStore};

/// Replies older than this are never applied (and forgotten twice as long after).
const MAX_REPLY_AGE: chrono::Duration = chrono::Duration::hours(24);
/// Most of a message quoted in a debug line.
const MAX_QUOTED_CHARS: usize = 40;

/// How much a reply event matters to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Printed only with `ROOFTOP_LOG=debug`: messages that are not acknowledgements.
    Debug,
    Info,
    Warn,
}

/// What came of a reply, or of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyEvent {
    /// `incident` is acknowledged by `contact` (`code`: the code they sent, if any).
    Acknowledged {
        contact: String,
        incident: String,
        code: Option<String>,
    },
    /// Acknowledged or resolved in the meantime (the link, the CLI).
    AlreadyDone { contact: String, incident: String },
    /// `ACK` with no open SMS page of theirs sent before it.
    NothingOpen { contact: String },
    /// No open SMS page of theirs has `code`.
    UnknownCode { contact: String, code: String },
    /// Several open SMS pages of theirs have `code`: none acknowledged.
    Ambiguous {
        contact: String,
        code: String,
        incidents: Vec<String>,
    },
    /// From a number that is no contact's phone (`number`: its last digits only).
    UnknownSender { number: String, ack: bool },
    /// A contact's message that is not an acknowledgement.
    NotAnAck { contact: String, quoted: String },
    /// Too old to be applied.
    TooOld {
        contact: Option<String>,
        why: &'static str,
    },
    /// Twilio (or the store) could not be read; the next tick tries again.
    PollFailed { reason: String, every: Duration },
    /// Reading works again.
    PollRecovered { failed: u32 },
}

impl ReplyEvent {
    pub fn level(&self) -> Level {
        match self {
            ReplyEvent::Acknowledged { .. } | ReplyEvent::PollRecovered { .. } => Level::Info,
            ReplyEvent::NothingOpen { .. }
            | ReplyEvent::UnknownCode { .. }
            | ReplyEvent::Ambiguous { .. }
            | ReplyEvent::UnknownSender { ack: true, .. }
            | ReplyEvent::PollFailed { .. } => Level::Warn,
            ReplyEvent::AlreadyDone { .. }
            | ReplyEvent::UnknownSender { ack: false, .. }
            | ReplyEvent::NotAnAck { .. }
            | ReplyEvent::TooOld { .. } => Level::Debug,
        }
    }

    /// One log line (never a message's sender number, never the auth token).
    pub fn describe(&self) -> String {
        match self {
            ReplyEvent::Acknowledged {
                contact,
                incident,
                code,
            } => format!(
                "sms reply `ACK{}` from {contact}: {incident} acknowledged",
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
            ),
            ReplyEvent::AlreadyDone { contact, incident } => format!(
                "sms reply from {contact}: {incident} was acknowledged or resolved meanwhile"
            ),
            ReplyEvent::NothingOpen { contact } => format!(
                "sms reply `ACK` from {contact} acknowledged nothing: no unacknowledged page reached them by SMS before it"
            ),
            ReplyEvent::UnknownCode { contact, code } => format!(
                "sms reply `ACK {code}` from {contact} acknowledged nothing: none of their unacknowledged SMS pages has code {code} (mistyped, or acknowledged or resolved already)"
            ),
            ReplyEvent::Ambiguous {
                contact,
                code,
                incidents,
            } => format!(
                "sms reply `ACK {code}` from {contact} acknowledged nothing: code {code} is on several open pages ({}); reply `ACK` for all of them, or use the link or `rooftop incidents ack`",
                incidents.join(", ")
            ),
            ReplyEvent::UnknownSender { number, ack: true } => format!(
                "an `ACK` from an unknown number ({number}) acknowledged nothing: only the phones of alerting.contacts may acknowledge"
            ),
            ReplyEvent::UnknownSender { number, ack: false } => {
                format!("sms from an unknown number ({number}) ignored")
            }
            ReplyEvent::NotAnAck { contact, quoted } => {
                format!("sms reply from {contact} is not an ACK, ignored: \"{quoted}\"")
            }
            ReplyEvent::TooOld { contact, why } => format!(
                "sms reply from {} not applied: {why}",
                contact.as_deref().unwrap_or("an unknown number")
            ),
            ReplyEvent::PollFailed { reason, every } => format!(
                "sms replies: {reason}; trying again every {}",
                humantime::format_duration(*every)
            ),
            ReplyEvent::PollRecovered { failed } => {
                format!("sms replies: read again after {failed} failed poll(s)")
            }
        }
    }
}

/// `…0199`: enough to tell numbers apart in a log, not to call one.
fn masked(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("…{tail}")
}

/// At most `MAX_QUOTED_CHARS` of `body`, on one line.
fn quoted(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// What one poll read: the messages, and the oldest send time that still counts.
struct Fetched {
    cutoff: DateTime<Utc>,
    messages: Vec<InboundSms>,
}

/// Reads replies and records what they acknowledge.
pub(super) struct ReplyPoller {
    inbox: SmsInbox,
    store: ReplyStore,
    incidents: IncidentStore,
    contacts: Vec<Contact>,
    every: Duration,
    clock: Arc<dyn Clock>,
    reporter: Arc<dyn Reporter>,
    /// Report `Level::Debug` events too.
    debug: bool,
}

impl ReplyPoller {
    /// The poller of `rooftop.yaml`: `None` without `alerting.sms`, with replies turned
    /// off, or when no contact has a phone to reply from.
    pub(super) fn from_config(
        config: &Config,
        runner: &Runner,
        state_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
        reporter: Arc<dyn Reporter>,
        debug: bool,
    ) -> Result<Option<ReplyPoller>, AgentError> {
        let a = &config.agent.alerting;
        let Some(sms) = &a.sms else { return Ok(None) };
        let Some(replies) = sms.replies else {
            return Ok(None);
        };
        if !a.contacts.iter().any(|c| c.phone.is_some()) {
            return Ok(None);
        }
        let token = runner
            .render_setting(&sms.auth_token)
            .map_err(|e| AgentError::Config(format!("alerting.sms.auth_token: {e}")))?;
        let mut settings = SmsSettings::new(sms.account_sid.clone(), token, sms.from.clone());
        if let Some(u) = &sms.base_url {
            settings.base_url = u.clone();
        }
        Ok(Some(ReplyPoller {
            inbox: SmsInbox::new(settings, reqwest::Client::new()),
            store: ReplyStore::open_in(state_dir)?,
            incidents: IncidentStore::open_in(state_dir)?,
            contacts: a.contacts.clone(),
            every: replies.poll,
            clock,
            reporter,
            debug,
        }))
    }

    pub(super) fn every(&self) -> Duration {
        self.every
    }

    fn report(&self, event: &ReplyEvent) {
        if event.level() != Level::Debug || self.debug {
            self.reporter.report(Report::SmsReply(event));
        }
    }

    /// Reads the replies that may still count (since the first poll, at most 24 h old).
    async fn fetch(&self, now: DateTime<Utc>) -> Result<Fetched, String> {
        let since = self
            .store
            .since(now)
            .await
            .map_err(|e| format!("store: {e}"))?;
        let cutoff = since.max(now - MAX_REPLY_AGE);
        let messages = self
            .inbox
            .list_inbound(cutoff)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Fetched { cutoff, messages })
    }

    /// Handles the messages not handled before, oldest first, and records each.
    async fn apply(
        &self,
        fetched: Fetched,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReplyEvent>, crate::store::StoreError> {
        let sids = fetched.messages.iter().map(|m| m.sid.clone()).collect();
        let mut seen: BTreeSet<String> = self.store.handled(sids).await?;
        let mut events = Vec::new();
        // Twilio lists the newest first.
        for m in fetched.messages.iter().rev() {
            if !seen.insert(m.sid.clone()) {
                continue;
            }
            let senders: Vec<&Contact> = self
                .contacts
                .iter()
                .filter(|c| c.phone.as_deref() == Some(m.from.as_str()))
                .collect();
            let contact = senders.first().map(|c| c.name.clone());
            let these = self.handle(m, &senders, fetched.cutoff, now).await?;
            let outcome = these
                .iter()
                .map(ReplyEvent::describe)
                .collect::<Vec<_>>()
                .join("; ");
            self.store
                .record(
                    HandledReply {
                        sid: m.sid.clone(),
                        contact,
                        sent_at: m.sent_at,
                        outcome,
                    },
                    now,
                )
                .await?;
            events.extend(these);
        }
        self.store.prune(now - MAX_REPLY_AGE * 2).await?;
        Ok(events)
    }

    /// What one message does.
    async fn handle(
        &self,
        m: &InboundSms,
        senders: &[&Contact],
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReplyEvent>, crate::store::StoreError> {
        let Some(first) = senders.first() else {
            return Ok(vec![ReplyEvent::UnknownSender {
                number: masked(&m.from),
                ack: parse_reply(&m.body).is_some(),
            }]);
        };
        let contact = first.name.clone();
        if m.sent_at < cutoff {
            let why = if m.sent_at < now - MAX_REPLY_AGE {
                "older than 24 h"
            } else {
                "sent before the agent first read replies"
            };
            return Ok(vec![ReplyEvent::TooOld {
                contact: Some(contact),
                why,
            }]);
        }
        let Some(reply) = parse_reply(&m.body) else {
            return Ok(vec![ReplyEvent::NotAnAck {
                contact,
                quoted: quoted(&m.body),
            }]);
        };
        let names: Vec<String> = senders.iter().map(|c| c.name.clone()).collect();
        let pages: Vec<OpenPage> = self
            .store
            .open_sms_pages(names)
            .await?
            .into_iter()
            .map(|p| OpenPage {
                incident: p.incident,
                contact: p.contact,
                paged_at: p.paged_at,
            })
            .collect();
        let code = match &reply {
            Reply::All => None,
            Reply::Code(c) => Some(c.clone()),
        };
        Ok(match decide_reply(&reply, &pages, m.sent_at) {
            ReplyDecision::Acknowledge(pages) => {
                let mut out = Vec::new();
                for p in pages {
                    // When they replied, not when the agent read it (MTTA).
                    let at = m.sent_at.max(p.paged_at).min(now);
                    let by = sms_acked_by(&p.contact);
                    let done = self.incidents.acknowledge(&p.incident, &by, at).await?;
                    out.push(if done {
                        ReplyEvent::Acknowledged {
                            contact: p.contact,
                            code: code.clone(),
                            incident: p.incident,
                        }
                    } else {
                        ReplyEvent::AlreadyDone {
                            contact: p.contact,
                            incident: p.incident,
                        }
                    });
                }
                out
            }
            ReplyDecision::NothingOpen => vec![ReplyEvent::NothingOpen { contact }],
            ReplyDecision::UnknownCode(code) => vec![ReplyEvent::UnknownCode { contact, code }],
            ReplyDecision::Ambiguous { code, incidents } => vec![ReplyEvent::Ambiguous {
                contact,
                code,
                incidents,
            }],
        })
    }

    /// One poll: read, then apply (a stop cuts the reading short, never the applying).
    async fn poll_once(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Result<Vec<ReplyEvent>, String>> {
        let now = self.clock.now();
        let fetched = tokio::select! {
            f = self.fetch(now) => f,
            _ = stop.wait_for(|s| *s) => return None,
        };
        Some(match fetched {
            Ok(f) => self.apply(f, now).await.map_err(|e| format!("store: {e}")),
            Err(e) => Err(e),
        })
    }

    /// Polls at once, then every `every`, until `stop`. A failure is reported when it
    /// starts or its reason changes, and the recovery when it ends.
    pub(super) fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let (mut failed, mut last_reason) = (0u32, None::<String>);
            loop {
                if *stop.borrow() {
                    break;
                }
                match self.poll_once(&mut stop).await {
                    None => break,
                    Some(Ok(events)) => {
                        if failed > 0 {
                            self.report(&ReplyEvent::PollRecovered { failed });
                            (failed, last_reason) = (0, None);
                        }
                        for e in &events {
                            self.report(e);
                        }
                    }
                    Some(Err(reason)) => {
                        failed += 1;
                        if last_reason.as_deref() != Some(reason.as_str()) {
                            self.report(&ReplyEvent::PollFailed {
                                reason: reason.clone(),
                                every: self.every,
                            });
                            last_reason = Some(reason);
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.every) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::routing::get;

    use super::*;
    use crate::alerting::ack::ack_code;
    use crate::clock::ManualClock;
    use crate::model::{NoticeKind, Severity};
    use crate::store::outbox::{OutboxEntry, OutboxStore};

    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);

    impl Reporter for Recorded {
        fn report(&self, report: Report<'_>) {
            if let Report::SmsReply(e) = report {
                self.0.lock().unwrap().push(e.describe());
            }
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn rfc2822(at: DateTime<Utc>) -> String {
        at.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
    }

    fn inbound(sid: &str, from: &str, body: &str, at: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({"sid": sid, "from": from, "to": "+14165550100", "body": body,
            "direction": "inbound", "status": "received", "date_sent": rfc2822(at)})
    }

    /// A Twilio stand-in that lists `messages`, or answers 401 while `status` says so.
    async fn twilio(
        messages: Arc<Mutex<Vec<serde_json::Value>>>,
        status: Arc<Mutex<u16>>,
    ) -> String {
        let app = axum::Router::new().route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            get(move || {
                let (messages, status) = (messages.clone(), status.clone());
                async move {
                    let code = *status.lock().unwrap();
                    let body = if code == 200 {
                        let messages = messages.lock().unwrap().clone();
                        serde_json::json!({"messages": messages, "next_page_uri": null}).to_string()
                    } else {
                        r#"{"code": 20003, "message": "Authenticate", "status": 401}"#.to_string()
                    };
                    (axum::http::StatusCode::from_u16(code).unwrap(), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// A state directory, a stand-in, Maria and Dev with phones, a clock at `t(0)`.
    struct Setup {
        dir: tempfile::TempDir,
        base: String,
        clock: ManualClock,
        incidents: IncidentStore,
        outbox: OutboxStore,
        recorded: Arc<Recorded>,
        messages: Arc<Mutex<Vec<serde_json::Value>>>,
        status: Arc<Mutex<u16>>,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200));
        let base = twilio(messages.clone(), status.clone()).await;
        Setup {
            incidents: IncidentStore::open_in(dir.path()).unwrap(),
            outbox: OutboxStore::open_in(dir.path()).unwrap(),
            dir,
            base,
            clock: ManualClock::new(t(0)),
            recorded: Arc::new(Recorded::default()),
            messages,
            status,
        }
    }

    impl Setup {
        /// A poller on this state directory (a new one: as after a restart).
        fn poller(&self, every: Duration) -> ReplyPoller {
            let mut settings = SmsSettings::new("AC1", "tok-canary", "+14165550100");
            settings.base_url = self.base.clone();
            let contact = |name: &str, phone: &str| Contact {
                name: name.into(),
                email: None,
                phone: Some(phone.into()),
            };
            ReplyPoller {
                inbox: SmsInbox::new(settings, reqwest::Client::new()),
                store: ReplyStore::open_in(self.dir.path()).unwrap(),
                incidents: IncidentStore::open_in(self.dir.path()).unwrap(),
                contacts: vec![
                    contact("Maria Lopez", "+14165550123"),
                    contact("Dev Patel", "+14165550124"),
                ],
                every,
                clock: Arc::new(self.clock.clone()),
                reporter: self.recorded.clone(),
                debug: true,
            }
        }

        /// An open incident `id` whose SMS page reached `contact` at `at`.
        async fn paged(&self, id: &str, contact: &str, at: DateTime<Utc>) {
            let open = crate::model::sample_open(id, at);
            self.incidents
                .save(&open, "p", Severity::P1, "crm-to-dms", None)
                .await
                .unwrap();
            let key = OutboxEntry::key_for(id, "trigger", "sms", contact);
            let entry = OutboxEntry {
                key: key.clone(),
                incident_id: id.into(),
                kind: NoticeKind::Trigger,
                channel: "sms".into(),
                contact: contact.into(),
                notice: "{}".into(),
                fallback_from: None,
            };
            self.outbox.enqueue(vec![entry], at).await.unwrap();
            self.outbox
                .mark_delivered(&key, Some("SM-page".into()), at, None)
                .await
                .unwrap();
        }

        async fn poll(&self) -> Vec<ReplyEvent> {
            let (_tx, mut stop) = watch::channel(false);
            let poller = self.poller(Duration::from_secs(30));
            poller.poll_once(&mut stop).await.unwrap().unwrap()
        }

        async fn acked_by(&self, id: &str) -> Option<String> {
            self.incidents.get(id).await.unwrap().unwrap().acked_by
        }
    }

    #[tokio::test]
    async fn a_contacts_ack_with_the_code_acknowledges_that_incident_once() {
        let s = setup().await;
        assert!(s.poll().await.is_empty(), "the first poll sets since");
        s.paged("inc-a-1", "Maria Lopez", t(10)).await;
        s.paged("inc-b-2", "Maria Lopez", t(10)).await;
        s.clock.advance(chrono::Duration::seconds(60));
        let code = ack_code("inc-a-1");
        let body = format!(" Ack  {code}. ");
        let reply = inbound("SM1", "+14165550123", &body, t(40));
        s.messages.lock().unwrap().push(reply);
        assert_eq!(
            s.poll().await,
            [ReplyEvent::Acknowledged {
                contact: "Maria Lopez".into(),
                incident: "inc-a-1".into(),
                code: Some(code.clone()),
            }]
        );
        let row = s.incidents.get("inc-a-1").await.unwrap().unwrap();
        assert_eq!(row.acked_by.as_deref(), Some("Maria Lopez (SMS)"));
        assert_eq!(row.acked_at, Some(t(40)), "when she replied");
        assert_eq!(s.acked_by("inc-b-2").await, None);
        // Listed again at every poll (each poll is a new poller: a restart): handled once.
        assert!(s.poll().await.is_empty());
        assert!(s.poll().await.is_empty());
    }

    #[tokio::test]
    async fn unknown_numbers_unknown_codes_and_other_texts_acknowledge_nothing() {
        let s = setup().await;
        s.poll().await;
        s.paged("inc-a-1", "Maria Lopez", t(10)).await;
        s.clock.advance(chrono::Duration::seconds(60));
        let code = ack_code("inc-a-1");
        let other = if code == "0000" { "0001" } else { "0000" };
        *s.messages.lock().unwrap() = vec![
            inbound("SM5", "+14165550123", "on my way", t(45)),
            inbound("SM4", "+14165550124", "ACK", t(44)),
            inbound("SM3", "+14165550123", &format!("ACK {other}"), t(43)),
            inbound("SM2", "+15550000199", &format!("ACK {code}"), t(42)),
            inbound("SM1", "+15550000199", "hello", t(41)),
        ];
        let unknown = |ack| ReplyEvent::UnknownSender {
            number: "…0199".into(),
            ack,
        };
        let events = s.poll().await;
        assert_eq!(
            events,
            [
                unknown(false),
                unknown(true),
                ReplyEvent::UnknownCode {
                    contact: "Maria Lopez".into(),
                    code: other.into()
                },
                ReplyEvent::NothingOpen {
                    contact: "Dev Patel".into()
                },
                ReplyEvent::NotAnAck {
                    contact: "Maria Lopez".into(),
                    quoted: "on my way".into()
                },
            ]
        );
        assert_eq!(s.acked_by("inc-a-1").await, None);
        let lines = events
            .iter()
            .map(ReplyEvent::describe)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            lines.contains("an `ACK` from an unknown number (…0199) acknowledged nothing"),
            "{lines}"
        );
        assert!(!lines.contains("5550000199"), "{lines}");
        assert_eq!(unknown(true).level(), Level::Warn);
        assert_eq!(unknown(false).level(), Level::Debug);
        // A bare ACK acknowledges what reached her before it, not what came after.
        s.paged("inc-c-3", "Maria Lopez", t(200)).await;
        let ack = inbound("SM6", "+14165550123", "ack", t(50));
        s.messages.lock().unwrap().insert(0, ack);
        let events = s.poll().await;
        assert_eq!(
            events,
            [ReplyEvent::Acknowledged {
                contact: "Maria Lopez".into(),
                incident: "inc-a-1".into(),
                code: None,
            }]
        );
        assert_eq!(
            events[0].describe(),
            "sms reply `ACK` from Maria Lopez: inc-a-1 acknowledged"
        );
        assert_eq!(s.acked_by("inc-c-3").await, None);
    }

    #[tokio::test]
    async fn replies_before_the_first_poll_or_older_than_a_day_are_not_applied() {
        let s = setup().await;
        s.paged("inc-a-1", "Maria Lopez", t(-100)).await;
        let body = format!("ACK {}", ack_code("inc-a-1"));
        let early = inbound("SM1", "+14165550123", &body, t(-10));
        s.messages.lock().unwrap().push(early);
        let too_old = |why| {
            vec![ReplyEvent::TooOld {
                contact: Some("Maria Lopez".into()),
                why,
            }]
        };
        assert_eq!(
            s.poll().await,
            too_old("sent before the agent first read replies")
        );
        assert_eq!(s.acked_by("inc-a-1").await, None);
        s.clock.advance(chrono::Duration::hours(30));
        let stale = inbound("SM2", "+14165550123", "ACK", t(3600));
        s.messages.lock().unwrap().insert(0, stale);
        assert_eq!(s.poll().await, too_old("older than 24 h"));
        assert_eq!(s.acked_by("inc-a-1").await, None);
    }

    #[tokio::test]
    async fn a_failed_poll_says_why_once_and_polling_goes_on() {
        let s = setup().await;
        *s.status.lock().unwrap() = 401;
        let (tx, stop) = watch::channel(false);
        let every = Duration::from_millis(50);
        let task = s.poller(every).spawn(stop);
        let lines = || s.recorded.0.lock().unwrap().clone();
        // Several failed polls with the same reason: said once.
        tokio::time::sleep(every * 6).await;
        assert_eq!(lines().len(), 1, "{:#?}", lines());
        *s.status.lock().unwrap() = 200;
        for _ in 0..100 {
            if lines().len() >= 2 {
                break;
            }
            tokio::time::sleep(every).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
        let got = lines();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with(
                "sms replies: Twilio answered 401 to the message list request: error 20003 (authentication failed"
            ),
            "{got:#?}"
        );
        assert!(got[0].ends_with("; trying again every 50ms"), "{got:#?}");
        assert!(!got[0].contains("tok-canary"));
        assert!(
            got[1].starts_with("sms replies: read again after "),
            "{got:#?}"
        );
    }

    #[test]
    fn numbers_are_masked_and_bodies_quoted_short() {
        assert_eq!(masked("+15550000199"), "…0199");
        assert_eq!(masked("12"), "…12");
        assert_eq!(quoted("a\nb   c"), "a b c");
        assert_eq!(quoted(&"x".repeat(50)), format!("{}...", "x".repeat(40)));
    }
}
