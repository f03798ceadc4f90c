//! Daily rollups: per probe and local day, the runs, successes and skipped fires, and
//! per sync step the day's sync-latency p50 / p95. A day is rolled up ("sealed") from
//! the raw history once it has ended, before retention can prune its runs, and kept for
//! [`KEEP_DAYS`] — so the status page's 90-day bars and a year's success ratio survive
//! `history.keep`. The current day (and a day not sealed yet) is read from the raw runs.
//!
//! Days are local days in the zone the agent passes (`defaults.timezone`, the
//! dealership's), so a bar's day starts at the dealership's midnight, also across DST
//! changes (a 23- or 25-hour day is one day).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::StoreError;
use super::runs::RunStore;
use super::stats::Percentiles;

/// Days of rollups kept (more than a year, so "this month a year ago" is there).
pub const KEEP_DAYS: u64 = 400;

/// Most runs a recent bar shows one by one; with more in the window it shows buckets.
pub const RECENT_CELLS: usize = 96;

/// One day of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayCell {
    pub day: NaiveDate,
    /// Runs (skipped fires excluded).
    pub runs: u64,
    pub successes: u64,
    pub skipped: u64,
}

impl DayCell {
    /// Success ratio, `None` without runs.
    pub fn ratio(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.successes as f64 / self.runs as f64)
    }
}

/// Sums of a span of day cells: (runs, successes).
pub fn totals(cells: &[DayCell]) -> (u64, u64) {
    cells
        .iter()
        .fold((0, 0), |(r, s), c| (r + c.runs, s + c.successes))
}

/// One cell of a recent bar: a run, or a bucket of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentCell {
    /// The run's end, or the bucket's start.
    pub at: DateTime<Utc>,
    pub runs: u64,
    pub successes: u64,
    /// A single run's outcome and failed step (`None` for a bucket).
    pub outcome: Option<String>,
    pub failed_step: Option<String>,
    pub duration_ms: Option<f64>,
}

/// Sync latency of one sync step over time: `(bucket start, p50, p95, measurements)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncSeries {
    pub step: String,
    pub points: Vec<SyncPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SyncPoint {
    pub at: DateTime<Utc>,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub measurements: u64,
}

/// A stored run with its message, for a drill-down page.
#[derive(Debug, Clone, Serialize)]
pub struct RunLine {
    pub run: super::runs::RunRow,
    pub message: Option<String>,
}

/// Migration 11: the rollup tables.
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS daily_runs (
             probe TEXT NOT NULL,
             day TEXT NOT NULL,
             runs INTEGER NOT NULL,
             successes INTEGER NOT NULL,
             skipped INTEGER NOT NULL,
             PRIMARY KEY (probe, day)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS daily_sync (
             probe TEXT NOT NULL,
             step TEXT NOT NULL,
             day TEXT NOT NULL,
             measurements INTEGER NOT NULL,
             p50_ms INTEGER NOT NULL,
             p95_ms INTEGER NOT NULL,
             PRIMARY KEY (probe, step, day)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS sealed_days (
             day TEXT PRIMARY KEY,
             zone TEXT NOT NULL,
             sealed_at TEXT NOT NULL
         ) WITHOUT ROWID;",
    )
}

/// The instant local `day` begins in `tz`: its midnight, or the first instant after it
/// when midnight does not exist (a DST change at midnight); the earlier of two.
pub fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..=180)
        .find_map(|m| {
            tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// `[start, end)` of local `day` in milliseconds.
fn day_range(tz: Tz, day: NaiveDate) -> (i64, i64) {
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    (
        day_start(tz, day).timestamp_millis(),
        day_start(tz, next).timestamp_millis(),
    )
}

fn local_day(tz: Tz, ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// The `n` local days ending with `now`'s, oldest first.
fn last_days(tz: Tz, now: DateTime<Utc>, n: u64) -> Vec<NaiveDate> {
    let today = now.with_timezone(&tz).date_naive();
    (0..n)
        .rev()
        .filter_map(|back| today.checked_sub_days(Days::new(back)))
        .collect()
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Seals `day`: its runs per probe and its sync percentiles per step, from the raw
/// history, in one transaction.
fn seal(c: &Connection, tz: Tz, day: NaiveDate, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let (start, end) = day_range(tz, day);
    let key = day.to_string();
    let tx = c.unchecked_transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO daily_runs (probe, day, runs, successes, skipped)
         SELECT probe, ?1, SUM(outcome != 'skipped'), SUM(outcome = 'success'), SUM(outcome = 'skipped')
         FROM runs WHERE finished_ms >= ?2 AND finished_ms < ?3 GROUP BY probe",
        params![key, start, end],
    )?;
    let mut per_step: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT probe, step, estimate_ms FROM sync_measurements
             WHERE finished_ms >= ?1 AND finished_ms < ?2",
        )?;
        let rows = stmt.query_map(params![start, end], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        for row in rows {
            let (probe, step, ms) = row?;
            per_step.entry((probe, step)).or_default().push(ms);
        }
    }
    for ((probe, step), values) in per_step {
        if let Some(p) = Percentiles::of(values) {
            tx.execute(
                "INSERT OR REPLACE INTO daily_sync (probe, step, day, measurements, p50_ms, p95_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    probe,
                    step,
                    key,
                    p.count as i64,
                    p.p50_ms as i64,
                    p.p95_ms as i64
                ],
            )?;
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO sealed_days (day, zone, sealed_at) VALUES (?1, ?2, ?3)",
        params![key, tz.name(), now.to_rfc3339()],
    )?;
    tx.commit()
}

/// Days sealed among `days`.
fn sealed_among(c: &Connection, days: &[NaiveDate]) -> rusqlite::Result<BTreeSet<NaiveDate>> {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Ok(BTreeSet::new());
    };
    let mut stmt = c.prepare_cached("SELECT day FROM sealed_days WHERE day >= ?1 AND day <= ?2")?;
    let rows = stmt.query_map(params![first.to_string(), last.to_string()], |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = BTreeSet::new();
    for d in rows {
        if let Ok(d) = d?.parse() {
            out.insert(d);
        }
    }
    Ok(out)
}

/// One probe's counts for `day` from the raw runs.
fn live_cell(c: &Connection, probe: &str, tz: Tz, day: NaiveDate) -> rusqlite::Result<DayCell> {
    let (start, end) = day_range(tz, day);
    c.prepare_cached(
        "SELECT COALESCE(SUM(outcome != 'skipped'), 0), COALESCE(SUM(outcome = 'success'), 0),
                COALESCE(SUM(outcome = 'skipped'), 0)
         FROM runs WHERE probe = ?1 AND finished_ms >= ?2 AND finished_ms < ?3",
    )?
    .query_row(params![probe, start, end], |r| {
        Ok(DayCell {
            day,
            runs: r.get::<_, i64>(0)? as u64,
            successes: r.get::<_, i64>(1)? as u64,
            skipped: r.get::<_, i64>(2)? as u64,
        })
    })
}

/// Percentiles of `(bucket, estimate)` pairs per step and bucket.
fn bucketed(rows: Vec<(String, i64, f64)>) -> Vec<SyncSeries> {
    let mut per: BTreeMap<String, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for (step, bucket, ms) in rows {
        per.entry(step)
            .or_default()
            .entry(bucket)
            .or_default()
            .push(ms);
    }
    per.into_iter()
        .map(|(step, buckets)| SyncSeries {
            step,
            points: buckets
                .into_iter()
                .filter_map(|(at, v)| {
                    Percentiles::of(v).map(|p| SyncPoint {
                        at: ts(at),
                        p50_ms: p.p50_ms,
                        p95_ms: p.p95_ms,
                        measurements: p.count,
                    })
                })
                .collect(),
        })
        .collect()
}

impl RunStore {
    /// Seals every local day in `tz` that has ended and has raw runs but no rollup yet
    /// (at most [`KEEP_DAYS`] back), and removes rollups older than [`KEEP_DAYS`].
    /// Returns how many days it sealed. The agent calls it before each retention pass,
    /// so a day is rolled up long before `history.keep` prunes its runs.
    pub async fn seal_days(&self, tz: Tz, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db
            .with_conn(move |c| {
                let today = now.with_timezone(&tz).date_naive();
                let oldest_kept = today
                    .checked_sub_days(Days::new(KEEP_DAYS))
                    .unwrap_or(today);
                c.execute(
                    "DELETE FROM daily_runs WHERE day < ?1",
                    params![oldest_kept.to_string()],
                )?;
                c.execute(
                    "DELETE FROM daily_sync WHERE day < ?1",
                    params![oldest_kept.to_string()],
                )?;
                c.execute(
                    "DELETE FROM sealed_days WHERE day < ?1",
                    params![oldest_kept.to_string()],
                )?;
                let first: Option<i64> = c
                    .query_row("SELECT MIN(finished_ms) FROM runs", [], |r| r.get(0))
                    .optional()?
                    .flatten();
                let Some(first) = first else { return Ok(0) };
                let mut day = local_day(tz, first).max(oldest_kept);
                let days: Vec<NaiveDate> = std::iter::from_fn(|| {
                    let d = day;
                    day = d.checked_add_days(Days::new(1))?;
                    (d < today).then_some(d)
                })
                .collect();
                let sealed = sealed_among(c, &days)?;
                let mut n = 0;
                for d in days.into_iter().filter(|d| !sealed.contains(d)) {
                    seal(c, tz, d, now)?;
                    n += 1;
                }
                Ok(n)
            })
            .await
    }

    /// The last `n` local days of `probe` in `tz`, oldest first: sealed days from the
    /// rollups, the others (today, a day not sealed yet) from the raw runs.
    pub async fn days(
        &self,
        probe: String,
        tz: Tz,
        now: DateTime<Utc>,
        n: u64,
    ) -> Result<Vec<DayCell>, StoreError> {
        self.db
            .with_conn(move |c| {
                let days = last_days(tz, now, n);
                let sealed = sealed_among(c, &days)?;
                let mut rolled: BTreeMap<NaiveDate, DayCell> = BTreeMap::new();
                if let (Some(first), Some(last)) = (days.first(), days.last()) {
                    let mut stmt = c.prepare_cached(
                        "SELECT day, runs, successes, skipped FROM daily_runs
                         WHERE probe = ?1 AND day >= ?2 AND day <= ?3",
                    )?;
                    let rows =
                        stmt.query_map(params![probe, first.to_string(), last.to_string()], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?,
                            ))
                        })?;
                    for row in rows {
                        let (day, runs, successes, skipped) = row?;
                        if let Ok(day) = day.parse::<NaiveDate>() {
                            rolled.insert(
                                day,
                                DayCell {
                                    day,
                                    runs: runs as u64,
                                    successes: successes as u64,
                                    skipped: skipped as u64,
                                },
                            );
                        }
                    }
                }
                days.into_iter()
                    .map(|day| {
                        if sealed.contains(&day) {
                            Ok(rolled.get(&day).copied().unwrap_or(DayCell {
                                day,
                                runs: 0,
                                successes: 0,
                                skipped: 0,
                            }))
                        } else {
                            live_cell(c, &probe, tz, day)
                        }
                    })
                    .collect()
            })
            .await
    }

    /// The last 24 hours of `probe` before `now`, oldest first: one cell per run when it
    /// ran at most [`RECENT_CELLS`] times, else [`RECENT_CELLS`] equal buckets.
    pub async fn recent_cells(
        &self,
        probe: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecentCell>, StoreError> {
        self.db
            .with_conn(move |c| {
                let to = now.timestamp_millis();
                let from = to - 86_400_000;
                let mut stmt = c.prepare_cached(
                    "SELECT finished_ms, outcome, failed_step, duration_ms FROM runs
                     WHERE probe = ?1 AND finished_ms >= ?2 AND finished_ms <= ?3 AND outcome != 'skipped'
                     ORDER BY finished_ms DESC LIMIT ?4",
                )?;
                let rows: Vec<(i64, String, Option<String>, f64)> = stmt
                    .query_map(params![probe, from, to, RECENT_CELLS as i64 + 1], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                if rows.len() <= RECENT_CELLS {
                    return Ok(rows
                        .into_iter()
                        .rev()
                        .map(|(at, outcome, failed_step, d)| RecentCell {
                            at: ts(at),
                            runs: 1,
                            successes: u64::from(outcome == "success"),
                            outcome: Some(outcome),
                            failed_step,
                            duration_ms: Some(d),
                        })
                        .collect());
                }
                let width = (to - from) / RECENT_CELLS as i64;
                let mut cells: Vec<RecentCell> = (0..RECENT_CELLS as i64)
                    .map(|i| RecentCell {
                        at: ts(from + i * width),
                        runs: 0,
                        successes: 0,
                        outcome: None,
                        failed_step: None,
                        duration_ms: None,
                    })
                    .collect();
                let mut stmt = c.prepare_cached(
                    "SELECT (finished_ms - ?2) / ?4, COUNT(*), SUM(outcome = 'success') FROM runs
                     WHERE probe = ?1 AND finished_ms >= ?2 AND finished_ms <= ?3 AND outcome != 'skipped'
                     GROUP BY 1",
                )?;
                let rows = stmt.query_map(params![probe, from, to, width], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                for row in rows {
                    let (i, runs, ok) = row?;
                    let i = (i.max(0) as usize).min(RECENT_CELLS - 1);
                    cells[i].runs += runs as u64;
                    cells[i].successes += ok as u64;
                }
                Ok(cells)
            })
            .await
    }

    /// Sync-latency p50 / p95 of each of `probe`'s sync steps in buckets of `bucket`
    /// over `[since, now]`, from the raw measurements.
    pub async fn sync_series(
        &self,
        probe: String,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        bucket: std::time::Duration,
    ) -> Result<Vec<SyncSeries>, StoreError> {
        let width = (bucket.as_millis() as i64).max(1);
        self.db
            .with_conn(move |c| {
                let from = since.timestamp_millis();
                let mut stmt = c.prepare_cached(
                    "SELECT step, finished_ms, estimate_ms FROM sync_measurements
                     WHERE probe = ?1 AND finished_ms >= ?2 AND finished_ms <= ?3",
                )?;
                let rows: Vec<(String, i64, f64)> = stmt
                    .query_map(params![probe, from, now.timestamp_millis()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .map(|r| {
                        r.map(|(s, at, v): (String, i64, f64)| {
                            (s, from + (at - from) / width * width, v)
                        })
                    })
                    .collect::<rusqlite::Result<_>>()?;
                Ok(bucketed(rows))
            })
            .await
    }

    /// Daily sync-latency p50 / p95 of `probe`'s sync steps over the last `n` local days:
    /// sealed days from the rollups, today from the raw measurements.
    pub async fn daily_sync(
        &self,
        probe: String,
        tz: Tz,
        now: DateTime<Utc>,
        n: u64,
    ) -> Result<Vec<SyncSeries>, StoreError> {
        self.db
            .with_conn(move |c| {
                let days = last_days(tz, now, n);
                let sealed = sealed_among(c, &days)?;
                let mut rows: Vec<(String, NaiveDate, SyncPoint)> = Vec::new();
                if let (Some(first), Some(last)) = (days.first(), days.last()) {
                    let mut stmt = c.prepare_cached(
                        "SELECT step, day, measurements, p50_ms, p95_ms FROM daily_sync
                         WHERE probe = ?1 AND day >= ?2 AND day <= ?3",
                    )?;
                    let found =
                        stmt.query_map(params![probe, first.to_string(), last.to_string()], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, i64>(4)?,
                            ))
                        })?;
                    for row in found {
                        let (step, day, n, p50, p95) = row?;
                        if let Ok(day) = day.parse::<NaiveDate>() {
                            rows.push((
                                step,
                                day,
                                SyncPoint {
                                    at: day_start(tz, day),
                                    p50_ms: p50 as u64,
                                    p95_ms: p95 as u64,
                                    measurements: n as u64,
                                },
                            ));
                        }
                    }
                }
                // Unsealed days (today) from the raw measurements.
                let mut stmt = c.prepare_cached(
                    "SELECT step, estimate_ms FROM sync_measurements
                     WHERE probe = ?1 AND finished_ms >= ?2 AND finished_ms < ?3",
                )?;
                for day in days.iter().filter(|d| !sealed.contains(d)) {
                    let (start, end) = day_range(tz, *day);
                    let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                    let found = stmt.query_map(params![probe, start, end], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
                    })?;
                    for row in found {
                        let (step, v) = row?;
                        per.entry(step).or_default().push(v);
                    }
                    for (step, v) in per {
                        if let Some(p) = Percentiles::of(v) {
                            rows.push((
                                step,
                                *day,
                                SyncPoint {
                                    at: ts(start),
                                    p50_ms: p.p50_ms,
                                    p95_ms: p.p95_ms,
                                    measurements: p.count,
                                },
                            ));
                        }
                    }
                }
                let mut per: BTreeMap<String, Vec<(NaiveDate, SyncPoint)>> = BTreeMap::new();
                for (step, day, p) in rows {
                    per.entry(step).or_default().push((day, p));
                }
                Ok(per
                    .into_iter()
                    .map(|(step, mut v)| {
                        v.sort_by_key(|(d, _)| *d);
                        SyncSeries {
                            step,
                            points: v.into_iter().map(|(_, p)| p).collect(),
                        }
                    })
                    .collect())
            })
            .await
    }

    /// The last `n` runs of `probe`, newest first, with their messages.
    pub async fn last_runs(&self, probe: String, n: usize) -> Result<Vec<RunLine>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT run_id, probe, finished_at, duration_ms, outcome, error_class, failed_step, cleanup, trigger, lag_ms,
                            json_extract(json, '$.message')
                     FROM runs WHERE probe = ?1 ORDER BY finished_ms DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![probe, n as i64], |r| {
                    Ok(RunLine {
                        run: super::runs::row_to_run(r)?,
                        message: r.get(10)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    /// Success ratio of `probe` over the 24 hours before `now`: (runs, successes).
    pub async fn last_24h(
        &self,
        probe: String,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        self.db
            .with_conn(move |c| {
                c.prepare_cached(
                    "SELECT COALESCE(SUM(outcome != 'skipped'), 0), COALESCE(SUM(outcome = 'success'), 0)
                     FROM runs WHERE probe = ?1 AND finished_ms > ?2 AND finished_ms <= ?3",
                )?
                .query_row(
                    params![
                        probe,
                        now.timestamp_millis() - 86_400_000,
                        now.timestamp_millis()
                    ],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HistorySettings, Outcome};
    use crate::store::runs::tests::run;

    /// The `run` helper's instant: runs are made `ago` minutes before it.
    fn helper_now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    const TORONTO: Tz = chrono_tz::America::Toronto;

    #[test]
    fn a_local_day_starts_at_its_midnight_across_dst() {
        // 2026-03-08: spring forward in Toronto (a 23-hour day); 2026-11-01: fall back (25 h).
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let (s, e) = day_range(TORONTO, d("2026-03-08"));
        assert_eq!(e - s, 23 * 3_600_000);
        assert_eq!(ts(s).to_rfc3339(), "2026-03-08T05:00:00+00:00");
        let (s, e) = day_range(TORONTO, d("2026-11-01"));
        assert_eq!(e - s, 25 * 3_600_000);
        // Where midnight does not exist (Santiago springs forward at 00:00), the day
        // starts at 01:00.
        let santiago = chrono_tz::America::Santiago;
        let start = day_start(santiago, d("2026-09-06"));
        assert_eq!(
            start.with_timezone(&santiago).format("%H:%M").to_string(),
            "01:00"
        );
    }

    #[tokio::test]
    async fn sealed_days_outlive_the_raw_history_and_today_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        // 2026-11-22T12:00Z is 07:00 in Toronto. Two days back: 3 runs, 1 failed; one
        // day back: 2 runs, both fine; today: 1 failed.
        let day = 24 * 60;
        for (id, ago, outcome, sync) in [
            ("a", 2 * day, Outcome::Success, Some(100.0)),
            ("b", 2 * day + 10, Outcome::Failed, None),
            ("c", 2 * day + 20, Outcome::Success, Some(300.0)),
            ("d", day, Outcome::Success, Some(1_000.0)),
            ("e", day + 5, Outcome::Success, Some(2_000.0)),
            ("f", 5, Outcome::Failed, None),
        ] {
            store
                .record(&run(id, ago, outcome, sync), None)
                .await
                .unwrap();
        }
        let now = helper_now();
        assert_eq!(store.seal_days(TORONTO, now).await.unwrap(), 2);
        // Sealing again finds nothing new.
        assert_eq!(store.seal_days(TORONTO, now).await.unwrap(), 0);
        // Retention prunes every raw run but the last hour's.
        let keep = HistorySettings {
            keep: std::time::Duration::from_secs(3_600),
            max_bytes: 1 << 30,
        };
        store.retain(now, &keep).await.unwrap();
        let cells = store.days("p".into(), TORONTO, now, 90).await.unwrap();
        assert_eq!(cells.len(), 90);
        let tail: Vec<(String, u64, u64)> = cells[87..]
            .iter()
            .map(|c| (c.day.to_string(), c.runs, c.successes))
            .collect();
        assert_eq!(
            tail,
            [
                ("2026-11-20".to_string(), 3, 2),
                ("2026-11-21".to_string(), 2, 2),
                ("2026-11-22".to_string(), 1, 0),
            ]
        );
        assert!(cells[..87].iter().all(|c| c.runs == 0));
        assert_eq!(totals(&cells), (6, 4));
        // The sealed days' sync percentiles are kept too.
        let sync = store
            .daily_sync("p".into(), TORONTO, now, 30)
            .await
            .unwrap();
        assert_eq!(sync.len(), 1);
        let points: Vec<(u64, u64)> = sync[0]
            .points
            .iter()
            .map(|p| (p.measurements, p.p95_ms))
            .collect();
        // (HDR histograms keep 3 significant digits: values under 2048 ms are exact.)
        assert_eq!(points, [(2, 300), (2, 2_000)]);
    }

    #[tokio::test]
    async fn rollups_older_than_the_kept_days_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        store
            .record(&run("old", 24 * 60, Outcome::Success, None), None)
            .await
            .unwrap();
        let now = helper_now();
        assert_eq!(store.seal_days(TORONTO, now).await.unwrap(), 1);
        let later = now + chrono::Duration::days(KEEP_DAYS as i64 - 2);
        let cells = store
            .days("p".into(), TORONTO, later, KEEP_DAYS)
            .await
            .unwrap();
        assert_eq!(totals(&cells), (1, 1), "still within {KEEP_DAYS} days");
        let much_later = now + chrono::Duration::days(KEEP_DAYS as i64 + 2);
        store.seal_days(TORONTO, much_later).await.unwrap();
        let rows: i64 = store
            .db
            .with_conn(|c| c.query_row("SELECT COUNT(*) FROM daily_runs", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn the_recent_bar_shows_runs_one_by_one_or_in_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        let now = helper_now();
        for i in 0..10 {
            let outcome = if i == 3 {
                Outcome::Failed
            } else {
                Outcome::Success
            };
            store
                .record(&run(&format!("r{i}"), 60 * i, outcome, None), None)
                .await
                .unwrap();
        }
        let cells = store.recent_cells("p".into(), now).await.unwrap();
        assert_eq!(cells.len(), 10);
        assert!(cells.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
        assert_eq!(cells[6].outcome.as_deref(), Some("failed"));
        // 200 runs in the last 24 h: 96 buckets of 15 minutes.
        for i in 0..200 {
            store
                .record(&run(&format!("s{i}"), i * 7, Outcome::Success, None), None)
                .await
                .unwrap();
        }
        let cells = store.recent_cells("p".into(), now).await.unwrap();
        assert_eq!(cells.len(), RECENT_CELLS);
        assert!(cells.iter().all(|c| c.outcome.is_none()));
        let runs: u64 = cells.iter().map(|c| c.runs).sum();
        let ok: u64 = cells.iter().map(|c| c.successes).sum();
        assert_eq!((runs, ok), (210, 209));
        assert_eq!(store.last_24h("p".into(), now).await.unwrap(), (210, 209));
    }

    #[tokio::test]
    async fn sync_series_are_per_step_and_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open_in(dir.path()).unwrap();
        let now = helper_now();
        for (i, (ago, ms)) in [(10, 100.0), (20, 300.0), (70, 2_000.0)].iter().enumerate() {
            store
                .record(
                    &run(&format!("r{i}"), *ago, Outcome::Success, Some(*ms)),
                    None,
                )
                .await
                .unwrap();
        }
        let since = now - chrono::Duration::hours(2);
        let series = store
            .sync_series(
                "p".into(),
                since,
                now,
                std::time::Duration::from_secs(3_600),
            )
            .await
            .unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].step, "ro-in-dms");
        let points: Vec<(u64, u64)> = series[0]
            .points
            .iter()
            .map(|p| (p.measurements, p.p95_ms))
            .collect();
        assert_eq!(points, [(1, 2_000), (2, 300)]);
        let lines = store.last_runs("p".into(), 2).await.unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].run.run_id, "r0", "newest first");
    }
}
