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
//! By concern: `otlp` sets up the exporters, `instruments` is the catalogue of metrics,
//! `record` turns runs, incidents and notifications into them, `gauges` reports what is
//! observed at collection. Metric names, units and attributes are a stable interface
//! (docs/telemetry.md, dashboards/, alerts/).

mod gauges;
mod instruments;
mod otlp;
pub mod prometheus;
mod record;
pub mod settings;
mod spans;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor};

use crate::model::{Agent, Probe};
pub use gauges::GaugeState;
use instruments::Instruments;
pub use settings::{Export, Resolved};
use watch::Health;

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

/// Per-probe attributes that every series of the probe carries.
#[derive(Debug, Clone)]
struct ProbeAttrs {
    flow: String,
    connector: String,
}

/// `rooftop`, `probe`, `flow` and `connector`: the attributes every series of a probe
/// starts with (`-` for a probe the agent was not started with).
fn probe_attributes(rooftop: &str, probes: &ProbeMap, probe: &str) -> Vec<KeyValue> {
    let probes = probes.read().unwrap_or_else(|p| p.into_inner());
    let a = probes.get(probe);
    vec![
        KeyValue::new("rooftop", rooftop.to_string()),
        KeyValue::new("probe", probe.to_string()),
        KeyValue::new("flow", a.map_or("-".into(), |a| a.flow.clone())),
        KeyValue::new("connector", a.map_or("-".into(), |a| a.connector.clone())),
    ]
}

/// Each probe's attributes, by name; a reload replaces it.
type ProbeMap = std::sync::RwLock<BTreeMap<String, ProbeAttrs>>;

fn attrs_of(probes: &[Probe]) -> BTreeMap<String, ProbeAttrs> {
    probes
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
        .collect()
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
    probes: Arc<ProbeMap>,
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

impl Telemetry {
    /// Sets up metrics (always: `/metrics` reads them), and the OTLP exporters that
    /// `resolved` names. Must be called inside the tokio runtime (the gRPC exporter's
    /// connection lives there).
    pub fn start(
        agent: &Agent,
        probe_list: &[Probe],
        resolved: &Resolved,
    ) -> Result<Telemetry, TelemetryError> {
        let res = otlp::resource(agent, &resolved.resource_overrides);
        let health = Arc::new(Health::default());
        let prom = Arc::new(ManualReader::builder().build());
        let meters = otlp::meter_provider(&res, prom.clone(), resolved, &health)?;
        let scope = InstrumentationScope::builder("rooftop")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = meters.meter_with_scope(scope.clone());
        let inst = instruments::instruments(&meter);
        let gauges = Arc::new(Mutex::new(GaugeState::default()));
        let failing: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
        let probes = Arc::new(ProbeMap::new(attrs_of(probe_list)));
        gauges::register_gauges(
            &meter,
            &agent.rooftop_id,
            gauges.clone(),
            failing.clone(),
            probes.clone(),
            health.clone(),
        );
        let spans = match &resolved.traces {
            Some(e) => Some(otlp::span_processor(e, &res, &health)?),
            None => None,
        };
        let logs = match &resolved.logs {
            Some(e) => Some(otlp::logger(e, &res, &scope, &health)?),
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

    /// After a reload: the probes are now `probe_list`. Added probes get their series at
    /// zero; removed ones stop being reported (their counters' last values stay with the
    /// collector, as for any series that ends).
    pub fn set_probes(&self, probe_list: &[Probe]) {
        let new = attrs_of(probe_list);
        let added: Vec<Probe> = {
            let Ok(mut map) = self.probes.write() else {
                return;
            };
            let added = probe_list
                .iter()
                .filter(|p| !map.contains_key(&p.name))
                .cloned()
                .collect();
            *map = new;
            added
        };
        self.start_counters_at_zero(&added);
        let live = |name: &String| probe_list.iter().any(|p| &p.name == name);
        if let Ok(mut g) = self.gauges.lock() {
            g.ratios.retain(|(p, _), _| live(p));
            g.leftovers.retain(|p, _| live(p));
            g.open_incidents.retain(|p, _| live(p));
            for p in added.iter().filter(|p| !p.cleanup.is_empty()) {
                g.leftovers.insert(p.name.clone(), 0);
            }
        }
        if let Ok(mut f) = self.failing.lock() {
            f.retain(|p, _| live(p));
        }
    }

    /// Probes whose latest run failed, and open incidents (as last refreshed).
    pub fn summary(&self) -> (usize, usize) {
        let failing = self.failing.lock().map(|f| f.len()).unwrap_or(0);
        let open = self
            .gauges
            .lock()
            .map(|g| g.open_incidents.len())
            .unwrap_or(0);
        (failing, open)
    }

    /// The attributes every series of `probe` starts with.
    fn base(&self, probe: &str) -> Vec<KeyValue> {
        probe_attributes(&self.rooftop, &self.probes, probe)
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

    /// OTLP signals failing to export now, and for how long (the self-check pages when
    /// that is longer than `self_monitoring.export_failing_after`).
    pub fn export_outages(&self) -> Vec<(&'static str, Duration)> {
        self.health.outages()
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
