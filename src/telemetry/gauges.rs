//! Observable gauges: values the agent refreshes from its store (`GaugeState`), outage
//! flags from the recorder, and exporter health, read by the SDK at each collection.
//! Registers callbacks only; nothing here records a run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::otlp::QUEUE_LIMIT;
use super::watch::Health;
use super::{ProbeMap, probe_attributes};

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

/// Registers every observable gauge and counter on `m`.
pub(super) fn register_gauges(
    m: &Meter,
    rooftop: &str,
    state: Arc<Mutex<GaugeState>>,
    failing: Arc<Mutex<HashMap<String, SystemTime>>>,
    probes: Arc<ProbeMap>,
    health: Arc<Health>,
) {
    let names = {
        let probes = probes.clone();
        move || -> Vec<String> {
            probes
                .read()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        }
    };
    let r = rooftop.to_string();
    let attrs = move |probe: &str| probe_attributes(&r, &probes, probe);
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
                let names = names();
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
            .with_callback(move |o| per_signal(o, &r, health.queued(QUEUE_LIMIT as u64)))
            .build();
    }
    {
        let (r, health) = (rooftop.to_string(), health.clone());
        m.u64_observable_counter("rooftop.exporter.dropped")
            .with_unit("{item}")
            .with_description(
                "Spans and log records dropped because the OTLP export queue was full, by signal",
            )
            .with_callback(move |o| per_signal(o, &r, health.dropped()))
            .build();
    }
    {
        let r = rooftop.to_string();
        m.u64_observable_counter("rooftop.exporter.failures")
            .with_unit("{export}")
            .with_description("Failed OTLP exports, by signal")
            .with_callback(move |o| per_signal(o, &r, health.failures()))
            .build();
    }
}

/// One observation per OTLP signal, with the `rooftop` and `signal` attributes.
fn per_signal(
    o: &dyn opentelemetry::metrics::AsyncInstrument<u64>,
    rooftop: &str,
    values: BTreeMap<&'static str, u64>,
) {
    for (signal, n) in values {
        o.observe(
            n,
            &[
                KeyValue::new("rooftop", rooftop.to_string()),
                KeyValue::new("signal", signal),
            ],
        );
    }
}
