//! The notification outbox: every notification is written here before it is sent, with a
//! stable key per incident, kind, channel and contact (a second enqueue of the same key
//! is a no-op: deduplication), and marked delivered only when the provider accepted it.
//! A restart finds pending rows and sends them: nothing is lost, at most one duplicate
//! (when the process dies between the provider's acceptance and the mark).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Db, StoreError};

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
    pub kind: String,
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
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl OutboxEntry {
    pub fn key_for(incident: &str, kind: &str, channel: &str, contact: &str) -> String {
        format!("{incident}/{kind}/{channel}/{contact}")
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let at = |ms: Option<i64>| ms.and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(OutboxRow {
        entry: OutboxEntry {
            key: r.get(0)?,
            incident_id: r.get(1)?,
            kind: r.get(2)?,
            channel: r.get(3)?,
            contact: r.get(4)?,
            notice: r.get(5)?,
            fallback_from: r.get(6)?,
        },
        state: r.get(7)?,
        attempts: r.get::<_, i64>(8)? as u32,
        next_attempt_at: at(Some(r.get(9)?)).unwrap_or_default(),
        last_error: r.get(10)?,
        provider_id: r.get(11)?,
        delivered_at: at(r.get(12)?),
    })
}

const COLUMNS: &str = "key, incident_id, kind, channel, contact, notice, fallback_from, state, attempts, next_attempt_ms, last_error, provider_id, delivered_ms";

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
                        params![e.key, e.incident_id, e.kind, e.channel, e.contact, e.notice, e.fallback_from, now.timestamp_millis()],
                    )?;
                }
                tx.commit()?;
                Ok(n)
            })
            .await
    }

    /// Pending entries due by `now`, oldest first.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms, created_ms LIMIT ?2"
                ))?;
                stmt.query_map(params![now.timestamp_millis(), limit as i64], row)?
                    .collect()
            })
            .await
    }

    /// The instant the next pending entry is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.db
            .with_conn(|c| {
                c.query_row(
                    "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'",
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

    pub async fn mark_delivered(
        &self,
        key: &str,
        provider_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = key.to_string();
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, provider_id = ?2, delivered_ms = ?3, last_error = NULL WHERE key = ?1",
                    params![key, provider_id, now.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    /// One more failed attempt; the entry stays pending until `next`.
    pub async fn mark_retry(
        &self,
        key: &str,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (key, error) = (key.to_string(), error.to_string());
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3 WHERE key = ?1",
                    params![key, error, next.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    /// The channel gave up on this entry (rejected, or out of attempts).
    pub async fn mark_failed(&self, key: &str, error: &str) -> Result<(), StoreError> {
        let (key, error) = (key.to_string(), error.to_string());
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2 WHERE key = ?1",
                    params![key, error],
                )?;
                Ok(())
            })
            .await
    }
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
