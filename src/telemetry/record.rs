//! Recording what happened: a finished run (metrics, its trace, log events), scheduler
//! lag and skips, incident transitions and notification attempts. Writes to the
//! instruments and exporters `Telemetry::start` set up; never blocks on export.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::trace::SpanProcessor;

use super::otlp::QUEUE_LIMIT;
use super::{Telemetry, spans};
use crate::model::{CleanupOutcome, Outcome, Probe, ProbeRun};

impl Telemetry {
    /// Creates each probe's counter series at 0, so `rate()` and `increase()` see a
    /// probe's first failure, breach or skip (a series' first sample is invisible to them).
    pub(super) fn start_counters_at_zero(&self, probes: &[Probe]) {
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
            self.inst.skipped.add(0, &self.skip_attributes(&p.name));
        }
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
            self.health
                .submitted("traces", spans.len() as u64, QUEUE_LIMIT as u64);
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
            self.health.submitted("logs", 1, QUEUE_LIMIT as u64);
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
        self.inst.skipped.add(1, &self.skip_attributes(probe));
    }

    /// A skip's series: skips happen only because the previous run overlapped.
    fn skip_attributes(&self, probe: &str) -> [KeyValue; 3] {
        [
            KeyValue::new("rooftop", self.rooftop.clone()),
            KeyValue::new("probe", probe.to_string()),
            KeyValue::new("reason", "overlap"),
        ]
    }
}
