//! The notification outbox: every notification is written here before it is sent, with a
//! stable key per incident, kind, channel and contact (a second enqueue of the same key
//! is a no-op: deduplication), and marked delivered only when the provider accepted it.
//! A restart finds pending rows and sends them: nothing is lost, at most one duplicate
//! (when the process dies between the provider's acceptance and the mark).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Db, StoreError, parsed, parsed_opt};
use crate::model::{NoticeKind, stored_as_text};

/// The outbox; clones share one connection.
#[derive(Debug, Clone)]
pub struct OutboxStore {
    db: Db,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// `<incident>/<kind>/<channel>/<contact or ->`.
    pub key: String,
    pub incident_id: String,
    pub kind: NoticeKind,
    pub channel: String,
    /// Contact name; `-` for channels that are not per person (webhook, PagerDuty).
    pub contact: String,
    /// The `Notice` as JSON.
    pub notice: String,
    /// The key of the entry this one replaces after that channel gave up.
    pub fallback_from: Option<String>,
}

/// An entry with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub entry: OutboxEntry,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// For channels that report delivery to the handset (SMS); `None`: the provider's
    /// acceptance is all there is.
    pub confirm: Option<Confirm>,
    /// Status polls so far.
    pub polls: u32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// Where an entry's delivery stands; stored as `pending`, `delivered` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not sent yet, or to be retried.
    Pending,
    /// The provider accepted it.
    Delivered,
    /// The channel gave up (rejected, out of attempts, or undelivered by the carrier).
    Failed,
}

/// Delivery to the handset, for channels that report it; stored as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirm {
    /// The status is being polled.
    Pending,
    /// The handset has it.
    Handset,
    /// The carrier gave up: the entry failed and fell back.
    Undelivered,
    /// No receipt before polling stopped (the entry stays delivered).
    Unconfirmed,
}

stored_as_text!(DeliveryState, "delivery state",
    Pending => "pending", Delivered => "delivered", Failed => "failed");
stored_as_text!(Confirm, "delivery confirmation",
    Pending => "pending", Handset => "handset", Undelivered => "undelivered",
    Unconfirmed => "unconfirmed");

impl OutboxEntry {
    pub fn key_for(incident: &str, kind: &str, channel: &str, contact: &str) -> String {
        format!("{incident}/{kind}/{channel}/{contact}")
    }

    /// A key's kind part (`resolve`, or `resolve#2` for a later round) and channel; the
    /// incident id never holds a `/`, the contact name may.
    pub fn key_kind_and_channel(key: &str) -> Option<(&str, &str)> {
        let mut parts = key.splitn(4, '/').skip(1);
        Some((parts.next()?, parts.next()?))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let at = |ms: Option<i64>| ms.and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(OutboxRow {
        entry: OutboxEntry {
            key: r.get(0)?,
            incident_id: r.get(1)?,
            kind: parsed(r, 2)?,
            channel: r.get(3)?,
            contact: r.get(4)?,
            notice: r.get(5)?,
            fallback_from: r.get(6)?,
        },
        state: parsed(r, 7)?,
        attempts: r.get::<_, i64>(8)? as u32,
        next_attempt_at: at(Some(r.get(9)?)).unwrap_or_default(),
        last_error: r.get(10)?,
        provider_id: r.get(11)?,
        delivered_at: at(r.get(12)?),
        confirm: parsed_opt(r, 13)?,
        polls: r.get::<_, i64>(14)? as u32,
        created_at: at(Some(r.get(15)?)).unwrap_or_default(),
    })
}

const COLUMNS: &str = "key, incident_id, kind, channel, contact, notice, fallback_from, state, attempts, next_attempt_ms, last_error, provider_id, delivered_ms, confirm, polls, created_ms";

impl OutboxStore {
    pub fn open_in(state_dir: &std::path::Path) -> Result<OutboxStore, StoreError> {
        Ok(OutboxStore {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Writes entries (one transaction) due at `now`; keys already present are left as
    /// they are. Returns how many were new.
    pub async fn enqueue(
        &self,
        entries: Vec<OutboxEntry>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.db
            .with_conn(move |c| {
                let tx = c.unchecked_transaction()?;
                let mut n = 0;
                for e in &entries {
                    n += tx.execute(
                        "INSERT OR IGNORE INTO outbox (key, incident_id, kind, channel, contact, notice, fallback_from, state, attempts, next_attempt_ms, created_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8)",
                        params![e.key, e.incident_id, e.kind.as_str(), e.channel, e.contact, e.notice, e.fallback_from, now.timestamp_millis()],
                    )?;
                }
                tx.commit()?;
                Ok(n)
            })
            .await
    }

    /// Pending entries due by `now`, oldest first, each after the earlier pending ones of
    /// its incident, channel and recipient.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // A notice waits for the earlier ones of its incident to the same channel and
        // recipient: PagerDuty drops a resolve for a trigger it has not seen, and then
        // the late trigger opens an incident nobody resolves.
        let due = "state = 'pending' AND next_attempt_ms <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                 WHERE earlier.state = 'pending' \
                 AND earlier.incident_id = outbox.incident_id \
                 AND earlier.channel = outbox.channel \
                 AND earlier.contact = outbox.contact \
                 AND (earlier.created_ms < outbox.created_ms \
                      OR (earlier.created_ms = outbox.created_ms AND earlier.rowid < outbox.rowid))) \
             ORDER BY next_attempt_ms, created_ms";
        self.select_until(due, now, limit).await
    }

    /// At most `limit` rows `WHERE {clause}`, where `clause` reads `now` as ?1 and may
    /// end in an `ORDER BY`.
    async fn select_until(
        &self,
        clause: &'static str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE {clause} LIMIT ?2"
                ))?;
                stmt.query_map(params![now.timestamp_millis(), limit as i64], row)?
                    .collect()
            })
            .await
    }

    /// Pending entries (not delivered, not given up): how many, and when the oldest was
    /// queued. The agent's self-check reads it to tell a stuck outbox.
    pub async fn pending_age(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.db
            .with_conn(|c| {
                c.query_row(
                    "SELECT count(*), MIN(created_ms) FROM outbox WHERE state = 'pending'",
                    [],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?)),
                )
            })
            .await
            .map(|(n, ms)| (n, ms.and_then(DateTime::<Utc>::from_timestamp_millis)))
    }

    /// The instant the next pending entry is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.db
            .with_conn(|c| {
                c.query_row(
                    "SELECT MIN(t) FROM (
                         SELECT MIN(next_attempt_ms) AS t FROM outbox WHERE state = 'pending'
                         UNION ALL
                         SELECT MIN(confirm_ms) FROM outbox WHERE confirm = 'pending')",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )
            })
            .await
            .map(|ms| ms.and_then(DateTime::<Utc>::from_timestamp_millis))
    }

    /// Every entry of an incident, oldest first.
    pub async fn for_incident(&self, incident: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let incident = incident.to_string();
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE incident_id = ?1 ORDER BY created_ms, key"
                ))?;
                stmt.query_map(params![incident], row)?.collect()
            })
            .await
    }

    /// Every entry of these incidents (a page group), oldest first.
    pub async fn for_incidents(&self, ids: &[String]) -> Result<Vec<OutboxRow>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.for_incident(id).await?);
        }
        Ok(out)
    }

    /// Runs one `UPDATE … WHERE key = ?1` with `key` as ?1 and `rest` as ?2…; how many
    /// rows changed.
    async fn update(
        &self,
        sql: &'static str,
        key: &str,
        rest: Vec<rusqlite::types::Value>,
    ) -> Result<usize, StoreError> {
        let mut values = vec![rusqlite::types::Value::Text(key.to_string())];
        values.extend(rest);
        self.db
            .with_conn(move |c| c.execute(sql, rusqlite::params_from_iter(values)))
            .await
    }

    /// Replaces the notice of an entry that has not been sent yet (an incident joined
    /// its group while the page waited); returns whether it was still pending.
    pub async fn amend_pending(&self, key: &str, notice: String) -> Result<bool, StoreError> {
        let sql = "UPDATE outbox SET notice = ?2 WHERE key = ?1 AND state = 'pending'";
        Ok(self.update(sql, key, vec![notice.into()]).await? == 1)
    }

    /// The provider accepted it. With `confirm_at`, its delivery to the handset is
    /// polled from then on (`confirming`).
    pub async fn mark_delivered(
        &self,
        key: &str,
        provider_id: Option<String>,
        now: DateTime<Utc>,
        confirm_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, provider_id = ?2, delivered_ms = ?3, last_error = NULL,
                       confirm = CASE WHEN ?4 IS NULL THEN NULL ELSE 'pending' END, confirm_ms = ?4
                   WHERE key = ?1";
        let values = vec![
            provider_id.into(),
            now.timestamp_millis().into(),
            confirm_at.map(|t| t.timestamp_millis()).into(),
        ];
        self.update(sql, key, values).await.map(drop)
    }

    /// Accepted entries whose delivery status is due to be polled.
    pub async fn confirming(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let polls_due = "confirm = 'pending' AND confirm_ms <= ?1 ORDER BY confirm_ms";
        self.select_until(polls_due, now, limit).await
    }

    /// One more status poll without a final answer: poll again at `next`, or, without
    /// `next`, stop (`unconfirmed`).
    pub async fn mark_polled(
        &self,
        key: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET polls = polls + 1,
                       confirm = CASE WHEN ?2 IS NULL THEN 'unconfirmed' ELSE 'pending' END,
                       confirm_ms = ?2
                   WHERE key = ?1";
        let next = next.map(|t| t.timestamp_millis());
        self.update(sql, key, vec![next.into()]).await.map(drop)
    }

    /// The handset has it.
    pub async fn mark_confirmed(&self, key: &str) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET polls = polls + 1, confirm = 'handset', confirm_ms = NULL WHERE key = ?1";
        self.update(sql, key, vec![]).await.map(drop)
    }

    /// The carrier could not deliver what the provider had accepted: the entry failed
    /// (a fallback takes over).
    pub async fn mark_undelivered(&self, key: &str, error: &str) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET state = 'failed', polls = polls + 1, confirm = 'undelivered', confirm_ms = NULL, last_error = ?2 WHERE key = ?1";
        self.update(sql, key, vec![error.to_string().into()])
            .await
            .map(drop)
    }

    /// One more failed attempt; the entry stays pending until `next`.
    pub async fn mark_retry(
        &self,
        key: &str,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3 WHERE key = ?1";
        let values = vec![error.to_string().into(), next.timestamp_millis().into()];
        self.update(sql, key, values).await.map(drop)
    }

    /// The channel gave up on this entry (rejected, or out of attempts).
    pub async fn mark_failed(&self, key: &str, error: &str) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2 WHERE key = ?1";
        self.update(sql, key, vec![error.to_string().into()])
            .await
            .map(drop)
    }
}

/// Migration 7: delivery confirmation (SMS status polling).
pub(super) fn add_confirmation(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE outbox ADD COLUMN confirm TEXT;
         ALTER TABLE outbox ADD COLUMN confirm_ms INTEGER;
         ALTER TABLE outbox ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX IF NOT EXISTS outbox_confirm ON outbox (confirm, confirm_ms);",
    )
}

/// Migration 5: the notification outbox.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS outbox (
             key TEXT PRIMARY KEY,
             incident_id TEXT NOT NULL,
             kind TEXT NOT NULL,
             channel TEXT NOT NULL,
             contact TEXT NOT NULL,
             notice TEXT NOT NULL,
             fallback_from TEXT,
             state TEXT NOT NULL,
             attempts INTEGER NOT NULL,
             next_attempt_ms INTEGER NOT NULL,
             last_error TEXT,
             provider_id TEXT,
             created_ms INTEGER NOT NULL,
             delivered_ms INTEGER
         );
         CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
         CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident_id);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn entry(kind: NoticeKind, channel: &str, contact: &str) -> OutboxEntry {
        OutboxEntry {
            key: format!("inc-1/{}/{channel}/{contact}", kind.as_str()),
            incident_id: "inc-1".into(),
            kind,
            channel: channel.into(),
            contact: contact.into(),
            notice: "{}".into(),
            fallback_from: None,
        }
    }

    fn keys(rows: &[OutboxRow]) -> Vec<&str> {
        rows.iter().map(|r| r.entry.key.as_str()).collect()
    }

    #[tokio::test]
    async fn a_resolve_waits_for_its_pending_trigger_on_the_same_channel_only() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxStore::open_in(dir.path()).unwrap();
        let trigger = entry(NoticeKind::Trigger, "pagerduty", "-");
        let mail = entry(NoticeKind::Trigger, "email", "Maria");
        outbox
            .enqueue(vec![trigger.clone(), mail], t(0))
            .await
            .unwrap();
        // PagerDuty unreachable: its trigger waits for a retry at t+30.
        outbox
            .mark_retry(&trigger.key, "connection refused", t(30))
            .await
            .unwrap();
        outbox
            .mark_delivered("inc-1/trigger/email/Maria", None, t(0), None)
            .await
            .unwrap();
        let resolves = vec![
            entry(NoticeKind::Resolve, "pagerduty", "-"),
            entry(NoticeKind::Resolve, "email", "Maria"),
        ];
        outbox.enqueue(resolves, t(10)).await.unwrap();
        assert_eq!(
            keys(&outbox.due(t(10), 10).await.unwrap()),
            ["inc-1/resolve/email/Maria"],
            "the e-mail resolve goes; PagerDuty's waits behind its trigger"
        );
        outbox
            .mark_delivered("inc-1/resolve/email/Maria", None, t(10), None)
            .await
            .unwrap();
        assert_eq!(
            keys(&outbox.due(t(30), 10).await.unwrap()),
            ["inc-1/trigger/pagerduty/-"],
            "the trigger first"
        );
        outbox
            .mark_delivered(&trigger.key, None, t(30), None)
            .await
            .unwrap();
        assert_eq!(
            keys(&outbox.due(t(30), 10).await.unwrap()),
            ["inc-1/resolve/pagerduty/-"],
            "then the resolve"
        );
    }
}
