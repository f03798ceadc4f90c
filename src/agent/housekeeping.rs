//! The agent's periodic chores besides probing: refreshing the gauges that come from the
//! store (success ratios, leftovers, store size) and applying history retention.

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
