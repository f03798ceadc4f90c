//! What `rooftop status` computes from the history: success ratio and outcome counts per
//! window, run / step / sync-latency percentiles (HDR histograms), polls per sync, error
//! classes and HTTP statuses per connector, start lag, and outages with their time to
//! recover (MTTR). Windows end at the `now` passed in, so the figures are reproducible.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rusqlite::{Connection, params};
use serde::Serialize;

use super::StoreError;
use super::runs::{RunRow, RunStore, row_to_run};

/// The windows of success ratios.
pub const WINDOWS: [(&str, i64); 3] = [("1h", 3600), ("24h", 86_400), ("7d", 7 * 86_400)];
/// Percentiles, error and status counts cover this window.
const DAY_MS: i64 = 86_400_000;
/// Outages (and MTTR) are looked for in this window.
const OUTAGE_WINDOW_MS: i64 = 7 * DAY_MS;
/// Largest value an HDR histogram here records: a week in milliseconds.
const HDR_MAX_MS: u64 = 7 * 86_400_000;

/// Success ratio and outcome counts over a window. `skipped` fires are counted but are
/// not runs: they move neither `runs` nor the ratio.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub window: String,
    pub runs: u64,
    pub successes: u64,
    /// `None` without runs in the window.
    pub ratio: Option<f64>,
    /// Outcome → count, `skipped` included.
    pub outcomes: BTreeMap<String, u64>,
}

/// p50 / p95 / p99 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Percentiles {
    /// `None` for an empty set.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Percentiles> {
        let mut h =
            Histogram::<u64>::new_with_bounds(1, HDR_MAX_MS, 3).expect("static bounds are valid");
        for v in values {
            // 0 ms is recorded as 1 ms: the histogram's lowest value.
            let _ = h.record((v.round().max(0.0) as u64).clamp(1, HDR_MAX_MS));
        }
        (!h.is_empty()).then(|| Percentiles {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p95_ms: h.value_at_quantile(0.95),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}

/// One step's figures over the last 24 h.
#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    pub step: String,
    pub runs: u64,
    pub failures: u64,
    pub duration: Percentiles,
}

/// Sync latency of one sync step over the last 24 h: percentiles of the estimate and of
/// the interval's bounds, the median interval width, and polls per measurement.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStats {
    pub step: String,
    pub measurements: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    /// p95 of the lower bound (last poll that missed).
    pub lower_p95_ms: u64,
    /// p95 of the upper bound (first poll that hit).
    pub upper_p95_ms: u64,
    pub median_width_ms: u64,
    pub polls_mean: f64,
    pub polls_max: u64,
}

/// Failures of one error class on one connector.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorCount {
    pub connector: String,
    pub error_class: String,
    pub count: u64,
}

/// Responses with one HTTP status on one connector (last request of each step).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusCount {
    pub connector: String,
    pub status: u16,
    pub count: u64,
}

/// A stretch of failing runs (`failed`, `sync_timeout`, `error`) ended by a success.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outage {
    /// Start of the first failing run.
    pub from: DateTime<Utc>,
    /// End of the first successful run after it; `None` while still failing.
    pub to: Option<DateTime<Utc>>,
    pub failed_runs: u64,
}

/// Outages over the last 7 days and the mean time to recover from them. (Mean time to
/// acknowledge needs acknowledgements: it comes with incidents.)
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recovery {
    pub outages_7d: u64,
    /// Mean of `to − from` over the outages that ended.
    pub mttr_ms: Option<f64>,
    /// Start of the current outage, if the latest run failed.
    pub failing_since: Option<DateTime<Utc>>,
}

/// What `rooftop status` shows of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    pub probe: String,
    pub last: Option<RunRow>,
    pub windows: Vec<Window>,
    /// End-to-end run duration (steps, not cleanup), last 24 h.
    pub duration_24h: Option<Percentiles>,
    /// Start lag of scheduled runs behind their instant, last 24 h.
    pub lag_24h: Option<Percentiles>,
    pub steps: Vec<StepStats>,
    pub sync: Vec<SyncStats>,
    /// Most frequent first, at most 5.
    pub errors_24h: Vec<ErrorCount>,
    pub http_status_24h: Vec<StatusCount>,
    pub recovery: Recovery,
}

/// Outages in a run sequence, oldest first: `(started_ms, finished_ms, outcome)`.
/// `skipped` entries are ignored.
pub fn outages(runs: &[(i64, i64, String)]) -> Vec<Outage> {
    let ts = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut out: Vec<Outage> = Vec::new();
    let mut open: Option<Outage> = None;
    for (started, finished, outcome) in runs {
        match outcome.as_str() {
            "skipped" => {}
            "success" => {
                if let Some(mut o) = open.take() {
                    o.to = Some(ts(*finished));
                    out.push(o);
                }
            }
            _ => match &mut open {
                Some(o) => o.failed_runs += 1,
                None => {
                    open = Some(Outage {
                        from: ts(*started),
                        to: None,
                        failed_runs: 1,
                    })
                }
            },
        }
    }
    out.extend(open);
    out
}

/// MTTR and the current outage from a list of outages.
pub fn recovery(outages: &[Outage]) -> Recovery {
    let ended: Vec<f64> = outages
        .iter()
        .filter_map(|o| o.to.map(|to| (to - o.from).num_milliseconds() as f64))
        .collect();
    Recovery {
        outages_7d: outages.len() as u64,
        mttr_ms: (!ended.is_empty()).then(|| ended.iter().sum::<f64>() / ended.len() as f64),
        failing_since: outages.last().filter(|o| o.to.is_none()).map(|o| o.from),
    }
}

impl RunStore {
    /// Status of the given probes at `now`.
    pub async fn status(
        &self,
        probes: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ProbeStatus>, StoreError> {
        self.db
            .with_conn(move |c| {
                probes
                    .into_iter()
                    .map(|p| probe_status(c, p, now.timestamp_millis()))
                    .collect()
            })
            .await
    }
}

impl RunStore {
    /// Success ratio of every probe with runs, per window: (probe, window, ratio). Three
    /// grouped queries; the agent refreshes its gauges from this once a minute.
    pub async fn ratios(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        self.db
            .with_conn(move |c| {
                let mut out = Vec::new();
                for (name, secs) in WINDOWS {
                    let mut stmt = c.prepare_cached(
                        "SELECT probe, SUM(outcome = 'success'), SUM(outcome != 'skipped') FROM runs
                         WHERE finished_ms >= ?1 GROUP BY probe",
                    )?;
                    let rows =
                        stmt.query_map(params![now.timestamp_millis() - secs * 1000], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        })?;
                    for row in rows {
                        let (probe, ok, runs) = row?;
                        if runs > 0 {
                            out.push((probe, name.to_string(), ok as f64 / runs as f64));
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Bytes of the store file and its write-ahead log.
    pub fn size_bytes(&self) -> u64 {
        let wal = self.db.path.with_extension("db-wal");
        [self.db.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn probe_status(c: &Connection, probe: String, now_ms: i64) -> rusqlite::Result<ProbeStatus> {
    let day = now_ms - DAY_MS;
    let last = c
        .prepare_cached(
            "SELECT run_id, probe, finished_at, duration_ms, outcome, error_class, failed_step, cleanup, trigger, lag_ms
             FROM runs WHERE probe = ?1 AND outcome != 'skipped' ORDER BY finished_ms DESC LIMIT 1",
        )?
        .query_map(params![probe], row_to_run)?
        .next()
        .transpose()?;

    let mut windows = Vec::new();
    for (name, secs) in WINDOWS {
        let mut stmt = c.prepare_cached(
            "SELECT outcome, COUNT(*) FROM runs WHERE probe = ?1 AND finished_ms >= ?2 GROUP BY outcome",
        )?;
        let outcomes: BTreeMap<String, u64> = stmt
            .query_map(params![probe, now_ms - secs * 1000], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let runs = outcomes
            .iter()
            .filter(|(o, _)| o.as_str() != "skipped")
            .map(|(_, n)| n)
            .sum::<u64>();
        let successes = outcomes.get("success").copied().unwrap_or(0);
        windows.push(Window {
            window: name.to_string(),
            runs,
            successes,
            ratio: (runs > 0).then(|| successes as f64 / runs as f64),
            outcomes,
        });
    }

    let column = |sql: &str| -> rusqlite::Result<Vec<f64>> {
        let mut stmt = c.prepare_cached(sql)?;
        stmt.query_map(params![probe, day], |r| r.get::<_, f64>(0))?
            .collect()
    };
    let duration_24h = Percentiles::of(column(
        "SELECT duration_ms FROM runs WHERE probe = ?1 AND finished_ms >= ?2 AND outcome != 'skipped'",
    )?);
    let lag_24h = Percentiles::of(column(
        "SELECT lag_ms FROM runs WHERE probe = ?1 AND finished_ms >= ?2 AND lag_ms IS NOT NULL",
    )?);

    let mut per_step: BTreeMap<String, (u64, Vec<f64>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT step, duration_ms, outcome FROM step_runs WHERE probe = ?1 AND finished_ms >= ?2 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![probe, day], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (step, ms, outcome) = row?;
        if !per_step.contains_key(&step) {
            order.push(step.clone());
        }
        let e = per_step.entry(step).or_default();
        e.0 += u64::from(outcome != "success");
        e.1.push(ms);
    }
    let steps = order
        .into_iter()
        .filter_map(|step| {
            let (failures, values) = per_step.remove(&step)?;
            Some(StepStats {
                runs: values.len() as u64,
                failures,
                duration: Percentiles::of(values)?,
                step,
            })
        })
        .collect();

    let mut per_sync: BTreeMap<String, Vec<(f64, f64, f64, u32)>> = BTreeMap::new();
    let mut stmt = c.prepare_cached(
        "SELECT step, estimate_ms, lower_ms, upper_ms, polls FROM sync_measurements WHERE probe = ?1 AND finished_ms >= ?2",
    )?;
    let rows = stmt.query_map(params![probe, day], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        ))
    })?;
    for row in rows {
        let (step, m) = row?;
        per_sync.entry(step).or_default().push(m);
    }
    let sync = per_sync
        .into_iter()
        .filter_map(|(step, ms)| {
            let est = Percentiles::of(ms.iter().map(|m| m.0))?;
            let lower = Percentiles::of(ms.iter().map(|m| m.1))?;
            let upper = Percentiles::of(ms.iter().map(|m| m.2))?;
            let width = Percentiles::of(ms.iter().map(|m| m.2 - m.1))?;
            let polls: Vec<u64> = ms.iter().map(|m| u64::from(m.3)).collect();
            Some(SyncStats {
                step,
                measurements: est.count,
                p50_ms: est.p50_ms,
                p95_ms: est.p95_ms,
                p99_ms: est.p99_ms,
                lower_p95_ms: lower.p95_ms,
                upper_p95_ms: upper.p95_ms,
                median_width_ms: width.p50_ms,
                polls_mean: polls.iter().sum::<u64>() as f64 / polls.len() as f64,
                polls_max: polls.iter().copied().max().unwrap_or(0),
            })
        })
        .collect();

    let errors_24h = c
        .prepare_cached(
            "SELECT connector, error_class, COUNT(*) AS n FROM runs
             WHERE probe = ?1 AND finished_ms >= ?2 AND error_class IS NOT NULL
             GROUP BY connector, error_class ORDER BY n DESC, error_class LIMIT 5",
        )?
        .query_map(params![probe, day], |r| {
            Ok(ErrorCount {
                connector: r.get(0)?,
                error_class: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let http_status_24h = c
        .prepare_cached(
            "SELECT connector, http_status, COUNT(*) AS n FROM step_runs
             WHERE probe = ?1 AND finished_ms >= ?2 AND http_status IS NOT NULL
             GROUP BY connector, http_status ORDER BY n DESC, http_status",
        )?
        .query_map(params![probe, day], |r| {
            Ok(StatusCount {
                connector: r.get(0)?,
                status: r.get::<_, i64>(1)? as u16,
                count: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let seq: Vec<(i64, i64, String)> = c
        .prepare_cached(
            "SELECT COALESCE(started_ms, finished_ms), finished_ms, outcome FROM runs
             WHERE probe = ?1 AND finished_ms >= ?2 ORDER BY finished_ms",
        )?
        .query_map(params![probe, now_ms - OUTAGE_WINDOW_MS], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let recovery = recovery(&outages(&seq));

    Ok(ProbeStatus {
        probe,
        last,
        windows,
        duration_24h,
        lag_24h,
        steps,
        sync,
        errors_24h,
        http_status_24h,
        recovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_join_failures_ignore_skips_and_give_mttr() {
        let runs: Vec<(i64, i64, String)> = [
            (0, 10, "success"),
            (100, 110, "error"),
            (200, 210, "skipped"),
            (300, 310, "failed"),
            (400, 1100, "success"),
            (2000, 2010, "sync_timeout"),
            (3000, 3010, "success"),
            (4000, 4010, "error"),
        ]
        .iter()
        .map(|(a, b, o)| (*a, *b, o.to_string()))
        .collect();
        let o = outages(&runs);
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].failed_runs, 2);
        let r = recovery(&o);
        // (1100 − 100) and (3010 − 2000): a mean of 1005 ms.
        assert_eq!(r.mttr_ms, Some(1005.0));
        assert_eq!(r.outages_7d, 3);
        assert_eq!(
            r.failing_since,
            DateTime::<Utc>::from_timestamp_millis(4000)
        );
    }

    #[test]
    fn percentiles_of_nothing_is_none_and_zero_counts_as_one_ms() {
        assert_eq!(Percentiles::of(Vec::new()), None);
        let p = Percentiles::of([0.0, 10.0, 20.0, 30.0]).unwrap();
        assert_eq!((p.count, p.p50_ms, p.max_ms), (4, 10, 30));
    }
}
