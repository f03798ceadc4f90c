//! Raw configuration as written in YAML (phase 1): shapes only, unknown fields rejected.
//!
//! Durations, cron expressions, time zones, JSONPath and templates stay strings here;
//! `validate` turns them into checked types with positions for every error.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// One probe: a named, scheduled sequence of HTTP steps that walks a business flow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Unique name: lowercase letters, digits and dashes (e.g. `appointment-to-ro`).
    pub name: String,
    /// What the probe proves, in one sentence for the on-call engineer.
    #[serde(default)]
    pub description: Option<String>,
    /// When to run: `{cron: "0 15 */2 * * *", timezone: America/Toronto}` or `{every: 30m}`.
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// Deadline for all steps of one run (e.g. `45m`); cleanup runs after it regardless.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Severity of a failure: `P1` (acknowledge within 15 min) to `P4`.
    #[serde(default)]
    pub severity: Option<String>,
    /// Runbook for a failure: a path under the config directory's `runbooks/`, or an https URL.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Bounded labels for metrics and routing, e.g. `{flow: service, connector: crm-to-dms}`.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Values computed once per run, in order (templates may use earlier vars).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Value>")]
    pub vars: IndexMap<String, Value>,
    /// The steps, run in order; the run stops at the first step that does not succeed.
    pub steps: Vec<StepConfig>,
    /// Steps that undo what `creates` recorded; run after success, failure or timeout.
    #[serde(default)]
    pub cleanup: Vec<CleanupConfig>,
    /// Alert rules for this probe, over `rooftop.yaml`'s `alerting.rules`.
    #[serde(default)]
    pub alert: Option<AlertRulesConfig>,
    /// Probes this one depends on (a name or a list, e.g. `[wan-uplink, dms-login]`):
    /// while one of them is failing, this probe keeps running and recording, but its
    /// failures page nobody on their own: they are listed on that probe's incident.
    #[serde(default)]
    pub depend_on: Option<OneOrMany>,
}

/// One passive heartbeat check (`heartbeats/NAME.yaml`): a batch job of the dealership
/// pings `/ping/NAME` on the agent's listener when it runs; a missed deadline or a
/// reported failure opens an incident like a failing probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatCheckConfig {
    /// Unique name among probes and checks: lowercase letters, digits and dashes (e.g.
    /// `price-file-import`); the ping URL is `/ping/NAME`.
    pub name: String,
    /// What the job does, in one sentence for the on-call engineer.
    #[serde(default)]
    pub description: Option<String>,
    /// When the job pings: `{every: 24h}` (within that long of its previous ping) or
    /// `{cron: "0 0 2 * * *", timezone: America/Toronto}` (the job's own schedule).
    pub schedule: ScheduleConfig,
    /// How long past a deadline a ping still counts, and how long a `/start` may go
    /// without a finish (default: a tenth of the interval, between `1m` and `1h`).
    #[serde(default)]
    pub grace: Option<String>,
    /// Severity of a missed or failed run: `P1` to `P4` (default from `rooftop.yaml`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Runbook: a path under the config directory's `runbooks/`, or an https URL.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Bounded labels for metrics and routing, e.g. `{flow: parts-pricing, connector: price-file}`.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// The token a ping must carry, from a secret: `"{{ secret.price_file_ping }}"`.
    pub token: String,
    /// Alert rules over the heartbeat defaults (one miss or failure opens, one success
    /// resolves).
    #[serde(default)]
    pub alert: Option<AlertRulesConfig>,
}

/// Alert rules; every field optional (unset fields keep the default or the agent-wide
/// value).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesConfig {
    /// Open an incident after this many failed runs in a row (default 2), or after
    /// `{failed: K, of: M}`.
    #[serde(default)]
    pub fire_after: Option<FireAfterConfig>,
    /// Resolve after this many successful runs in a row (default 2).
    #[serde(default)]
    pub resolve_after: Option<u32>,
    /// Open when the success ratio over `window` drops under `below` (0–1).
    #[serde(default)]
    pub success_ratio: Option<RatioConfig>,
    /// Open when sync latency breaks its SLO.
    #[serde(default)]
    pub sync_latency: Option<SyncRuleConfig>,
    /// Open when cleanup leaves synthetic records behind (default true).
    #[serde(default)]
    pub cleanup_failing: Option<bool>,
    /// Flap damping (default 4 changes within 1h).
    #[serde(default)]
    pub flapping: Option<FlapConfig>,
}

/// `3` or `{failed: 3, of: 5}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FireAfterConfig {
    Consecutive(u32),
    KOfM(KOfMConfig),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KOfMConfig {
    pub failed: u32,
    pub of: u32,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatioConfig {
    /// e.g. `0.9`.
    pub below: f64,
    /// e.g. `1h`.
    pub window: String,
    /// Runs the window must hold before the rule applies (default 5).
    #[serde(default)]
    pub min_runs: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRuleConfig {
    /// p95 of sync latency over `window` above this opens (e.g. `10m`).
    #[serde(default)]
    pub p95_over: Option<String>,
    /// Default `1h`.
    #[serde(default)]
    pub window: Option<String>,
    /// Default 3.
    #[serde(default)]
    pub min_measurements: Option<u32>,
    /// Any single sync slower than this opens (e.g. `1h`).
    #[serde(default)]
    pub hard_limit: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlapConfig {
    pub changes: u32,
    pub window: String,
}

/// Who gets paged.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Alert rules for every probe (a probe's `alert:` overrides field by field).
    #[serde(default)]
    pub rules: Option<AlertRulesConfig>,
    /// People who can be paged.
    #[serde(default)]
    pub contacts: Vec<ContactConfig>,
    /// Severity (`P1`…`P4`) → who is paged: a list of contact names and rotations
    /// (`[Maria Lopez, {rotation: service-desk}]`, one step, no escalation) or
    /// `{escalation: NAME}`, a policy of `escalation`.
    #[serde(default)]
    pub routes: IndexMap<String, RouteConfig>,
    /// Per severity: `ack_within` (each escalation step's deadline; default P1 15m, P2
    /// 30m, P3 4h, P4 none), `renotify` (page the current step again this often while
    /// unacknowledged) and `channels` (the personal channels it may use, in order).
    #[serde(default)]
    pub severities: IndexMap<String, SeverityConfig>,
    /// Named escalation policies: ordered steps, each paging a rotation's current person,
    /// the next one, or contacts, until someone acknowledges.
    #[serde(default)]
    pub escalation: IndexMap<String, EscalationConfig>,
    /// Route rules over `time_windows`: `mute` (change window: record, page nobody until
    /// it ends), `delay` (hold pages until it ends) or `promote: P1` (month-end blackout),
    /// optionally only for some severities, connectors or probes.
    #[serde(default)]
    pub windows: Vec<WindowRouteConfig>,
    /// E-mail pages: `{from, smtp: {...}}` or `{from, folder: DIR}` (files, no sending).
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Where `runbooks/` is published (wiki, Git host), for the links in pages.
    #[serde(default)]
    pub runbook_base_url: Option<String>,
    /// SMS pages through the Twilio Messages API (or a compatible one).
    #[serde(default)]
    pub sms: Option<SmsConfig>,
    /// A signed JSON webhook (chat bridges, ticketing).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Option<PagerDutyConfig>,
    /// Where the agent's listener (`telemetry.listen`) is reachable from the on-call
    /// engineer's phone, e.g. `https://rooftop.dealer.example:9464`: pages then carry a
    /// signed acknowledge link (valid 24 h).
    #[serde(default)]
    pub ack_base_url: Option<String>,
    /// Order in which a person is tried: the first channel that reaches them pages them,
    /// the next takes over if it gives up (default `[sms, email]`).
    #[serde(default)]
    pub prefer: Option<Vec<String>>,
    /// Grouping: incidents of one connector and severity that open within `window` of
    /// the first become one page (its `also affected` list), acknowledged and resolved
    /// together.
    #[serde(default)]
    pub group: Option<GroupConfig>,
}

/// A route: who is paged for a severity.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RouteConfig {
    /// A named policy of `alerting.escalation`.
    Policy { escalation: String },
    /// One step: these contacts and rotations, no escalation.
    Targets(Vec<PageTargetConfig>),
}

/// Whom a page goes to: a contact's name, or a rotation's person on call
/// (`{rotation: NAME}`; `offset: 1` is the member after them, the secondary).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PageTargetConfig {
    Contact(String),
    Rotation(RotationTargetConfig),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationTargetConfig {
    pub rotation: String,
    #[serde(default)]
    pub offset: Option<u32>,
}

/// `alerting.severities.P1` and so on.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    /// How long each escalation step waits for an acknowledgement (`none`: the first
    /// step is the only one).
    #[serde(default)]
    pub ack_within: Option<String>,
    /// While unacknowledged, page the current step's people again this often (`none`,
    /// the default: once per step).
    #[serde(default)]
    pub renotify: Option<String>,
    /// Personal channels this severity may use, in order, e.g. `[email]` for P4.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

/// `alerting.escalation.NAME`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Tried in order; a step with nobody on call is skipped at once.
    pub steps: Vec<EscalationStepConfig>,
    /// After the last step, start over this many more times (default 0).
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Remind whoever acknowledged an incident that is still open this long after (e.g.
    /// `2h`; default: no reminder).
    #[serde(default)]
    pub remind_after_ack: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepConfig {
    /// Contacts and rotations paged at this step.
    pub notify: Vec<PageTargetConfig>,
    /// How long this step waits for an acknowledgement (default: the severity's
    /// `ack_within`).
    #[serde(default)]
    pub wait: Option<String>,
}

/// `alerting.windows[]`: what happens to pages while a time window is active.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRouteConfig {
    /// A name of `time_windows`.
    pub window: String,
    /// Record and show, page nobody while the window lasts (a change window).
    #[serde(default)]
    pub mute: Option<bool>,
    /// Hold pages until the window ends (e.g. P3/P4 outside business hours).
    #[serde(default)]
    pub delay: Option<bool>,
    /// Page at this severity instead (e.g. `P1` during the month-end blackout).
    #[serde(default)]
    pub promote: Option<String>,
    /// Only incidents of these severities (default: all).
    #[serde(default)]
    pub severities: Vec<String>,
    /// Only probes on these connectors (default: all).
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Only these probes (default: all).
    #[serde(default)]
    pub probes: Vec<String>,
}

/// `alerting.group`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// How long after the first incident of a connector others still join its page
    /// (default `10m`; `0s` pages every incident on its own).
    #[serde(default)]
    pub window: Option<String>,
    /// How long the first page waits for others to join before it is sent (default
    /// `0s`: page at once; later incidents join silently and are listed in the resolve
    /// notice and `rooftop incidents`).
    #[serde(default)]
    pub wait: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub account_sid: String,
    /// May use `{{ secret.NAME }}`.
    pub auth_token: String,
    /// E.164 sender number or a Messaging Service SID (`MG…`).
    pub from: String,
    /// Default `https://api.twilio.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Acknowledging a page by replying `ACK 4821` to it: the agent asks Twilio for
    /// replies every `poll` (it has no public URL for Twilio to call). On by default
    /// (`{poll: 30s}`); `{enabled: false}` turns it off, and pages then carry no reply
    /// code.
    #[serde(default)]
    pub replies: Option<SmsRepliesConfig>,
}

/// `alerting.sms.replies`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRepliesConfig {
    /// Read replies at all (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How often Twilio is asked for replies (default `30s`, at least `5s`).
    #[serde(default)]
    pub poll: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// HMAC-SHA256 key; may use `{{ secret.NAME }}`.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Integration key; may use `{{ secret.NAME }}`.
    pub routing_key: String,
    /// Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Sender, e.g. `rooftop <rooftop@dealer.example>`.
    pub from: String,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Write `.eml` files here instead of sending.
    #[serde(default)]
    pub folder: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default 587 (starttls), 465 (tls), 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit) or `none` (a local relay only).
    #[serde(default)]
    pub security: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// May use `{{ secret.NAME }}` / `{{ env.NAME }}`.
    #[serde(default)]
    pub password: Option<String>,
    /// Default `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. a private relay's.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    pub name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number in E.164 form, e.g. `+14165550123`.
    #[serde(default)]
    pub phone: Option<String>,
}

/// A schedule: either a cron expression with a time zone, or a fixed interval.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA time zone for `cron` (e.g. `America/Toronto`); defaults to the agent's default.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Fixed interval between runs, e.g. `30m`, `2h`.
    #[serde(default)]
    pub every: Option<String>,
}

/// One HTTP step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Unique step name within the probe (e.g. `book-appointment`).
    pub name: String,
    /// The request to send.
    pub request: RequestConfig,
    /// What the final response must satisfy (after polling, if `until` is set).
    #[serde(default)]
    pub expect: Option<ExpectConfig>,
    /// Values to take from the response: `name: "$.json.path"` or `{json|header|regex: ...}`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Value>")]
    pub capture: IndexMap<String, Value>,
    /// Poll (repeat the request) until the response satisfies this; see `poll`.
    #[serde(default)]
    pub until: Option<ExpectConfig>,
    /// Polling schedule for `until`: interval, backoff factor, max interval, overall limit.
    #[serde(default)]
    pub poll: Option<PollConfig>,
    /// Measure propagation latency from an earlier step (`{since: book-appointment}`).
    #[serde(default)]
    pub sync: Option<SyncConfig>,
    /// Service-level objectives for this step.
    #[serde(default)]
    pub slo: Option<SloConfig>,
    /// This step creates a record: name the cleanup step that deletes it.
    #[serde(default)]
    pub creates: Option<CreatesConfig>,
    /// Runbook for a failure of this step (overrides the probe's `runbook`).
    #[serde(default)]
    pub runbook: Option<String>,
}

/// An HTTP request; every string is a template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Absolute http(s) URL, usually built from `env.*`, e.g. `"{{ env.CRM_URL }}/api/appointments"`.
    pub url: String,
    /// Request headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// JSON body; string leaves are templates.
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub json: Option<Value>,
    /// Raw body (a template); exclusive with `json`.
    #[serde(default)]
    pub body: Option<String>,
    /// Timeout of one request (default from `rooftop.yaml`, 30s).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Conditions on a response.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Expected status: a code (`201`), a list (`[200, 204]`) or a class (`2xx`).
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub status: Option<Value>,
    /// JSONPath (RFC 9535) assertions: `"$.id": {exists: true}`; a scalar means `==`.
    /// Operators: `==`, `!=`, `<`, `<=`, `>`, `>=`, `exists`, `contains`, `matches`, `length`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Value>")]
    pub json: IndexMap<String, Value>,
    /// Header assertions (case-insensitive names), same operators as `json`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Value>")]
    pub headers: IndexMap<String, Value>,
    /// Assertion on the raw body text, e.g. `{contains: "OK"}`.
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub body: Option<Value>,
}

/// How to poll an asynchronous result.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// First wait between polls (default `2s`).
    #[serde(default)]
    pub interval: Option<String>,
    /// Factor applied to the wait after each miss (default `1.5`; `1` keeps it fixed).
    #[serde(default)]
    pub backoff: Option<f64>,
    /// Upper bound of the wait between polls (default `30s`).
    #[serde(default)]
    pub max_interval: Option<String>,
    /// Give up (outcome `sync_timeout`) when the condition is not met within this time.
    pub within: String,
}

/// Propagation latency measurement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The earlier step whose event this step waits to see propagated.
    pub since: String,
    /// Optional capture holding the downstream record's own RFC 3339 creation timestamp.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// Service-level objectives of a step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Propagation latency above this breaches the SLO (the run still succeeds).
    #[serde(default)]
    pub sync_latency: Option<String>,
}

/// Records created by a step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatesConfig {
    /// Name of the `cleanup` step that deletes the record, or a list when the step
    /// creates several records (each gets its own ledger entry).
    pub cleanup: OneOrMany,
}

/// A single name or a list of names.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A cleanup step: one request, retried, that deletes a synthetic record.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupConfig {
    /// Name referenced by a step's `creates.cleanup`.
    pub name: String,
    /// Sweep: list records first and run `request` once per match (e.g. every RO of the
    /// synthetic appointment, however many the DMS created, even ones never captured).
    #[serde(default)]
    pub find: Option<FindConfig>,
    /// The delete request (templates see the captures of the run that created the record).
    pub request: RequestConfig,
    /// Success condition; default: any 2xx, or 404/410 (already gone).
    #[serde(default)]
    pub expect: Option<ExpectConfig>,
    /// Attempts after the first (default 3), with exponential backoff.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// How a sweep finds the records to delete.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindConfig {
    /// The listing request (usually a GET with a query on the synthetic id, VIN, ...).
    pub request: RequestConfig,
    /// JSONPath selecting one value per record, e.g. `$.items[*].number`.
    pub each: String,
    /// Name the value gets in `request`'s templates, e.g. `ro`.
    #[serde(rename = "as")]
    pub bind: String,
}

/// Agent-wide settings (`rooftop.yaml`, optional).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Identity of this rooftop (store) in a dealer group.
    #[serde(default)]
    pub rooftop: Option<RooftopConfig>,
    /// Where durable state lives (cleanup ledger, history); default `/var/lib/rooftop`.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// Defaults applied to every probe.
    #[serde(default)]
    pub defaults: Option<DefaultsConfig>,
    /// Named secrets and where to read them: `crm_token: {env: CRM_TOKEN}`,
    /// `{file: /etc/rooftop/dms.token}` or `{credential: dms_token}` (systemd credentials).
    #[serde(default)]
    pub secrets: IndexMap<String, SecretSourceConfig>,
    /// Default values for `env.*` in templates; the process environment wins.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// How `rooftop run` schedules probes.
    #[serde(default)]
    pub scheduler: Option<SchedulerConfig>,
    /// How much run history the store keeps.
    #[serde(default)]
    pub history: Option<HistoryConfig>,
    /// OpenTelemetry export and the local HTTP listener (`/metrics`).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// Alert rules and who gets paged.
    #[serde(default)]
    pub alerting: Option<AlertingConfig>,
    /// How someone outside hears that the agent itself has died.
    #[serde(default)]
    pub self_monitoring: Option<SelfMonitoringConfig>,
    /// Named time windows (change windows, blackouts, business hours), each in its own
    /// IANA zone: `change-window: {timezone: America/Toronto, when: [{weekdays:
    /// [tuesday:thursday], times: [{start: "20:00", end: "24:00"}]}]}` (docs/oncall.md).
    #[serde(default)]
    pub time_windows: IndexMap<String, TimeWindowConfig>,
    /// Who is on call: rotations of `alerting.contacts` (docs/oncall.md).
    #[serde(default)]
    pub oncall: Option<OnCallConfig>,
}

/// `time_windows.NAME`: active while any of its rules matches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowConfig {
    /// IANA zone the rules are read in, e.g. `America/Toronto`.
    pub timezone: String,
    /// The rules; at least one. The window is active while any matches.
    pub when: Vec<WindowRuleConfig>,
}

/// One rule of a window or a rotation's restrictions: every field that is set must match
/// (an empty or missing list matches anything).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRuleConfig {
    /// Weekday names (full or 3 letters, any case) or ranges `tuesday:thursday`
    /// (`friday:monday` wraps over the weekend).
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Times of day, local: `{start: "20:00", end: "24:00"}`, start inclusive, end
    /// exclusive (`24:00` is the end of the day). A span over midnight is two spans.
    #[serde(default)]
    pub times: Vec<TimeRangeConfig>,
    /// Days of the month: `1`, `-1` (the last day), ranges `"-3:-1"`, `"1:5"`.
    #[serde(default)]
    pub days_of_month: Vec<NumberOrText>,
    /// Months: `12`, `dec`, ranges `"nov:feb"` (wraps over the year end).
    #[serde(default)]
    pub months: Vec<NumberOrText>,
    /// Local dates or inclusive date ranges: `"2026-12-26"`, `"2026-12-26:2026-12-31"`.
    #[serde(default)]
    pub dates: Vec<String>,
}

/// `{start: "HH:MM", end: "HH:MM"}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    /// Inclusive, `00:00`–`23:59`.
    pub start: String,
    /// Exclusive, after `start`; `24:00` ends the day.
    pub end: String,
}

/// A number or a text: `-1` or `"-3:-1"`, `12` or `"nov:feb"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NumberOrText {
    Number(i64),
    Text(String),
}

/// `oncall`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnCallConfig {
    /// Rotations by name (lowercase letters, digits and dashes, e.g. `service-desk`).
    #[serde(default)]
    pub rotations: IndexMap<String, RotationConfig>,
}

/// `oncall.rotations.NAME`: members take turns, handing over at a local wall-clock time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// IANA zone of the handoff time, the start date, restrictions and overrides.
    pub timezone: String,
    /// Names of `alerting.contacts`, in turn order.
    pub members: Vec<String>,
    /// When shifts change: `{every: week, on: monday, at: "09:00"}`; `every: day` or
    /// `"3d"` (every N days from `start`).
    pub handoff: HandoffConfig,
    /// Local date (`YYYY-MM-DD`) of the first member's first shift; a weekly rotation
    /// starts on the first `on` weekday on or after it.
    pub start: String,
    /// When the rotation covers at all (same rules as `time_windows`); outside them the
    /// fallback is on call. Default: always.
    #[serde(default)]
    pub restrictions: Vec<WindowRuleConfig>,
    /// Who is on call when the rotation has nobody: a contact name, or `{rotation: NAME}`.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    /// Someone else on call for a span: `{who, from: "YYYY-MM-DD HH:MM", until, note,
    /// replaces}` (local times in the rotation's zone).
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

/// `handoff`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfig {
    /// `day`, `week`, or `Nd` (every N days, 1–365).
    pub every: String,
    /// For `every: week`: the weekday of the handoff (default: the start date's).
    #[serde(default)]
    pub on: Option<String>,
    /// Local time of the handoff, `HH:MM`.
    pub at: String,
}

/// A contact name, or `{rotation: NAME}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FallbackConfig {
    Contact(String),
    Rotation(FallbackRotationConfig),
}

/// `{rotation: NAME}`: whoever is on call there.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackRotationConfig {
    /// Another rotation of `oncall.rotations`.
    pub rotation: String,
}

/// One override.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// The contact who takes the pager.
    pub who: String,
    /// Local start, `YYYY-MM-DD HH:MM`.
    pub from: String,
    /// Local end (exclusive), after `from`.
    pub until: String,
    /// Why, shown with the shift (e.g. `Maria away`).
    #[serde(default)]
    pub note: Option<String>,
    /// Only while this member would be on call (default: whoever is).
    #[serde(default)]
    pub replaces: Option<String>,
}

/// `self_monitoring`: the agent watched from outside.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfMonitoringConfig {
    /// How often the built-in `rooftop-agent` probe looks at the agent (default `30s`).
    #[serde(default)]
    pub check_every: Option<String>,
    /// Free space on the state directory's filesystem under which it fails (default
    /// `512MiB`; under 5 % fails too).
    #[serde(default)]
    pub min_free_disk: Option<String>,
    /// A page pending longer than this is a stuck outbox (default `30m`).
    #[serde(default)]
    pub outbox_stuck_after: Option<String>,
    /// An OTLP signal failing to export for longer than this pages (default `15m`).
    #[serde(default)]
    pub export_failing_after: Option<String>,
    /// A fire starting later than this behind its schedule pages (default `30s`).
    #[serde(default)]
    pub scheduler_lag_after: Option<String>,
    /// A dead-man's switch (healthchecks.io style ping URL).
    #[serde(default)]
    pub heartbeat: Option<HeartbeatConfig>,
}

/// `self_monitoring.heartbeat`: `URL/start` at start, `URL` every `every` while the agent
/// is ready, `URL/fail` while it is not.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// An http(s) URL, e.g. `https://hc-ping.com/{{ secret.hc_uuid }}`.
    pub url: String,
    /// How often it is pinged (default `1m`).
    #[serde(default)]
    pub every: Option<String>,
    /// Per-ping timeout (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Telemetry settings. The standard `OTEL_*` environment variables win over these.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The agent's local HTTP listener serving `GET /metrics` (Prometheus text):
    /// `127.0.0.1:9464` (default) or `off`.
    #[serde(default)]
    pub listen: Option<String>,
    /// How often metrics are exported over OTLP (default `30s`;
    /// `OTEL_METRIC_EXPORT_INTERVAL` in ms wins).
    #[serde(default)]
    pub interval: Option<String>,
    /// OTLP export; off unless an endpoint is set here or in `OTEL_EXPORTER_OTLP_*`.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
    /// The read-only status page the listener serves at `/status` (docs/status-page.md).
    #[serde(default)]
    pub status_page: Option<StatusPageConfig>,
}

/// The status page.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusPageConfig {
    /// Serve `/status` (default `true`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A token the page asks for (`?token=` or `Authorization: Bearer`), a template such
    /// as `"{{ secret.status_page_token }}"`; without one the page is open to whoever
    /// reaches the listener.
    #[serde(default)]
    pub token: Option<String>,
}

/// OTLP exporter settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector base URL, e.g. `http://collector:4317` (gRPC) or
    /// `http://collector:4318` (HTTP; `/v1/metrics` etc. are appended).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (default).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Extra request headers; values may use `{{ secret.NAME }}` and `{{ env.NAME }}`.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Export timeout (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Which signals to export (default all): `metrics`, `traces`, `logs`.
    #[serde(default)]
    pub signals: Option<Vec<String>>,
}

/// Scheduler settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Most probe runs in flight at once (default 16).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Fires missed while the agent was down: `skip` (default; the next run is the next
    /// scheduled one) or `run-once` (one run at start for each probe that missed any,
    /// never a burst).
    #[serde(default)]
    pub missed_runs: Option<String>,
    /// How long a stop (SIGTERM, `systemctl stop`) may take for everything: in-flight
    /// runs are interrupted and clean up, the outbox gets its last pass, telemetry
    /// flushes. Default `75s`, under systemd's 90 s; at most `30m`. Whatever is still
    /// going then is named in the last log line and kept for the next start.
    #[serde(default)]
    pub stop_deadline: Option<String>,
}

/// History retention: runs go when older than `keep` or when the store is over
/// `max_size`, oldest first.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Age limit (default `30d`).
    #[serde(default)]
    pub keep: Option<String>,
    /// Size limit of the store, e.g. `512MB`, `2GiB` (default `1GiB`).
    #[serde(default)]
    pub max_size: Option<String>,
}

/// Identity of this rooftop.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RooftopConfig {
    /// Short stable id used as a metric label (e.g. `toronto-north`).
    pub id: String,
    /// Human name (e.g. `Toronto North Honda`).
    #[serde(default)]
    pub name: Option<String>,
    /// Dealer group this rooftop belongs to.
    #[serde(default)]
    pub dealer_group: Option<String>,
}

/// Defaults for probes.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Schedule for probes without one (default `{every: 1h}`).
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// Time zone for cron schedules without one (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Probe timeout (default `15m`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Severity (default `P3`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Per-request timeout (default `30s`).
    #[serde(default)]
    pub request_timeout: Option<String>,
    /// Largest response body read, in bytes (default 1048576); larger is an error.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Verify TLS certificates (default true). Turning this off prints a warning on every
    /// command, since a probe could then talk to an impostor with real credentials.
    #[serde(default)]
    pub verify_tls: Option<bool>,
    /// Cleanup attempts after the first (default 3).
    #[serde(default)]
    pub cleanup_retries: Option<u32>,
}

/// Where a secret comes from; exactly one field.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSourceConfig {
    /// Environment variable name.
    #[serde(default)]
    pub env: Option<String>,
    /// File path (content trimmed of a trailing newline).
    #[serde(default)]
    pub file: Option<String>,
    /// systemd credential name, read from `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub credential: Option<String>,
}
