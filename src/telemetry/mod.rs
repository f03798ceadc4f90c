//! What leaves the agent: OpenTelemetry metrics, traces and logs over OTLP (gRPC or
//! HTTP/protobuf), and the same metrics as Prometheus text on the local listener.
//!
//! Everything is derived from the `ProbeRun` the runner returns: metrics are recorded and
//! spans built after the run, with the exact trace and span ids the runner put in each
//! request's `traceparent`, so a target's logs and rooftop's trace line up. Export runs
//! on the SDK's own threads; a collector that is down never blocks probing, its failures
//! are reported once per outage, and queues are bounded (cumulative metrics lose
//! resolution, not counts).
//!
//! Metric names, units and attributes are a stable interface (README, dashboards/,
//! alerts/).

pub mod prometheus;
pub mod settings;
mod spans;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{ManualReader, PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};

use crate::model::{Agent, OtlpProtocol, Probe};
use crate::model::{CleanupOutcome, Outcome, ProbeRun};
pub use settings::{Export, Resolved};
use watch::{Health, Watched};

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
/// Spans and log records waiting for export while a collector is down; more are dropped.
const QUEUE_LIMIT: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry settings: {0}")]
    Settings(#[from] settings::SettingsError),
    #[error("OTLP {signal} exporter for {endpoint}: {message}")]
    Exporter {
        signal: &'static str,
        endpoint: String,
        message: String,
    },
}

struct Instruments {
    runs: Counter<u64>,
    run_duration: Histogram<f64>,
    step_runs: Counter<u64>,
    step_duration: Histogram<f64>,
    sync_latency: Histogram<f64>,
    sync_width: Histogram<f64>,
    sync_polls: Histogram<u64>,
    slo_breaches: Counter<u64>,
    cleanup_runs: Counter<u64>,
    recovery: Histogram<f64>,
    lag: Histogram<f64>,
    skipped: Counter<u64>,
    ack_time: Histogram<f64>,
    resolve_time: Histogram<f64>,
    incidents: Counter<u64>,
    notifications: Counter<u64>,
}

/// Values the agent refreshes from its store; observable gauges read them.
#[derive(Debug, Default)]
pub struct GaugeState {
    /// (probe, window) → ratio.
    pub ratios: BTreeMap<(String, String), f64>,
    /// probe → records still in the cleanup ledger.
    pub leftovers: BTreeMap<String, u64>,
    pub store_bytes: u64,
    /// probe → severity of its open incident.
    pub open_incidents: BTreeMap<String, String>,
}

/// Per-probe attributes that every series of the probe carries.
#[derive(Debug, Clone)]
struct ProbeAttrs {
    flow: String,
    connector: String,
}

/// The agent's telemetry.
pub struct Telemetry {
    meters: SdkMeterProvider,
    prom: Arc<ManualReader>,
    spans: Option<BatchSpanProcessor>,
    logs: Option<(SdkLoggerProvider, SdkLogger)>,
    inst: Instruments,
    gauges: Arc<Mutex<GaugeState>>,
    failing: Arc<Mutex<HashMap<String, SystemTime>>>,
    probes: Arc<BTreeMap<String, ProbeAttrs>>,
    rooftop: String,
    scope: InstrumentationScope,
    health: Arc<Health>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("rooftop", &self.rooftop)
            .finish()
    }
}

/// `rooftop.yaml`'s identity as resource attributes, then the environment's.
fn resource(agent: &Agent, overrides: &[(String, String)]) -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mut attrs: Vec<(String, String)> = vec![
        ("service.name".into(), "rooftop".into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "service.instance.id".into(),
            format!("{}@{host}", agent.rooftop_id),
        ),
        ("host.name".into(), host),
        ("rooftop.id".into(), agent.rooftop_id.clone()),
    ];
    if let Some(n) = &agent.rooftop_name {
        attrs.push(("rooftop.name".into(), n.clone()));
    }
    if let Some(g) = &agent.dealer_group {
        attrs.push(("rooftop.dealer_group".into(), g.clone()));
    }
    for (k, v) in overrides {
        attrs.retain(|(a, _)| a != k);
        attrs.push((k.clone(), v.clone()));
    }
    Resource::builder_empty()
        .with_attributes(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// A `MetricReader` the meter provider and the `/metrics` handler share.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl opentelemetry_sdk::metrics::reader::MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<opentelemetry_sdk::metrics::Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, t: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(t)
    }
    fn temporality(&self, kind: opentelemetry_sdk::metrics::InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn exporter_error(signal: &'static str, e: &Export, err: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Exporter {
        signal,
        endpoint: e.endpoint.clone(),
        message: err.to_string(),
    }
}

macro_rules! build_exporter {
    ($builder:expr, $export:expr, $signal:expr) => {{
        let e: &Export = $export;
        let headers: HashMap<String, String> = e.headers.iter().cloned().collect();
        match e.protocol {
            OtlpProtocol::HttpProtobuf => $builder
                .with_http()
                .with_endpoint(e.endpoint.clone())
                .with_timeout(e.timeout)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_headers(headers)
                .build(),
            OtlpProtocol::Grpc => {
                let mut meta = tonic::metadata::MetadataMap::new();
                for (k, v) in &headers {
                    if let (Ok(k), Ok(v)) = (
                        k.to_ascii_lowercase()
                            .parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                        v.parse(),
                    ) {
                        meta.insert(k, v);
                    }
                }
                $builder
                    .with_tonic()
                    .with_endpoint(e.endpoint.clone())
                    .with_timeout(e.timeout)
                    .with_metadata(meta)
                    .build()
            }
        }
        .map_err(|err| exporter_error($signal, e, err))
    }};
}

impl Telemetry {
    /// Sets up metrics (always: `/metrics` reads them), and the OTLP exporters that
    /// `resolved` names. Must be called inside the tokio runtime (the gRPC exporter's
    /// connection lives there).
    pub fn start(
        agent: &Agent,
        probe_list: &[Probe],
        resolved: &Resolved,
    ) -> Result<Telemetry, TelemetryError> {
        let res = resource(agent, &resolved.resource_overrides);
        let health = Arc::new(Health::default());
        let prom = Arc::new(ManualReader::builder().build());
        let mut mp = SdkMeterProvider::builder()
            .with_resource(res.clone())
            .with_reader(SharedReader(prom.clone()));
        if let Some(e) = &resolved.metrics {
            let exporter = build_exporter!(
                opentelemetry_otlp::MetricExporter::builder()
                    .with_temporality(Temporality::Cumulative),
                e,
                "metrics"
            )?;
            let reader =
                PeriodicReader::builder(Watched::new(exporter, "metrics", e, health.clone()))
                    .with_interval(resolved.interval)
                    .build();
            mp = mp.with_reader(reader);
        }
        let meters = mp.build();
        let scope = InstrumentationScope::builder("rooftop")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = meters.meter_with_scope(scope.clone());
        let inst = instruments(&meter);
        let gauges = Arc::new(Mutex::new(GaugeState::default()));
        let failing: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
        let probes: Arc<BTreeMap<String, ProbeAttrs>> = Arc::new(
            probe_list
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        ProbeAttrs {
                            flow: p.labels.get("flow").cloned().unwrap_or_else(|| "-".into()),
                            connector: p.connector_label().to_string(),
                        },
                    )
                })
                .collect(),
        );
        register_gauges(
            &meter,
            &agent.rooftop_id,
            gauges.clone(),
            failing.clone(),
            probes.clone(),
            health.clone(),
        );

        let spans = match &resolved.traces {
            Some(e) => {
                let exporter =
                    build_exporter!(opentelemetry_otlp::SpanExporter::builder(), e, "traces")?;
                let mut p = BatchSpanProcessor::builder(Watched::new(
                    exporter,
                    "traces",
                    e,
                    health.clone(),
                ))
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(QUEUE_LIMIT)
                        .with_scheduled_delay(Duration::from_secs(1))
                        .build(),
                )
                .build();
                p.set_resource(&res);
                Some(p)
            }
            None => None,
        };
        let logs =
            match &resolved.logs {
                Some(e) => {
                    let exporter =
                        build_exporter!(opentelemetry_otlp::LogExporter::builder(), e, "logs")?;
                    let processor = opentelemetry_sdk::logs::BatchLogProcessor::builder(
                        Watched::new(exporter, "logs", e, health.clone()),
                    )
                    .with_batch_config(
                        opentelemetry_sdk::logs::BatchConfigBuilder::default()
                            .with_max_queue_size(QUEUE_LIMIT)
                            .with_scheduled_delay(Duration::from_secs(1))
                            .build(),
                    )
                    .build();
                    let provider = SdkLoggerProvider::builder()
                        .with_resource(res.clone())
                        .with_log_processor(processor)
                        .build();
                    let logger = provider.logger_with_scope(scope.clone());
                    Some((provider, logger))
                }
                None => None,
            };
        let t = Telemetry {
            meters,
            prom,
            spans,
            logs,
            inst,
            gauges,
            failing,
            probes,
            rooftop: agent.rooftop_id.clone(),
            scope,
            health,
        };
        t.start_counters_at_zero(probe_list);
        if let Ok(mut g) = t.gauges.lock() {
            for p in probe_list.iter().filter(|p| !p.cleanup.is_empty()) {
                g.leftovers.insert(p.name.clone(), 0);
            }
        }
        Ok(t)
    }

    /// Creates each probe's counter series at 0, so `rate()` and `increase()` see a
    /// probe's first failure, breach or skip (a series' first sample is invisible to them).
    fn start_counters_at_zero(&self, probes: &[Probe]) {
        for p in probes {
            let base = self.base(&p.name);
            let with = |extra: KeyValue| {
                let mut v = base.clone();
                v.push(extra);
                v
            };
            self.inst
                .runs
                .add(0, &with(KeyValue::new("outcome", "success")));
            if !p.cleanup.is_empty() {
                for outcome in ["success", "failed"] {
                    self.inst
                        .cleanup_runs
                        .add(0, &with(KeyValue::new("outcome", outcome)));
                }
            }
            for step in p.steps.iter().filter(|s| s.sync.is_some()) {
                self.inst
                    .slo_breaches
                    .add(0, &with(KeyValue::new("step", step.name.clone())));
            }
            self.inst.skipped.add(
                0,
                &[
                    KeyValue::new("rooftop", self.rooftop.clone()),
                    KeyValue::new("probe", p.name.clone()),
                    KeyValue::new("reason", "overlap"),
                ],
            );
        }
    }

    fn base(&self, probe: &str) -> Vec<KeyValue> {
        let a = self.probes.get(probe);
        vec![
            KeyValue::new("rooftop", self.rooftop.clone()),
            KeyValue::new("probe", probe.to_string()),
            KeyValue::new("flow", a.map_or("-".into(), |a| a.flow.clone())),
            KeyValue::new("connector", a.map_or("-".into(), |a| a.connector.clone())),
        ]
    }

    /// Records a finished run: metrics, its trace, and log events.
    pub fn observe_run(&self, run: &ProbeRun) {
        let base = self.base(&run.probe);
        let with = |extra: &[KeyValue]| -> Vec<KeyValue> {
            let mut v = base.clone();
            v.extend_from_slice(extra);
            v
        };
        let outcome = KeyValue::new("outcome", run.outcome.as_str());
        let mut run_attrs = with(std::slice::from_ref(&outcome));
        self.inst
            .run_duration
            .record(run.duration_ms / 1000.0, &run_attrs);
        if let Some(c) = run.error_class {
            run_attrs.push(KeyValue::new("error.type", c.as_str()));
        }
        self.inst.runs.add(1, &run_attrs);
        for s in run.steps.iter().filter(|s| s.attempts > 0) {
            let step = KeyValue::new("step", s.name.clone());
            let so = KeyValue::new("outcome", s.outcome.as_str());
            self.inst
                .step_duration
                .record(s.duration_ms / 1000.0, &with(&[step.clone(), so.clone()]));
            let mut attrs = with(&[step.clone(), so]);
            if let Some(c) = s.error_class {
                attrs.push(KeyValue::new("error.type", c.as_str()));
            }
            if let Some(code) = s.request.as_ref().and_then(|r| r.status) {
                attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
            }
            self.inst.step_runs.add(1, &attrs);
            if let Some(m) = &s.sync {
                let attrs = with(&[step]);
                self.inst
                    .sync_latency
                    .record(m.estimate_ms / 1000.0, &attrs);
                self.inst.sync_width.record(m.width_ms / 1000.0, &attrs);
                self.inst.sync_polls.record(u64::from(m.polls), &attrs);
                if m.slo_breached {
                    self.inst.slo_breaches.add(1, &attrs);
                }
            }
        }
        if run.cleanup.outcome != CleanupOutcome::NotNeeded {
            let ok = if run.cleanup.outcome == CleanupOutcome::Success {
                "success"
            } else {
                "failed"
            };
            self.inst
                .cleanup_runs
                .add(1, &with(&[KeyValue::new("outcome", ok)]));
        }
        self.track_outage(run, &base);
        if let Some(p) = &self.spans {
            let spans = spans::build(run, &self.scope);
            self.health.submitted("traces", spans.len() as u64);
            for span in spans {
                p.on_end(span);
            }
        }
        self.log_run(run);
    }

    /// Outage bookkeeping: `rooftop.probe.failing` and, on recovery, the outage length.
    fn track_outage(&self, run: &ProbeRun, base: &[KeyValue]) {
        let Ok(mut failing) = self.failing.lock() else {
            return;
        };
        if run.outcome == Outcome::Success {
            if let Some(since) = failing.remove(&run.probe) {
                let secs = SystemTime::from(run.finished_at)
                    .duration_since(since)
                    .unwrap_or_default()
                    .as_secs_f64();
                self.inst.recovery.record(secs, base);
            }
        } else {
            failing
                .entry(run.probe.clone())
                .or_insert_with(|| SystemTime::from(run.started_at));
        }
    }

    fn log_run(&self, run: &ProbeRun) {
        let Some((_, logger)) = &self.logs else {
            return;
        };
        let trace = u128::from_str_radix(&run.trace_id, 16)
            .map(TraceId::from)
            .unwrap_or(TraceId::INVALID);
        let emit = |name: &'static str,
                    severity: Severity,
                    body: String,
                    attrs: Vec<(&'static str, String)>| {
            let mut r = logger.create_log_record();
            r.set_event_name(name);
            r.set_severity_number(severity);
            r.set_severity_text(severity.name());
            r.set_timestamp(SystemTime::from(run.finished_at));
            r.set_body(AnyValue::from(body));
            r.add_attribute("rooftop", self.rooftop.clone());
            r.add_attribute("probe", run.probe.clone());
            r.add_attribute("rooftop.run_id", run.run_id.clone());
            for (k, v) in attrs {
                r.add_attribute(k, v);
            }
            r.set_trace_context(trace, SpanId::INVALID, Some(TraceFlags::SAMPLED));
            self.health.submitted("logs", 1);
            logger.emit(r);
        };
        let mut attrs = vec![("outcome", run.outcome.as_str().to_string())];
        if let Some(c) = run.error_class {
            attrs.push(("error.type", c.as_str().to_string()));
        }
        if let Some(rb) = &run.runbook {
            attrs.push(("rooftop.runbook", rb.clone()));
        }
        let severity = if run.outcome == Outcome::Success {
            Severity::Info
        } else {
            Severity::Warn
        };
        emit("rooftop.run.finished", severity, run.summary_line(), attrs);
        for s in run
            .steps
            .iter()
            .filter(|s| s.attempts > 0 && s.outcome != Outcome::Success)
        {
            emit(
                "rooftop.step.failed",
                Severity::Warn,
                format!(
                    "{} {}: {}",
                    run.probe,
                    s.name,
                    s.message
                        .clone()
                        .unwrap_or_else(|| s.outcome.as_str().into())
                ),
                vec![
                    ("step", s.name.clone()),
                    ("outcome", s.outcome.as_str().into()),
                    (
                        "error.type",
                        s.error_class.map(|c| c.as_str()).unwrap_or("-").into(),
                    ),
                ],
            );
        }
        if run.cleanup.outcome == CleanupOutcome::Failed {
            emit(
                "rooftop.cleanup.failed",
                Severity::Error,
                format!("{}: cleanup left synthetic records behind", run.probe),
                vec![],
            );
        }
    }

    /// A scheduled run started `lag` late.
    pub fn observe_lag(&self, lag: Duration) {
        self.inst.lag.record(
            lag.as_secs_f64(),
            &[KeyValue::new("rooftop", self.rooftop.clone())],
        );
    }

    /// An incident transition: opened / acknowledged / resolved (MTTA, MTTR, open count).
    pub fn observe_incident(&self, probe: &str, severity: &str, action: &crate::alerting::Action) {
        use crate::alerting::Action;
        let mut attrs = self.base(probe);
        attrs.push(KeyValue::new("severity", severity.to_string()));
        let secs = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
            (to - from).num_milliseconds().max(0) as f64 / 1000.0
        };
        match action {
            Action::Opened(_) => {
                self.inst.incidents.add(1, &attrs);
                if let Ok(mut g) = self.gauges.lock() {
                    g.open_incidents
                        .insert(probe.to_string(), severity.to_string());
                }
            }
            Action::Reopened(_) => {
                if let Ok(mut g) = self.gauges.lock() {
                    g.open_incidents
                        .insert(probe.to_string(), severity.to_string());
                }
            }
            Action::Acknowledged { at, opened_at, .. } => {
                self.inst.ack_time.record(secs(*opened_at, *at), &attrs);
            }
            Action::Resolved { incident, at, .. } => {
                self.inst
                    .resolve_time
                    .record(secs(incident.opened_at, *at), &attrs);
                if let Ok(mut g) = self.gauges.lock() {
                    g.open_incidents.remove(probe);
                }
            }
            _ => {}
        }
    }

    /// One delivery attempt's result on a channel.
    pub fn observe_notification(&self, channel: &str, kind: &str, result: &'static str) {
        self.inst.notifications.add(
            1,
            &[
                KeyValue::new("rooftop", self.rooftop.clone()),
                KeyValue::new("channel", channel.to_string()),
                KeyValue::new("kind", kind.to_string()),
                KeyValue::new("result", result),
            ],
        );
    }

    /// A fire was skipped because the probe's previous run was still going.
    pub fn observe_skip(&self, probe: &str) {
        self.inst.skipped.add(
            1,
            &[
                KeyValue::new("rooftop", self.rooftop.clone()),
                KeyValue::new("probe", probe.to_string()),
                KeyValue::new("reason", "overlap"),
            ],
        );
    }

    /// The values the gauges report; the agent refreshes them from its store.
    pub fn gauges(&self) -> Arc<Mutex<GaugeState>> {
        self.gauges.clone()
    }

    /// `GET /metrics`: a fresh collection as Prometheus text.
    pub fn prometheus_text(&self) -> String {
        let mut rm = ResourceMetrics::default();
        match opentelemetry_sdk::metrics::reader::MetricReader::collect(&*self.prom, &mut rm) {
            Ok(()) => prometheus::encode(&rm),
            Err(e) => format!("# collection failed: {e}\n"),
        }
    }

    /// Failed exports so far, per signal (for tests and the start-up summary).
    pub fn export_failures(&self) -> BTreeMap<&'static str, u64> {
        self.health.failures()
    }

    /// Flushes and stops the exporters (bounded by their timeouts). Blocking: call it
    /// from `spawn_blocking`.
    pub fn shutdown(&self) {
        if let Some(p) = &self.spans {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
        if let Some((provider, _)) = &self.logs {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
        let _ = self.meters.force_flush();
        let _ = self.meters.shutdown();
    }
}

fn instruments(m: &Meter) -> Instruments {
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

fn register_gauges(
    m: &Meter,
    rooftop: &str,
    state: Arc<Mutex<GaugeState>>,
    failing: Arc<Mutex<HashMap<String, SystemTime>>>,
    probes: Arc<BTreeMap<String, ProbeAttrs>>,
    health: Arc<Health>,
) {
    let names: Vec<String> = probes.keys().cloned().collect();
    let r = rooftop.to_string();
    let attrs = move |probe: &str| -> Vec<KeyValue> {
        let a = probes.get(probe);
        vec![
            KeyValue::new("rooftop", r.clone()),
            KeyValue::new("probe", probe.to_string()),
            KeyValue::new("flow", a.map_or("-".into(), |a| a.flow.clone())),
            KeyValue::new("connector", a.map_or("-".into(), |a| a.connector.clone())),
        ]
    };
    let attrs = Arc::new(attrs);
    {
        let (state, attrs) = (state.clone(), attrs.clone());
        m.f64_observable_gauge("rooftop.probe.success_ratio")
            .with_unit("1")
            .with_description("Success ratio over a window (1h, 24h, 7d), from the agent's store")
            .with_callback(move |o| {
                if let Ok(s) = state.lock() {
                    for ((probe, window), ratio) in &s.ratios {
                        let mut a = attrs(probe);
                        a.push(KeyValue::new("window", window.clone()));
                        o.observe(*ratio, &a);
                    }
                }
            })
            .build();
    }
    {
        let (attrs, failing) = (attrs.clone(), failing.clone());
        m.u64_observable_gauge("rooftop.probe.failing")
            .with_unit("{probe}")
            .with_description("1 while the probe's latest run failed (an open outage)")
            .with_callback(move |o| {
                if let Ok(f) = failing.lock() {
                    for p in &names {
                        o.observe(u64::from(f.contains_key(p)), &attrs(p));
                    }
                }
            })
            .build();
    }
    {
        let (state, r) = (state.clone(), rooftop.to_string());
        m.u64_observable_gauge("rooftop.cleanup.leftovers")
            .with_unit("{record}")
            .with_description("Synthetic records in the cleanup ledger still to delete")
            .with_callback(move |o| {
                if let Ok(s) = state.lock() {
                    for (probe, n) in &s.leftovers {
                        o.observe(
                            *n,
                            &[
                                KeyValue::new("rooftop", r.clone()),
                                KeyValue::new("probe", probe.clone()),
                            ],
                        );
                    }
                }
            })
            .build();
    }
    {
        let (state, r) = (state.clone(), rooftop.to_string());
        m.u64_observable_gauge("rooftop.store.size")
            .with_unit("By")
            .with_description("Size of the agent's SQLite store")
            .with_callback(move |o| {
                if let Ok(s) = state.lock() {
                    o.observe(s.store_bytes, &[KeyValue::new("rooftop", r.clone())]);
                }
            })
            .build();
    }
    {
        let r = rooftop.to_string();
        m.u64_observable_gauge("rooftop.agent.info")
            .with_description("Always 1: the agent is alive and reporting")
            .with_callback(move |o| {
                o.observe(
                    1,
                    &[
                        KeyValue::new("rooftop", r.clone()),
                        KeyValue::new("version", env!("CARGO_PKG_VERSION")),
                    ],
                )
            })
            .build();
    }
    {
        let (state, r) = (state.clone(), rooftop.to_string());
        m.u64_observable_gauge("rooftop.incidents.open")
            .with_unit("{incident}")
            .with_description("Open (unresolved) incidents, by severity")
            .with_callback(move |o| {
                if let Ok(s) = state.lock() {
                    for sev in ["P1", "P2", "P3", "P4"] {
                        let n = s.open_incidents.values().filter(|v| *v == sev).count() as u64;
                        o.observe(
                            n,
                            &[
                                KeyValue::new("rooftop", r.clone()),
                                KeyValue::new("severity", sev),
                            ],
                        );
                    }
                }
            })
            .build();
    }
    {
        let (r, health) = (rooftop.to_string(), health.clone());
        m.u64_observable_gauge("rooftop.exporter.queue")
            .with_unit("{item}")
            .with_description("Spans and log records waiting for OTLP export, by signal (at most the queue limit; the SDK drops beyond it)")
            .with_callback(move |o| {
                for (signal, n) in health.queued(QUEUE_LIMIT as u64) {
                    o.observe(
                        n,
                        &[
                            KeyValue::new("rooftop", r.clone()),
                            KeyValue::new("signal", signal),
                        ],
                    );
                }
            })
            .build();
    }
    {
        let r = rooftop.to_string();
        m.u64_observable_counter("rooftop.exporter.failures")
            .with_unit("{export}")
            .with_description("Failed OTLP exports, by signal")
            .with_callback(move |o| {
                for (signal, n) in health.failures() {
                    o.observe(
                        n,
                        &[
                            KeyValue::new("rooftop", r.clone()),
                            KeyValue::new("signal", signal),
                        ],
                    );
                }
            })
            .build();
    }
}
