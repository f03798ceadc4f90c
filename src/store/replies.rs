//! SMS replies: every reply the agent has read (by the provider's message id, with what
//! came of it), so a restart never applies one twice; the instant replies count from
//! (the first poll's, kept); and the open SMS pages a contact's reply may acknowledge,
//! read from the outbox and the incidents (one file, one connection).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params, params_from_iter};

use super::{Db, StoreError};

/// The replies; clones share one connection.
#[derive(Debug, Clone)]
pub struct ReplyStore {
    db: Db,
}

/// A reply that was read, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandledReply {
    /// The provider's message id (`SM…`).
    pub sid: String,
    /// The contact whose phone sent it; `None`: an unknown number.
    pub contact: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// In words: `acknowledged inc-…`, `not an ACK`, `unknown code 1234`.
    pub outcome: String,
}

/// An SMS page the provider accepted for a contact, whose incident is still unresolved
/// and unacknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSmsPage {
    pub incident: String,
    pub contact: String,
    /// The first such page's acceptance.
    pub paged_at: DateTime<Utc>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

impl ReplyStore {
    pub fn open_in(state_dir: &std::path::Path) -> Result<ReplyStore, StoreError> {
        Ok(ReplyStore {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Since when replies count: `now` on the first call for this state directory, the
    /// same instant ever after.
    pub async fn since(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO sms_reply_cursor (id, since_ms) VALUES (1, ?1)",
                    params![ms(now)],
                )?;
                c.query_row(
                    "SELECT since_ms FROM sms_reply_cursor WHERE id = 1",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .map(at)
    }

    /// Which of `sids` were read before.
    pub async fn handled(&self, sids: Vec<String>) -> Result<BTreeSet<String>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare("SELECT 1 FROM sms_replies WHERE sid = ?1")?;
                let mut out = BTreeSet::new();
                for sid in sids {
                    if stmt.exists(params![sid])? {
                        out.insert(sid);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Records a reply as read (a second record of one id is a no-op).
    pub async fn record(&self, reply: HandledReply, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO sms_replies (sid, contact, sent_ms, outcome, handled_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        reply.sid,
                        reply.contact,
                        ms(reply.sent_at),
                        reply.outcome,
                        ms(now)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Forgets replies sent before `before` (they are too old to be applied anyway);
    /// how many.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "DELETE FROM sms_replies WHERE sent_ms < ?1",
                    params![ms(before)],
                )
            })
            .await
    }

    /// The SMS trigger and flapping pages the provider accepted for any of `contacts`
    /// whose incidents are unresolved and unacknowledged, one per incident and contact,
    /// oldest first.
    pub async fn open_sms_pages(
        &self,
        contacts: Vec<String>,
    ) -> Result<Vec<OpenSmsPage>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .with_conn(move |c| {
                let names = vec!["?"; contacts.len()].join(", ");
                let mut stmt = c.prepare(&format!(
                    "SELECT o.incident_id, o.contact, MIN(COALESCE(o.delivered_ms, o.created_ms)) AS paged
                     FROM outbox o JOIN incidents i ON i.id = o.incident_id
                     WHERE o.channel = 'sms' AND o.kind IN ('trigger', 'flapping')
                       AND o.state = 'delivered' AND o.contact IN ({names})
                       AND i.acked_ms IS NULL AND i.resolved_ms IS NULL
                     GROUP BY o.incident_id, o.contact
                     ORDER BY paged, o.incident_id"
                ))?;
                stmt.query_map(params_from_iter(contacts.iter()), |r| {
                    Ok(OpenSmsPage {
                        incident: r.get(0)?,
                        contact: r.get(1)?,
                        paged_at: at(r.get(2)?),
                    })
                })?
                .collect()
            })
            .await
    }
}

/// Migration 10: SMS replies read, and since when they count.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE sms_replies (
            sid TEXT PRIMARY KEY,
            contact TEXT,
            sent_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            handled_ms INTEGER NOT NULL
        );
        CREATE INDEX sms_replies_sent ON sms_replies (sent_ms);
        CREATE TABLE sms_reply_cursor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            since_ms INTEGER NOT NULL
        );",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NoticeKind, Severity};
    use crate::store::IncidentStore;
    use crate::store::outbox::{OutboxEntry, OutboxStore};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn the_first_poll_sets_since_and_a_reply_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = ReplyStore::open_in(dir.path()).unwrap();
        assert_eq!(s.since(t(10)).await.unwrap(), t(10));
        assert_eq!(s.since(t(99)).await.unwrap(), t(10), "kept");
        let reply = |sid: &str, at| HandledReply {
            sid: sid.into(),
            contact: Some("Maria Lopez".into()),
            sent_at: at,
            outcome: "not an ACK".into(),
        };
        s.record(reply("SM1", t(20)), t(21)).await.unwrap();
        s.record(reply("SM1", t(20)), t(22)).await.unwrap();
        s.record(reply("SM2", t(90_000)), t(90_001)).await.unwrap();
        let sids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s.handled(sids(&["SM1", "SM2", "SM3"])).await.unwrap(),
            BTreeSet::from(["SM1".to_string(), "SM2".to_string()])
        );
        // Reopened: still there.
        drop(s);
        let s = ReplyStore::open_in(dir.path()).unwrap();
        assert_eq!(s.since(t(500)).await.unwrap(), t(10));
        assert_eq!(s.prune(t(1000)).await.unwrap(), 1);
        assert_eq!(
            s.handled(sids(&["SM1", "SM2"])).await.unwrap(),
            BTreeSet::from(["SM2".to_string()])
        );
    }

    #[tokio::test]
    async fn open_sms_pages_are_the_accepted_ones_of_open_unacknowledged_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let (incidents, outbox) = (
            IncidentStore::open_in(dir.path()).unwrap(),
            OutboxStore::open_in(dir.path()).unwrap(),
        );
        for id in ["inc-a-1", "inc-b-2", "inc-c-3"] {
            incidents
                .save(
                    &crate::model::sample_open(id, t(0)),
                    "p",
                    Severity::P1,
                    "crm-to-dms",
                    None,
                )
                .await
                .unwrap();
        }
        let entry = |incident: &str, kind: NoticeKind, channel: &str, contact: &str| {
            let k = if kind == NoticeKind::Trigger {
                "trigger"
            } else {
                "resolve"
            };
            OutboxEntry {
                key: OutboxEntry::key_for(incident, k, channel, contact),
                incident_id: incident.into(),
                kind,
                channel: channel.into(),
                contact: contact.into(),
                notice: "{}".into(),
                fallback_from: None,
            }
        };
        let entries = vec![
            entry("inc-a-1", NoticeKind::Trigger, "sms", "Maria Lopez"),
            entry("inc-a-1", NoticeKind::Trigger, "email", "Dev Patel"),
            entry("inc-b-2", NoticeKind::Trigger, "sms", "Maria Lopez"),
            entry("inc-b-2", NoticeKind::Resolve, "sms", "Dev Patel"),
            entry("inc-c-3", NoticeKind::Trigger, "sms", "Dev Patel"),
        ];
        outbox.enqueue(entries.clone(), t(1)).await.unwrap();
        for (e, delivered) in
            entries
                .iter()
                .zip([Some(t(5)), Some(t(5)), Some(t(3)), Some(t(9)), None])
        {
            if let Some(at) = delivered {
                outbox.mark_delivered(&e.key, None, at, None).await.unwrap();
            }
        }
        let s = ReplyStore::open_in(dir.path()).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let page = |incident: &str, contact: &str, at| OpenSmsPage {
            incident: incident.into(),
            contact: contact.into(),
            paged_at: at,
        };
        assert_eq!(
            s.open_sms_pages(names(&["Maria Lopez"])).await.unwrap(),
            [
                page("inc-b-2", "Maria Lopez", t(3)),
                page("inc-a-1", "Maria Lopez", t(5))
            ]
        );
        // Dev's SMS page is still pending, his e-mail is not an SMS, a resolve not a page.
        assert!(
            s.open_sms_pages(names(&["Dev Patel"]))
                .await
                .unwrap()
                .is_empty()
        );
        incidents
            .acknowledge("inc-a-1", "Maria", t(7))
            .await
            .unwrap();
        incidents.resolve("inc-b-2", "Maria", t(8)).await.unwrap();
        assert!(
            s.open_sms_pages(names(&["Maria Lopez", "Dev Patel"]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(s.open_sms_pages(vec![]).await.unwrap().is_empty());
    }
}
