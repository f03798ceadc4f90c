//! Whether the agent is fit to do its job, for `/readyz` and systemd: the scheduler loop
//! turns (its heartbeat is fresh) and the store takes writes (a real write through the
//! history's writer, every few seconds). The watchdog task pings systemd only while the
//! heartbeat is fresh, so a wedged scheduler stops the pings and systemd restarts the
//! service; the same task keeps `STATUS=` current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::probes::ProbeTable;
use super::systemd::Notifier;
use crate::clock::Clock;
use crate::scheduler::{Heartbeat, TICK};
use crate::store::RunStore;
use crate::telemetry::Telemetry;

/// A heartbeat older than this is a scheduler that no longer turns (it turns every
/// `TICK`; ten ticks leave room for a loaded machine).
pub const STALE_AFTER: Duration = Duration::from_secs(10 * TICK.as_secs());
/// How often the store is written to, to know it still takes writes.
pub const STORE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often `STATUS=` is refreshed (when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What `/readyz` reports.
#[derive(Debug)]
pub struct Readiness {
    heartbeat: Heartbeat,
    /// The latest store check: `Err` with the reason.
    store: Mutex<Result<(), String>>,
    /// A note for the status line that is not a readiness problem (a rejected reload).
    note: Mutex<Option<String>>,
    /// The latest start of a fire behind its schedule since the self-check last looked,
    /// in milliseconds.
    worst_lag_ms: AtomicU64,
}

impl Readiness {
    pub fn new(heartbeat: Heartbeat) -> Readiness {
        Readiness {
            heartbeat,
            store: Mutex::new(Ok(())),
            note: Mutex::new(None),
            worst_lag_ms: AtomicU64::new(0),
        }
    }

    /// A fire started `lag` behind its schedule.
    pub fn note_lag(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.worst_lag_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The worst start lag since the last call, and starts counting afresh.
    pub fn take_worst_lag(&self) -> Duration {
        Duration::from_millis(self.worst_lag_ms.swap(0, Ordering::Relaxed))
    }

    pub fn set_note(&self, note: Option<String>) {
        if let Ok(mut n) = self.note.lock() {
            *n = note;
        }
    }

    /// Why the agent is not ready (empty: ready).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let age = self.heartbeat.age();
        if age > STALE_AFTER {
            out.push(format!(
                "scheduler: the loop has not turned for {:.0}s",
                age.as_secs_f64()
            ));
        }
        if let Ok(Err(e)) = self.store.lock().as_deref() {
            out.push(format!("store: not writable: {e}"));
        }
        out
    }

    fn set_store(&self, r: Result<(), String>) {
        if let Ok(mut s) = self.store.lock() {
            *s = r;
        }
    }
}

/// Writes to the store every `STORE_CHECK_EVERY` and records whether it worked; says so
/// on stderr when that changes.
pub(super) fn spawn_store_check(
    ready: Arc<Readiness>,
    history: RunStore,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut was_ok = true;
        loop {
            let r = history.touch(clock.now()).await.map_err(|e| e.to_string());
            match (&r, was_ok) {
                (Err(e), true) => tracing::warn!("the store does not take writes: {e}"),
                (Ok(()), false) => {
                    tracing::info!(target: crate::model::NOTE, "the store takes writes again")
                }
                _ => {}
            }
            was_ok = r.is_ok();
            ready.set_store(r);
            tokio::select! {
                _ = tokio::time::sleep(STORE_CHECK_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}

/// Pings systemd's watchdog while the scheduler's heartbeat is fresh, and keeps
/// `STATUS=` current. Without `$NOTIFY_SOCKET` it does nothing and is not started.
pub(super) fn spawn_watchdog(
    notifier: Arc<Notifier>,
    ready: Arc<Readiness>,
    probes: Arc<ProbeTable>,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !notifier.enabled() {
        return None;
    }
    let watchdog = notifier.watchdog();
    // systemd's advice: ping at half the interval; a quarter leaves room for a late tick.
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 4).max(Duration::from_millis(50)));
    Some(tokio::spawn(async move {
        let mut last_status = String::new();
        let mut last_status_at: Option<tokio::time::Instant> = None;
        loop {
            if let Some(w) = watchdog
                && ready.heartbeat.age() < w / 2
            {
                notifier.watchdog_ping();
            }
            if last_status_at.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                let s = status_line(&probes, &telemetry, &ready);
                if s != last_status {
                    notifier.status(&s);
                    last_status = s;
                }
                last_status_at = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }))
}

/// `5 probes, 1 failing, 1 open incident` (and what is not ready).
pub(super) fn status_line(probes: &ProbeTable, telemetry: &Telemetry, ready: &Readiness) -> String {
    let (failing, open) = telemetry.summary();
    let n = probes.len_live();
    let mut s = format!(
        "{n} probe{}, {failing} failing, {open} open incident{}",
        if n == 1 { "" } else { "s" },
        if open == 1 { "" } else { "s" }
    );
    for p in ready.problems() {
        s.push_str("; ");
        s.push_str(&p);
    }
    if let Ok(Some(note)) = ready.note.lock().as_deref() {
        s.push_str("; ");
        s.push_str(note);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_names_a_stale_scheduler_and_an_unwritable_store() {
        let hb = Heartbeat::default();
        let r = Readiness::new(hb.clone());
        assert!(r.problems().is_empty());
        r.set_store(Err("disk I/O error".into()));
        tokio::time::advance(STALE_AFTER + Duration::from_secs(1)).await;
        let p = r.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("scheduler: the loop has not turned for 11s"),
            "{p:?}"
        );
        assert_eq!(p[1], "store: not writable: disk I/O error");
        r.set_store(Ok(()));
        assert_eq!(r.problems().len(), 1);
    }
}
