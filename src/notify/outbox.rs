//! Who gets which notification over which channel, and the delivery pass over the
//! outbox: send what is due, mark it delivered only on the provider's acceptance, retry
//! with backoff and jitter, and when a channel gives up on a person (rejected, or out of
//! attempts) fall back to the next channel that reaches them (SMS fails → e-mail).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Channel, Delivery, Notice, NoticeKind};
use crate::probe::{Contact, Severity};
use crate::store::StoreError;
use crate::store::outbox::{OutboxEntry, OutboxRow, OutboxStore};

/// Contacts per severity and the channels in order of preference.
#[derive(Debug, Clone)]
pub struct Router {
    pub contacts: Vec<Contact>,
    /// Severity → indexes into `contacts`.
    pub routes: BTreeMap<Severity, Vec<usize>>,
    /// Personal channels (email, sms) in order of preference, then the others.
    pub channels: Vec<Arc<dyn Channel>>,
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts on one channel before falling back to the next.
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 6,
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
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
}

fn entry(
    notice: &Notice,
    channel: &str,
    contact: &str,
    fallback_from: Option<String>,
) -> OutboxEntry {
    let kind = notice.kind.as_str();
    OutboxEntry {
        key: OutboxEntry::key_for(&notice.incident_id, kind, channel, contact),
        incident_id: notice.incident_id.clone(),
        kind: kind.to_string(),
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

    /// A trigger or flapping notice: each contact routed for `severity` over the first
    /// channel that reaches them, and each channel that is not per person once.
    pub fn plan(&self, notice: &Notice, severity: Severity) -> Vec<OutboxEntry> {
        let mut out = Vec::new();
        for &i in self.routes.get(&severity).into_iter().flatten() {
            let Some(person) = self.contacts.get(i) else {
                continue;
            };
            if let Some(ch) = self.channels.iter().find(|c| c.reaches(Some(person))) {
                out.push(entry(notice, ch.name(), &person.name, None));
            }
        }
        for ch in self.channels.iter().filter(|c| c.reaches(None)) {
            out.push(entry(notice, ch.name(), "-", None));
        }
        out
    }

    /// A resolve or acknowledge notice goes wherever the incident's pages went (delivered
    /// or still pending), one per channel and person.
    pub fn plan_follow_up(&self, notice: &Notice, paged: &[OutboxRow]) -> Vec<OutboxEntry> {
        let mut out: Vec<OutboxEntry> = Vec::new();
        for r in paged.iter().filter(|r| {
            (r.entry.kind == NoticeKind::Trigger.as_str()
                || r.entry.kind == NoticeKind::Flapping.as_str())
                && r.state != "failed"
        }) {
            let e = entry(notice, &r.entry.channel, &r.entry.contact, None);
            if !out.iter().any(|o| o.key == e.key) {
                out.push(e);
            }
        }
        out
    }

    /// The next channel after the failed one that reaches the same person.
    pub fn fallback(&self, failed: &OutboxRow, notice: &Notice) -> Option<OutboxEntry> {
        let person = self.contact(&failed.entry.contact)?;
        let after = self
            .channels
            .iter()
            .position(|c| c.name() == failed.entry.channel)?;
        let next = self.channels[after + 1..]
            .iter()
            .find(|c| c.reaches(Some(person)))?;
        Some(entry(
            notice,
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
    for row in store.due(now, 100).await? {
        let key = row.entry.key.clone();
        let Ok(notice) = serde_json::from_str::<Notice>(&row.entry.notice) else {
            store.mark_failed(&key, "unreadable notice").await?;
            pass.failed.push(key);
            continue;
        };
        let Some(channel) = router.channel(&row.entry.channel) else {
            store
                .mark_failed(&key, "channel no longer configured")
                .await?;
            pass.failed.push(key);
            continue;
        };
        let contact = router.contact(&row.entry.contact);
        let result = channel.send(&notice, contact).await;
        let give_up = match result {
            Delivery::Accepted { provider_id } => {
                store.mark_delivered(&key, provider_id, now).await?;
                pass.delivered.push(key);
                continue;
            }
            Delivery::Retry { reason, after } if row.attempts + 1 < policy.max_attempts => {
                let wait = after.unwrap_or_else(|| backoff(policy, row.attempts, jitter()));
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                store.mark_retry(&key, &reason, next).await?;
                pass.retried.push(key);
                continue;
            }
            Delivery::Retry { reason, .. } => {
                format!("gave up after {} attempts: {reason}", row.attempts + 1)
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
    Ok(pass)
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
        let dir = tempfile::tempdir().unwrap();
        let store = OutboxStore::open_in(dir.path()).unwrap();
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
        let mut routes = BTreeMap::new();
        routes.insert(Severity::P2, vec![0, 1]);
        let router = Router {
            contacts: vec![person("Maria", true), person("Joe", false)],
            routes,
            channels: vec![sms.clone(), email.clone(), hook.clone()],
        };
        let notice = sample_notice(NoticeKind::Trigger);
        let plan = router.plan(&notice, Severity::P2);
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
        let follow = router.plan_follow_up(&resolve, &rows);
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
    async fn a_channel_that_keeps_failing_gives_up_after_max_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutboxStore::open_in(dir.path()).unwrap();
        let retry = || Delivery::Retry {
            reason: "connection refused".into(),
            after: Some(Duration::from_secs(1)),
        };
        let email = Scripted::new("email", true, (0..10).map(|_| retry()).collect());
        let mut routes = BTreeMap::new();
        routes.insert(Severity::P1, vec![0]);
        let router = Router {
            contacts: vec![person("Joe", false)],
            routes,
            channels: vec![email.clone()],
        };
        let policy = Policy {
            max_attempts: 3,
            ..Policy::default()
        };
        store
            .enqueue(
                router.plan(&sample_notice(NoticeKind::Trigger), Severity::P1),
                t(0),
            )
            .await
            .unwrap();
        let mut j = || 0.0;
        for s in 0..5 {
            deliver_due(&store, &router, &policy, t(s * 2), &mut j)
                .await
                .unwrap();
        }
        assert_eq!(email.sent.lock().unwrap().len(), 3);
        let rows = store
            .for_incident("inc-appointment-to-ro-to-survey-1790000000000")
            .await
            .unwrap();
        assert_eq!(rows[0].state, "failed");
        assert!(
            rows[0]
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("gave up after 3 attempts")
        );
    }
}
