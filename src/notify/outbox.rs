//! Who gets which notification over which channel, and the delivery pass over the
//! outbox: send what is due, mark it delivered only on the provider's acceptance, retry
//! with backoff and jitter, and when a channel gives up on a person (rejected, or out of
//! attempts) fall back to the next channel that reaches them (SMS fails → e-mail).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Channel, Confirmation, Delivery, Notice, NoticeKind};
use crate::model::{Contact, Severity};
use crate::store::StoreError;
use crate::store::outbox::{DeliveryState, OutboxEntry, OutboxRow, OutboxStore};

/// The contacts, the channels in order of preference, and the personal channels each
/// severity may use.
#[derive(Debug, Clone)]
pub struct Router {
    pub contacts: Vec<Contact>,
    /// Personal channels (email, sms) in order of preference, then the others.
    pub channels: Vec<Arc<dyn Channel>>,
    /// Severity → the personal channels its pages may use, in order (absent or empty:
    /// every channel, in the order above).
    pub severity_channels: BTreeMap<Severity, Vec<String>>,
}

/// Retry policy, and how delivery receipts are polled.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts on one channel before falling back to the next.
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// First delivery-status poll after acceptance; doubles each poll up to `max`.
    pub confirm_first: Duration,
    /// Polls before giving up on a receipt (`unconfirmed`; the page stays delivered).
    pub max_polls: u32,
    /// Longest one attempt may take, whatever the channel's own timeouts do (a server
    /// that accepts the connection and never answers must not hold pages back).
    pub attempt_deadline: Duration,
    /// A page with no channel left to fall back to (PagerDuty, a webhook, a person's last
    /// channel) is not given up after `max_attempts`: it is retried every `max` until it
    /// is this old. The WAN to a cloud provider can be down for hours; the page must
    /// arrive when it returns.
    pub hold_for: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 6,
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            // 10 s, 20 s, 40 s … 5 min: ten polls cover about half an hour.
            confirm_first: Duration::from_secs(10),
            max_polls: 10,
            attempt_deadline: Duration::from_secs(120),
            hold_for: Duration::from_secs(24 * 3600),
        }
    }
}

/// Wait before status poll `poll + 1`.
fn poll_delay(policy: &Policy, poll: u32) -> chrono::Duration {
    let d = policy
        .confirm_first
        .saturating_mul(2u32.saturating_pow(poll.min(20)))
        .min(policy.max);
    chrono::Duration::from_std(d).unwrap_or_default()
}

/// Delay before attempt `attempt + 1`: `base × 2^attempt`, at most `max`, then ±20 %
/// by `jitter` in [0, 1) so retries from many incidents do not arrive together.
pub fn backoff(policy: &Policy, attempt: u32, jitter: f64) -> Duration {
    let exp = policy
        .base
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(policy.max);
    exp.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    pub delivered: Vec<String>,
    pub retried: Vec<String>,
    pub failed: Vec<String>,
    /// (failed key, replacement key).
    pub fell_back: Vec<(String, String)>,
    /// Delivery to the handset confirmed.
    pub confirmed: Vec<String>,
    /// Accepted, then not delivered by the carrier (these fell back too).
    pub undelivered: Vec<(String, String)>,
}

/// The kind part of a key: `resolve` the first time, `resolve#2` after the incident (or
/// its group) reopened and resolved again, so each round is its own notification while
/// a repeat of the same round stays deduplicated.
pub fn round_kind(kind: NoticeKind, round: u32) -> String {
    match round {
        0 => kind.as_str().to_string(),
        n => format!("{}#{}", kind.as_str(), n + 1),
    }
}

fn entry(
    notice: &Notice,
    kind_part: &str,
    channel: &str,
    contact: &str,
    fallback_from: Option<String>,
) -> OutboxEntry {
    OutboxEntry {
        key: OutboxEntry::key_for(&notice.incident_id, kind_part, channel, contact),
        incident_id: notice.incident_id.clone(),
        kind: notice.kind,
        channel: channel.to_string(),
        contact: contact.to_string(),
        notice: serde_json::to_string(notice).unwrap_or_default(),
        fallback_from,
    }
}

impl Router {
    fn channel(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.channels.iter().find(|c| c.name() == name)
    }

    fn contact(&self, name: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.name == name)
    }

    /// The personal channels a page of `severity` may use, in order.
    fn personal(&self, severity: Option<Severity>) -> Vec<&Arc<dyn Channel>> {
        let only = severity
            .and_then(|s| self.severity_channels.get(&s))
            .filter(|c| !c.is_empty());
        match only {
            Some(names) => names.iter().filter_map(|n| self.channel(n)).collect(),
            None => self.channels.iter().collect(),
        }
    }

    /// A page (trigger or flapping notice) under the key part `kind_part`: each of
    /// `contacts` over the first channel of the severity's that reaches them, and, when
    /// `shared`, each channel that is not per person once.
    pub fn plan_page(
        &self,
        notice: &Notice,
        kind_part: &str,
        contacts: &[String],
        shared: bool,
    ) -> Vec<OutboxEntry> {
        let severity = Severity::parse(&notice.severity);
        let personal = self.personal(severity);
        let mut out = Vec::new();
        for name in contacts {
            let Some(person) = self.contact(name) else {
                continue;
            };
            if let Some(ch) = personal.iter().find(|c| c.reaches(Some(person))) {
                out.push(entry(notice, kind_part, ch.name(), &person.name, None));
            }
        }
        if shared {
            for ch in self.channels.iter().filter(|c| c.reaches(None)) {
                out.push(entry(notice, kind_part, ch.name(), "-", None));
            }
        }
        out
    }

    /// A resolve notice goes wherever the incident's pages went (delivered or still
    /// pending), one per channel and person; an acknowledge notice only to the channels
    /// that track incidents (PagerDuty, webhooks), not to people.
    pub fn plan_follow_up(
        &self,
        notice: &Notice,
        paged: &[OutboxRow],
        round: u32,
    ) -> Vec<OutboxEntry> {
        let kind_part = round_kind(notice.kind, round);
        let mut out: Vec<OutboxEntry> = Vec::new();
        for r in paged.iter().filter(|r| {
            matches!(r.entry.kind, NoticeKind::Trigger | NoticeKind::Flapping)
                && r.state != DeliveryState::Failed
        }) {
            if notice.kind == NoticeKind::Acknowledge && r.entry.contact != "-" {
                continue;
            }
            let e = entry(notice, &kind_part, &r.entry.channel, &r.entry.contact, None);
            if !out.iter().any(|o| o.key == e.key) {
                out.push(e);
            }
        }
        out
    }

    /// The next channel after the failed one that reaches the same person.
    pub fn fallback(&self, failed: &OutboxRow, notice: &Notice) -> Option<OutboxEntry> {
        let person = self.contact(&failed.entry.contact)?;
        let personal = self.personal(Severity::parse(&notice.severity));
        let after = personal
            .iter()
            .position(|c| c.name() == failed.entry.channel)?;
        let next = personal[after + 1..]
            .iter()
            .find(|c| c.reaches(Some(person)))?;
        // Same round as the entry it replaces.
        let (kind_part, _) = OutboxEntry::key_kind_and_channel(&failed.entry.key)?;
        Some(entry(
            notice,
            kind_part,
            next.name(),
            &person.name,
            Some(failed.entry.key.clone()),
        ))
    }
}

/// Sends every due entry once. `jitter` gives a value in [0, 1) per retry.
pub async fn deliver_due(
    store: &OutboxStore,
    router: &Router,
    policy: &Policy,
    now: DateTime<Utc>,
    jitter: &mut (dyn FnMut() -> f64 + Send),
) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    // Every due entry is attempted at once (a slow channel or person does not hold the
    // others back); the outcomes are recorded one by one.
    let rows = store.due(now, 100).await?;
    let attempts =
        futures_util::future::join_all(rows.iter().map(|r| attempt(router, policy, r))).await;
    for (row, attempt) in rows.into_iter().zip(attempts) {
        let key = row.entry.key.clone();
        let (notice, result, confirms) = match attempt {
            Attempt::Sent {
                notice,
                delivery,
                confirms,
            } => (notice, delivery, confirms),
            Attempt::Impossible(why) => {
                store.mark_failed(&key, why).await?;
                pass.failed.push(key);
                continue;
            }
        };
        let give_up = match result {
            Delivery::Accepted { provider_id } => {
                let confirm_at =
                    (confirms && provider_id.is_some()).then(|| now + poll_delay(policy, 0));
                store
                    .mark_delivered(&key, provider_id, now, confirm_at)
                    .await?;
                pass.delivered.push(key);
                continue;
            }
            Delivery::Retry { reason, after } => {
                let exhausted = row.attempts + 1 >= policy.max_attempts;
                let age = (now - row.created_at).to_std().unwrap_or_default();
                let held =
                    exhausted && age < policy.hold_for && router.fallback(&row, &notice).is_none();
                if !exhausted || held {
                    let wait = after.unwrap_or_else(|| backoff(policy, row.attempts, jitter()));
                    let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    store.mark_retry(&key, &reason, next).await?;
                    pass.retried.push(key);
                    continue;
                }
                if age >= policy.hold_for {
                    format!(
                        "gave up after {} attempts over {}: {reason}",
                        row.attempts + 1,
                        humantime::format_duration(Duration::from_secs(age.as_secs()))
                    )
                } else {
                    format!("gave up after {} attempts: {reason}", row.attempts + 1)
                }
            }
            Delivery::Rejected { reason } => reason,
        };
        store.mark_failed(&key, &give_up).await?;
        if let Some(next) = router.fallback(&row, &notice) {
            let next_key = next.key.clone();
            store.enqueue(vec![next], now).await?;
            pass.fell_back.push((key.clone(), next_key));
        }
        pass.failed.push(key);
    }
    confirm_due(store, router, policy, now, &mut pass).await?;
    Ok(pass)
}

/// One delivery attempt's result.
enum Attempt {
    Sent {
        notice: Box<Notice>,
        delivery: Delivery,
        /// The channel reports delivery later (poll its receipt).
        confirms: bool,
    },
    /// Nothing can be sent for this entry.
    Impossible(&'static str),
}

/// Sends one entry, within the policy's attempt deadline.
async fn attempt(router: &Router, policy: &Policy, row: &OutboxRow) -> Attempt {
    let Ok(notice) = serde_json::from_str::<Notice>(&row.entry.notice) else {
        return Attempt::Impossible("unreadable notice");
    };
    let Some(channel) = router.channel(&row.entry.channel) else {
        return Attempt::Impossible("channel no longer configured");
    };
    let contact = router.contact(&row.entry.contact);
    let delivery = tokio::time::timeout(policy.attempt_deadline, channel.send(&notice, contact))
        .await
        .unwrap_or_else(|_| Delivery::Retry {
            reason: format!(
                "no answer within {}",
                humantime::format_duration(policy.attempt_deadline)
            ),
            after: None,
        });
    Attempt::Sent {
        notice: Box::new(notice),
        delivery,
        confirms: channel.confirms(),
    }
}

/// Polls the delivery status of accepted messages that are due: confirmed, still on its
/// way (poll again later, or stop after `max_polls`), or undelivered (fall back to the
/// next channel that reaches the person, like a rejection).
async fn confirm_due(
    store: &OutboxStore,
    router: &Router,
    policy: &Policy,
    now: DateTime<Utc>,
    pass: &mut Pass,
) -> Result<(), StoreError> {
    for row in store.confirming(now, 100).await? {
        let key = row.entry.key.clone();
        let (Some(channel), Some(id)) = (
            router.channel(&row.entry.channel),
            row.provider_id.as_deref(),
        ) else {
            store.mark_polled(&key, None).await?;
            continue;
        };
        match channel.confirm(id).await {
            Confirmation::Delivered => {
                store.mark_confirmed(&key).await?;
                pass.confirmed.push(key);
            }
            Confirmation::Pending { .. } => {
                let next = (row.polls + 1 < policy.max_polls)
                    .then(|| now + poll_delay(policy, row.polls + 1));
                store.mark_polled(&key, next).await?;
            }
            Confirmation::Undelivered { reason } => {
                store.mark_undelivered(&key, &reason).await?;
                let Ok(notice) = serde_json::from_str::<Notice>(&row.entry.notice) else {
                    continue;
                };
                let next_key = match router.fallback(&row, &notice) {
                    Some(next) => {
                        let k = next.key.clone();
                        store.enqueue(vec![next], now).await?;
                        pass.fell_back.push((key.clone(), k.clone()));
                        k
                    }
                    None => String::new(),
                };
                pass.undelivered.push((key, next_key));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{SendFuture, sample_notice};
    use std::sync::Mutex;

    /// A channel that answers from a script and records what it was asked to send.
    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        personal: bool,
        answers: Mutex<Vec<Delivery>>,
        sent: Mutex<Vec<(String, String)>>,
    }

    impl Scripted {
        fn new(name: &'static str, personal: bool, answers: Vec<Delivery>) -> Arc<Scripted> {
            Arc::new(Scripted {
                name,
                personal,
                answers: Mutex::new(answers),
                sent: Mutex::new(Vec::new()),
            })
        }
    }

    impl Channel for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }
        fn reaches(&self, contact: Option<&Contact>) -> bool {
            match (self.personal, contact) {
                (false, None) => true,
                (true, Some(c)) => match self.name {
                    "sms" => c.phone.is_some(),
                    _ => c.email.is_some(),
                },
                _ => false,
            }
        }
        fn send<'a>(&'a self, n: &'a Notice, c: Option<&'a Contact>) -> SendFuture<'a> {
            self.sent.lock().unwrap().push((
                n.kind.as_str().to_string(),
                c.map_or("-".into(), |c| c.name.clone()),
            ));
            let answer = {
                let mut a = self.answers.lock().unwrap();
                if a.is_empty() {
                    Delivery::Accepted { provider_id: None }
                } else {
                    a.remove(0)
                }
            };
            Box::pin(async move { answer })
        }
    }

    fn person(name: &str, phone: bool) -> Contact {
        Contact {
            name: name.into(),
            email: Some(format!("{}@dealer.example", name.to_lowercase())),
            phone: phone.then(|| "+14165550123".into()),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    /// A fresh outbox in a temporary directory (kept alive by the returned guard).
    fn open_store() -> (tempfile::TempDir, OutboxStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = OutboxStore::open_in(dir.path()).unwrap();
        (dir, store)
    }

    /// A router over `contacts` and `channels`, every channel for every severity.
    fn router_to(contacts: Vec<Contact>, channels: Vec<Arc<dyn Channel>>) -> Router {
        Router {
            contacts,
            channels,
            severity_channels: BTreeMap::new(),
        }
    }

    /// The first page of `notice` to every contact and the shared channels.
    fn plan_all(router: &Router, notice: &Notice) -> Vec<OutboxEntry> {
        let names: Vec<String> = router.contacts.iter().map(|c| c.name.clone()).collect();
        router.plan_page(notice, notice.kind.as_str(), &names, true)
    }

    /// Queues the pages of a P1 trigger notice at t(0) and returns the notice.
    async fn page_p1(store: &OutboxStore, router: &Router) -> Notice {
        let notice = sample_notice(NoticeKind::Trigger);
        store
            .enqueue(plan_all(router, &notice), t(0))
            .await
            .unwrap();
        notice
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let p = Policy::default();
        assert_eq!(backoff(&p, 0, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_secs(40));
        assert_eq!(backoff(&p, 30, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(&p, 0, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(&p, 0, 1.0), Duration::from_secs(6));
    }

    #[tokio::test]
    async fn sms_fails_then_email_takes_over_and_resolve_follows_the_pages() {
        let (_dir, store) = open_store();
        let sms = Scripted::new(
            "sms",
            true,
            vec![Delivery::Rejected {
                reason: "21610 unsubscribed".into(),
            }],
        );
        let email = Scripted::new(
            "email",
            true,
            vec![Delivery::Retry {
                reason: "451".into(),
                after: None,
            }],
        );
        let hook = Scripted::new("webhook", false, vec![]);
        let router = router_to(
            vec![person("Maria", true), person("Joe", false)],
            vec![sms.clone(), email.clone(), hook.clone()],
        );
        let notice = sample_notice(NoticeKind::Trigger);
        let plan = plan_all(&router, &notice);
        let keys: Vec<&str> = plan.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "inc-appointment-to-ro-to-survey-1790000000000/trigger/sms/Maria",
                "inc-appointment-to-ro-to-survey-1790000000000/trigger/email/Joe",
                "inc-appointment-to-ro-to-survey-1790000000000/trigger/webhook/-",
            ]
        );
        assert_eq!(store.enqueue(plan.clone(), t(0)).await.unwrap(), 3);
        assert_eq!(store.enqueue(plan, t(0)).await.unwrap(), 0, "deduplicated");

        let mut j = || 0.5;
        let p1 = deliver_due(&store, &router, &Policy::default(), t(0), &mut j)
            .await
            .unwrap();
        // SMS to Maria rejected (STOP) → e-mail to Maria queued; Joe's e-mail deferred.
        assert_eq!(p1.delivered.len(), 1, "{p1:?}"); // webhook
        assert_eq!(p1.retried.len(), 1, "{p1:?}");
        assert_eq!(p1.fell_back.len(), 1, "{p1:?}");
        assert!(p1.fell_back[0].1.ends_with("/trigger/email/Maria"));
        let p2 = deliver_due(&store, &router, &Policy::default(), t(1), &mut j)
            .await
            .unwrap();
        assert_eq!(p2.delivered.len(), 1, "Maria's fallback e-mail: {p2:?}");
        let p3 = deliver_due(&store, &router, &Policy::default(), t(10), &mut j)
            .await
            .unwrap();
        assert_eq!(
            p3.delivered.len(),
            1,
            "Joe's e-mail after its backoff: {p3:?}"
        );
        let rows = store.for_incident(&notice.incident_id).await.unwrap();
        let states: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.entry.key.rsplit_once("/trigger/").unwrap().1,
                    r.state.as_str(),
                )
            })
            .collect();
        assert!(states.contains(&("sms/Maria", "failed")), "{states:?}");
        assert!(states.contains(&("email/Maria", "delivered")), "{states:?}");
        assert!(states.contains(&("email/Joe", "delivered")), "{states:?}");

        // The resolve notice goes where pages went: not to the failed SMS.
        let resolve = sample_notice(NoticeKind::Resolve);
        let follow = router.plan_follow_up(&resolve, &rows, 0);
        let mut channels: Vec<(&str, &str)> = follow
            .iter()
            .map(|e| (e.channel.as_str(), e.contact.as_str()))
            .collect();
        channels.sort();
        assert_eq!(
            channels,
            vec![("email", "Joe"), ("email", "Maria"), ("webhook", "-")]
        );
    }

    #[tokio::test]
    async fn a_page_with_no_channel_to_fall_back_to_is_held_until_hold_for_then_given_up() {
        let (_dir, store) = open_store();
        let retry = || Delivery::Retry {
            reason: "connection refused".into(),
            after: Some(Duration::from_secs(1)),
        };
        let email = Scripted::new("email", true, (0..10).map(|_| retry()).collect());
        let router = router_to(vec![person("Joe", false)], vec![email.clone()]);
        // Three attempts, then (e-mail being Joe's only channel) held: retried until the
        // page is 10 s old, as a WAN outage needs, not dropped after the third.
        let policy = Policy {
            max_attempts: 3,
            hold_for: Duration::from_secs(10),
            ..Policy::default()
        };
        page_p1(&store, &router).await;
        let mut j = || 0.0;
        for s in 0..7 {
            deliver_due(&store, &router, &policy, t(s * 2), &mut j)
                .await
                .unwrap();
        }
        assert_eq!(
            email.sent.lock().unwrap().len(),
            6,
            "at 0, 2, 4, 6, 8 and 10 s"
        );
        let rows = store
            .for_incident("inc-appointment-to-ro-to-survey-1790000000000")
            .await
            .unwrap();
        assert_eq!(rows[0].state, DeliveryState::Failed);
        assert_eq!(
            rows[0].last_error.as_deref(),
            Some("gave up after 6 attempts over 10s: connection refused")
        );
    }

    /// An SMS provider: `Silent` accepts the connection and never answers;
    /// `Receipts` accepts everything and answers status polls from a script.
    #[derive(Debug)]
    enum FakeSms {
        Silent,
        Receipts(Mutex<Vec<Confirmation>>),
    }

    impl Channel for FakeSms {
        fn name(&self) -> &'static str {
            "sms"
        }
        fn reaches(&self, c: Option<&Contact>) -> bool {
            c.is_some_and(|c| c.phone.is_some())
        }
        fn send<'a>(&'a self, _: &'a Notice, _: Option<&'a Contact>) -> SendFuture<'a> {
            match self {
                FakeSms::Silent => Box::pin(std::future::pending()),
                FakeSms::Receipts(_) => Box::pin(async {
                    Delivery::Accepted {
                        provider_id: Some("SM1".into()),
                    }
                }),
            }
        }
        fn confirms(&self) -> bool {
            matches!(self, FakeSms::Receipts(_))
        }
        fn confirm<'a>(&'a self, id: &'a str) -> crate::notify::ConfirmFuture<'a> {
            assert_eq!(id, "SM1");
            let FakeSms::Receipts(script) = self else {
                panic!("a silent provider is never polled");
            };
            let next = script.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[tokio::test]
    async fn a_channel_that_never_answers_is_cut_off_and_holds_no_other_page_back() {
        let (_dir, store) = open_store();
        let email = Scripted::new("email", true, vec![]);
        let router = router_to(
            vec![person("Maria", true), person("Joe", false)],
            vec![Arc::new(FakeSms::Silent), email.clone()],
        );
        let policy = Policy {
            attempt_deadline: Duration::from_millis(50),
            ..Policy::default()
        };
        page_p1(&store, &router).await;
        let mut j = || 0.5;
        let pass = deliver_due(&store, &router, &policy, t(0), &mut j)
            .await
            .unwrap();
        assert_eq!(pass.delivered.len(), 1, "Joe's e-mail: {pass:?}");
        assert_eq!(pass.retried.len(), 1, "Maria's SMS: {pass:?}");
        let rows = store.due(t(3600), 10).await.unwrap();
        assert_eq!(rows[0].last_error.as_deref(), Some("no answer within 50ms"));
    }

    #[tokio::test]
    async fn sms_receipts_are_polled_and_an_undelivered_page_falls_back_to_email() {
        let pending = || Confirmation::Pending {
            status: "sent to the carrier".into(),
        };
        for (script, expect) in [
            (vec![pending(), Confirmation::Delivered], "handset"),
            (
                vec![
                    pending(),
                    Confirmation::Undelivered {
                        reason: "the carrier could not deliver it (error 30003)".into(),
                    },
                ],
                "undelivered",
            ),
            (vec![pending(), pending(), pending()], "unconfirmed"),
        ] {
            let (_dir, store) = open_store();
            let sms = Arc::new(FakeSms::Receipts(Mutex::new(script)));
            let email = Scripted::new("email", true, vec![]);
            let router = router_to(vec![person("Maria", true)], vec![sms, email.clone()]);
            let policy = Policy {
                max_polls: 3,
                ..Policy::default()
            };
            let notice = page_p1(&store, &router).await;
            let mut j = || 0.5;
            let p = deliver_due(&store, &router, &policy, t(0), &mut j)
                .await
                .unwrap();
            assert_eq!(p.delivered.len(), 1);
            // Polled at +10 s, then +20 s later (+30 s), then +40 s later (+70 s).
            assert_eq!(store.next_due().await.unwrap(), Some(t(10)));
            let early = deliver_due(&store, &router, &policy, t(9), &mut j)
                .await
                .unwrap();
            assert_eq!(early, Pass::default(), "not due yet");
            let mut passes = Vec::new();
            for at in [10, 30, 70, 71] {
                passes.push(
                    deliver_due(&store, &router, &policy, t(at), &mut j)
                        .await
                        .unwrap(),
                );
            }
            let rows = store.for_incident(&notice.incident_id).await.unwrap();
            let sms_row = rows.iter().find(|r| r.entry.channel == "sms").unwrap();
            assert_eq!(
                sms_row.confirm.map(|c| c.as_str()),
                Some(expect),
                "{rows:?}"
            );
            let emails = email.sent.lock().unwrap().len();
            match expect {
                "handset" => {
                    assert_eq!(passes[1].confirmed.len(), 1);
                    assert_eq!((sms_row.state.as_str(), sms_row.polls), ("delivered", 2));
                    assert_eq!(emails, 0);
                }
                "undelivered" => {
                    assert_eq!(sms_row.state, DeliveryState::Failed);
                    assert!(sms_row.last_error.as_deref().unwrap().contains("30003"));
                    assert_eq!(passes[1].undelivered.len(), 1, "{passes:?}");
                    // The fallback e-mail went out in the next pass.
                    assert_eq!(passes[2].delivered.len(), 1, "{passes:?}");
                    assert_eq!(emails, 1);
                    assert_eq!(sms_row.polls, 2);
                }
                _ => {
                    // Three polls without a receipt: stop asking; the page stays
                    // delivered (the provider accepted it), nothing falls back.
                    assert_eq!((sms_row.state.as_str(), sms_row.polls), ("delivered", 3));
                    assert_eq!(emails, 0);
                    assert_eq!(store.next_due().await.unwrap(), None);
                }
            }
        }
    }
}
