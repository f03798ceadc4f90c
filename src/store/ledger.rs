//! The cleanup ledger: every synthetic record a run creates is written here (and committed)
//! before the next step runs, and removed only when its cleanup succeeds. Whatever is left
//! after a crash is retried on the next start or by `rooftop cleanup`.
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
}

impl LedgerEntry {
    /// True while the run that wrote the entry may still be using the record: its
    /// process, another rooftop, is alive. Such entries are not replayed.
    pub fn owned_by_a_live_run(&self) -> bool {
        self.owner_pid
            .is_some_and(|pid| pid != std::process::id() && is_live_rooftop(pid))
    }
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

    /// A cleanup attempt failed; keep the entry with the reason.
    pub async fn record_failure(
        &self,
        id: i64,
        attempts: u32,
        error: String,
    ) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                "UPDATE cleanup_ledger SET attempts = attempts + ?2, last_error = ?3 WHERE id = ?1",
                params![id, attempts, error],
            )
            .map(|_| ())
            })
            .await
    }

    /// Entries still waiting, oldest first; optionally for one probe.
    pub async fn pending(&self, probe: Option<String>) -> Result<Vec<LedgerEntry>, StoreError> {
        self.db.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, run_id, probe, cleanup, created_by, context, created_at, attempts, last_error, pending, owner_pid
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
        l.record_failure(id, 4, "HTTP 503".into()).await.unwrap();
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
}
