//! Run history: every `ProbeRun` the agent completes (secrets already masked by the
//! runner) with its steps and sync measurements in their own tables for percentiles, and
//! every fire skipped because the previous run was still going. `rooftop status` and
//! `rooftop history` read it from another process while the agent writes.
//!
//! Writes go through one writer thread that commits whatever is queued in one
//! transaction (group commit): each caller still waits until its run is committed. The
//! writer gathers writes for up to [`COMMIT_WINDOW`] after the first, so 100 probes a
//! second cost about 20 commits a second, not 100; and history commits are not fsynced
//! one by one (`Durability::Process`, see the store's module comment).

use std::path::Path;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::oneshot;

use super::reserve::{Reserve, is_disk_full};
use super::{Db, StoreError};
use crate::model::Fire;
use crate::model::HistorySettings;
use crate::model::ProbeRun;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// How long the writer waits after a batch's first write for more, before it commits:
/// what a run's history entry may wait, against one commit per run.
const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// The history store; clones share one connection and one writer.
#[derive(Debug, Clone)]
pub struct RunStore {
    pub(super) db: Db,
    writer: mpsc::Sender<Job>,
}

/// One stored run, as `rooftop history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub probe: String,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    /// `success`, `failed`, `sync_timeout`, `error` or `skipped`.
    pub outcome: String,
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub cleanup: String,
    /// `schedule`, `catch_up` (a run at start for fires missed while the agent was down)
    /// or `overlap` (a skipped fire).
    pub trigger: String,
    /// Start lag behind the scheduled instant.
    pub lag_ms: Option<f64>,
}

/// What the retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub by_age: u64,
    pub by_size: u64,
    /// Bytes in use after the pass (free pages excluded).
    pub used_bytes: u64,
}

enum Write {
    Run(Box<ProbeRun>, Option<Fire>),
    /// The agent's proof that the store takes writes (`/readyz`).
    Alive(DateTime<Utc>),
    Skip {
        probe: String,
        connector: String,
        scheduled: DateTime<Utc>,
    },
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl RunStore {
    pub fn open_in(state_dir: &Path) -> Result<RunStore, StoreError> {
        let db = Db::open_with(state_dir, super::Durability::Process)?;
        let (writer, jobs) = mpsc::channel();
        let w = db.clone();
        let reserve = Reserve::in_dir(state_dir);
        std::thread::Builder::new()
            .name("rooftop-store".into())
            .spawn(move || write_loop(&w, &jobs, &reserve))
            .map_err(|e| StoreError::Task(format!("cannot start the store writer: {e}")))?;
        Ok(RunStore { db, writer })
    }

    /// Stores a finished run with its steps and sync measurements; returns once it is
    /// durable. `fire` is how the scheduler started it (none for a manual run).
    pub async fn record(&self, run: &ProbeRun, fire: Option<Fire>) -> Result<(), StoreError> {
        self.submit(Write::Run(Box::new(run.clone()), fire)).await
    }

    /// Writes the agent's "alive at" mark through the same writer as runs: `Ok` means
    /// the store takes writes now.
    pub async fn touch(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.submit(Write::Alive(now)).await
    }

    /// Records a fire skipped because the probe's previous run was still going.
    pub async fn record_skip(
        &self,
        probe: &str,
        connector: &str,
        scheduled: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.submit(Write::Skip {
            probe: probe.to_string(),
            connector: connector.to_string(),
            scheduled,
        })
        .await
    }

    async fn submit(&self, write: Write) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Job { write, done })
            .map_err(|_| StoreError::Task("the store writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Task("the store writer has stopped".into()))?
    }

    /// For each probe, the instant its latest run was due (or finished, for runs stored
    /// before that was recorded): where missed-fire detection starts.
    pub async fn last_scheduled(
        &self,
        probes: Vec<String>,
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare(
                    "SELECT COALESCE(scheduled_ms, finished_ms) FROM runs WHERE probe = ?1
                     ORDER BY finished_ms DESC LIMIT 1",
                )?;
                probes
                    .iter()
                    .map(|p| {
                        let ms: Option<i64> = stmt
                            .query_map(params![p], |r| r.get(0))?
                            .next()
                            .transpose()?;
                        Ok(ms.and_then(DateTime::<Utc>::from_timestamp_millis))
                    })
                    .collect()
            })
            .await
    }

    /// A probe's runs (skips excluded) that finished since `since`, or its last
    /// `at_least` runs if those are more; oldest first, at most 10,000.
    pub async fn recent_runs(
        &self,
        probe: String,
        since: DateTime<Utc>,
        at_least: usize,
    ) -> Result<Vec<ProbeRun>, StoreError> {
        self.db
            .with_conn(move |c| {
                let in_window: i64 = c.query_row(
                    "SELECT COUNT(*) FROM runs WHERE probe = ?1 AND outcome != 'skipped' AND finished_ms >= ?2",
                    params![probe, since.timestamp_millis()],
                    |r| r.get(0),
                )?;
                let limit = (in_window as usize).max(at_least).min(10_000);
                let mut stmt = c.prepare(
                    "SELECT json FROM runs WHERE probe = ?1 AND outcome != 'skipped'
                     ORDER BY finished_ms DESC LIMIT ?2",
                )?;
                let mut runs: Vec<ProbeRun> = stmt
                    .query_map(params![probe, limit as i64], |r| r.get::<_, String>(0))?
                    .filter_map(|j| j.ok().and_then(|j| ProbeRun::from_stored_json(&j).ok()))
                    .collect();
                runs.reverse();
                Ok(runs)
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
                "SELECT run_id, probe, finished_at, duration_ms, outcome, error_class, failed_step, cleanup, trigger, lag_ms
                 FROM runs WHERE probe = ?1 AND finished_ms >= ?2 ORDER BY finished_ms DESC",
            )?;
            let rows = stmt.query_map(params![probe, since.timestamp_millis()], row_to_run)?;
            rows.collect()
        })
        .await
    }

    /// Retention: removes runs older than `keep`, then the oldest runs while the store
    /// uses more than `max_bytes`. Freed pages are reused, so the file stays near the
    /// limit instead of growing.
    pub async fn retain(
        &self,
        now: DateTime<Utc>,
        limits: &HistorySettings,
    ) -> Result<Pruned, StoreError> {
        let cutoff =
            now.timestamp_millis() - i64::try_from(limits.keep.as_millis()).unwrap_or(i64::MAX / 2);
        let max_bytes = limits.max_bytes;
        self.db
            .with_conn(move |c| {
                let mut pruned = Pruned {
                    by_age: delete_before(c, cutoff)?,
                    ..Pruned::default()
                };
                loop {
                    pruned.used_bytes = used_bytes(c)?;
                    if pruned.used_bytes <= max_bytes {
                        break;
                    }
                    let total: i64 = c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))?;
                    if total == 0 {
                        break;
                    }
                    // The oldest twentieth (at least 100 runs) per pass.
                    let k = (total / 20).max(100).min(total - 1);
                    let cut: i64 = c.query_row(
                        "SELECT finished_ms FROM runs ORDER BY finished_ms LIMIT 1 OFFSET ?1",
                        params![k],
                        |r| r.get(0),
                    )?;
                    let n = delete_before(c, cut.max(i64::MIN + 1))?;
                    if n == 0 {
                        // Everything left finished in the same millisecond.
                        pruned.by_size += delete_before(c, cut + 1)?;
                        pruned.used_bytes = used_bytes(c)?;
                        break;
                    }
                    pruned.by_size += n;
                }
                Ok(pruned)
            })
            .await
    }
}

/// Deletes runs (and their rows in the other tables) that finished before `cutoff_ms`.
fn delete_before(c: &Connection, cutoff_ms: i64) -> rusqlite::Result<u64> {
    let tx = c.unchecked_transaction()?;
    let n = tx.execute(
        "DELETE FROM runs WHERE finished_ms < ?1",
        params![cutoff_ms],
    )?;
    tx.execute(
        "DELETE FROM sync_measurements WHERE finished_ms < ?1",
        params![cutoff_ms],
    )?;
    tx.execute(
        "DELETE FROM step_runs WHERE finished_ms < ?1",
        params![cutoff_ms],
    )?;
    tx.commit()?;
    Ok(n as u64)
}

/// Bytes of the database in use: pages minus free pages.
fn used_bytes(c: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// The writer thread: takes what is queued, commits it as one transaction, tells every
/// caller. A batch that fails is retried one write at a time, so one bad write does not
/// take the others with it. A full disk releases the reserve (for the incident and page
/// about it); the agent's store check, once it succeeds, makes the reserve again.
fn write_loop(db: &Db, jobs: &mpsc::Receiver<Job>, reserve: &Reserve) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let until = std::time::Instant::now() + COMMIT_WINDOW;
        while batch.len() < MAX_BATCH {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match jobs.recv_timeout(left) {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let Ok(conn) = db.conn.lock() else {
            for j in batch {
                let _ = j
                    .done
                    .send(Err(StoreError::Task("store lock poisoned".into())));
            }
            return;
        };
        let all = (|| {
            let tx = conn.unchecked_transaction()?;
            for j in &batch {
                insert(&tx, &j.write)?;
            }
            tx.commit()
        })();
        if all.is_ok() {
            if batch.iter().any(|j| matches!(j.write, Write::Alive(_))) {
                reserve.make_if_room();
            }
            for j in batch {
                let _ = j.done.send(Ok(()));
            }
            continue;
        }
        for j in batch {
            let one = (|| {
                let tx = conn.unchecked_transaction()?;
                insert(&tx, &j.write)?;
                tx.commit()
            })();
            if one.as_ref().is_err_and(is_disk_full) {
                reserve.release();
            }
            let _ = j.done.send(one.map_err(|source| StoreError::Sqlite {
                path: db.path.clone(),
                source,
            }));
        }
    }
}

fn insert(tx: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Run(run, fire) => insert_run(tx, run, fire.as_ref()),
        Write::Alive(now) => {
            tx.execute(
                "INSERT INTO agent_meta (key, value) VALUES ('alive_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![now.to_rfc3339()],
            )?;
            Ok(())
        }
        Write::Skip {
            probe,
            connector,
            scheduled,
        } => {
            let ms = scheduled.timestamp_millis();
            tx.execute(
                "INSERT OR IGNORE INTO runs (run_id, probe, finished_at, finished_ms, started_ms, duration_ms, outcome, connector, cleanup, json, scheduled_ms, trigger, note)
                 VALUES (?1, ?2, ?3, ?4, ?4, 0, 'skipped', ?5, 'not_needed', ?6, ?4, 'overlap', 'the previous run was still going')",
                params![
                    format!("skip-{probe}-{ms}"),
                    probe,
                    scheduled.to_rfc3339(),
                    ms,
                    connector,
                    serde_json::json!({"probe": probe, "outcome": "skipped", "reason": "overlap", "scheduled_at": scheduled.to_rfc3339()}).to_string(),
                ],
            )?;
            Ok(())
        }
    }
}

fn insert_run(tx: &Connection, run: &ProbeRun, fire: Option<&Fire>) -> rusqlite::Result<()> {
    let json = serde_json::to_string(run).unwrap_or_default();
    let connector = run.connector_label();
    let finished_ms = run.finished_at.timestamp_millis();
    let trigger = match fire {
        None => "manual",
        Some(f) if f.catch_up.is_some() => "catch_up",
        Some(_) => "schedule",
    };
    tx.prepare_cached(
        "INSERT OR REPLACE INTO runs (run_id, probe, finished_at, finished_ms, started_ms, duration_ms, outcome, error_class, failed_step, connector, cleanup, json, scheduled_ms, lag_ms, trigger)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
            run.run_id,
            run.probe,
            run.finished_at.to_rfc3339(),
            finished_ms,
            run.started_at.timestamp_millis(),
            run.duration_ms,
            run.outcome.as_str(),
            run.error_class.map(|c| c.as_str()),
            run.failed_step,
            connector,
            run.cleanup.outcome.as_str(),
            json,
            fire.map(|f| f.scheduled.timestamp_millis()),
            fire.map(|f| f.lag.as_secs_f64() * 1000.0),
            trigger,
    ])?;
    let mut step_stmt = tx.prepare_cached(
        "INSERT INTO step_runs (run_id, probe, step, connector, finished_ms, duration_ms, outcome, error_class, http_status, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut sync_stmt = tx.prepare_cached(
        "INSERT INTO sync_measurements (run_id, probe, step, finished_ms, estimate_ms, lower_ms, upper_ms, polls)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for s in &run.steps {
        if s.attempts == 0 {
            continue; // never reached
        }
        step_stmt.execute(params![
            run.run_id,
            run.probe,
            s.name,
            connector,
            finished_ms,
            s.duration_ms,
            s.outcome.as_str(),
            s.error_class.map(|c| c.as_str()),
            s.request.as_ref().and_then(|r| r.status),
            s.attempts,
        ])?;
        if let Some(m) = &s.sync {
            sync_stmt.execute(params![
                run.run_id,
                run.probe,
                s.name,
                finished_ms,
                m.estimate_ms,
                m.lower_ms,
                m.upper_ms,
                m.polls
            ])?;
        }
    }
    Ok(())
}

pub(super) fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
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
        trigger: r.get(8)?,
        lag_ms: r.get(9)?,
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

/// Migration 3: how each run was started (scheduled instant, lag, trigger), skipped
/// fires, and one row per step for step durations and HTTP status counts.
/// Migration 8: the agent's own marks (`alive_at`).
pub(super) fn add_agent_meta(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS agent_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
}

pub(super) fn add_steps_and_triggers(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE runs ADD COLUMN started_ms INTEGER;
         ALTER TABLE runs ADD COLUMN scheduled_ms INTEGER;
         ALTER TABLE runs ADD COLUMN lag_ms REAL;
         ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'schedule';
         ALTER TABLE runs ADD COLUMN note TEXT;
         CREATE INDEX IF NOT EXISTS runs_time ON runs (finished_ms);
         CREATE TABLE IF NOT EXISTS step_runs (
             run_id TEXT NOT NULL,
             probe TEXT NOT NULL,
             step TEXT NOT NULL,
             connector TEXT NOT NULL,
             finished_ms INTEGER NOT NULL,
             duration_ms REAL NOT NULL,
             outcome TEXT NOT NULL,
             error_class TEXT,
             http_status INTEGER,
             attempts INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS step_runs_probe_time ON step_runs (probe, finished_ms);
         CREATE INDEX IF NOT EXISTS step_runs_time ON step_runs (finished_ms);
         CREATE INDEX IF NOT EXISTS sync_time ON sync_measurements (finished_ms);",
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{CleanupReport, ErrorClass, Outcome, StepRun, SyncMeasurement};
    use std::time::Duration;

    #[test]
    fn the_stored_cleanup_outcome_is_its_serde_name() {
        use crate::model::CleanupOutcome;
        for o in [
            CleanupOutcome::NotNeeded,
            CleanupOutcome::Success,
            CleanupOutcome::Failed,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }

    #[test]
    fn history_commits_are_not_fsynced_one_by_one_the_ledger_is() {
        let dir = tempfile::tempdir().unwrap();
        let sync = |db: &Db| -> i64 {
            db.conn
                .lock()
                .unwrap()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let history = RunStore::open_in(dir.path()).unwrap();
        let ledger = Db::open_in(dir.path()).unwrap();
        assert_eq!(sync(&history.db), 1, "NORMAL");
        assert_eq!(sync(&ledger), 2, "FULL");
    }

    pub(in crate::store) fn run(
        id: &str,
        ago_min: i64,
        outcome: Outcome,
        sync_ms: Option<f64>,
    ) -> ProbeRun {
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
                polls: vec![],
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

    fn fire(scheduled_ago_min: i64, lag_ms: u64) -> Fire {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        Fire {
            scheduled: now - chrono::Duration::minutes(scheduled_ago_min),
            lag: Duration::from_millis(lag_ms),
            catch_up: None,
        }
    }

    #[tokio::test]
    async fn status_windows_percentiles_errors_skips_and_age_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let mut with_status = run("a", 10, Outcome::Success, Some(1000.0));
        with_status.steps[0].request = Some(crate::model::RequestRecord {
            method: "GET".into(),
            url: "http://127.0.0.1/x".into(),
            status: Some(503),
            span_id: "s".into(),
            sent_ms: 0.0,
            ttfb_ms: None,
            total_ms: 1.0,
            response_bytes: None,
        });
        store.record(&with_status, Some(fire(10, 4))).await.unwrap();
        store
            .record(&run("b", 30, Outcome::Error, None), Some(fire(30, 8)))
            .await
            .unwrap();
        store
            .record(&run("c", 120, Outcome::Success, Some(3000.0)), None)
            .await
            .unwrap();
        store
            .record(&run("d", 3 * 24 * 60, Outcome::Success, Some(9000.0)), None)
            .await
            .unwrap();
        store
            .record_skip("p", "crm-to-dms", now - chrono::Duration::minutes(5))
            .await
            .unwrap();
        let st = &store.status(vec!["p".into()], now).await.unwrap()[0];
        let w: Vec<(u64, u64)> = st.windows.iter().map(|w| (w.runs, w.successes)).collect();
        assert_eq!(
            w,
            vec![(2, 1), (3, 2), (4, 3)],
            "a skipped fire is not a run"
        );
        assert_eq!(st.windows[0].outcomes.get("skipped"), Some(&1));
        assert_eq!(
            st.last.as_ref().unwrap().run_id,
            "a",
            "skips are not the last run"
        );
        assert_eq!((st.sync[0].measurements, st.sync[0].p50_ms), (2, 1000));
        assert_eq!(st.sync[0].median_width_ms, 20);
        assert_eq!(st.sync[0].polls_mean, 2.0);
        assert_eq!((st.steps[0].runs, st.steps[0].failures), (3, 1));
        assert_eq!(
            st.lag_24h.as_ref().map(|l| (l.count, l.max_ms)),
            Some((2, 8))
        );
        assert_eq!(
            (
                st.errors_24h[0].connector.as_str(),
                st.errors_24h[0].error_class.as_str(),
                st.errors_24h[0].count
            ),
            ("crm-to-dms", "http_5xx", 1)
        );
        assert_eq!(st.http_status_24h[0].status, 503);
        // b (error) then a (success): one outage, recovered.
        assert_eq!(st.recovery.outages_7d, 1);
        assert_eq!(st.recovery.failing_since, None);
        let hist = store
            .history("p".into(), now - chrono::Duration::days(30))
            .await
            .unwrap();
        assert_eq!(hist.len(), 5);
        assert_eq!(
            (hist[0].outcome.as_str(), hist[0].trigger.as_str()),
            ("skipped", "overlap")
        );
        assert_eq!(hist[1].lag_ms, Some(4.0));
        let last = store
            .last_scheduled(vec!["p".into(), "q".into()])
            .await
            .unwrap();
        assert_eq!(last, vec![Some(now - chrono::Duration::minutes(5)), None]);

        let limits = HistorySettings {
            keep: Duration::from_secs(86_400),
            max_bytes: 1 << 30,
        };
        let pruned = store.retain(now, &limits).await.unwrap();
        assert_eq!((pruned.by_age, pruned.by_size), (1, 0));
        assert_eq!(
            store
                .history("p".into(), now - chrono::Duration::days(30))
                .await
                .unwrap()
                .len(),
            4
        );
    }

    #[tokio::test]
    async fn concurrent_writes_are_all_kept_and_size_retention_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let mut tasks = Vec::new();
        for i in 0..2000 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = run(&format!("r{i:04}"), 2000 - i, Outcome::Success, Some(500.0));
                r.message = Some("x".repeat(2000));
                store.record(&r, None).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let all = store
            .history("p".into(), now - chrono::Duration::days(30))
            .await
            .unwrap();
        assert_eq!(all.len(), 2000, "group commit kept every run");
        let before = store
            .retain(now, &HistorySettings::default())
            .await
            .unwrap();
        assert_eq!((before.by_age, before.by_size), (0, 0));
        assert!(before.used_bytes > 4_000_000, "{before:?}");
        let limit = before.used_bytes / 2;
        let after = store
            .retain(
                now,
                &HistorySettings {
                    keep: Duration::from_secs(86_400 * 30),
                    max_bytes: limit,
                },
            )
            .await
            .unwrap();
        assert!(after.used_bytes <= limit, "{after:?} over {limit}");
        assert!(after.by_size > 0);
        let left = store
            .history("p".into(), now - chrono::Duration::days(30))
            .await
            .unwrap();
        assert_eq!(left.len() as u64, 2000 - after.by_size);
        let oldest_left = left.iter().map(|r| r.run_id.clone()).min().unwrap();
        assert_eq!(
            oldest_left,
            format!("r{:04}", after.by_size),
            "the oldest went first"
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
        assert_eq!(v, super::super::MIGRATIONS.len() as i64);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
