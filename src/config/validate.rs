//! Phase 2 of configuration: pure semantic checks that turn raw structs into the validated
//! model in `crate::model`, collecting every error with its position and a hint.
//!
//! No I/O here: runbook files are handed in as data by the loader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::diagnostic::{Diagnostic, closest, did_you_mean};
use super::raw::{
    AgentConfig, AlertRulesConfig, AlertingConfig, CleanupConfig, ExpectConfig, FireAfterConfig,
    KOfMConfig, ProbeConfig, RequestConfig, ScheduleConfig, StepConfig, TelemetryConfig,
};
use super::yaml::{Document, FieldPath};
use crate::model::SmtpSecurity;
use crate::model::{
    Agent, AlertingSettings, Body, Capture, CaptureSource, CleanupStep, Contact, EmailDestination,
    EmailSettings, Expect, HistorySettings, JsonAssertion, MissedRuns, OPERATORS, Op, OtlpProtocol,
    Poll, Probe, Request, Runbook, Schedule, SchedulerSettings, SecretSource, Severity,
    StatusMatch, Step, SyncSpec, TelemetrySettings,
};
use crate::model::{AlertRules, FireRule, RatioRule, SyncRule};
use crate::synthetic::HELPERS;
use crate::template::{self, RESERVED};

/// Sections every runbook must have (from the incident-runbook practice rooftop follows).
pub const RUNBOOK_SECTIONS: [&str; 4] = [
    "Impact assessment",
    "Immediate mitigations",
    "Rollback criteria",
    "Post-incident actions",
];

/// Longest duration accepted anywhere (keeps instant arithmetic far from overflow).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Most cleanup retries allowed (they back off from 1 s doubling to 30 s).
const MAX_CLEANUP_RETRIES: u32 = 20;

/// Defaults for probes, from `rooftop.yaml` or built in.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: Schedule,
    pub timezone: chrono_tz::Tz,
    pub timeout: Duration,
    pub severity: Severity,
    pub request_timeout: Duration,
    pub cleanup_retries: u32,
    pub alert: AlertRules,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            schedule: Schedule::Every(Duration::from_secs(3600)),
            timezone: chrono_tz::UTC,
            timeout: Duration::from_secs(15 * 60),
            severity: Severity::P3,
            request_timeout: Duration::from_secs(30),
            alert: AlertRules::default(),
            cleanup_retries: 3,
        }
    }
}

/// Collects diagnostics for one file.
struct Checker<'a> {
    file: &'a Path,
    doc: &'a Document,
    errors: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn err(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }

    fn err_key(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate_key(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }

    fn duration(&mut self, path: &FieldPath, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() => {
                self.err(
                    path,
                    format!("duration `{text}` must be greater than zero"),
                    Some("e.g. `30s`, `5m`, `2h`".into()),
                );
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.err(
                    path,
                    format!("duration `{text}` is longer than a year"),
                    Some("rooftop's schedules, timeouts and polls are at most `366d`".into()),
                );
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.err(
                    path,
                    format!("`{text}` is not a duration"),
                    Some("write a number and a unit, e.g. `30s`, `5m`, `2h`, `1h30m`".into()),
                );
                None
            }
        }
    }

    fn telemetry(&mut self, path: &FieldPath, t: &TelemetryConfig) -> TelemetrySettings {
        let mut out = TelemetrySettings::default();
        if let Some(l) = &t.listen {
            match l.trim() {
                "off" => out.listen = None,
                text => match text.parse::<std::net::SocketAddr>() {
                    Ok(a) => out.listen = Some(a),
                    Err(_) => self.err(
                        &path.key("listen"),
                        format!("`{text}` is not an address and port"),
                        Some("e.g. `127.0.0.1:9464`, `[::1]:9464`, or `off`".into()),
                    ),
                },
            }
        }
        if let Some(i) = &t.interval
            && let Some(i) = self.duration(&path.key("interval"), i)
        {
            out.interval = i;
        }
        let Some(o) = &t.otlp else { return out };
        let op = path.key("otlp");
        if let Some(e) = &o.endpoint {
            if e.starts_with("http://") || e.starts_with("https://") {
                out.otlp_endpoint = Some(e.trim_end_matches('/').to_string());
            } else {
                self.err(
                    &op.key("endpoint"),
                    format!("OTLP endpoint `{e}` must start with http:// or https://"),
                    Some(
                        "e.g. `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP"
                            .into(),
                    ),
                );
            }
        }
        if let Some(p) = &o.protocol {
            match OtlpProtocol::parse(p) {
                Some(p) => out.otlp_protocol = Some(p),
                None => self.err(
                    &op.key("protocol"),
                    format!("unknown OTLP protocol `{p}`"),
                    did_you_mean(p, ["grpc", "http/protobuf"])
                        .or_else(|| Some("`grpc` or `http/protobuf`".into())),
                ),
            }
        }
        if let Some(t) = &o.timeout
            && let Some(t) = self.duration(&op.key("timeout"), t)
        {
            out.otlp_timeout = Some(t);
        }
        for (name, value) in &o.headers {
            let hp = op.key("headers").key(name);
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err_key(
                    &hp,
                    format!("`{name}` is not a valid header name"),
                    Some("letters, digits and dashes, e.g. `x-api-key`".into()),
                );
            }
            if let Err(e) = template::analyze(value) {
                self.err(
                    &hp,
                    format!("template error: {e}"),
                    Some("only `env.*` and `secret.*` are available here".into()),
                );
            }
            out.otlp_headers.push((name.clone(), value.clone()));
        }
        if let Some(signals) = &o.signals {
            out.metrics = false;
            out.traces = false;
            out.logs = false;
            for (i, s) in signals.iter().enumerate() {
                match s.as_str() {
                    "metrics" => out.metrics = true,
                    "traces" => out.traces = true,
                    "logs" => out.logs = true,
                    other => self.err(
                        &op.key("signals").index(i),
                        format!("unknown signal `{other}`"),
                        did_you_mean(other, ["metrics", "traces", "logs"])
                            .or_else(|| Some("`metrics`, `traces` or `logs`".into())),
                    ),
                }
            }
        }
        out
    }

    /// `raw` over `base`, field by field.
    fn alert_rules(
        &mut self,
        path: &FieldPath,
        raw: &AlertRulesConfig,
        base: &AlertRules,
    ) -> AlertRules {
        let mut r = base.clone();
        match &raw.fire_after {
            Some(FireAfterConfig::Consecutive(n)) => {
                if *n == 0 {
                    self.err(
                        &path.key("fire_after"),
                        "fire_after must be at least 1",
                        Some("e.g. `2`: two failed runs in a row".into()),
                    );
                }
                r.fire = FireRule::Consecutive(*n);
            }
            Some(FireAfterConfig::KOfM(KOfMConfig { failed, of })) => {
                if *failed == 0 || failed > of || *of > 1000 {
                    self.err(
                        &path.key("fire_after"),
                        format!(
                            "fire_after {{failed: {failed}, of: {of}}} needs 1 ≤ failed ≤ of ≤ 1000"
                        ),
                        Some("e.g. `{failed: 3, of: 5}`".into()),
                    );
                }
                r.fire = FireRule::KOfM { k: *failed, m: *of };
            }
            None => {}
        }
        if let Some(n) = raw.resolve_after {
            if n == 0 {
                self.err(
                    &path.key("resolve_after"),
                    "resolve_after must be at least 1",
                    Some("e.g. `2`: two successful runs in a row".into()),
                );
            }
            r.resolve_after = n;
        }
        if let Some(ratio) = &raw.success_ratio {
            let rp = path.key("success_ratio");
            if !(0.0..=1.0).contains(&ratio.below) || ratio.below == 0.0 {
                self.err(
                    &rp.key("below"),
                    format!("`{}` is not a ratio between 0 and 1", ratio.below),
                    Some("e.g. `0.9` for 90 %".into()),
                );
            }
            if let Some(window) = self.duration(&rp.key("window"), &ratio.window) {
                r.ratio = Some(RatioRule {
                    below: ratio.below,
                    window,
                    min_runs: ratio.min_runs.unwrap_or(5),
                });
            }
        }
        if let Some(sync) = &raw.sync_latency {
            let sp = path.key("sync_latency");
            let p95_over = sync
                .p95_over
                .as_ref()
                .and_then(|d| self.duration(&sp.key("p95_over"), d));
            let hard_limit = sync
                .hard_limit
                .as_ref()
                .and_then(|d| self.duration(&sp.key("hard_limit"), d));
            let window = match &sync.window {
                Some(w) => self
                    .duration(&sp.key("window"), w)
                    .unwrap_or(Duration::from_secs(3600)),
                None => Duration::from_secs(3600),
            };
            if sync.p95_over.is_none() && sync.hard_limit.is_none() {
                self.err(
                    &sp,
                    "sync_latency needs `p95_over`, `hard_limit` or both",
                    Some("e.g. `{p95_over: 10m, hard_limit: 1h}`".into()),
                );
            }
            r.sync = Some(SyncRule {
                p95_over,
                window,
                min_measurements: sync.min_measurements.unwrap_or(3),
                hard_limit,
            });
        }
        if let Some(c) = raw.cleanup_failing {
            r.cleanup_failing = c;
        }
        if let Some(f) = &raw.flapping
            && let Some(w) = self.duration(&path.key("flapping").key("window"), &f.window)
        {
            r.flap_changes = f.changes;
            r.flap_window = w;
        }
        r
    }

    fn alerting(&mut self, path: &FieldPath, raw: &AlertingConfig) -> AlertingSettings {
        let mut out = AlertingSettings::default();
        for (i, c) in raw.contacts.iter().enumerate() {
            let cp = path.key("contacts").index(i);
            if c.name.trim().is_empty() {
                self.err(
                    &cp.key("name"),
                    "a contact needs a name",
                    Some("e.g. `Maria Lopez`".into()),
                );
            }
            if raw.contacts[..i].iter().any(|o| o.name == c.name) {
                self.err(
                    &cp.key("name"),
                    format!("contact `{}` is listed twice", c.name),
                    Some("contact names must be unique: routes refer to them".into()),
                );
            }
            if let Some(e) = &c.email
                && !is_email(e)
            {
                self.err(
                    &cp.key("email"),
                    format!("`{e}` is not an e-mail address"),
                    Some("e.g. `maria@dealer.example`".into()),
                );
            }
            if let Some(p) = &c.phone
                && !crate::model::is_e164(p)
            {
                self.err(
                    &cp.key("phone"),
                    format!("`{p}` is not an E.164 phone number"),
                    Some("a plus sign, the country code and the number, no spaces: e.g. `+14165550123`".into()),
                );
            }
            if c.email.is_none() && c.phone.is_none() {
                self.err(
                    &cp,
                    format!("contact `{}` has neither `email` nor `phone`", c.name),
                    Some("a page needs somewhere to go".into()),
                );
            }
            out.contacts.push(Contact {
                name: c.name.clone(),
                email: c.email.clone(),
                phone: c.phone.clone(),
            });
        }
        for (sev, names) in &raw.routes {
            let rp = path.key("routes").key(sev);
            let Some(severity) = Severity::parse(sev) else {
                self.err_key(
                    &rp,
                    format!("unknown severity `{sev}`"),
                    Some("routes are keyed `P1`, `P2`, `P3`, `P4`".into()),
                );
                continue;
            };
            let mut idx = Vec::new();
            for (j, n) in names.iter().enumerate() {
                match raw.contacts.iter().position(|c| &c.name == n) {
                    Some(k) => idx.push(k),
                    None => self.err(
                        &rp.index(j),
                        format!("no contact named `{n}`"),
                        did_you_mean(n, raw.contacts.iter().map(|c| c.name.as_str()))
                            .or_else(|| Some("add it under `alerting.contacts`".into())),
                    ),
                }
            }
            out.routes.insert(severity, idx);
        }
        if let Some(u) = &raw.runbook_base_url {
            if u.starts_with("https://") || u.starts_with("http://") {
                out.runbook_base_url = Some(u.trim_end_matches('/').to_string());
            } else {
                self.err(
                    &path.key("runbook_base_url"),
                    format!("`{u}` is not an http(s) URL"),
                    Some("e.g. `https://wiki.dealer.example/rooftop`".into()),
                );
            }
        }
        let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if let Some(sms) = &raw.sms {
            let sp = path.key("sms");
            if !(crate::model::is_e164(&sms.from) || sms.from.starts_with("MG")) {
                self.err(
                    &sp.key("from"),
                    format!(
                        "`{}` is neither an E.164 number nor a Messaging Service SID",
                        sms.from
                    ),
                    Some("e.g. `+14165550100` or `MG…`".into()),
                );
            }
            if let Err(e) = template::analyze(&sms.auth_token) {
                self.err(
                    &sp.key("auth_token"),
                    format!("template error: {e}"),
                    Some("e.g. `{{ secret.twilio_token }}`".into()),
                );
            }
            if let Some(u) = &sms.base_url
                && !url_ok(u)
            {
                self.err(
                    &sp.key("base_url"),
                    format!("`{u}` is not an http(s) URL"),
                    None,
                );
            }
            out.sms = Some(crate::model::SmsAccount {
                account_sid: sms.account_sid.clone(),
                auth_token: sms.auth_token.clone(),
                from: sms.from.clone(),
                base_url: sms
                    .base_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_string()),
            });
        }
        if let Some(w) = &raw.webhook {
            let wp = path.key("webhook");
            if !url_ok(&w.url) {
                self.err(
                    &wp.key("url"),
                    format!("`{}` is not an http(s) URL", w.url),
                    Some("e.g. `https://hooks.dealer.example/rooftop`".into()),
                );
            }
            if let Err(e) = template::analyze(&w.secret) {
                self.err(&wp.key("secret"), format!("template error: {e}"), None);
            }
            out.webhook = Some(crate::model::WebhookTarget {
                url: w.url.clone(),
                secret: w.secret.clone(),
            });
        }
        if let Some(pd) = &raw.pagerduty {
            let pp = path.key("pagerduty");
            if let Err(e) = template::analyze(&pd.routing_key) {
                self.err(&pp.key("routing_key"), format!("template error: {e}"), None);
            }
            if let Some(u) = &pd.url
                && !url_ok(u)
            {
                self.err(&pp.key("url"), format!("`{u}` is not an http(s) URL"), None);
            }
            out.pagerduty = Some(crate::model::PagerDutyTarget {
                routing_key: pd.routing_key.clone(),
                url: pd.url.clone(),
            });
        }
        if let Some(u) = &raw.ack_base_url {
            if url_ok(u) {
                out.ack_base_url = Some(u.trim_end_matches('/').to_string());
            } else {
                self.err(&path.key("ack_base_url"), format!("`{u}` is not an http(s) URL"), Some("the agent's listener as the on-call phone reaches it, e.g. `https://rooftop.dealer.example:9464`".into()));
            }
        }
        if let Some(g) = &raw.group {
            let gp = path.key("group");
            if let Some(w) = &g.window
                && let Some(d) = self.duration(&gp.key("window"), w)
            {
                out.group.window = d;
            }
            if let Some(w) = &g.wait
                && let Some(d) = self.duration(&gp.key("wait"), w)
            {
                if d > Duration::from_secs(300) {
                    self.err(
                        &gp.key("wait"),
                        format!("`{w}` holds every first page too long"),
                        Some("at most `5m`; `0s` (the default) pages at once".into()),
                    );
                } else {
                    out.group.wait = d;
                }
            }
        }
        out.prefer = vec!["sms".into(), "email".into()];
        if let Some(prefer) = &raw.prefer {
            out.prefer.clear();
            for (i, c) in prefer.iter().enumerate() {
                match c.as_str() {
                    "sms" | "email" => out.prefer.push(c.clone()),
                    other => self.err(
                        &path.key("prefer").index(i),
                        format!("`{other}` is not a personal channel"),
                        did_you_mean(other, ["sms", "email"]).or_else(|| {
                            Some(
                                "`sms` or `email` (webhook and PagerDuty always get every page)"
                                    .into(),
                            )
                        }),
                    ),
                }
            }
        }
        if let Some(e) = &raw.email {
            let ep = path.key("email");
            if !e.from.contains('@') {
                self.err(
                    &ep.key("from"),
                    format!("`{}` is not a sender address", e.from),
                    Some("e.g. `rooftop <rooftop@dealer.example>`".into()),
                );
            }
            let destination = match (&e.smtp, &e.folder) {
                (Some(smtp), None) => {
                    let sp = ep.key("smtp");
                    let security = match smtp.security.as_deref().unwrap_or("starttls") {
                        "starttls" => Some(SmtpSecurity::StartTls),
                        "tls" => Some(SmtpSecurity::Implicit),
                        "none" => Some(SmtpSecurity::None),
                        other => {
                            self.err(
                                &sp.key("security"),
                                format!("unknown security `{other}`"),
                                did_you_mean(other, ["starttls", "tls", "none"]).or_else(|| {
                                    Some(
                                        "`starttls` (587), `tls` (465) or `none` (a local relay)"
                                            .into(),
                                    )
                                }),
                            );
                            None
                        }
                    };
                    if let Some(pw) = &smtp.password
                        && let Err(err) = template::analyze(pw)
                    {
                        self.err(
                            &sp.key("password"),
                            format!("template error: {err}"),
                            Some("e.g. `{{ secret.smtp_password }}`".into()),
                        );
                    }
                    let timeout = match &smtp.timeout {
                        Some(t) => self.duration(&sp.key("timeout"), t),
                        None => Some(Duration::from_secs(30)),
                    };
                    match (security, timeout) {
                        (Some(security), Some(timeout)) => Some(EmailDestination::Smtp {
                            host: smtp.host.clone(),
                            port: smtp.port.unwrap_or(match security {
                                SmtpSecurity::StartTls => 587,
                                SmtpSecurity::Implicit => 465,
                                SmtpSecurity::None => 25,
                            }),
                            security,
                            username: smtp.username.clone(),
                            password_template: smtp.password.clone(),
                            timeout,
                            ca_file: smtp.ca_file.as_ref().map(PathBuf::from),
                        }),
                        _ => None,
                    }
                }
                (None, Some(folder)) => Some(EmailDestination::Folder(PathBuf::from(folder))),
                _ => {
                    self.err(&ep, "e-mail needs exactly one of `smtp` and `folder`", Some("e.g. `smtp: {host: smtp.dealer.example, username: rooftop, password: \"{{ secret.smtp }}\"}`".into()));
                    None
                }
            };
            if let Some(destination) = destination {
                out.email = Some(EmailSettings {
                    from: e.from.clone(),
                    destination,
                });
            }
        }
        out
    }

    fn timezone(&mut self, path: &FieldPath, text: &str) -> Option<chrono_tz::Tz> {
        match chrono_tz::Tz::from_str(text) {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
                let hint = closest(text, names)
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| Some("use an IANA name such as `America/Toronto` or `UTC`".into()));
                self.err(path, format!("unknown time zone `{text}`"), hint);
                None
            }
        }
    }

    fn severity(&mut self, path: &FieldPath, text: &str) -> Option<Severity> {
        let s = Severity::parse(text.trim())
            .or_else(|| Severity::parse(&text.trim().to_ascii_uppercase()));
        if s.is_none() {
            self.err(
                path,
                format!("unknown severity `{text}`"),
                Some("expected one of `P1`, `P2`, `P3`, `P4` (P1 is the most urgent)".into()),
            );
        }
        s
    }

    fn schedule(
        &mut self,
        path: &FieldPath,
        raw: &ScheduleConfig,
        default_tz: chrono_tz::Tz,
    ) -> Option<Schedule> {
        match (&raw.cron, &raw.every) {
            (Some(_), Some(_)) => {
                self.err(
                    path,
                    "a schedule has either `cron` or `every`, not both",
                    Some("keep one: `{every: 30m}` or `{cron: \"0 15 */2 * * *\", timezone: America/Toronto}`".into()),
                );
                None
            }
            (None, None) => {
                self.err(
                    path,
                    "a schedule needs `cron` or `every`",
                    Some("e.g. `{every: 30m}` or `{cron: \"0 15 */2 * * *\", timezone: America/Toronto}`".into()),
                );
                None
            }
            (None, Some(every)) => {
                if raw.timezone.is_some() {
                    self.err_key(
                        &path.key("timezone"),
                        "`timezone` only applies to `cron` schedules",
                        Some("remove `timezone`, or use `cron` instead of `every`".into()),
                    );
                }
                self.duration(&path.key("every"), every)
                    .map(Schedule::Every)
            }
            (Some(expr), None) => {
                let tz = match &raw.timezone {
                    Some(t) => self.timezone(&path.key("timezone"), t),
                    None => Some(default_tz),
                };
                let parsed = match cron::Schedule::from_str(expr) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let fields = expr.split_whitespace().count();
                        let hint = if fields == 5 {
                            "rooftop cron has seconds: `sec min hour day month weekday`, e.g. `0 15 */2 * * *`"
                                .to_string()
                        } else {
                            "fields: `sec min hour day-of-month month day-of-week [year]`, e.g. `0 15 */2 * * *`"
                                .to_string()
                        };
                        // The cron crate repeats the expression with a caret on later lines.
                        let detail = e.to_string();
                        let detail = detail.lines().next().unwrap_or_default().trim().to_string();
                        let msg = if detail.is_empty() || detail == expr.trim() {
                            format!("invalid cron expression `{expr}`")
                        } else {
                            format!("invalid cron expression `{expr}`: {detail}")
                        };
                        self.err(&path.key("cron"), msg, Some(hint));
                        None
                    }
                };
                Some(Schedule::Cron {
                    expr: expr.clone(),
                    schedule: Box::new(parsed?),
                    timezone: tz?,
                })
            }
        }
    }
}

/// The last-resort hint: where the field is documented.
fn schema_hint(path: &FieldPath) -> String {
    format!("see the README's probe language reference, or `rooftop schema`, for `{path}`")
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What templates at one point of a probe may read.
struct Scope<'s> {
    vars: Vec<&'s str>,
    captures: BTreeSet<&'s str>,
    /// Captures of steps that run later (for a precise "used before it exists" error).
    later: &'s HashMap<String, String>,
}

/// Validates one probe. `runbooks` maps `runbooks/x.md` (relative to the config dir) to text.
pub fn validate_probe(
    raw: &ProbeConfig,
    doc: &Document,
    file: &Path,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Result<Probe, Vec<Diagnostic>> {
    let mut c = Checker {
        file,
        doc,
        errors: Vec::new(),
    };
    let root = FieldPath::root();

    if !is_name(&raw.name) {
        c.err(
            &root.key("name"),
            format!(
                "probe name `{}` must be lowercase letters, digits and dashes",
                raw.name
            ),
            Some("e.g. `appointment-to-ro`".into()),
        );
    }
    let schedule = match &raw.schedule {
        Some(s) => c.schedule(&root.key("schedule"), s, defaults.timezone),
        None => Some(defaults.schedule.clone()),
    };
    let timeout = match &raw.timeout {
        Some(t) => c.duration(&root.key("timeout"), t),
        None => Some(defaults.timeout),
    };
    let severity = match &raw.severity {
        Some(s) => c.severity(&root.key("severity"), s),
        None => Some(defaults.severity),
    };
    let alert = match &raw.alert {
        Some(a) => c.alert_rules(&root.key("alert"), a, &defaults.alert),
        None => defaults.alert.clone(),
    };
    let runbook = raw
        .runbook
        .as_deref()
        .and_then(|r| check_runbook(&mut c, &root.key("runbook"), r, runbooks));
    for key in raw.labels.keys() {
        if !is_identifier(key) {
            c.err_key(
                &root.key("labels").key(key),
                format!("label name `{key}` must be letters, digits and underscores"),
                Some("e.g. `flow`, `connector`".into()),
            );
        }
    }
    for (key, value) in &raw.labels {
        if value.contains("{{") {
            c.err(
                &root.key("labels").key(key),
                "label values are fixed text, not templates (labels must stay bounded)",
                Some("write the value itself, e.g. `connector: crm-to-dms`".into()),
            );
        } else if key == "connector" && !is_connector(value) {
            c.err(
                &root.key("labels").key(key),
                format!("`{value}` is not a connector name: lowercase letters, digits, `-`, `_` and `.`, at most 64"),
                Some("e.g. `connector: crm-to-dms`".into()),
            );
        }
    }

    // Which step captures what, so a premature use names the step that provides it.
    let mut capture_owner: HashMap<String, String> = HashMap::new();
    for (i, step) in raw.steps.iter().enumerate() {
        for name in step.capture.keys() {
            if let Some(first) = capture_owner.get(name) {
                c.err_key(
                    &root.key("steps").index(i).key("capture").key(name),
                    format!("capture `{name}` is already captured by step `{first}`"),
                    Some("give each capture a distinct name".into()),
                );
            } else {
                capture_owner.insert(name.clone(), step.name.clone());
            }
        }
    }

    // vars, in order.
    let mut var_names: Vec<&str> = Vec::new();
    let empty_later = HashMap::new();
    for (name, value) in &raw.vars {
        let path = root.key("vars").key(name);
        if !is_identifier(name) || RESERVED.contains(&name.as_str()) {
            c.err_key(
                &path,
                format!("`{name}` cannot be a var name"),
                Some(format!(
                    "use letters, digits and underscores, not one of {}",
                    RESERVED.join(", ")
                )),
            );
        }
        let scope = Scope {
            vars: var_names.clone(),
            captures: BTreeSet::new(),
            later: &empty_later,
        };
        check_templates_in_value(&mut c, &path, value, &scope);
        var_names.push(name);
    }
    for name in capture_owner.keys() {
        if var_names.contains(&name.as_str()) || RESERVED.contains(&name.as_str()) {
            let owner = &capture_owner[name];
            let i = raw.steps.iter().position(|s| &s.name == owner).unwrap_or(0);
            c.err_key(
                &root.key("steps").index(i).key("capture").key(name),
                format!("capture `{name}` would hide a var or built-in of the same name"),
                Some("rename the capture, e.g. `{name}_found`".replace("{name}", name)),
            );
        }
    }

    // Steps.
    if raw.steps.is_empty() {
        c.err(
            &root.key("steps"),
            "a probe needs at least one step",
            Some("add a step with a `name` and a `request`".into()),
        );
    }
    let cleanup_names: Vec<&str> = raw.cleanup.iter().map(|s| s.name.as_str()).collect();
    let mut seen_steps: Vec<&str> = Vec::new();
    let mut captures_so_far: BTreeSet<&str> = BTreeSet::new();
    let mut steps = Vec::new();
    let mut cleanup_scope: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (i, raw_step) in raw.steps.iter().enumerate() {
        let path = root.key("steps").index(i);
        if seen_steps.contains(&raw_step.name.as_str()) {
            c.err(
                &path.key("name"),
                format!("duplicate step name `{}`", raw_step.name),
                Some("step names must be unique within a probe".into()),
            );
        } else if !is_name(&raw_step.name) {
            c.err(
                &path.key("name"),
                format!(
                    "step name `{}` must be lowercase letters, digits and dashes",
                    raw_step.name
                ),
                Some("e.g. `book-appointment`".into()),
            );
        }
        let later: HashMap<String, String> = capture_owner
            .iter()
            .filter(|(k, _)| !captures_so_far.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let scope = Scope {
            vars: var_names.clone(),
            captures: captures_so_far.clone(),
            later: &later,
        };
        let step = check_step(
            &mut c,
            &path,
            raw_step,
            &seen_steps,
            &scope,
            &cleanup_names,
            defaults,
            timeout,
            runbooks,
        );
        for name in raw_step.capture.keys() {
            captures_so_far.insert(name);
        }
        if let Some(creates) = &raw_step.creates {
            for name in creates.cleanup.names() {
                cleanup_scope
                    .entry(name)
                    .or_insert_with(|| captures_so_far.clone());
            }
        }
        seen_steps.push(&raw_step.name);
        if let Some(s) = step {
            steps.push(s);
        }
    }

    // Cleanup steps.
    let mut cleanup = Vec::new();
    let mut seen_cleanup: Vec<&str> = Vec::new();
    for (i, raw_c) in raw.cleanup.iter().enumerate() {
        let path = root.key("cleanup").index(i);
        if seen_cleanup.contains(&raw_c.name.as_str()) {
            c.err(
                &path.key("name"),
                format!("duplicate cleanup name `{}`", raw_c.name),
                Some("cleanup names must be unique within a probe".into()),
            );
        }
        seen_cleanup.push(&raw_c.name);
        let Some(available) = cleanup_scope.get(raw_c.name.as_str()) else {
            c.err(
                &path.key("name"),
                format!(
                    "cleanup `{}` is never used: no step has `creates: {{cleanup: {}}}`",
                    raw_c.name, raw_c.name
                ),
                Some(
                    "add `creates` to the step that makes the record, or remove this cleanup"
                        .into(),
                ),
            );
            continue;
        };
        let later = HashMap::new();
        let scope = Scope {
            vars: var_names.clone(),
            captures: available.clone(),
            later: &later,
        };
        if let Some(cs) = check_cleanup(&mut c, &path, raw_c, &scope, defaults) {
            cleanup.push(cs);
        }
    }

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let (Some(schedule), Some(timeout), Some(severity)) = (schedule, timeout, severity) else {
        return Err(c.errors);
    };
    Ok(Probe {
        name: raw.name.clone(),
        description: raw.description.clone(),
        schedule,
        timeout,
        severity,
        runbook,
        labels: raw
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        connector: raw.labels.get("connector").cloned(),
        vars: raw
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        steps,
        cleanup,
        alert,
        source: file.to_path_buf(),
    })
}

/// A connector name: bounded, so it can be a metric label and a grouping key.
fn is_connector(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn check_runbook(
    c: &mut Checker<'_>,
    path: &FieldPath,
    text: &str,
    runbooks: &BTreeMap<String, String>,
) -> Option<Runbook> {
    if text.starts_with("https://") {
        return Some(Runbook::Url(text.to_string()));
    }
    if text.starts_with("http://") {
        c.err(
            path,
            "runbook URLs must use https",
            Some(format!(
                "e.g. `{}`",
                text.replacen("http://", "https://", 1)
            )),
        );
        return None;
    }
    let rel = text.trim_start_matches("./");
    let p = Path::new(rel);
    if !rel.starts_with("runbooks/")
        || p.components()
            .any(|x| matches!(x, std::path::Component::ParentDir))
    {
        c.err(
            path,
            format!("runbook `{text}` must be a file under `runbooks/` or an https URL"),
            Some("e.g. `runbooks/ro-not-created.md`".into()),
        );
        return None;
    }
    let Some(content) = runbooks.get(rel) else {
        let hint = closest(rel, runbooks.keys().map(String::as_str))
            .map(|r| format!("did you mean `{r}`?"));
        c.err(
            path,
            format!("runbook `{text}` does not exist in the config directory"),
            hint,
        );
        return None;
    };
    let headings: Vec<String> = content
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = RUNBOOK_SECTIONS
        .iter()
        .copied()
        .filter(|s| !headings.iter().any(|h| h == &s.to_ascii_lowercase()))
        .collect();
    if !missing.is_empty() {
        c.err(
            path,
            format!(
                "runbook `{text}` lacks section{} {}",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`## {m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(format!(
                "a runbook needs the sections {}",
                RUNBOOK_SECTIONS.join(", ")
            )),
        );
        return None;
    }
    Some(Runbook::File(PathBuf::from(rel)))
}

#[allow(clippy::too_many_arguments)]
fn check_step(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &StepConfig,
    earlier_steps: &[&str],
    scope: &Scope<'_>,
    cleanup_names: &[&str],
    defaults: &Defaults,
    probe_timeout: Option<Duration>,
    runbooks: &BTreeMap<String, String>,
) -> Option<Step> {
    let request = check_request(c, &path.key("request"), &raw.request, scope, defaults);
    let expect = match &raw.expect {
        Some(e) => check_expect(c, &path.key("expect"), e, scope),
        None => Some(Expect::default()),
    };
    let until = raw
        .until
        .as_ref()
        .map(|u| check_expect(c, &path.key("until"), u, scope));
    let mut captures = Vec::new();
    for (name, spec) in &raw.capture {
        let cpath = path.key("capture").key(name);
        if !is_identifier(name) {
            c.err_key(
                &cpath,
                format!("capture name `{name}` must be letters, digits and underscores"),
                Some("e.g. `appointment_id`".into()),
            );
            continue;
        }
        if let Some(source) = check_capture(c, &cpath, spec) {
            captures.push(Capture {
                name: name.clone(),
                source,
            });
        }
    }
    let poll = match (&raw.poll, &raw.until) {
        (Some(p), Some(_)) => {
            let pp = path.key("poll");
            let interval = match &p.interval {
                Some(s) => c.duration(&pp.key("interval"), s),
                None => Some(Duration::from_secs(2)),
            };
            let max_interval = match &p.max_interval {
                Some(s) => c.duration(&pp.key("max_interval"), s),
                // Never below the first interval when only `interval` is written.
                None => interval.map(|i| i.max(Duration::from_secs(30))),
            };
            let within = c.duration(&pp.key("within"), &p.within);
            let backoff = p.backoff.unwrap_or(1.5);
            if !(1.0..=10.0).contains(&backoff) {
                c.err(
                    &pp.key("backoff"),
                    format!("backoff {backoff} must be between 1 and 10"),
                    Some("`1` keeps the interval fixed; `1.5` grows it by half each miss".into()),
                );
            }
            if let (Some(i), Some(m)) = (interval, max_interval)
                && m < i
            {
                c.err(
                    &pp.key("max_interval"),
                    "max_interval is shorter than interval",
                    Some("max_interval caps the growing wait; make it at least `interval`".into()),
                );
            }
            if let (Some(w), Some(t)) = (within, probe_timeout)
                && w > t
            {
                c.err(
                    &pp.key("within"),
                    format!(
                        "poll `within` ({}) is longer than the probe `timeout` ({})",
                        humantime::format_duration(w),
                        humantime::format_duration(t)
                    ),
                    Some("raise the probe timeout or shorten `within`".into()),
                );
            }
            Some(Poll {
                interval: interval?,
                backoff,
                max_interval: max_interval?,
                within: within?,
            })
        }
        (Some(_), None) => {
            c.err_key(
                &path.key("poll"),
                "`poll` needs an `until` condition to poll for",
                Some("add `until: {json: {\"$.items[0].id\": {exists: true}}}`".into()),
            );
            None
        }
        (None, Some(_)) => {
            c.err_key(
                &path.key("until"),
                "`until` needs `poll` settings",
                Some("add `poll: {interval: 2s, within: 10m}`".into()),
            );
            None
        }
        (None, None) => None,
    };
    let sync = raw.sync.as_ref().and_then(|s| {
        let sp = path.key("sync");
        if raw.until.is_none() {
            c.err_key(
                &sp,
                "`sync` measures how long `until` takes to hold; add `until` and `poll`",
                Some("e.g. `until: {json: {\"$.items[0].id\": {exists: true}}}` and `poll: {within: 15m}`".into()),
            );
        }
        let since_index = earlier_steps.iter().position(|n| *n == s.since);
        if since_index.is_none() {
            let msg = if s.since == raw.name {
                format!("`sync.since` cannot name the step itself (`{}`)", s.since)
            } else {
                format!(
                    "`sync.since` refers to `{}`, which is not an earlier step",
                    s.since
                )
            };
            c.err(
                &sp.key("since"),
                msg,
                did_you_mean(&s.since, earlier_steps.iter().copied()),
            );
        }
        if let Some(ts) = &s.timestamp
            && !raw.capture.contains_key(ts)
        {
            c.err(
                &sp.key("timestamp"),
                format!("`sync.timestamp` names `{ts}`, which this step does not capture"),
                did_you_mean(ts, raw.capture.keys().map(String::as_str)),
            );
        }
        Some(SyncSpec {
            since: s.since.clone(),
            since_index: since_index?,
            timestamp: s.timestamp.clone(),
        })
    });
    let slo_sync_latency = match raw.slo.as_ref().and_then(|s| s.sync_latency.as_ref()) {
        Some(text) => {
            let sp = path.key("slo").key("sync_latency");
            if raw.sync.is_none() {
                c.err_key(
                    &sp,
                    "`slo.sync_latency` needs `sync: {since: STEP}` on this step",
                    Some("add `sync: {since: <earlier step>}`, or remove the SLO".into()),
                );
            }
            c.duration(&sp, text)
        }
        None => None,
    };
    let mut creates = Vec::new();
    if let Some(cr) = &raw.creates {
        let names = cr.cleanup.names();
        if names.is_empty() {
            c.err(
                &path.key("creates").key("cleanup"),
                "name at least one cleanup step",
                Some("e.g. `creates: {cleanup: delete-appointment}`".into()),
            );
        }
        for (i, name) in names.into_iter().enumerate() {
            let p = match &cr.cleanup {
                super::raw::OneOrMany::One(_) => path.key("creates").key("cleanup"),
                super::raw::OneOrMany::Many(_) => path.key("creates").key("cleanup").index(i),
            };
            if cleanup_names.contains(&name) {
                creates.push(name.to_string());
            } else {
                let hint = did_you_mean(name, cleanup_names.iter().copied())
                    .or_else(|| Some("add a step under `cleanup:` with this name".into()));
                c.err(&p, format!("no cleanup step named `{name}`"), hint);
            }
        }
    }
    let runbook = raw
        .runbook
        .as_deref()
        .and_then(|r| check_runbook(c, &path.key("runbook"), r, runbooks));
    Some(Step {
        name: raw.name.clone(),
        request: request?,
        expect: expect?,
        captures,
        until: match until {
            Some(u) => Some(u?),
            None => None,
        },
        poll,
        sync,
        slo_sync_latency,
        creates,
        runbook,
    })
}

fn check_cleanup(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &CleanupConfig,
    scope: &Scope<'_>,
    defaults: &Defaults,
) -> Option<CleanupStep> {
    if !is_name(&raw.name) {
        c.err(
            &path.key("name"),
            format!(
                "cleanup name `{}` must be lowercase letters, digits and dashes",
                raw.name
            ),
            Some("e.g. `delete-appointment`".into()),
        );
    }
    let find = match &raw.find {
        None => None,
        Some(f) => {
            let fp = path.key("find");
            let req = check_request(c, &fp.key("request"), &f.request, scope, defaults);
            let each = match JsonPath::parse(&f.each) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(
                        &fp.key("each"),
                        format!("invalid JSONPath `{}`: {e}", f.each),
                        Some("e.g. `$.items[*].number`".into()),
                    );
                    None
                }
            };
            let why = if !is_identifier(&f.bind) {
                Some("names are letters, digits and underscores")
            } else if RESERVED.contains(&f.bind.as_str()) {
                Some("that name is built in")
            } else if scope.vars.contains(&f.bind.as_str())
                || scope.captures.contains(f.bind.as_str())
            {
                Some("a var or capture already has that name")
            } else {
                None
            };
            if let Some(why) = why {
                c.err(
                    &fp.key("as"),
                    format!("`{}` cannot name the found value: {why}", f.bind),
                    Some("pick a new name, e.g. `ro` or `customer_id`".into()),
                );
            }
            match (req, each) {
                (Some(request), Some(each)) => Some(crate::model::Find {
                    request,
                    each,
                    each_text: f.each.clone(),
                    bind: f.bind.clone(),
                }),
                _ => return None,
            }
        }
    };
    let mut inner_captures = scope.captures.clone();
    if let Some(f) = &raw.find {
        inner_captures.insert(f.bind.as_str());
    }
    let inner = Scope {
        vars: scope.vars.clone(),
        captures: inner_captures,
        later: scope.later,
    };
    let request = check_request(c, &path.key("request"), &raw.request, &inner, defaults);
    let expect = match &raw.expect {
        Some(e) => Some(check_expect(c, &path.key("expect"), e, &inner)?),
        None => None,
    };
    let retries = raw.retries.unwrap_or(defaults.cleanup_retries);
    if raw.retries.is_some_and(|r| r > MAX_CLEANUP_RETRIES) {
        c.err(
            &path.key("retries"),
            format!("at most {MAX_CLEANUP_RETRIES} retries"),
            Some(
                "retries back off from 1s doubling to 30s; the ledger retries later anyway".into(),
            ),
        );
    }
    Some(CleanupStep {
        name: raw.name.clone(),
        find,
        request: request?,
        expect,
        retries,
    })
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn check_request(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &RequestConfig,
    scope: &Scope<'_>,
    defaults: &Defaults,
) -> Option<Request> {
    let method_text = raw.method.as_deref().unwrap_or("GET");
    let method = if METHODS.contains(&method_text.to_ascii_uppercase().as_str()) {
        reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()).ok()
    } else {
        c.err(
            &path.key("method"),
            format!("unknown HTTP method `{method_text}`"),
            did_you_mean(&method_text.to_ascii_uppercase(), METHODS.iter().copied()),
        );
        None
    };
    check_template(c, &path.key("url"), &raw.url, scope);
    let starts_static = !raw.url.trim_start().starts_with("{{");
    if starts_static && !raw.url.starts_with("http://") && !raw.url.starts_with("https://") {
        c.err(
            &path.key("url"),
            format!("`{}` is not an absolute http(s) URL", raw.url),
            Some("e.g. `\"{{ env.CRM_URL }}/api/appointments\"`".into()),
        );
    }
    for (name, value) in &raw.headers {
        let hp = path.key("headers").key(name);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.err_key(
                &hp,
                format!("`{name}` is not a valid header name"),
                Some("header names are letters, digits and `-`, e.g. `X-Dealer-Id`".into()),
            );
        }
        check_template(c, &hp, value, scope);
    }
    let body = match (&raw.json, &raw.body) {
        (Some(_), Some(_)) => {
            c.err_key(
                &path.key("body"),
                "a request has `json` or `body`, not both",
                Some("`json` sends a JSON document; `body` sends text as written".into()),
            );
            Body::None
        }
        (Some(j), None) => {
            check_templates_in_value(c, &path.key("json"), j, scope);
            Body::Json(j.clone())
        }
        (None, Some(b)) => {
            check_template(c, &path.key("body"), b, scope);
            Body::Text(b.clone())
        }
        (None, None) => Body::None,
    };
    let timeout = match &raw.timeout {
        Some(t) => c.duration(&path.key("timeout"), t)?,
        None => defaults.request_timeout,
    };
    Some(Request {
        method: method?,
        url: raw.url.clone(),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body,
        timeout,
    })
}

fn check_templates_in_value(c: &mut Checker<'_>, path: &FieldPath, v: &Value, scope: &Scope<'_>) {
    match v {
        Value::String(s) => check_template(c, path, s, scope),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_templates_in_value(c, &path.index(i), x, scope);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_templates_in_value(c, &path.key(k), x, scope);
            }
        }
        _ => {}
    }
}

/// Syntax, and every name the template reads must exist at this point of the probe.
fn check_template(c: &mut Checker<'_>, path: &FieldPath, source: &str, scope: &Scope<'_>) {
    let names = match template::analyze(source) {
        Ok(n) => n,
        Err(e) => {
            c.err(
                path,
                e,
                Some("templates look like `{{ env.CRM_URL }}` or `{{ appointment_id }}`".into()),
            );
            return;
        }
    };
    for dotted in names {
        let mut parts = dotted.split('.');
        let head = parts.next().unwrap_or_default();
        let member = parts.next();
        match head {
            "env" | "secret" | "run" => {
                if member.is_none() {
                    c.err(
                        path,
                        format!("`{head}` needs a name, e.g. `{head}.NAME`"),
                        Some(format!("e.g. `{{{{ {head}.CRM_URL }}}}`")),
                    );
                }
                if head == "run"
                    && let Some(m) = member
                    && !["id", "probe"].contains(&m)
                {
                    c.err(
                        path,
                        format!("`run.{m}` does not exist"),
                        did_you_mean(m, ["id", "probe"]),
                    );
                }
            }
            "synthetic" => {
                if let Some(m) = member
                    && !HELPERS.contains(&m)
                {
                    c.err(
                        path,
                        format!("`synthetic.{m}()` does not exist"),
                        did_you_mean(m, HELPERS.iter().copied()),
                    );
                }
            }
            name if scope.vars.contains(&name) || scope.captures.contains(name) => {}
            name => {
                if let Some(step) = scope.later.get(name) {
                    c.err(
                        path,
                        format!("`{name}` is used before it exists: it is captured by step `{step}`, which runs later"),
                        Some("move this use after that step, or capture the value earlier".into()),
                    );
                } else {
                    let known: Vec<&str> = scope
                        .vars
                        .iter()
                        .copied()
                        .chain(scope.captures.iter().copied())
                        .chain(RESERVED.iter().copied())
                        .collect();
                    let hint = closest(name, known.iter().copied())
                        .map(|k| format!("did you mean `{k}`?"))
                        .or_else(|| {
                            Some(
                                "declare it under `vars:` or `capture:` it from an earlier step"
                                    .into(),
                            )
                        });
                    c.err(path, format!("unknown variable `{name}`"), hint);
                }
            }
        }
    }
}

fn check_expect(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &ExpectConfig,
    scope: &Scope<'_>,
) -> Option<Expect> {
    let mut ok = true;
    let status = match &raw.status {
        None => StatusMatch::Success,
        Some(v) => match parse_status(v) {
            Some(s) => s,
            None => {
                c.err(
                    &path.key("status"),
                    format!("`{v}` is not a status"),
                    Some("e.g. `201`, `[200, 204]` or `2xx`".into()),
                );
                ok = false;
                StatusMatch::Success
            }
        },
    };
    let mut json = Vec::new();
    for (query, spec) in &raw.json {
        let jp = path.key("json").key(query);
        let parsed = match JsonPath::parse(query) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err_key(
                    &jp,
                    format!("invalid JSONPath `{query}`: {e}"),
                    Some("RFC 9535 syntax, e.g. `$.items[0].number`".into()),
                );
                None
            }
        };
        let ops = check_ops(c, &jp, spec, scope);
        match (parsed, ops) {
            (Some(p), Some(ops)) => json.push(JsonAssertion {
                path_text: query.clone(),
                path: p,
                ops,
            }),
            _ => ok = false,
        }
    }
    let mut headers = Vec::new();
    for (name, spec) in &raw.headers {
        match check_ops(c, &path.key("headers").key(name), spec, scope) {
            Some(ops) => headers.push((name.to_ascii_lowercase(), ops)),
            None => ok = false,
        }
    }
    let body = match &raw.body {
        Some(spec) => check_ops(c, &path.key("body"), spec, scope).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
        None => Vec::new(),
    };
    ok.then_some(Expect {
        status,
        json,
        headers,
        body,
    })
}

fn parse_status(v: &Value) -> Option<StatusMatch> {
    let code = |v: &Value| {
        v.as_u64()
            .filter(|c| (100..=599).contains(c))
            .map(|c| c as u16)
    };
    match v {
        Value::Number(_) => code(v).map(|c| StatusMatch::Codes(vec![c])),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(code)
            .collect::<Option<Vec<_>>>()
            .map(StatusMatch::Codes),
        Value::String(s) => {
            let s = s.to_ascii_lowercase();
            let d = s.strip_suffix("xx")?.parse::<u16>().ok()?;
            (1..=5).contains(&d).then_some(if d == 2 {
                StatusMatch::Success
            } else {
                StatusMatch::Class(d)
            })
        }
        _ => None,
    }
}

/// An assertion: a scalar or list (meaning `==`) or a map of operators.
fn check_ops(
    c: &mut Checker<'_>,
    path: &FieldPath,
    spec: &Value,
    scope: &Scope<'_>,
) -> Option<Vec<Op>> {
    let Value::Object(map) = spec else {
        check_templates_in_value(c, path, spec, scope);
        return Some(vec![Op::Eq(spec.clone())]);
    };
    if map.is_empty() {
        c.err(
            path,
            "an assertion needs at least one operator",
            Some(format!("operators: {}", OPERATORS.join(", "))),
        );
        return None;
    }
    let mut ops = Vec::new();
    let mut ok = true;
    for (op, operand) in map {
        let op_path = path.key(op);
        let parsed = match op.as_str() {
            "==" | "!=" | "contains" => {
                check_templates_in_value(c, &op_path, operand, scope);
                Some(match op.as_str() {
                    "==" => Op::Eq(operand.clone()),
                    "!=" => Op::Ne(operand.clone()),
                    _ => Op::Contains(operand.clone()),
                })
            }
            "<" | "<=" | ">" | ">=" => {
                if !(operand.is_number() || operand.is_string()) {
                    c.err(
                        &op_path,
                        format!("`{op}` compares with a number or a string"),
                        Some(format!(
                            "e.g. `{op}: 100` or `{op}: \"2026-01-01T00:00:00Z\"`"
                        )),
                    );
                    None
                } else {
                    check_templates_in_value(c, &op_path, operand, scope);
                    Some(match op.as_str() {
                        "<" => Op::Lt(operand.clone()),
                        "<=" => Op::Le(operand.clone()),
                        ">" => Op::Gt(operand.clone()),
                        _ => Op::Ge(operand.clone()),
                    })
                }
            }
            "exists" => match operand.as_bool() {
                Some(b) => Some(Op::Exists(b)),
                None => {
                    c.err(
                        &op_path,
                        "`exists` takes `true` or `false`",
                        Some("e.g. `\"$.id\": {exists: true}`".into()),
                    );
                    None
                }
            },
            "matches" => match operand.as_str().map(Regex::new) {
                Some(Ok(r)) => Some(Op::Matches(r)),
                Some(Err(e)) => {
                    c.err(
                        &op_path,
                        format!("invalid regular expression: {e}"),
                        Some("Rust regex syntax, e.g. `^RO-[0-9]+$`".into()),
                    );
                    None
                }
                None => {
                    c.err(
                        &op_path,
                        "`matches` takes a regular expression string",
                        Some("e.g. `matches: \"^RO-[0-9]+$\"`".into()),
                    );
                    None
                }
            },
            "length" => match operand.as_u64() {
                Some(n) => Some(Op::Length(n as usize)),
                None => {
                    c.err(
                        &op_path,
                        "`length` takes a non-negative integer",
                        Some("e.g. `\"$.items\": {length: 1}`".into()),
                    );
                    None
                }
            },
            other => {
                c.err_key(
                    &op_path,
                    format!("unknown assertion operator `{other}`"),
                    did_you_mean(other, OPERATORS.iter().copied())
                        .map(|h| format!("{h} (to compare with an object, write `==: {{...}}`)")),
                );
                None
            }
        };
        match parsed {
            Some(o) => ops.push(o),
            None => ok = false,
        }
    }
    ok.then_some(ops)
}

/// A capture: `"$.path"` (JSONPath) or `{json: ..}`, `{header: ..}`, `{regex: ..}`.
fn check_capture(c: &mut Checker<'_>, path: &FieldPath, spec: &Value) -> Option<CaptureSource> {
    let json_path = |c: &mut Checker<'_>, p: &FieldPath, q: &str| match JsonPath::parse(q) {
        Ok(jp) => Some(CaptureSource::Json(jp, q.to_string())),
        Err(e) => {
            c.err(
                p,
                format!("invalid JSONPath `{q}`: {e}"),
                Some("RFC 9535 syntax, e.g. `$.items[0].number`".into()),
            );
            None
        }
    };
    match spec {
        Value::String(q) => json_path(c, path, q),
        Value::Object(m) if m.len() == 1 => {
            let (kind, v) = m.iter().next()?;
            let kp = path.key(kind);
            let Some(text) = v.as_str() else {
                c.err(
                    &kp,
                    format!("`{kind}` takes a string"),
                    Some(
                        "e.g. `{json: \"$.id\"}`, `{header: Location}`, `{regex: \"RO-(\\\\d+)\"}`"
                            .into(),
                    ),
                );
                return None;
            };
            match kind.as_str() {
                "json" => json_path(c, &kp, text),
                "header" => Some(CaptureSource::Header(text.to_ascii_lowercase())),
                "regex" => match Regex::new(text) {
                    Ok(r) => Some(CaptureSource::Regex(r)),
                    Err(e) => {
                        c.err(&kp, format!("invalid regular expression: {e}"), Some("Rust regex syntax; the first group is captured, e.g. `RO-(\\\\d+)`".into()));
                        None
                    }
                },
                other => {
                    c.err_key(
                        &kp,
                        format!("unknown capture source `{other}`"),
                        did_you_mean(other, ["json", "header", "regex"]),
                    );
                    None
                }
            }
        }
        _ => {
            c.err(
                path,
                "a capture is a JSONPath string or one of `{json: ...}`, `{header: ...}`, `{regex: ...}`",
                Some("e.g. `appointment_id: \"$.id\"` or `location: {header: Location}`".into()),
            );
            None
        }
    }
}

/// `local@domain.tld`, no spaces: enough to catch typos; the mail server decides the rest.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
}

/// Upper bound of `scheduler.max_concurrent`.
const MAX_CONCURRENT_RUNS: u32 = 4096;
/// Lower bound of `history.max_size`.
const MIN_HISTORY_BYTES: u64 = 16_000_000;

/// `512MB`, `2GiB`, `1024` (bytes): decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Validates `rooftop.yaml`.
pub fn validate_agent(
    raw: &AgentConfig,
    doc: &Document,
    file: &Path,
) -> Result<(Agent, Defaults), Vec<Diagnostic>> {
    let mut c = Checker {
        file,
        doc,
        errors: Vec::new(),
    };
    let root = FieldPath::root();
    let mut defaults = Defaults::default();
    let mut max_body_bytes = 1 << 20;
    let mut verify_tls = true;
    if let Some(d) = &raw.defaults {
        let dp = root.key("defaults");
        if let Some(tz) = &d.timezone
            && let Some(t) = c.timezone(&dp.key("timezone"), tz)
        {
            defaults.timezone = t;
        }
        if let Some(s) = &d.schedule
            && let Some(s) = c.schedule(&dp.key("schedule"), s, defaults.timezone)
        {
            defaults.schedule = s;
        }
        if let Some(t) = &d.timeout
            && let Some(t) = c.duration(&dp.key("timeout"), t)
        {
            defaults.timeout = t;
        }
        if let Some(s) = &d.severity
            && let Some(s) = c.severity(&dp.key("severity"), s)
        {
            defaults.severity = s;
        }
        if let Some(t) = &d.request_timeout
            && let Some(t) = c.duration(&dp.key("request_timeout"), t)
        {
            defaults.request_timeout = t;
        }
        if let Some(r) = d.cleanup_retries {
            if r > MAX_CLEANUP_RETRIES {
                c.err(
                    &dp.key("cleanup_retries"),
                    format!("at most {MAX_CLEANUP_RETRIES} cleanup retries"),
                    Some(
                        "retries back off from 1s doubling to 30s; the ledger retries later anyway"
                            .into(),
                    ),
                );
            }
            defaults.cleanup_retries = r;
        }
        if let Some(m) = d.max_body_bytes {
            if m < 1024 {
                c.err(
                    &dp.key("max_body_bytes"),
                    "max_body_bytes must be at least 1024",
                    Some("the default is 1048576 (1 MiB)".into()),
                );
            }
            max_body_bytes = m;
        }
        if let Some(v) = d.verify_tls {
            verify_tls = v;
        }
    }
    let mut secrets = BTreeMap::new();
    for (name, src) in &raw.secrets {
        let sp = root.key("secrets").key(name);
        if !is_identifier(name) {
            c.err_key(
                &sp,
                format!("secret name `{name}` must be letters, digits and underscores"),
                Some("e.g. `crm_token`".into()),
            );
        }
        let chosen: Vec<SecretSource> = [
            src.env.clone().map(SecretSource::Env),
            src.file
                .clone()
                .map(|f| SecretSource::File(PathBuf::from(f))),
            src.credential.clone().map(SecretSource::Credential),
        ]
        .into_iter()
        .flatten()
        .collect();
        match chosen.as_slice() {
            [one] => {
                if let SecretSource::File(p) = one
                    && p.is_relative()
                {
                    c.err(&sp.key("file"), "secret files need an absolute path", Some("e.g. `/etc/rooftop/secrets/crm.token`".into()));
                }
                secrets.insert(name.clone(), one.clone());
            }
            _ => c.err(
                &sp,
                format!("secret `{name}` needs exactly one of `env`, `file`, `credential`"),
                Some("e.g. `crm_token: {credential: crm_token}` with LoadCredential= in the systemd unit".into()),
            ),
        }
    }
    let mut scheduler = SchedulerSettings::default();
    if let Some(sc) = &raw.scheduler {
        let sp = root.key("scheduler");
        if let Some(n) = sc.max_concurrent {
            if n == 0 || n > MAX_CONCURRENT_RUNS {
                c.err(
                    &sp.key("max_concurrent"),
                    format!("max_concurrent must be between 1 and {MAX_CONCURRENT_RUNS}"),
                    Some(
                        "the default, 16, suits most rooftops; raise it only for many slow probes"
                            .into(),
                    ),
                );
            }
            scheduler.max_concurrent = n as usize;
        }
        if let Some(m) = &sc.missed_runs {
            match m.as_str() {
                "skip" => scheduler.missed_runs = MissedRuns::Skip,
                "run-once" => scheduler.missed_runs = MissedRuns::RunOnce,
                other => c.err(
                    &sp.key("missed_runs"),
                    format!("unknown missed_runs `{other}`"),
                    did_you_mean(other, ["skip", "run-once"])
                        .or_else(|| Some("`skip` (default) or `run-once`".into())),
                ),
            }
        }
    }
    let mut history = HistorySettings::default();
    if let Some(h) = &raw.history {
        let hp = root.key("history");
        if let Some(k) = &h.keep
            && let Some(k) = c.duration(&hp.key("keep"), k)
        {
            history.keep = k;
        }
        if let Some(m) = &h.max_size {
            match parse_size(m) {
                Some(b) if b >= MIN_HISTORY_BYTES => history.max_bytes = b,
                Some(_) => c.err(
                    &hp.key("max_size"),
                    format!("max_size `{m}` is below the minimum of 16MB"),
                    Some("a day of one probe every minute takes about 3MB".into()),
                ),
                None => c.err(
                    &hp.key("max_size"),
                    format!("`{m}` is not a size"),
                    Some("a number and a unit: `512MB`, `2GiB`".into()),
                ),
            }
        }
    }
    if let Some(a) = raw.alerting.as_ref().and_then(|a| a.rules.as_ref()) {
        defaults.alert = c.alert_rules(
            &root.key("alerting").key("rules"),
            a,
            &AlertRules::default(),
        );
    }
    let alerting = raw
        .alerting
        .as_ref()
        .map(|a| c.alerting(&root.key("alerting"), a))
        .unwrap_or_default();
    let telemetry = raw
        .telemetry
        .as_ref()
        .map(|t| c.telemetry(&root.key("telemetry"), t))
        .unwrap_or_default();
    let (rooftop_id, rooftop_name, dealer_group) = match &raw.rooftop {
        Some(r) => {
            if !is_name(&r.id) {
                c.err(
                    &root.key("rooftop").key("id"),
                    format!(
                        "rooftop id `{}` must be lowercase letters, digits and dashes",
                        r.id
                    ),
                    Some("e.g. `toronto-north`".into()),
                );
            }
            (r.id.clone(), r.name.clone(), r.dealer_group.clone())
        }
        None => ("default".to_string(), None, None),
    };
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok((
        Agent {
            rooftop_id,
            rooftop_name,
            dealer_group,
            state_dir: PathBuf::from(
                raw.state_dir
                    .clone()
                    .unwrap_or_else(|| "/var/lib/rooftop".into()),
            ),
            secrets,
            env: raw
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_body_bytes,
            verify_tls,
            scheduler,
            history,
            telemetry,
            alerting,
        },
        defaults,
    ))
}
