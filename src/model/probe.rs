//! The validated probe and agent settings: what `config::validate` produces and the
//! runner, scheduler, pager and telemetry consume.
//!
//! Every value here has been checked (durations parsed, JSONPath compiled, references
//! resolved to indices). Templates stay as source text, rendered per run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use serde_json_path::JsonPath;

/// A checked probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub description: Option<String>,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub severity: Severity,
    pub runbook: Option<Runbook>,
    pub labels: BTreeMap<String, String>,
    /// `labels.connector`, checked: the integration this probe watches (e.g.
    /// `crm-to-dms`); pages group by it and metrics carry it.
    pub connector: Option<String>,
    /// Evaluated once per run, in order.
    pub vars: Vec<(String, Value)>,
    pub steps: Vec<Step>,
    pub cleanup: Vec<CleanupStep>,
    /// When its failures open an incident.
    pub alert: super::rules::AlertRules,
    /// Probes this one depends on (`depend_on`, e.g. `wan-uplink`): while one of them is
    /// failing, this probe's failures are recorded and listed on that incident but page
    /// nobody on their own.
    pub depend_on: Vec<String>,
    /// The file it came from.
    pub source: PathBuf,
}

/// The name of the agent's own, built-in probe (its self-check); no probe file may take it.
pub const SELF_PROBE: &str = "rooftop-agent";

/// The `connector` value of metrics, stored runs and incidents of a probe without one.
pub const NO_CONNECTOR: &str = "-";

impl Probe {
    /// The connector as a metric label value: `-` when the probe names none.
    pub fn connector_label(&self) -> &str {
        self.connector.as_deref().unwrap_or(NO_CONNECTOR)
    }

    pub fn cleanup_step(&self, name: &str) -> Option<&CleanupStep> {
        self.cleanup.iter().find(|c| c.name == name)
    }
}

/// When a probe runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
        timezone: chrono_tz::Tz,
    },
    Every(Duration),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { expr, timezone, .. } => write!(f, "cron \"{expr}\" {timezone}"),
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
        }
    }
}

/// Severity of a probe failure; P1 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum Severity {
    P1,
    P2,
    P3,
    P4,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "P1" => Some(Severity::P1),
            "P2" => Some(Severity::P2),
            "P3" => Some(Severity::P3),
            "P4" => Some(Severity::P4),
            _ => None,
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = super::UnknownValue;

    fn from_str(s: &str) -> Result<Severity, Self::Err> {
        Severity::parse(s).ok_or_else(|| super::UnknownValue {
            what: "severity",
            value: s.to_string(),
            expected: &["P1", "P2", "P3", "P4"],
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Where the runbook for a failure lives; for a file, what it says (parsed at load, so
/// pages quote it without reading files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runbook {
    File {
        /// Relative to the config directory, e.g. `runbooks/ro-not-created.md`.
        path: PathBuf,
        text: RunbookText,
    },
    Url(String),
}

impl fmt::Display for Runbook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runbook::File { path, .. } => write!(f, "{}", path.display()),
            Runbook::Url(u) => f.write_str(u),
        }
    }
}

/// A runbook file's `##` sections in file order (`config::validate::parse_runbook`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunbookText {
    pub sections: Vec<RunbookSection>,
}

/// One `## Title` and the text under it, up to the next `#` or `##` heading (`###` and
/// deeper stay in the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookSection {
    /// As written, trimmed.
    pub title: String,
    /// Trimmed; may be empty.
    pub text: String,
}

impl RunbookText {
    /// The text of the first section titled `title` (case-insensitive), if it has any.
    pub fn section(&self, title: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|s| s.title.eq_ignore_ascii_case(title))
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
    }

    /// Whether a section titled `title` (case-insensitive) exists, empty or not.
    pub fn has_section(&self, title: &str) -> bool {
        self.sections
            .iter()
            .any(|s| s.title.eq_ignore_ascii_case(title))
    }
}

/// One HTTP step.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub request: Request,
    pub expect: Expect,
    pub captures: Vec<Capture>,
    /// Poll until this holds (with `poll`).
    pub until: Option<Expect>,
    pub poll: Option<Poll>,
    pub sync: Option<SyncSpec>,
    pub slo_sync_latency: Option<Duration>,
    /// Cleanup steps for the records this step creates.
    pub creates: Vec<String>,
    /// Runbook for a failure of this step, when it differs from the probe's.
    pub runbook: Option<Runbook>,
}

/// An HTTP request with templated parts.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    /// JSON whose string leaves are templates.
    Json(Value),
    Text(String),
}

/// Conditions on a response.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: StatusMatch,
    pub json: Vec<JsonAssertion>,
    pub headers: Vec<(String, Vec<Op>)>,
    pub body: Vec<Op>,
}

/// Accepted status codes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StatusMatch {
    /// Any 2xx (the default).
    #[default]
    Success,
    /// A class such as `4xx` (the hundreds digit).
    Class(u16),
    Codes(Vec<u16>),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            StatusMatch::Success => (200..300).contains(&status),
            StatusMatch::Class(c) => status / 100 == *c,
            StatusMatch::Codes(codes) => codes.contains(&status),
        }
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMatch::Success => f.write_str("2xx"),
            StatusMatch::Class(c) => write!(f, "{c}xx"),
            StatusMatch::Codes(c) if c.len() == 1 => write!(f, "{}", c[0]),
            StatusMatch::Codes(c) => write!(f, "{c:?}"),
        }
    }
}

/// A JSONPath query and the operators its result must satisfy.
#[derive(Debug, Clone)]
pub struct JsonAssertion {
    pub path_text: String,
    pub path: JsonPath,
    pub ops: Vec<Op>,
}

/// An assertion operator. String operands are templates, rendered per run.
#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Le(Value),
    Gt(Value),
    Ge(Value),
    Exists(bool),
    Contains(Value),
    Matches(Regex),
    Length(usize),
}

impl Op {
    pub fn symbol(&self) -> &'static str {
        match self {
            Op::Eq(_) => "==",
            Op::Ne(_) => "!=",
            Op::Lt(_) => "<",
            Op::Le(_) => "<=",
            Op::Gt(_) => ">",
            Op::Ge(_) => ">=",
            Op::Exists(_) => "exists",
            Op::Contains(_) => "contains",
            Op::Matches(_) => "matches",
            Op::Length(_) => "length",
        }
    }
}

/// The operator names accepted in assertion maps.
pub const OPERATORS: [&str; 10] = [
    "==", "!=", "<", "<=", ">", ">=", "exists", "contains", "matches", "length",
];

/// A value taken from a response.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub source: CaptureSource,
}

#[derive(Debug, Clone)]
pub enum CaptureSource {
    Json(JsonPath, String),
    Header(String),
    /// Regex on the body; the first capture group if there is one, else the whole match.
    Regex(Regex),
}

/// Polling schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poll {
    pub interval: Duration,
    pub backoff: f64,
    pub max_interval: Duration,
    pub within: Duration,
}

/// Propagation latency measurement from an earlier step.
#[derive(Debug, Clone)]
pub struct SyncSpec {
    pub since: String,
    pub since_index: usize,
    /// Capture (of this step) holding the downstream record's own RFC 3339 timestamp.
    pub timestamp: Option<String>,
}

/// A cleanup request with retries; with `find`, run once per record found.
#[derive(Debug, Clone)]
pub struct CleanupStep {
    pub name: String,
    pub find: Option<Find>,
    pub request: Request,
    /// `None` means: any 2xx, or 404/410 (already gone).
    pub expect: Option<Expect>,
    pub retries: u32,
}

/// The listing half of a sweep.
#[derive(Debug, Clone)]
pub struct Find {
    pub request: Request,
    pub each: JsonPath,
    pub each_text: String,
    pub bind: String,
}

/// Agent-wide settings after validation.
#[derive(Debug, Clone)]
pub struct Agent {
    pub rooftop_id: String,
    pub rooftop_name: Option<String>,
    pub dealer_group: Option<String>,
    pub state_dir: PathBuf,
    pub secrets: BTreeMap<String, SecretSource>,
    pub env: BTreeMap<String, String>,
    pub max_body_bytes: u64,
    pub verify_tls: bool,
    pub scheduler: SchedulerSettings,
    pub history: HistorySettings,
    pub telemetry: TelemetrySettings,
    pub alerting: AlertingSettings,
    pub self_monitoring: SelfMonitoring,
    /// Rotations and time windows (`oncall`, `time_windows`).
    pub oncall: super::oncall::OnCall,
}

/// The agent watching itself (`self_monitoring`): its built-in `rooftop-agent` probe's
/// thresholds, and how someone outside hears that the agent has died.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfMonitoring {
    /// How often the self-check looks.
    pub check_every: Duration,
    /// Free space on the state directory's filesystem under which it fails (or 5 %).
    pub min_free_disk: u64,
    /// A page pending longer than this is a stuck outbox.
    pub outbox_stuck_after: Duration,
    /// An OTLP signal failing to export for longer than this is a problem (the WAN or
    /// the collector down for that long: data beyond the bounded queues is dropped).
    pub export_failing_after: Duration,
    /// A fire starting later than this behind its schedule is a scheduler that lags
    /// (too many probes for `max_concurrent`, or a starved machine).
    pub scheduler_lag_after: Duration,
    pub heartbeat: Option<HeartbeatTarget>,
}

impl Default for SelfMonitoring {
    fn default() -> Self {
        SelfMonitoring {
            check_every: Duration::from_secs(30),
            min_free_disk: 512 * 1024 * 1024,
            outbox_stuck_after: Duration::from_secs(30 * 60),
            export_failing_after: Duration::from_secs(15 * 60),
            scheduler_lag_after: Duration::from_secs(30),
            heartbeat: None,
        }
    }
}

/// A dead-man's switch in the healthchecks.io style: `URL/start` once at start, `URL`
/// every `every` while the agent is ready, `URL/fail` (the reasons in the body) while it
/// is not. Whoever watches the URL is told when the pings stop.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatTarget {
    /// A template (it may carry `{{ secret.* }}`), rendered at start.
    pub url: String,
    pub every: Duration,
    pub timeout: Duration,
}

/// Default `self_monitoring.heartbeat.every`.
pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// Default `self_monitoring.heartbeat.timeout`.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who gets paged, per severity, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertingSettings {
    pub contacts: Vec<Contact>,
    /// Severity → how its pages escalate (a plain list of contacts in `routes` is a
    /// one-step policy named `routes.P1`).
    pub routes: BTreeMap<Severity, super::oncall::EscalationPolicy>,
    /// Every severity's deadline, re-notification and channels (defaults filled in).
    pub severities: BTreeMap<Severity, super::oncall::SeverityPolicy>,
    /// Route rules over time windows (`alerting.windows`), in file order.
    pub windows: Vec<super::oncall::WindowRoute>,
    pub email: Option<EmailSettings>,
    pub runbook_base_url: Option<String>,
    /// Secrets stay templates here; they are rendered at start.
    pub sms: Option<super::channels::SmsAccount>,
    pub webhook: Option<super::channels::WebhookTarget>,
    pub pagerduty: Option<super::channels::PagerDutyTarget>,
    /// Personal channels in order of preference (`sms`, `email`).
    pub prefer: Vec<String>,
    pub ack_base_url: Option<String>,
    /// Page grouping (`alerting.group`).
    pub group: GroupSettings,
}

impl AlertingSettings {
    /// The policy of `severity` (its defaults when `alerting` is not configured).
    pub fn severity_policy(&self, severity: Severity) -> super::oncall::SeverityPolicy {
        self.severities
            .get(&severity)
            .cloned()
            .unwrap_or_else(|| super::oncall::SeverityPolicy::default_for(severity))
    }
}

/// Incidents of one connector and severity opening within `window` of the first share
/// its page; the first page waits `wait` for them. `window` zero: no grouping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSettings {
    pub window: std::time::Duration,
    pub wait: std::time::Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            window: std::time::Duration::from_secs(600),
            wait: std::time::Duration::ZERO,
        }
    }
}

/// The e-mail channel as configured (the password still a template).
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    pub from: String,
    pub destination: EmailDestination,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EmailDestination {
    Smtp {
        host: String,
        port: u16,
        security: super::channels::SmtpSecurity,
        username: Option<String>,
        password_template: Option<String>,
        timeout: Duration,
        ca_file: Option<PathBuf>,
    },
    Folder(PathBuf),
}

/// A person who can be paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
}

/// Telemetry as `rooftop.yaml` sets it (the environment may still override at start).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `None`: no local listener.
    pub listen: Option<std::net::SocketAddr>,
    pub interval: Duration,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Header name → template (rendered at start with `env.*` and `secret.*`).
    pub otlp_headers: Vec<(String, String)>,
    pub otlp_timeout: Option<Duration>,
    pub metrics: bool,
    pub traces: bool,
    pub logs: bool,
    /// Serve the status page at `/status`.
    pub status_page: bool,
    /// Template of the token the status page asks for; `None`: open.
    pub status_token: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))),
            interval: Duration::from_secs(30),
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_headers: Vec::new(),
            otlp_timeout: None,
            metrics: true,
            traces: true,
            logs: true,
            status_page: true,
            status_token: None,
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn parse(text: &str) -> Option<OtlpProtocol> {
        match text.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// How `rooftop run` schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    pub max_concurrent: usize,
    pub missed_runs: MissedRuns,
    /// One deadline for a whole stop: runs, cleanup, the last outbox pass, exporters.
    pub stop_deadline: Duration,
}

/// The default stop deadline: under systemd's default 90 s stop timeout, so the agent
/// names what did not finish before systemd kills it.
pub const DEFAULT_STOP_DEADLINE: Duration = Duration::from_secs(75);

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_concurrent: 16,
            missed_runs: MissedRuns::Skip,
            stop_deadline: DEFAULT_STOP_DEADLINE,
        }
    }
}

/// What happens to fires missed while the agent was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedRuns {
    /// Nothing: the next run is the next scheduled one.
    Skip,
    /// One run at start for each probe that missed at least one fire.
    RunOnce,
}

/// History retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    pub keep: Duration,
    pub max_bytes: u64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            keep: Duration::from_secs(30 * 86_400),
            max_bytes: 1 << 30,
        }
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Credential(String),
}

impl Request {
    /// Every template string of the request.
    pub fn template_sources<'a>(&'a self, out: &mut Vec<&'a str>) {
        out.push(&self.url);
        out.extend(self.headers.iter().map(|(_, v)| v.as_str()));
        match &self.body {
            Body::None => {}
            Body::Json(v) => out.extend(string_leaves(v)),
            Body::Text(t) => out.push(t),
        }
    }
}

impl Probe {
    /// Every template string in the probe (for reference checks such as `rooftop check`).
    pub fn template_sources(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for (_, v) in &self.vars {
            out.extend(string_leaves(v));
        }
        for s in &self.steps {
            s.request.template_sources(&mut out);
        }
        for c in &self.cleanup {
            c.request.template_sources(&mut out);
            if let Some(f) = &c.find {
                f.request.template_sources(&mut out);
            }
        }
        out
    }
}

/// Time limits for running probes against a simulated dealership (the demo, tests and
/// benchmarks), where syncs take seconds rather than minutes.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// Upper bound of every `poll.within`.
    pub within: Duration,
    /// Upper bound of every poll interval and max interval.
    pub interval: Duration,
    /// Upper bound of every request timeout.
    pub request_timeout: Duration,
    /// Upper bound of the probe timeout.
    pub timeout: Duration,
}

impl Probe {
    /// Shrinks waits and timeouts to at most the given bounds; nothing else changes.
    pub fn compress(&mut self, c: &Compression) {
        self.timeout = self.timeout.min(c.timeout);
        let requests = self
            .steps
            .iter_mut()
            .map(|s| {
                if let Some(p) = &mut s.poll {
                    p.within = p.within.min(c.within);
                    p.interval = p.interval.min(c.interval);
                    p.max_interval = p.max_interval.min(c.interval);
                }
                &mut s.request
            })
            .chain(self.cleanup.iter_mut().flat_map(|s| {
                std::iter::once(&mut s.request).chain(s.find.as_mut().map(|f| &mut f.request))
            }));
        for r in requests {
            r.timeout = r.timeout.min(c.request_timeout);
        }
    }
}

/// Every string inside a JSON value (templates can hide in any of them).
pub fn string_leaves(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}
