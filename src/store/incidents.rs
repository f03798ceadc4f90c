//! Incidents, persisted: what opened them, the runs that caused them, when they were
//! acknowledged and resolved (MTTA, MTTR). The agent writes them as the incident state
//! machine acts; `rooftop incidents`, `ack` and `resolve` read and update them from
//! another process, and the agent picks acknowledgements and manual resolves up before
//! it next evaluates the probe.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Db, StoreError, parsed, parsed_opt};
use crate::model::{Breach, IncidentState, Open, Resolution, ResolvedBy, Severity};

/// The incident store; clones share one connection.
#[derive(Debug, Clone)]
pub struct IncidentStore {
    db: Db,
}

/// One incident as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncidentRow {
    pub id: String,
    pub probe: String,
    pub severity: Severity,
    pub connector: String,
    pub state: IncidentState,
    pub opened_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub acked_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Resolution>,
    pub flapping: bool,
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub reason: String,
    pub runs: Vec<String>,
    pub last_message: Option<String>,
    /// The incident whose page this one was grouped into (same connector and severity,
    /// opened together); its own id when it leads a group; `None` before the pager
    /// decided (or without paging).
    pub group: Option<String>,
    /// How often it failed again after recovering (flapping reopenings).
    pub reopens: u32,
}

impl IncidentRow {
    /// The incident as the state machine holds it (the breaches are not stored: the next
    /// evaluation finds them again).
    pub fn to_open(&self) -> Open {
        Open {
            id: self.id.clone(),
            opened_at: self.opened_at,
            acked_at: self.acked_at,
            acked_by: self.acked_by.clone(),
            breaches: Vec::new(),
            error_class: self.error_class.clone(),
            failed_step: self.failed_step.clone(),
            last_message: self.last_message.clone(),
            runs: self.runs.clone(),
            flapping: self.flapping,
            successes_in_row: 0,
        }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    let acked: Option<i64> = r.get(5)?;
    let resolved: Option<i64> = r.get(7)?;
    let runs: String = r.get(14)?;
    Ok(IncidentRow {
        id: r.get(0)?,
        probe: r.get(1)?,
        severity: parsed(r, 2)?,
        connector: r.get(3)?,
        state: if resolved.is_some() {
            IncidentState::Resolved
        } else if acked.is_some() {
            IncidentState::Acknowledged
        } else {
            IncidentState::Open
        },
        opened_at: at(Some(r.get(4)?)).unwrap_or_default(),
        acked_at: at(acked),
        acked_by: r.get(6)?,
        resolved_at: at(resolved),
        resolved_by: parsed_opt(r, 8)?,
        flapping: r.get::<_, i64>(9)? != 0,
        error_class: r.get(10)?,
        failed_step: r.get(11)?,
        reason: r.get(12)?,
        last_message: r.get(13)?,
        runs: serde_json::from_str(&runs).unwrap_or_default(),
        group: r.get(15)?,
        reopens: r.get::<_, i64>(16)? as u32,
    })
}

const COLUMNS: &str = "id, probe, severity, connector, opened_ms, acked_ms, acked_by, resolved_ms, resolved_by, flapping, error_class, failed_step, reason, last_message, runs, group_id, reopens";

/// Why an incident was opened, in words.
pub fn reason(breaches: &[Breach]) -> String {
    breaches
        .iter()
        .map(Breach::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

impl IncidentStore {
    pub fn open_in(state_dir: &std::path::Path) -> Result<IncidentStore, StoreError> {
        Ok(IncidentStore {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Writes an incident's current state. Acknowledgement and resolution already in
    /// the store (set by `rooftop ack` / `resolve`) are never cleared by the agent.
    pub async fn save(
        &self,
        open: &Open,
        probe: &str,
        severity: Severity,
        connector: &str,
        resolved: Option<(DateTime<Utc>, ResolvedBy)>,
    ) -> Result<(), StoreError> {
        let (open, probe, severity, connector) = (
            open.clone(),
            probe.to_string(),
            severity.to_string(),
            connector.to_string(),
        );
        let resolved = resolved.map(|(t, by)| (ms(t), Resolution::from(by).to_string()));
        self.db
            .with_conn(move |c| {
                c.execute(
                    "INSERT INTO incidents (id, probe, severity, connector, opened_ms, acked_ms, acked_by, resolved_ms, resolved_by, flapping, error_class, failed_step, reason, last_message, runs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT(id) DO UPDATE SET
                         acked_ms = COALESCE(incidents.acked_ms, excluded.acked_ms),
                         acked_by = COALESCE(incidents.acked_by, excluded.acked_by),
                         resolved_ms = COALESCE(incidents.resolved_ms, excluded.resolved_ms),
                         resolved_by = COALESCE(incidents.resolved_by, excluded.resolved_by),
                         flapping = excluded.flapping,
                         reason = CASE WHEN excluded.reason = '' THEN incidents.reason ELSE excluded.reason END,
                         last_message = excluded.last_message,
                         runs = excluded.runs",
                    params![
                        open.id,
                        probe,
                        severity,
                        connector,
                        ms(open.opened_at),
                        open.acked_at.map(ms),
                        open.acked_by,
                        resolved.as_ref().map(|r| r.0),
                        resolved.as_ref().map(|r| r.1.clone()),
                        i64::from(open.flapping),
                        open.error_class,
                        open.failed_step,
                        reason(&open.breaches),
                        open.last_message,
                        serde_json::to_string(&open.runs).unwrap_or_else(|_| "[]".into()),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Reopens a recovered incident (it is flapping): clears its resolution.
    pub async fn reopen(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE incidents SET resolved_ms = NULL, resolved_by = NULL, flapping = 1, reopens = reopens + 1 WHERE id = ?1",
                    params![id],
                )?;
                Ok(())
            })
            .await
    }

    /// Incidents, newest first; only unresolved ones with `open_only`.
    pub async fn list(&self, open_only: bool) -> Result<Vec<IncidentRow>, StoreError> {
        self.db
            .with_conn(move |c| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM incidents {} ORDER BY opened_ms DESC LIMIT 500",
                    if open_only {
                        "WHERE resolved_ms IS NULL"
                    } else {
                        ""
                    }
                );
                let mut stmt = c.prepare(&sql)?;
                stmt.query_map([], row)?.collect()
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<IncidentRow>, StoreError> {
        let id = id.to_string();
        self.db
            .with_conn(move |c| {
                c.query_row(
                    &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
                    params![id],
                    row,
                )
                .optional()
            })
            .await
    }

    /// Records which group `id` belongs to (`leader` = `id` when it leads one).
    pub async fn set_group(&self, id: &str, leader: &str) -> Result<(), StoreError> {
        let (id, leader) = (id.to_string(), leader.to_string());
        self.db
            .with_conn(move |c| {
                c.execute(
                    "UPDATE incidents SET group_id = ?2 WHERE id = ?1",
                    params![id, leader],
                )?;
                Ok(())
            })
            .await
    }

    /// The incidents of every group led by an incident on `connector` opened at or
    /// after `since` (the groups a new incident there might join), leaders first, the
    /// latest group first.
    pub async fn recent_groups(
        &self,
        connector: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let connector = connector.to_string();
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM incidents m
                     JOIN (SELECT id AS lid, opened_ms AS lms FROM incidents
                           WHERE connector = ?1 AND group_id = id AND opened_ms >= ?2) l
                       ON m.group_id = l.lid
                     ORDER BY l.lms DESC, l.lid, m.id != l.lid, m.opened_ms, m.id"
                ))?;
                stmt.query_map(params![connector, ms(since)], row)?
                    .collect()
            })
            .await
    }

    /// The incidents of the group `leader` leads (the leader first).
    pub async fn group_members(&self, leader: &str) -> Result<Vec<IncidentRow>, StoreError> {
        let leader = leader.to_string();
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM incidents WHERE group_id = ?1 OR id = ?1
                     ORDER BY id != ?1, opened_ms, id"
                ))?;
                stmt.query_map(params![leader], row)?.collect()
            })
            .await
    }

    /// Acknowledges an unresolved incident; false if it is unknown, resolved or already
    /// acknowledged.
    pub async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.db
            .with_conn(move |c| {
                let own = c.execute(
                    "UPDATE incidents SET acked_ms = ?2, acked_by = ?3
                     WHERE id = ?1 AND acked_ms IS NULL AND resolved_ms IS NULL",
                    params![id, ms(now), by],
                )? == 1;
                // The page covered the whole group: so does its acknowledgement.
                if own {
                    c.execute(
                        "UPDATE incidents SET acked_ms = ?2, acked_by = ?3
                         WHERE group_id = ?1 AND id != ?1 AND acked_ms IS NULL AND resolved_ms IS NULL",
                        params![id, ms(now), by],
                    )?;
                }
                Ok(own)
            })
            .await
    }

    /// Resolves an unresolved incident by hand; false if unknown or already resolved.
    pub async fn resolve(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let who = Some(by.to_string());
        let (id, by) = (id.to_string(), Resolution::Manual { who }.to_string());
        self.db
            .with_conn(move |c| {
                Ok(c.execute(
                    "UPDATE incidents SET resolved_ms = ?2, resolved_by = ?3
                     WHERE id = ?1 AND resolved_ms IS NULL",
                    params![id, ms(now), by],
                )? == 1)
            })
            .await
    }
}

/// Migration 4: incidents.
/// Migration 6: page grouping and the reopen count (notification rounds).
pub(super) fn add_groups(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE incidents ADD COLUMN group_id TEXT;
         ALTER TABLE incidents ADD COLUMN reopens INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX IF NOT EXISTS incidents_group ON incidents (group_id);
         CREATE INDEX IF NOT EXISTS incidents_connector ON incidents (connector, severity, opened_ms);",
    )
}

pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS incidents (
             id TEXT PRIMARY KEY,
             probe TEXT NOT NULL,
             severity TEXT NOT NULL,
             connector TEXT NOT NULL,
             opened_ms INTEGER NOT NULL,
             acked_ms INTEGER,
             acked_by TEXT,
             resolved_ms INTEGER,
             resolved_by TEXT,
             flapping INTEGER NOT NULL DEFAULT 0,
             error_class TEXT,
             failed_step TEXT,
             reason TEXT NOT NULL,
             last_message TEXT,
             runs TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS incidents_open ON incidents (resolved_ms, opened_ms);
         CREATE INDEX IF NOT EXISTS incidents_probe ON incidents (probe, opened_ms);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str, at: DateTime<Utc>) -> Open {
        Open {
            runs: vec!["run-a".into(), "run-b".into()],
            ..crate::model::sample_open(id, at)
        }
    }

    #[tokio::test]
    async fn ack_and_manual_resolve_survive_the_agents_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let s = IncidentStore::open_in(dir.path()).unwrap();
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let inc = open("inc-p-1", t0);
        s.save(&inc, "p", Severity::P2, "crm-to-dms", None)
            .await
            .unwrap();
        assert_eq!(s.list(true).await.unwrap()[0].state.as_str(), "open");
        assert!(
            s.acknowledge("inc-p-1", "maria", t0 + chrono::Duration::minutes(3))
                .await
                .unwrap()
        );
        assert!(!s.acknowledge("inc-p-1", "joe", t0).await.unwrap(), "once");
        // The agent saves its (unacknowledged) copy again: the ack stays.
        s.save(&inc, "p", Severity::P2, "crm-to-dms", None)
            .await
            .unwrap();
        let r = s.get("inc-p-1").await.unwrap().unwrap();
        assert_eq!(
            (r.state.as_str(), r.acked_by.as_deref()),
            ("acknowledged", Some("maria"))
        );
        assert_eq!(r.reason, "2 failed runs in a row");
        assert_eq!(r.runs, vec!["run-a", "run-b"]);
        assert!(
            s.resolve("inc-p-1", "maria", t0 + chrono::Duration::minutes(9))
                .await
                .unwrap()
        );
        assert!(s.list(true).await.unwrap().is_empty());
        assert_eq!(
            s.list(false).await.unwrap()[0]
                .resolved_by
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("manual:maria")
        );
        assert!(!s.resolve("nope", "x", t0).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_stored_severity_or_resolution_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = IncidentStore::open_in(dir.path()).unwrap();
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let resolved = Some((t0, ResolvedBy::Recovery));
        s.save(
            &open("inc-p-1", t0),
            "p",
            Severity::P2,
            "crm-to-dms",
            resolved,
        )
        .await
        .unwrap();
        let r = s.get("inc-p-1").await.unwrap().unwrap();
        assert_eq!(
            (r.severity, r.resolved_by, r.state),
            (
                Severity::P2,
                Some(Resolution::Recovery),
                IncidentState::Resolved
            )
        );
        let raw = Connection::open(dir.path().join("rooftop.db")).unwrap();
        for (column, value, expect) in [
            ("resolved_by", "robot", r#"unknown resolution "robot""#),
            ("severity", "P9", r#"unknown severity "P9""#),
        ] {
            raw.execute(&format!("UPDATE incidents SET {column} = ?1"), [value])
                .unwrap();
            let e = s.get("inc-p-1").await.unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
    }
}
