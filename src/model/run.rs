//! `ProbeRun`: everything one run of a probe observed. This is the runner's only output and
//! the input of everything downstream (store, telemetry, alerting, `rooftop once --json`).
//!
//! Field names are a stable interface (documented in docs/commands.md). No secret value may
//! reach these types unmasked: the runner masks before it builds them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::units::fmt_ms;

/// How a run or a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// An assertion on a response did not hold.
    Failed,
    /// A polled record never appeared within `poll.within`.
    SyncTimeout,
    /// Transport or protocol trouble (see `ErrorClass`).
    Error,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::SyncTimeout => "sync_timeout",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step did not succeed: a bounded set, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Dns,
    Connect,
    Tls,
    /// One request took longer than its timeout.
    Timeout,
    /// The whole probe ran past its `timeout`.
    ProbeTimeout,
    Http4xx,
    Http5xx,
    /// 401 or 403: credentials rejected.
    Auth,
    /// 429.
    RateLimited,
    BodyTooLarge,
    /// A JSON assertion or capture met a body that is not JSON.
    InvalidJson,
    /// Protocol-level failure (connection reset, malformed HTTP).
    Protocol,
    Assertion,
    /// A capture found nothing.
    Capture,
    SyncTimeout,
    /// A template could not be rendered (e.g. `env.X` not set).
    Template,
    /// A secret could not be read.
    Secret,
    /// The cleanup ledger could not record a created record.
    Ledger,
    /// The agent was stopping: the step was cut short (its cleanup still ran).
    Interrupted,
    /// The agent's own check (`rooftop-agent`): its store, disk, scheduler or outbox.
    Agent,
    /// A heartbeat check's job did not ping by its deadline plus grace (or a `/start`
    /// was not followed by a finish within grace).
    HeartbeatMissed,
    /// A heartbeat check's job reported failure: `/fail` or a non-zero exit status.
    HeartbeatFailed,
}

impl ErrorClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Dns => "dns",
            ErrorClass::Connect => "connect",
            ErrorClass::Tls => "tls",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ProbeTimeout => "probe_timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Auth => "auth",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::BodyTooLarge => "body_too_large",
            ErrorClass::InvalidJson => "invalid_json",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Assertion => "assertion",
            ErrorClass::Capture => "capture",
            ErrorClass::SyncTimeout => "sync_timeout",
            ErrorClass::Template => "template",
            ErrorClass::Secret => "secret",
            ErrorClass::Ledger => "ledger",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::Agent => "agent",
            ErrorClass::HeartbeatMissed => "heartbeat_missed",
            ErrorClass::HeartbeatFailed => "heartbeat_failed",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of one probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRun {
    pub run_id: String,
    pub probe: String,
    /// W3C trace id sent in every request's `traceparent`.
    pub trace_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Steps only; cleanup time is in `cleanup`.
    pub duration_ms: f64,
    pub outcome: Outcome,
    pub error_class: Option<ErrorClass>,
    /// The first step that did not succeed.
    pub failed_step: Option<String>,
    /// Human-readable reason, secrets masked.
    pub message: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Runbook for the failure (the failed step's, else the probe's); none on success.
    pub runbook: Option<String>,
    pub steps: Vec<StepRun>,
    pub cleanup: CleanupReport,
}

impl ProbeRun {
    /// The probe's `labels.connector`, `-` when it names none.
    pub fn connector_label(&self) -> &str {
        self.labels
            .get("connector")
            .map_or(super::probe::NO_CONNECTOR, String::as_str)
    }

    /// A run as the store keeps it (`runs.json`), read back.
    pub fn from_stored_json(json: &str) -> Result<ProbeRun, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn step(&self, name: &str) -> Option<&StepRun> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// One line for logs and pipes: time, probe, outcome, duration, sync estimates, and
    /// for a failure its class, step and runbook.
    pub fn summary_line(&self) -> String {
        let ms = fmt_ms;
        let syncs: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| {
                s.sync
                    .as_ref()
                    .map(|m| format!("{} {}", s.name, ms(m.estimate_ms)))
            })
            .collect();
        let mut line = format!(
            "{} {:<28} {:<12} {:>8}",
            self.finished_at.format("%H:%M:%S"),
            self.probe,
            self.outcome.as_str(),
            ms(self.duration_ms)
        );
        if !syncs.is_empty() {
            line.push_str(&format!("  sync: {}", syncs.join(", ")));
        }
        if self.outcome != Outcome::Success {
            line.push_str(&format!(
                "  [{} at {}] {}",
                self.error_class.map(|c| c.as_str()).unwrap_or("-"),
                self.failed_step.as_deref().unwrap_or("-"),
                self.runbook.as_deref().unwrap_or("")
            ));
        }
        if self.cleanup.outcome == CleanupOutcome::Failed {
            line.push_str("  CLEANUP FAILED");
        }
        line
    }
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRun {
    pub name: String,
    pub outcome: Outcome,
    pub error_class: Option<ErrorClass>,
    pub message: Option<String>,
    /// Offset from the run's start.
    pub started_ms: f64,
    pub duration_ms: f64,
    /// The last request sent (the hit, for a polled step).
    pub request: Option<RequestRecord>,
    /// Number of requests sent (1 for an unpolled step).
    pub attempts: u32,
    /// Every poll of a polled step, in order (at most the first 200), each with the span
    /// id its `traceparent` carried; empty for an unpolled step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polls: Vec<RequestRecord>,
    pub assertions: Vec<AssertionResult>,
    /// Captured values, secrets masked.
    pub captures: BTreeMap<String, Value>,
    pub sync: Option<SyncMeasurement>,
}

/// Timings and result of one HTTP request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// URL with secrets masked.
    pub url: String,
    pub status: Option<u16>,
    /// W3C span id sent in `traceparent`.
    pub span_id: String,
    /// Offset from the run's start when the request was sent.
    pub sent_ms: f64,
    /// Time until response headers arrived.
    pub ttfb_ms: Option<f64>,
    /// Time until the body was read (or the request failed).
    pub total_ms: f64,
    pub response_bytes: Option<u64>,
}

/// One checked condition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssertionResult {
    /// `status`, a JSONPath, `header NAME` or `body`.
    pub subject: String,
    pub op: String,
    pub expected: Value,
    pub actual: Option<Value>,
    pub passed: bool,
}

/// Propagation latency of a sync step, as an interval that contains the true value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncMeasurement {
    pub since: String,
    /// The record was not yet visible this long after the event (last miss).
    pub lower_ms: f64,
    /// It was visible by this long after the event (first hit).
    pub upper_ms: f64,
    pub estimate_ms: f64,
    pub width_ms: f64,
    pub polls: u32,
    /// From the downstream record's own timestamp, when `sync.timestamp` is set.
    pub downstream_ms: Option<f64>,
    /// The downstream timestamp disagrees with the interval by more than a second:
    /// the systems' clocks probably differ.
    pub skew_suspected: bool,
    pub slo_ms: Option<f64>,
    pub slo_breached: bool,
}

/// What cleanup did after the run.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CleanupReport {
    pub outcome: CleanupOutcome,
    pub items: Vec<CleanupRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CleanupOutcome {
    /// Nothing was created.
    #[default]
    NotNeeded,
    Success,
    /// At least one record could not be removed; it stays in the ledger.
    Failed,
}

impl CleanupOutcome {
    /// The serde name (`not_needed`, `success`, `failed`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupOutcome::NotNeeded => "not_needed",
            CleanupOutcome::Success => "success",
            CleanupOutcome::Failed => "failed",
        }
    }
}

/// One cleanup step's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupRun {
    pub name: String,
    /// The step that created the record.
    pub created_by: String,
    pub success: bool,
    pub attempts: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// Why a run started and how late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The instant the run was due (for a catch-up run: the start of the agent).
    pub scheduled: DateTime<Utc>,
    /// Actual start − `scheduled`: waiting for the runtime and for a concurrency permit.
    pub lag: Duration,
    /// The missed fire this run makes up for.
    pub catch_up: Option<DateTime<Utc>>,
}
