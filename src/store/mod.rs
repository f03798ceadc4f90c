//! Durable state under the state directory, one SQLite file (`rooftop.db`): the cleanup
//! ledger, the run history, incidents, the outbox, escalations and the SMS replies read.
//! WAL so readers (`rooftop status`) never block the agent.
//!
//! Durability is split by what a loss would cost ([`Durability`]): the ledger, the
//! outbox, incidents, escalations and replies commit with `synchronous=FULL` (an fsync
//! per commit: a committed entry survives a crash of the agent, of the OS and a power
//! loss). The run history commits with `synchronous=NORMAL`: a committed run survives
//! a crash of the agent (SIGKILL) as before, but an OS crash or power loss may take the
//! runs committed since the last fsync (the next FULL commit or WAL checkpoint, usually
//! well under a second) — history, not a promise to anyone.

pub mod escalations;
pub mod incidents;
pub mod ledger;
pub mod outbox;
pub mod replies;
pub mod reserve;
pub mod rollups;
pub mod runs;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use incidents::{IncidentRow, IncidentStore};
pub use ledger::{Ledger, LedgerEntry, NewEntry};
pub use runs::{Pruned, RunStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store task failed: {0}")]
    Task(String),
}

/// Column `idx` of `r`, text the program spells as `T` (a severity, a delivery state):
/// a value it does not know is a conversion error naming it, not a panic or a guess.
pub(crate) fn parsed<T>(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(idx)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Like `parsed`, for a column that may be NULL.
pub(crate) fn parsed_opt<T>(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match r.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => parsed(r, idx).map(Some),
    }
}

/// How a connection's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: every commit is fsynced before it returns.
    Full,
    /// `synchronous=NORMAL` (WAL): a commit is written, not fsynced; it survives the
    /// process dying, not the OS.
    Process,
}

/// One connection to `rooftop.db`, shared by clones; queries run on the blocking pool.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    pub(crate) fn open_in(state_dir: &Path) -> Result<Db, StoreError> {
        Db::open_with(state_dir, Durability::Full)
    }

    pub(crate) fn open_with(state_dir: &Path, durability: Durability) -> Result<Db, StoreError> {
        let path = state_dir.join("rooftop.db");
        let conn = open_connection(state_dir, &path)?;
        if durability == Durability::Process {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(|source| StoreError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Task("store lock poisoned".into()))?;
            f(&guard).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: [fn(&Connection) -> rusqlite::Result<()>; 12] = [
    ledger::create_tables,
    runs::create_tables,
    runs::add_steps_and_triggers,
    incidents::create_tables,
    outbox::create_tables,
    incidents::add_groups,
    outbox::add_confirmation,
    runs::add_agent_meta,
    escalations::create_tables,
    replies::create_tables,
    rollups::create_tables,
    ledger::add_resweep,
];

/// Opens `path` (creating the state directory), configured and migrated.
pub(crate) fn open_connection(state_dir: &Path, path: &Path) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(state_dir).map_err(|source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    // Switching a new file to WAL takes an exclusive lock for which SQLite does not wait
    // (no busy handler): a second opener at that instant gets "database is locked".
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.map_err(err)?,
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    migrate(&conn).map_err(err)?;
    Ok(conn)
}

/// Runs the migrations not yet recorded. Each runs under SQLite's write lock
/// (`BEGIN IMMEDIATE`) and re-reads the version inside it, so two processes opening one
/// store at once (the agent starting while `rooftop incidents` reads) never apply the
/// same migration twice.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version = |c: &Connection| {
        c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
    };
    while version(conn)? < MIGRATIONS.len() {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let done = version(&tx)?;
        if let Some(m) = MIGRATIONS.get(done) {
            m(&tx)?;
            tx.pragma_update(None, "user_version", (done + 1) as i64)?;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `rooftop incidents` opening the store while the agent migrated it
    /// failed with "duplicate column name: started_ms" (both applied migration 3).
    #[test]
    fn two_openers_of_a_new_store_at_once_never_migrate_twice() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rooftop.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, path, barrier) =
                        (dir.path().to_path_buf(), path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        open_connection(&dir, &path).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
            let c = Connection::open(&path).unwrap();
            let v: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
    }
}
