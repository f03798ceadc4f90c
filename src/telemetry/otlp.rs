//! OTLP export set-up: the resource that identifies this agent, one exporter per signal
//! (gRPC or HTTP/protobuf, with headers), the batch and periodic pipelines around them,
//! and the reader `/metrics` shares. Builds pipelines only; nothing here records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{ManualReader, PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};

use super::TelemetryError;
use super::settings::{Export, Resolved};
use super::watch::{Health, Watched};
use crate::model::{Agent, OtlpProtocol};

/// Spans and log records waiting for export while a collector is down; more are dropped.
pub(super) const QUEUE_LIMIT: usize = 2048;

/// `rooftop.yaml`'s identity as resource attributes, then the environment's.
pub(super) fn resource(agent: &Agent, overrides: &[(String, String)]) -> Resource {
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

/// The meter provider: the `/metrics` reader always, and a periodic OTLP reader when
/// `resolved` names a metrics endpoint.
pub(super) fn meter_provider(
    res: &Resource,
    prom: Arc<ManualReader>,
    resolved: &Resolved,
    health: &Arc<Health>,
) -> Result<SdkMeterProvider, TelemetryError> {
    let mut mp = SdkMeterProvider::builder()
        .with_resource(res.clone())
        .with_reader(SharedReader(prom));
    if let Some(e) = &resolved.metrics {
        let exporter = build_exporter!(
            opentelemetry_otlp::MetricExporter::builder().with_temporality(Temporality::Cumulative),
            e,
            "metrics"
        )?;
        let reader = PeriodicReader::builder(Watched::new(exporter, "metrics", e, health.clone()))
            .with_interval(resolved.interval)
            .build();
        mp = mp.with_reader(reader);
    }
    Ok(mp.build())
}

/// The span pipeline to `e`: batched, at most [`QUEUE_LIMIT`] spans waiting.
pub(super) fn span_processor(
    e: &Export,
    res: &Resource,
    health: &Arc<Health>,
) -> Result<BatchSpanProcessor, TelemetryError> {
    let exporter = build_exporter!(opentelemetry_otlp::SpanExporter::builder(), e, "traces")?;
    let mut p = BatchSpanProcessor::builder(Watched::new(exporter, "traces", e, health.clone()))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE_LIMIT)
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    p.set_resource(res);
    Ok(p)
}

/// The log pipeline to `e` and its logger: batched, at most [`QUEUE_LIMIT`] records
/// waiting.
pub(super) fn logger(
    e: &Export,
    res: &Resource,
    scope: &InstrumentationScope,
    health: &Arc<Health>,
) -> Result<(SdkLoggerProvider, SdkLogger), TelemetryError> {
    let exporter = build_exporter!(opentelemetry_otlp::LogExporter::builder(), e, "logs")?;
    let processor = opentelemetry_sdk::logs::BatchLogProcessor::builder(Watched::new(
        exporter,
        "logs",
        e,
        health.clone(),
    ))
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
    Ok((provider, logger))
}
