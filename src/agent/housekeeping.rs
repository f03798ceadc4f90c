//! The agent's periodic chores besides probing: refreshing the gauges that come from the
//! store (success ratios, leftovers, store size), rolling up ended days and applying
//! history retention.

use chrono::{DateTime, Utc};

use crate::model::HistorySettings;
use crate::store::{Ledger, RunStore};
use crate::telemetry::Telemetry;

/// Refreshes the gauges that come from the store and the ledger.
pub async fn refresh_gauges(
    history: &RunStore,
    ledger: &Ledger,
    telemetry: &Telemetry,
    now: DateTime<Utc>,
) {
    let ratios = history.ratios(now).await.unwrap_or_default();
    let pending = ledger.pending(None).await.unwrap_or_default();
    let size = history.size_bytes();
    if let Ok(mut g) = telemetry.gauges().lock() {
        g.ratios = ratios.into_iter().map(|(p, w, r)| ((p, w), r)).collect();
        // Every probe that creates records reports a count, 0 included.
        for n in g.leftovers.values_mut() {
            *n = 0;
        }
        for e in pending {
            *g.leftovers.entry(e.record.probe).or_insert(0) += 1;
        }
        g.store_bytes = size;
    }
}

/// Rolls up the days that have ended (the status page's long bars) and says how many.
pub async fn seal(history: &RunStore, zone: chrono_tz::Tz, now: DateTime<Utc>) {
    match history.seal_days(zone, now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(target: crate::model::NOTE,
            "history: rolled up {n} day(s) ({} days) for the status page",
            zone.name()
        ),
        Err(e) => tracing::warn!("history rollups: {e}"),
    }
}

/// Applies retention and says what it removed.
pub async fn retain(history: &RunStore, now: DateTime<Utc>, limits: &HistorySettings) {
    match history.retain(now, limits).await {
        Ok(p) => {
            if p.by_age > 0 {
                tracing::info!(target: crate::model::NOTE,
                    "history: removed {} runs older than {}",
                    p.by_age,
                    humantime::format_duration(limits.keep)
                );
            }
            if p.by_size > 0 {
                tracing::info!(target: crate::model::NOTE,
                    "history: removed the {} oldest runs to stay under {} MB (now {} MB)",
                    p.by_size,
                    limits.max_bytes / 1_000_000,
                    p.used_bytes / 1_000_000
                );
            }
        }
        Err(e) => tracing::warn!("history retention: {e}"),
    }
}
