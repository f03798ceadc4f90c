//! Run history: every `ProbeRun` the agent completes (secrets already masked by the
//! runner), with its sync measurements in their own table for percentiles. `rooftop
//! status` and `rooftop history` read it from another process while the agent writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Db, StoreError};
use crate::runner::ProbeRun;

/// The history store; clones share one connection.
#[derive(Debug, Clone)]
pub struct RunStore {
    db: Db,
}

/// One stored run, as `rooftop history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub probe: String,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub outcome: String,
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub cleanup: String,
}

/// Success ratio over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub window: String,
    pub runs: u64,
    pub successes: u64,
    /// `None` without runs in the window.
    pub ratio: Option<f64>,
}

/// Sync-latency percentiles of one sync step over the last 24 h.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStats {
    pub step: String,
    pub measurements: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
}

/// What `rooftop status` shows of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    pub probe: String,
    pub last: Option<RunRow>,
    pub windows: Vec<Window>,
    pub sync: Vec<SyncStats>,
    /// (connector, error class) → failures in the last 24 h, most frequent first.
    pub errors_24h: Vec<(String, String, u64)>,
}

const WINDOWS: [(&str, i64); 3] = [("1h", 3600), ("24h", 86_400), ("7d", 7 * 86_400)];

impl RunStore {
    pub fn open_in(state_dir: &Path) -> Result<RunStore, StoreError> {
        Ok(RunStore {
            db: Db::open_in(state_dir)?,
        })
    }

    /// Stores a finished run and its sync measurements in one transaction.
    pub async fn record(&self, run: &ProbeRun) -> Result<(), StoreError> {
        let json = serde_json::to_string(run).unwrap_or_default();
        let run = run.clone();
        self.db.with_conn(move |c| {
            let tx = c.unchecked_transaction()?;
            let connector = run.labels.get("connector").cloned().unwrap_or_else(|| "-".into());
            tx.execute(
                "INSERT OR REPLACE INTO runs (run_id, probe, finished_at, finished_ms, duration_ms, outcome, error_class, failed_step, connector, cleanup, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    run.run_id,
                    run.probe,
                    run.finished_at.to_rfc3339(),
                    run.finished_at.timestamp_millis(),
                    run.duration_ms,
                    run.outcome.as_str(),
                    run.error_class.map(|c| c.as_str()),
                    run.failed_step,
                    connector,
                    serde_json::to_value(run.cleanup.outcome).ok().and_then(|v| v.as_str().map(str::to_string)),
                    json,
                ],
            )?;
            for s in &run.steps {
                if let Some(m) = &s.sync {
                    tx.execute(
                        "INSERT INTO sync_measurements (run_id, probe, step, finished_ms, estimate_ms, lower_ms, upper_ms, polls)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![run.run_id, run.probe, s.name, run.finished_at.timestamp_millis(), m.estimate_ms, m.lower_ms, m.upper_ms, m.polls],
                    )?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Runs of a probe since `since`, newest first.
    pub async fn history(
        &self,
        probe: String,
        since: DateTime<Utc>,
    ) -> Result<Vec<RunRow>, StoreError> {
        self.db.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, probe, finished_at, duration_ms, outcome, error_class, failed_step, cleanup
                 FROM runs WHERE probe = ?1 AND finished_ms >= ?2 ORDER BY finished_ms DESC",
            )?;
            let rows = stmt.query_map(params![probe, since.timestamp_millis()], row_to_run)?;
            rows.collect()
        })
        .await
    }

    /// Status of the given probes at `now`.
    pub async fn status(
        &self,
        probes: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ProbeStatus>, StoreError> {
        self.db.with_conn(move |c| {
            let now_ms = now.timestamp_millis();
            let mut out = Vec::new();
            for probe in probes {
                let last = c
                    .prepare(
                        "SELECT run_id, probe, finished_at, duration_ms, outcome, error_class, failed_step, cleanup
                         FROM runs WHERE probe = ?1 ORDER BY finished_ms DESC LIMIT 1",
                    )?
                    .query_map(params![probe], row_to_run)?
                    .next()
                    .transpose()?;
                let mut windows = Vec::new();
                for (name, secs) in WINDOWS {
                    let (runs, successes): (u64, u64) = c.query_row(
                        "SELECT COUNT(*), COALESCE(SUM(outcome = 'success'), 0) FROM runs WHERE probe = ?1 AND finished_ms >= ?2",
                        params![probe, now_ms - secs * 1000],
                        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
                    )?;
                    windows.push(Window {
                        window: name.to_string(),
                        runs,
                        successes,
                        ratio: (runs > 0).then(|| successes as f64 / runs as f64),
                    });
                }
                let mut hist: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
                let mut stmt = c.prepare("SELECT step, estimate_ms FROM sync_measurements WHERE probe = ?1 AND finished_ms >= ?2")?;
                let rows = stmt.query_map(params![probe, now_ms - 86_400_000], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
                for row in rows {
                    let (step, ms) = row?;
                    let h = hist
                        .entry(step)
                        .or_insert_with(|| Histogram::new_with_bounds(1, 7 * 86_400_000, 3).expect("static bounds are valid"));
                    let _ = h.record((ms.round() as u64).clamp(1, 7 * 86_400_000));
                }
                let sync = hist
                    .into_iter()
                    .map(|(step, h)| SyncStats {
                        step,
                        measurements: h.len(),
                        p50_ms: h.value_at_quantile(0.5),
                        p95_ms: h.value_at_quantile(0.95),
                        p99_ms: h.value_at_quantile(0.99),
                    })
                    .collect();
                let mut stmt = c.prepare(
                    "SELECT connector, error_class, COUNT(*) AS n FROM runs
                     WHERE probe = ?1 AND finished_ms >= ?2 AND error_class IS NOT NULL
                     GROUP BY connector, error_class ORDER BY n DESC LIMIT 5",
                )?;
                let errors_24h = stmt
                    .query_map(params![probe, now_ms - 86_400_000], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.push(ProbeStatus {
                    probe,
                    last,
                    windows,
                    sync,
                    errors_24h,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes runs older than `keep`; returns how many went.
    pub async fn prune(&self, now: DateTime<Utc>, keep: Duration) -> Result<u64, StoreError> {
        let cutoff =
            now.timestamp_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
        self.db
            .with_conn(move |c| {
                let tx = c.unchecked_transaction()?;
                let n = tx.execute("DELETE FROM runs WHERE finished_ms < ?1", params![cutoff])?;
                tx.execute(
                    "DELETE FROM sync_measurements WHERE finished_ms < ?1",
                    params![cutoff],
                )?;
                tx.commit()?;
                Ok(n as u64)
            })
            .await
    }
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let finished: String = r.get(2)?;
    Ok(RunRow {
        run_id: r.get(0)?,
        probe: r.get(1)?,
        finished_at: DateTime::parse_from_rfc3339(&finished)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default(),
        duration_ms: r.get(3)?,
        outcome: r.get(4)?,
        error_class: r.get(5)?,
        failed_step: r.get(6)?,
        cleanup: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
    })
}

/// Migration 2: run history.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS runs (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             run_id TEXT NOT NULL UNIQUE,
             probe TEXT NOT NULL,
             finished_at TEXT NOT NULL,
             finished_ms INTEGER NOT NULL,
             duration_ms REAL NOT NULL,
             outcome TEXT NOT NULL,
             error_class TEXT,
             failed_step TEXT,
             connector TEXT NOT NULL,
             cleanup TEXT,
             json TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS runs_probe_time ON runs (probe, finished_ms);
         CREATE TABLE IF NOT EXISTS sync_measurements (
             run_id TEXT NOT NULL,
             probe TEXT NOT NULL,
             step TEXT NOT NULL,
             finished_ms INTEGER NOT NULL,
             estimate_ms REAL NOT NULL,
             lower_ms REAL NOT NULL,
             upper_ms REAL NOT NULL,
             polls INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS sync_probe_time ON sync_measurements (probe, finished_ms);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{CleanupReport, ErrorClass, Outcome, StepRun, SyncMeasurement};

    fn run(id: &str, ago_min: i64, outcome: Outcome, sync_ms: Option<f64>) -> ProbeRun {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let at = now - chrono::Duration::minutes(ago_min);
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("connector".to_string(), "crm-to-dms".to_string());
        ProbeRun {
            run_id: id.into(),
            probe: "p".into(),
            trace_id: "t".into(),
            started_at: at,
            finished_at: at,
            duration_ms: 10.0,
            outcome,
            error_class: (outcome != Outcome::Success).then_some(ErrorClass::Http5xx),
            failed_step: None,
            message: None,
            labels,
            runbook: None,
            steps: vec![StepRun {
                name: "ro-in-dms".into(),
                outcome,
                error_class: None,
                message: None,
                started_ms: 0.0,
                duration_ms: 1.0,
                request: None,
                attempts: 1,
                assertions: vec![],
                captures: Default::default(),
                sync: sync_ms.map(|ms| SyncMeasurement {
                    since: "book".into(),
                    lower_ms: ms - 10.0,
                    upper_ms: ms + 10.0,
                    estimate_ms: ms,
                    width_ms: 20.0,
                    polls: 2,
                    downstream_ms: None,
                    skew_suspected: false,
                    slo_ms: None,
                    slo_breached: false,
                }),
            }],
            cleanup: CleanupReport::default(),
        }
    }

    #[tokio::test]
    async fn status_windows_percentiles_errors_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        store
            .record(&run("a", 10, Outcome::Success, Some(1000.0)))
            .await
            .unwrap();
        store
            .record(&run("b", 30, Outcome::Error, None))
            .await
            .unwrap();
        store
            .record(&run("c", 120, Outcome::Success, Some(3000.0)))
            .await
            .unwrap();
        store
            .record(&run("d", 3 * 24 * 60, Outcome::Success, Some(9000.0)))
            .await
            .unwrap();
        let st = &store.status(vec!["p".into()], now).await.unwrap()[0];
        let w: Vec<(u64, u64)> = st.windows.iter().map(|w| (w.runs, w.successes)).collect();
        assert_eq!(w, vec![(2, 1), (3, 2), (4, 3)]);
        assert_eq!(st.last.as_ref().unwrap().run_id, "a");
        assert_eq!((st.sync[0].measurements, st.sync[0].p50_ms), (2, 1000));
        assert_eq!(
            st.errors_24h,
            vec![("crm-to-dms".to_string(), "http_5xx".to_string(), 1)]
        );
        assert_eq!(
            store.prune(now, Duration::from_secs(86_400)).await.unwrap(),
            1
        );
        assert_eq!(
            store
                .history("p".into(), now - chrono::Duration::days(30))
                .await
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooftop.db");
        {
            let c = Connection::open(&path).unwrap();
            crate::store::ledger::create_tables(&c).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let c = crate::store::open_connection(dir.path(), &path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
