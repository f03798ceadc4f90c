//! Durable state under the state directory, one SQLite file (`rooftop.db`): the cleanup
//! ledger and the run history. WAL so readers (`rooftop status`) never block the agent;
//! `synchronous=FULL` so a committed entry survives a crash or power loss.

pub mod ledger;
pub mod runs;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use ledger::{Ledger, LedgerEntry, NewEntry};
pub use runs::RunStore;

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

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: [fn(&Connection) -> rusqlite::Result<()>; 2] =
    [ledger::create_tables, runs::create_tables];

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
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    migrate(&conn).map_err(err)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        m(&tx)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
