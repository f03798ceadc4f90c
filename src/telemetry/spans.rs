//! A probe run as a trace, built after the run from its `ProbeRun`: a root span for the
//! run, a span per step, and a client span per HTTP request (each poll of a polled step)
//! whose span id is the one the runner sent in that request's `traceparent`. Cleanup
//! items follow the steps as internal spans.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::model::{Outcome, ProbeRun, RequestRecord, StepRun};

fn trace_id(hex: &str) -> TraceId {
    u128::from_str_radix(hex, 16)
        .map(TraceId::from)
        .unwrap_or(TraceId::INVALID)
}

fn span_id(hex: &str) -> SpanId {
    u64::from_str_radix(hex, 16)
        .map(SpanId::from)
        .unwrap_or(SpanId::INVALID)
}

fn random_span_id() -> SpanId {
    SpanId::from(rand::random::<u64>().max(1))
}

fn at(start: SystemTime, offset_ms: f64) -> SystemTime {
    start + Duration::from_secs_f64(offset_ms.max(0.0) / 1000.0)
}

struct Builder<'a> {
    trace: TraceId,
    scope: &'a InstrumentationScope,
    out: Vec<SpanData>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        id: SpanId,
        parent: SpanId,
        kind: SpanKind,
        name: String,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
        status: Status,
    ) {
        self.out.push(SpanData {
            span_context: SpanContext::new(
                self.trace,
                id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: start,
            end_time: end.max(start),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    fn request(&mut self, r: &RequestRecord, parent: SpanId, t0: SystemTime, attempt: usize) {
        let mut attrs = vec![
            KeyValue::new("http.request.method", r.method.clone()),
            KeyValue::new("url.full", r.url.clone()),
        ];
        if let Ok(u) = reqwest::Url::parse(&r.url) {
            if let Some(h) = u.host_str() {
                attrs.push(KeyValue::new("server.address", h.to_string()));
            }
            if let Some(p) = u.port_or_known_default() {
                attrs.push(KeyValue::new("server.port", i64::from(p)));
            }
        }
        if attempt > 0 {
            attrs.push(KeyValue::new("rooftop.poll.attempt", attempt as i64));
        }
        let status = match r.status {
            Some(code) => {
                attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 400 {
                    attrs.push(KeyValue::new("error.type", code.to_string()));
                    Status::error(format!("HTTP {code}"))
                } else {
                    Status::Unset
                }
            }
            None => Status::error("no response"),
        };
        if let Some(b) = r.response_bytes {
            attrs.push(KeyValue::new("http.response.body.size", b as i64));
        }
        self.span(
            span_id(&r.span_id),
            parent,
            SpanKind::Client,
            r.method.clone(),
            at(t0, r.sent_ms),
            at(t0, r.sent_ms + r.total_ms),
            attrs,
            status,
        );
    }

    fn step(&mut self, s: &StepRun, root: SpanId, t0: SystemTime) {
        let id = random_span_id();
        let mut attrs = vec![
            KeyValue::new("rooftop.step", s.name.clone()),
            KeyValue::new("rooftop.outcome", s.outcome.as_str()),
            KeyValue::new("rooftop.attempts", i64::from(s.attempts)),
        ];
        if let Some(c) = s.error_class {
            attrs.push(KeyValue::new("error.type", c.as_str()));
        }
        if let Some(m) = &s.sync {
            attrs.push(KeyValue::new("rooftop.sync.since", m.since.clone()));
            attrs.push(KeyValue::new("rooftop.sync.latency_ms", m.estimate_ms));
            attrs.push(KeyValue::new("rooftop.sync.lower_ms", m.lower_ms));
            attrs.push(KeyValue::new("rooftop.sync.upper_ms", m.upper_ms));
            attrs.push(KeyValue::new("rooftop.sync.polls", i64::from(m.polls)));
        }
        let status = match s.outcome {
            Outcome::Success => Status::Unset,
            _ => Status::error(
                s.message
                    .clone()
                    .unwrap_or_else(|| s.outcome.as_str().into()),
            ),
        };
        self.span(
            id,
            root,
            SpanKind::Internal,
            format!("step {}", s.name),
            at(t0, s.started_ms),
            at(t0, s.started_ms + s.duration_ms),
            attrs,
            status,
        );
        if s.polls.is_empty() {
            if let Some(r) = &s.request {
                self.request(r, id, t0, 0);
            }
        } else {
            for (i, r) in s.polls.iter().enumerate() {
                self.request(r, id, t0, i + 1);
            }
        }
    }
}

/// The spans of one run, root first.
pub fn build(run: &ProbeRun, scope: &InstrumentationScope) -> Vec<SpanData> {
    let t0 = SystemTime::from(run.started_at);
    let mut b = Builder {
        trace: trace_id(&run.trace_id),
        scope,
        out: Vec::with_capacity(run.steps.len() * 2 + 1),
    };
    let root = random_span_id();
    let mut attrs = vec![
        KeyValue::new("rooftop.probe", run.probe.clone()),
        KeyValue::new("rooftop.run_id", run.run_id.clone()),
        KeyValue::new("rooftop.outcome", run.outcome.as_str()),
    ];
    for (k, v) in &run.labels {
        attrs.push(KeyValue::new(format!("rooftop.label.{k}"), v.clone()));
    }
    if let Some(c) = run.error_class {
        attrs.push(KeyValue::new("error.type", c.as_str()));
    }
    if let Some(s) = &run.failed_step {
        attrs.push(KeyValue::new("rooftop.failed_step", s.clone()));
    }
    if let Some(r) = &run.runbook {
        attrs.push(KeyValue::new("rooftop.runbook", r.clone()));
    }
    let status = match run.outcome {
        Outcome::Success => Status::Ok,
        _ => Status::error(
            run.message
                .clone()
                .unwrap_or_else(|| run.outcome.as_str().into()),
        ),
    };
    b.span(
        root,
        SpanId::INVALID,
        SpanKind::Internal,
        format!("probe {}", run.probe),
        t0,
        SystemTime::from(run.finished_at),
        attrs,
        status,
    );
    for s in run.steps.iter().filter(|s| s.attempts > 0) {
        b.step(s, root, t0);
    }
    let mut offset = run.duration_ms;
    for c in &run.cleanup.items {
        let status = if c.success {
            Status::Unset
        } else {
            Status::error(c.error.clone().unwrap_or_else(|| "cleanup failed".into()))
        };
        let mut attrs = vec![
            KeyValue::new("rooftop.cleanup", c.name.clone()),
            KeyValue::new("rooftop.created_by", c.created_by.clone()),
            KeyValue::new("rooftop.attempts", i64::from(c.attempts)),
        ];
        if let Some(code) = c.status {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
        }
        b.span(
            random_span_id(),
            root,
            SpanKind::Internal,
            format!("cleanup {}", c.name),
            at(t0, offset),
            at(t0, offset + c.duration_ms),
            attrs,
            status,
        );
        offset += c.duration_ms;
    }
    b.out
}
