//! Escalations: the state of each paged incident's escalation (step, deadline, who was
//! paged, acknowledgement), saved after its pages are queued so a restart resumes it
//! where it was. The state and the notice it pages with are JSON the pager owns; the
//! store keeps them with the columns it queries by (what is due, what a dependency
//! holds).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, StoreError};

/// The escalations; clones share one connection.
#[derive(Debug, Clone)]
pub struct EscalationStore {
    db: Db,
}

/// One incident's escalation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRow {
    /// The incident (a group's leader).
    pub incident: String,
    /// Not closed yet.
    pub active: bool,
    /// When it next has something to do without a new fact (a deadline, a reminder, a
    /// window's end); `None`: only a fact moves it.
    pub due: Option<DateTime<Utc>>,
    /// The dependency's incident it waits on, if held by one.
    pub held_by: Option<String>,
    /// `alerting::escalation::Escalation` as JSON.
    pub state: String,
    /// The `Notice` it pages with, as JSON.
    pub notice: String,
    pub updated_at: DateTime<Utc>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EscalationRow> {
    let at = |v: Option<i64>| v.and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(EscalationRow {
        incident: r.get(0)?,
        active: r.get::<_, i64>(1)? != 0,
        due: at(r.get(2)?),
        held_by: r.get(3)?,
        state: r.get(4)?,
        notice: r.get(5)?,
        updated_at: at(Some(r.get(6)?)).unwrap_or_default(),
    })
}

const COLUMNS: &str = "incident, active, due_ms, held_by, state, notice, updated_ms";

impl EscalationStore {
    pub fn open_in(state_dir: &std::path::Path) -> Result<EscalationStore, StoreError> {
        Ok(EscalationStore {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Inserts or replaces the escalation of `row.incident`.
    pub async fn save(&self, row: EscalationRow) -> Result<(), StoreError> {
        self.db
            .with_conn(move |c| {
                c.execute(
                    "INSERT INTO escalations (incident, active, due_ms, held_by, state, notice, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(incident) DO UPDATE SET active = ?2, due_ms = ?3, held_by = ?4,
                       state = ?5, notice = ?6, updated_ms = ?7",
                    params![
                        row.incident,
                        row.active as i64,
                        row.due.map(ms),
                        row.held_by,
                        row.state,
                        row.notice,
                        ms(row.updated_at)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn get(&self, incident: &str) -> Result<Option<EscalationRow>, StoreError> {
        let incident = incident.to_string();
        self.db
            .with_conn(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM escalations WHERE incident = ?1"),
                    params![incident],
                    row,
                )
                .optional()
            })
            .await
    }

    /// Every escalation not closed, oldest first.
    pub async fn active(&self) -> Result<Vec<EscalationRow>, StoreError> {
        self.db
            .with_conn(|c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM escalations WHERE active = 1 ORDER BY updated_ms, incident"
                ))?;
                stmt.query_map([], row)?.collect()
            })
            .await
    }

    /// The escalations held by the dependency incident `incident` (the incidents its
    /// page lists as failing because of it).
    pub async fn held_by(&self, incident: &str) -> Result<Vec<EscalationRow>, StoreError> {
        let incident = incident.to_string();
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM escalations WHERE held_by = ?1 ORDER BY incident"
                ))?;
                stmt.query_map(params![incident], row)?.collect()
            })
            .await
    }
}

/// Migration 9: escalations.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE escalations (
            incident TEXT PRIMARY KEY,
            active INTEGER NOT NULL,
            due_ms INTEGER,
            held_by TEXT,
            state TEXT NOT NULL,
            notice TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE INDEX escalations_active ON escalations (active, due_ms);
        CREATE INDEX escalations_held_by ON escalations (held_by);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn saves_replaces_and_lists_what_is_active_and_what_a_dependency_holds() {
        let dir = tempfile::tempdir().unwrap();
        let s = EscalationStore::open_in(dir.path()).unwrap();
        let mut r = EscalationRow {
            incident: "inc-a-1".into(),
            active: true,
            due: Some(t(900)),
            held_by: None,
            state: "{}".into(),
            notice: "{}".into(),
            updated_at: t(0),
        };
        s.save(r.clone()).await.unwrap();
        s.save(EscalationRow {
            incident: "inc-b-2".into(),
            held_by: Some("inc-wan-0".into()),
            due: None,
            ..r.clone()
        })
        .await
        .unwrap();
        assert_eq!(s.active().await.unwrap().len(), 2);
        assert_eq!(s.held_by("inc-wan-0").await.unwrap()[0].incident, "inc-b-2");
        r.active = false;
        r.state = "{\"closed\":1}".into();
        s.save(r.clone()).await.unwrap();
        assert_eq!(s.get("inc-a-1").await.unwrap(), Some(r));
        assert_eq!(s.active().await.unwrap().len(), 1);
        // Reopened with the store: it is all still there.
        drop(s);
        let s = EscalationStore::open_in(dir.path()).unwrap();
        assert_eq!(s.active().await.unwrap()[0].incident, "inc-b-2");
    }
}
