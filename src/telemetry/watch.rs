//! Exporter wrappers that report a collector outage once when it starts and once when it
//! ends (not once per batch), and count failed exports per signal. They never retry or
//! block beyond the wrapped exporter's own timeout.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::Export;

/// Export health of each signal.
#[derive(Debug, Default)]
pub struct Health {
    failures: [AtomicU64; 3],
    /// Spans / log records handed to the SDK, and those its exporter has taken
    /// (exported or failed): the difference is what waits in the queue.
    submitted: [AtomicU64; 3],
    handled: [AtomicU64; 3],
    /// Spans / log records that arrived while the queue was full: the SDK's batch
    /// processor drops them (it counts them only in a log line at shutdown).
    dropped: [AtomicU64; 3],
    /// Signal → consecutive failures of the outage in progress, and when its first
    /// failure was.
    down: Mutex<BTreeMap<&'static str, (u64, Instant)>>,
}

const SIGNALS: [&str; 3] = ["metrics", "traces", "logs"];

impl Health {
    fn index(signal: &str) -> usize {
        SIGNALS.iter().position(|s| *s == signal).unwrap_or(0)
    }

    /// Notes one export's result; prints on the first failure and on recovery.
    pub fn note(&self, signal: &'static str, endpoint: &str, result: &OTelSdkResult) {
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                if let Some((n, _)) = down.remove(signal) {
                    tracing::info!(target: crate::model::NOTE,
                        "telemetry: OTLP {signal} export to {endpoint} recovered after {n} failed attempt{}",
                        if n == 1 { "" } else { "s" }
                    );
                }
            }
            Err(e) => {
                self.failures[Self::index(signal)].fetch_add(1, Ordering::Relaxed);
                let (n, _) = down.entry(signal).or_insert((0, Instant::now()));
                *n += 1;
                if *n == 1 {
                    tracing::warn!(
                        "telemetry: OTLP {signal} export to {endpoint} failing ({e}); probing goes on, data is kept within bounded queues, next message when it recovers"
                    );
                }
            }
        }
    }

    /// Handed to the SDK and not yet taken by its exporter: what waits in signal `i`'s
    /// queue.
    fn waiting(&self, i: usize) -> u64 {
        self.submitted[i]
            .load(Ordering::Relaxed)
            .saturating_sub(self.handled[i].load(Ordering::Relaxed))
    }

    /// `n` spans or log records are handed to the SDK's batch processor, whose queue
    /// holds at most `limit`: those beyond it are counted as dropped, as the processor
    /// drops them, the rest as submitted.
    pub fn submitted(&self, signal: &str, n: u64, limit: u64) {
        let i = Self::index(signal);
        let room = limit.saturating_sub(self.waiting(i)).min(n);
        self.submitted[i].fetch_add(room, Ordering::Relaxed);
        if n > room {
            self.dropped[i].fetch_add(n - room, Ordering::Relaxed);
        }
    }

    fn handled(&self, signal: &str, n: u64) {
        self.handled[Self::index(signal)].fetch_add(n, Ordering::Relaxed);
    }

    /// Items waiting for export, per queued signal (traces, logs), at most `limit`: the
    /// SDK drops what does not fit.
    pub fn queued(&self, limit: u64) -> BTreeMap<&'static str, u64> {
        ["traces", "logs"]
            .into_iter()
            .map(|s| (s, self.waiting(Self::index(s)).min(limit)))
            .collect()
    }

    /// Signals whose exports fail now, and for how long they have (since the first
    /// failure of the outage in progress).
    pub fn outages(&self) -> Vec<(&'static str, Duration)> {
        self.down
            .lock()
            .map(|d| {
                d.iter()
                    .map(|(s, (_, since))| (*s, since.elapsed()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Spans and log records dropped because the queue was full, per queued signal
    /// (traces, logs), since start.
    pub fn dropped(&self) -> BTreeMap<&'static str, u64> {
        ["traces", "logs"]
            .into_iter()
            .map(|s| (s, self.dropped[Self::index(s)].load(Ordering::Relaxed)))
            .collect()
    }

    /// Failed exports per signal since start.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        SIGNALS
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, self.failures[i].load(Ordering::Relaxed)))
            .collect()
    }
}

/// An exporter plus the health bookkeeping.
#[derive(Debug)]
pub struct Watched<E> {
    inner: E,
    signal: &'static str,
    endpoint: String,
    health: std::sync::Arc<Health>,
}

impl<E> Watched<E> {
    pub fn new(inner: E, signal: &'static str, e: &Export, health: std::sync::Arc<Health>) -> Self {
        Watched {
            inner,
            signal,
            endpoint: e.endpoint.clone(),
            health,
        }
    }

    /// One export through the inner exporter: counts the `handled` items first (spans
    /// and logs are counted, metrics are not), then notes how the export went.
    async fn watch<'a, F>(
        &'a self,
        handled: Option<u64>,
        export: impl FnOnce(&'a E) -> F,
    ) -> OTelSdkResult
    where
        F: Future<Output = OTelSdkResult>,
    {
        if let Some(n) = handled {
            self.health.handled(self.signal, n);
        }
        let r = export(&self.inner).await;
        self.health.note(self.signal, &self.endpoint, &r);
        r
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.watch(None, |inner| inner.export(metrics)).await
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let handled = batch.len() as u64;
        self.watch(Some(handled), |inner| inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

impl<E: LogExporter> LogExporter for Watched<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let handled = batch.iter().count() as u64;
        self.watch(Some(handled), |inner| inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_from_its_first_failure_until_a_success() {
        let h = Health::default();
        assert!(h.outages().is_empty());
        let failed: OTelSdkResult = Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
            "connection refused".into(),
        ));
        h.note("metrics", "http://127.0.0.1:1", &failed);
        std::thread::sleep(Duration::from_millis(20));
        h.note("metrics", "http://127.0.0.1:1", &failed);
        let out = h.outages();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "metrics");
        assert!(
            out[0].1 >= Duration::from_millis(20),
            "from the first failure"
        );
        assert_eq!(h.failures()["metrics"], 2);
        h.note("metrics", "http://127.0.0.1:1", &Ok(()));
        assert!(h.outages().is_empty(), "a success ends it");
    }

    #[test]
    fn what_does_not_fit_in_the_queue_is_counted_as_dropped() {
        let h = Health::default();
        h.submitted("traces", 3, 4);
        assert_eq!(h.queued(4)["traces"], 3);
        assert_eq!(h.dropped()["traces"], 0);
        h.submitted("traces", 3, 4);
        assert_eq!(h.queued(4)["traces"], 4, "full");
        assert_eq!(h.dropped()["traces"], 2, "two did not fit");
        h.handled("traces", 4);
        assert_eq!(h.queued(4)["traces"], 0, "the exporter took the batch");
        h.submitted("traces", 1, 4);
        assert_eq!(h.queued(4)["traces"], 1, "room again");
        assert_eq!(h.dropped()["traces"], 2, "a drop is never taken back");
        assert_eq!(h.dropped()["logs"], 0, "per signal");
    }
}
