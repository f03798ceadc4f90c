//! The agent's periodic chores besides probing: refreshing the gauges that come from the
//! store (success ratios, leftovers, store size), rolling up ended days, applying
//! history retention and retrying the cleanup ledger entries that are due.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::probes::ProbeTable;
use crate::model::{HistorySettings, Probe};
use crate::runner::Runner;
use crate::store::{Ledger, RunStore};
use crate::telemetry::Telemetry;

/// Every `every`, replays the ledger entries due now (`runner::cleanup::due_in_run`: a
/// re-sweep whose time has come, a failed cleanup of a run long over); the start already
/// replayed the rest. A stop abandons a pass: its entries stay for the next start.
pub fn spawn_ledger_retry(
    runner: Runner,
    probes: Arc<ProbeTable>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let live = probes.live();
            let live: Vec<&Probe> = live.iter().map(|(_, p)| p.as_ref()).collect();
            tokio::select! {
                r = runner.replay_due(&live) => match r {
                    Ok(replays) => super::log_replays(replays),
                    Err(e) => tracing::warn!("cleanup ledger retry: {e}"),
                },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}

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
        // An entry waiting for its re-sweep is not a leftover: its cleanup did not fail.
        for e in pending.into_iter().filter(|e| !e.awaiting_resweep()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::runner::cleanup::tests::{
        entry_of_close_ro, runner, surveys_server, sweeping_probe, t0,
    };

    /// The running agent sweeps again when the re-sweep is due, not before, and its
    /// retry task ends on the stop signal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_running_agent_resweeps_when_due_and_stops_on_the_signal() {
        let (addr, surveys) = surveys_server().await;
        let probe = sweeping_probe(&addr);
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(t0());
        let runner = runner(state.path(), &clock);
        // A failed run's sweep found nothing: swept again at t0 + 2 min.
        let id = entry_of_close_ro(&runner).await;
        let due = t0() + chrono::Duration::minutes(2);
        runner.ledger.mark_resweep(id, 1, t0(), due).await.unwrap();
        surveys.0.lock().unwrap().push("CSI-1".into());

        let (stop_tx, stop) = watch::channel(false);
        let task = spawn_ledger_retry(
            runner.clone(),
            Arc::new(ProbeTable::new(vec![probe])),
            Duration::from_millis(20),
            stop,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(surveys.0.lock().unwrap().len(), 1, "not due: not swept yet");

        clock.advance(chrono::Duration::minutes(2));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !runner.ledger.pending(None).await.unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never re-swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            surveys.0.lock().unwrap().is_empty(),
            "the re-sweep deleted it"
        );

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the retry task ends on the stop signal")
            .unwrap();
    }
}
