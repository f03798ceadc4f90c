//! The cleanup ledger: every synthetic record a run creates is written here (and committed)
//! before the next step runs, and removed only when its cleanup succeeds. Whatever is left
//! after a crash is retried on the next start, by the running agent or by `rooftop
//! cleanup`. An entry whose sweep found nothing after a failed run waits here for one
//! re-sweep (`resweep_after`): the downstream record may not exist yet.
//!
//! Stores the values the cleanup template needs (vars and captures), never a secret.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde_json::Value;

use super::Db;
pub use super::StoreError;

/// One record waiting for cleanup: what the run wrote (`record`) and how its cleanup went.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub id: i64,
    pub record: NewEntry,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The create request got no definitive answer: the record may or may not exist.
    pub pending: bool,
    /// The rooftop process whose run created the entry.
    pub owner_pid: Option<u32>,
    /// Its sweep succeeded but found nothing after a run that did not succeed: sweep once
    /// more at this time (a sync job may create the downstream record later).
    pub resweep_after: Option<DateTime<Utc>>,
    /// When its last cleanup attempt ended (`None`: never attempted).
    pub last_attempt: Option<DateTime<Utc>>,
}

impl LedgerEntry {
    /// True while the run that wrote the entry may still be using the record: its
    /// process, another rooftop, is alive. Such entries are not replayed.
    pub fn owned_by_a_live_run(&self) -> bool {
        self.owner_pid
            .is_some_and(|pid| pid != std::process::id() && is_live_rooftop(pid))
    }

    /// True while the entry waits for its re-sweep and nothing has failed since: it is
    /// not a leftover (nothing went wrong), just not finished.
    pub fn awaiting_resweep(&self) -> bool {
        self.resweep_after.is_some() && self.last_error.is_none()
    }

    /// A record a person may have to look at (the status page's leftovers): not one a
    /// live run is still using, nor one waiting for its re-sweep.
    pub fn is_leftover(&self) -> bool {
        !self.owned_by_a_live_run() && !self.awaiting_resweep()
    }

    /// An entry waiting for a re-sweep whose time has not come.
    pub fn resweep_not_due(&self, now: DateTime<Utc>) -> bool {
        self.awaiting_resweep() && self.resweep_after.is_some_and(|at| now < at)
    }
}

/// Milliseconds since the epoch, as the ledger stores its times.
fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// A live process with our own name (guards against a recycled pid). Linux `/proc`;
/// elsewhere every owner counts as gone.
fn is_live_rooftop(pid: u32) -> bool {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

/// A record a run created, as the run wrote it to the ledger (before it has an id).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub run_id: String,
    pub probe: String,
    /// Name of the cleanup step to run.
    pub cleanup: String,
    /// The step that created the record.
    pub created_by: String,
    /// Vars and captures at creation time (for rendering the cleanup request).
    pub context: BTreeMap<String, Value>,
    pub created_at: DateTime<Utc>,
}

/// The SQLite-backed ledger; clones share one connection.
#[derive(Debug, Clone)]
pub struct Ledger {
    db: Db,
}

impl Ledger {
    /// Opens (creating if needed) `STATE_DIR/rooftop.db`.
    pub fn open_in(state_dir: &Path) -> Result<Ledger, StoreError> {
        Ok(Ledger {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Records several entries in one transaction (all or none), as pending until
    /// `confirm`; ids in the same order.
    pub async fn record_all(&self, entries: Vec<NewEntry>) -> Result<Vec<i64>, StoreError> {
        self.db.with_conn(move |c| {
            let tx = c.unchecked_transaction()?;
            let mut ids = Vec::new();
            for e in &entries {
                let context = serde_json::to_string(&e.context).unwrap_or_else(|_| "{}".into());
                tx.execute(
                    "INSERT INTO cleanup_ledger (run_id, probe, cleanup, created_by, context, created_at, attempts, pending, owner_pid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 1, ?7)",
                    params![e.run_id, e.probe, e.cleanup, e.created_by, context, e.created_at.to_rfc3339(), std::process::id()],
                )?;
                ids.push(tx.last_insert_rowid());
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Records a created record; returns once it is committed to disk.
    pub async fn record(&self, e: NewEntry) -> Result<i64, StoreError> {
        let context = serde_json::to_string(&e.context).unwrap_or_else(|_| "{}".into());
        self.db.with_conn(move |c| {
            c.execute(
                "INSERT INTO cleanup_ledger (run_id, probe, cleanup, created_by, context, created_at, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![e.run_id, e.probe, e.cleanup, e.created_by, context, e.created_at.to_rfc3339()],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// A pending record was created: store the captures its cleanup needs.
    pub async fn confirm(
        &self,
        ids: Vec<i64>,
        context: BTreeMap<String, Value>,
    ) -> Result<(), StoreError> {
        let context = serde_json::to_string(&context).unwrap_or_else(|_| "{}".into());
        self.db
            .with_conn(move |c| {
                let tx = c.unchecked_transaction()?;
                for id in &ids {
                    tx.execute(
                        "UPDATE cleanup_ledger SET context = ?2, pending = 0 WHERE id = ?1",
                        params![id, context],
                    )?;
                }
                tx.commit()
            })
            .await
    }

    /// The system refused the create request: nothing to clean up.
    pub async fn remove_all(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                let tx = c.unchecked_transaction()?;
                for id in &ids {
                    tx.execute("DELETE FROM cleanup_ledger WHERE id = ?1", params![id])?;
                }
                tx.commit()
            })
            .await
    }

    /// The record is gone: forget it.
    pub async fn remove(&self, id: i64) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute("DELETE FROM cleanup_ledger WHERE id = ?1", params![id])
                    .map(|_| ())
            })
            .await
    }

    /// A cleanup attempt failed at `now`; keep the entry with the reason.
    pub async fn record_failure(
        &self,
        id: i64,
        attempts: u32,
        error: String,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE cleanup_ledger SET attempts = attempts + ?2, last_error = ?3, last_attempt_ms = ?4 WHERE id = ?1",
                    params![id, attempts, error, to_ms(now)],
                )
                .map(|_| ())
            })
            .await
    }

    /// The entry's sweep succeeded at `now` but found nothing: keep it for one re-sweep
    /// at `at`. Its earlier error, if any, is cleared: that cleanup did not fail.
    pub async fn mark_resweep(
        &self,
        id: i64,
        attempts: u32,
        now: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE cleanup_ledger SET attempts = attempts + ?2, last_error = NULL, last_attempt_ms = ?3, resweep_after_ms = ?4 WHERE id = ?1",
                    params![id, attempts, to_ms(now), to_ms(at)],
                )
                .map(|_| ())
            })
            .await
    }

    /// Entries still waiting, oldest first; optionally for one probe.
    pub async fn pending(&self, probe: Option<String>) -> Result<Vec<LedgerEntry>, StoreError> {
        self.db.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, run_id, probe, cleanup, created_by, context, created_at, attempts, last_error, pending, owner_pid, resweep_after_ms, last_attempt_ms
                 FROM cleanup_ledger WHERE (?1 IS NULL OR probe = ?1) ORDER BY id",
            )?;
            let rows = stmt.query_map(params![probe], |r| {
                let context: String = r.get(5)?;
                let created_at: String = r.get(6)?;
                Ok(LedgerEntry {
                    id: r.get(0)?,
                    record: NewEntry {
                        run_id: r.get(1)?,
                        probe: r.get(2)?,
                        cleanup: r.get(3)?,
                        created_by: r.get(4)?,
                        context: serde_json::from_str(&context).unwrap_or_default(),
                        created_at: DateTime::parse_from_rfc3339(&created_at)
                            .map(|d| d.with_timezone(&Utc))
                            .unwrap_or_default(),
                    },
                    attempts: r.get(7)?,
                    last_error: r.get(8)?,
                    pending: r.get::<_, i64>(9)? != 0,
                    owner_pid: r.get(10)?,
                    resweep_after: from_ms(r.get(11)?),
                    last_attempt: from_ms(r.get(12)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        self.db
            .with_conn(|c| {
                c.query_row("SELECT COUNT(*) FROM cleanup_ledger", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
            })
            .await
    }
}

/// Migration 1: the cleanup ledger.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cleanup_ledger (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             run_id TEXT NOT NULL,
             probe TEXT NOT NULL,
             cleanup TEXT NOT NULL,
             created_by TEXT NOT NULL,
             context TEXT NOT NULL,
             created_at TEXT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             last_error TEXT,
             pending INTEGER NOT NULL DEFAULT 0,
             owner_pid INTEGER
         );
         CREATE INDEX IF NOT EXISTS cleanup_ledger_probe ON cleanup_ledger (probe);",
    )
}

/// Migration 12: re-sweeps (`resweep_after_ms`, NULL: none) and when the last cleanup
/// attempt ended (`last_attempt_ms`), so the agent retries while it runs without
/// hammering a system that is down.
pub(super) fn add_resweep(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE cleanup_ledger ADD COLUMN resweep_after_ms INTEGER;
         ALTER TABLE cleanup_ledger ADD COLUMN last_attempt_ms INTEGER;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(probe: &str) -> NewEntry {
        let mut context = BTreeMap::new();
        context.insert("appointment_id".to_string(), Value::from("APT-1"));
        NewEntry {
            run_id: "r1".into(),
            probe: probe.into(),
            cleanup: "delete-appointment".into(),
            created_by: "book".into(),
            context,
            created_at: "2026-06-01T12:00:00Z".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn record_survives_reopen_and_remove_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let l = Ledger::open_in(dir.path()).unwrap();
            let id = l.record(entry("a")).await.unwrap();
            l.record(entry("b")).await.unwrap();
            id
        };
        let l = Ledger::open_in(dir.path()).unwrap();
        let all = l.pending(None).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].record.context["appointment_id"],
            Value::from("APT-1")
        );
        assert_eq!(l.pending(Some("b".into())).await.unwrap().len(), 1);
        let at = "2026-06-01T12:01:00Z".parse().unwrap();
        l.record_failure(id, 4, "HTTP 503".into(), at)
            .await
            .unwrap();
        let a = &l.pending(Some("a".into())).await.unwrap()[0];
        assert_eq!((a.attempts, a.last_error.as_deref()), (4, Some("HTTP 503")));
        l.remove(id).await.unwrap();
        assert_eq!(l.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn pending_until_confirmed_and_refusals_forget() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open_in(dir.path()).unwrap();
        let ids = l.record_all(vec![entry("a"), entry("a")]).await.unwrap();
        assert!(l.pending(None).await.unwrap().iter().all(|e| e.pending));
        let mut ctx = BTreeMap::new();
        ctx.insert("ro".to_string(), Value::from("RO-9"));
        l.confirm(vec![ids[0]], ctx).await.unwrap();
        let all = l.pending(None).await.unwrap();
        assert!(!all[0].pending && all[0].record.context["ro"] == "RO-9");
        l.remove_all(vec![ids[1]]).await.unwrap();
        assert_eq!(l.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_entry_waiting_for_its_resweep_is_not_a_leftover_until_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open_in(dir.path()).unwrap();
        let id = l.record(entry("a")).await.unwrap();
        let now: DateTime<Utc> = "2026-06-01T12:05:00Z".parse().unwrap();
        l.record_failure(id, 1, "HTTP 503".into(), now)
            .await
            .unwrap();
        let e = &l.pending(None).await.unwrap()[0];
        assert!(!e.awaiting_resweep());
        assert_eq!(e.last_attempt, Some(now));

        let at = now + chrono::Duration::minutes(15);
        l.mark_resweep(id, 1, now, at).await.unwrap();
        let e = &l.pending(None).await.unwrap()[0];
        assert_eq!((e.resweep_after, e.last_error.as_deref()), (Some(at), None));
        assert_eq!(e.attempts, 2);
        assert!(e.awaiting_resweep() && !e.is_leftover());
        assert!(e.resweep_not_due(now));
        assert!(!e.resweep_not_due(at));

        // The re-sweep itself failed: a leftover again, retried like any other.
        l.record_failure(id, 1, "HTTP 503".into(), at)
            .await
            .unwrap();
        let e = &l.pending(None).await.unwrap()[0];
        assert!(!e.awaiting_resweep() && !e.resweep_not_due(now));
        assert!(e.is_leftover());
    }
}
