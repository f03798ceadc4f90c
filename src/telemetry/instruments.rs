//! The instrument catalogue: every metric rooftop records, with its name, unit,
//! description and bucket boundaries. Names, units and attributes are a stable interface
//! (docs/telemetry.md, dashboards/, alerts/): change them here and there together.

use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Sync latency: seconds to hours.
const SYNC_BUCKETS: [f64; 15] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    14400.0,
];
/// Run and step durations.
const DURATION_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Scheduler start lag.
const LAG_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const POLL_BUCKETS: [f64; 10] = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0];
/// Outage length (time to recover): minutes to days.
const RECOVERY_BUCKETS: [f64; 12] = [
    60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0,
    604800.0,
];
/// The synchronous instruments `record` writes to (the gauges are in `gauges`).
pub(super) struct Instruments {
    pub(super) runs: Counter<u64>,
    pub(super) run_duration: Histogram<f64>,
    pub(super) step_runs: Counter<u64>,
    pub(super) step_duration: Histogram<f64>,
    pub(super) sync_latency: Histogram<f64>,
    pub(super) sync_width: Histogram<f64>,
    pub(super) sync_polls: Histogram<u64>,
    pub(super) slo_breaches: Counter<u64>,
    pub(super) cleanup_runs: Counter<u64>,
    pub(super) recovery: Histogram<f64>,
    pub(super) lag: Histogram<f64>,
    pub(super) skipped: Counter<u64>,
    pub(super) ack_time: Histogram<f64>,
    pub(super) resolve_time: Histogram<f64>,
    pub(super) incidents: Counter<u64>,
    pub(super) notifications: Counter<u64>,
}

/// Creates the instruments on `m`.
pub(super) fn instruments(m: &Meter) -> Instruments {
    Instruments {
        runs: m
            .u64_counter("rooftop.probe.runs")
            .with_unit("{run}")
            .with_description("Finished probe runs, by outcome and error type")
            .build(),
        run_duration: m
            .f64_histogram("rooftop.probe.duration")
            .with_unit("s")
            .with_description("End-to-end probe run duration (steps, cleanup excluded)")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build(),
        step_runs: m
            .u64_counter("rooftop.step.runs")
            .with_unit("{step}")
            .with_description("Steps run, by outcome, error type and HTTP status")
            .build(),
        step_duration: m
            .f64_histogram("rooftop.step.duration")
            .with_unit("s")
            .with_description("Step duration, polls included")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build(),
        sync_latency: m
            .f64_histogram("rooftop.sync.latency")
            .with_unit("s")
            .with_description(
                "Sync latency estimate: how long a record took to appear in the next system",
            )
            .with_boundaries(SYNC_BUCKETS.to_vec())
            .build(),
        sync_width: m
            .f64_histogram("rooftop.sync.interval_width")
            .with_unit("s")
            .with_description("Width of the interval known to contain the true sync latency")
            .with_boundaries(SYNC_BUCKETS.to_vec())
            .build(),
        sync_polls: m
            .u64_histogram("rooftop.sync.polls")
            .with_unit("{poll}")
            .with_description("Polls per sync measurement")
            .with_boundaries(POLL_BUCKETS.to_vec())
            .build(),
        slo_breaches: m
            .u64_counter("rooftop.sync.slo_breaches")
            .with_unit("{measurement}")
            .with_description("Sync measurements over the step's sync-latency SLO")
            .build(),
        cleanup_runs: m
            .u64_counter("rooftop.cleanup.runs")
            .with_unit("{cleanup}")
            .with_description("Cleanups after runs that created synthetic records, by outcome")
            .build(),
        recovery: m
            .f64_histogram("rooftop.probe.recovery")
            .with_unit("s")
            .with_description(
                "Outage length: first failing run to the recovering success (MTTR = sum / count)",
            )
            .with_boundaries(RECOVERY_BUCKETS.to_vec())
            .build(),
        lag: m
            .f64_histogram("rooftop.scheduler.lag")
            .with_unit("s")
            .with_description("Start lag of scheduled runs behind their instant")
            .with_boundaries(LAG_BUCKETS.to_vec())
            .build(),
        skipped: m
            .u64_counter("rooftop.scheduler.skipped_runs")
            .with_unit("{run}")
            .with_description("Fires skipped because the previous run was still going")
            .build(),
        ack_time: m
            .f64_histogram("rooftop.incident.time_to_acknowledge")
            .with_unit("s")
            .with_description("Incident opened to acknowledged (MTTA = sum / count)")
            .with_boundaries(RECOVERY_BUCKETS.to_vec())
            .build(),
        resolve_time: m
            .f64_histogram("rooftop.incident.time_to_resolve")
            .with_unit("s")
            .with_description("Incident opened to resolved (MTTR = sum / count)")
            .with_boundaries(RECOVERY_BUCKETS.to_vec())
            .build(),
        incidents: m
            .u64_counter("rooftop.incidents.opened")
            .with_unit("{incident}")
            .with_description("Incidents opened, by severity")
            .build(),
        notifications: m
            .u64_counter("rooftop.notifications")
            .with_unit("{notification}")
            .with_description("Notification attempts by channel, kind and result (delivered, retry, failed, fallback)")
            .build(),
    }
}
