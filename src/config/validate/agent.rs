//! `rooftop.yaml`: the agent's identity, probe defaults, secrets, scheduler, history and
//! telemetry settings (alerting is `alerting.rs`, rotations and time windows `oncall.rs`). Produces `model::Agent` and the
//! `Defaults` every probe starts from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::primitives::{is_http_url, is_identifier, is_name, parse_size};
use super::{Checker, Defaults, MAX_CLEANUP_RETRIES};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{AgentConfig, HeartbeatConfig, TelemetryConfig};
use crate::config::yaml::FieldPath;
use crate::model::{
    Agent, AlertRules, DEFAULT_HEARTBEAT_EVERY, DEFAULT_HEARTBEAT_TIMEOUT, HeartbeatTarget,
    HistorySettings, MissedRuns, OtlpProtocol, SchedulerSettings, SecretSource, SelfMonitoring,
    TelemetrySettings,
};
use crate::template;

/// Upper bound of `scheduler.stop_deadline`.
const MAX_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1800);
/// Upper bound of `scheduler.max_concurrent`.
const MAX_CONCURRENT_RUNS: u32 = 4096;
/// Lower bound of `history.max_size`.
const MIN_HISTORY_BYTES: u64 = 16_000_000;

impl Checker<'_> {
    /// `self_monitoring.heartbeat`: an http(s) URL (a template: it may carry a secret),
    /// a period and a timeout shorter than it.
    fn heartbeat(&mut self, path: &FieldPath, h: &HeartbeatConfig) -> Option<HeartbeatTarget> {
        let mut ok = true;
        let url = h.url.trim();
        if let Err(e) = template::analyze(url) {
            self.err(
                &path.key("url"),
                format!("template error: {e}"),
                Some("only `env.*` and `secret.*` are available here".into()),
            );
            ok = false;
        } else if !is_http_url(url) {
            self.err(
                &path.key("url"),
                format!("`{url}` is not an http(s) URL"),
                Some(
                    "the ping URL of the check, e.g. `https://hc-ping.com/{{ secret.hc_uuid }}`"
                        .into(),
                ),
            );
            ok = false;
        }
        let every = match &h.every {
            Some(t) => self.duration(&path.key("every"), t),
            None => Some(DEFAULT_HEARTBEAT_EVERY),
        };
        let timeout = match &h.timeout {
            Some(t) => self.duration(&path.key("timeout"), t),
            None => Some(DEFAULT_HEARTBEAT_TIMEOUT),
        };
        let (Some(every), Some(timeout)) = (every, timeout) else {
            return None;
        };
        if every < std::time::Duration::from_secs(10) {
            self.err(
                &path.key("every"),
                format!("every `{}` is under 10s", humantime::format_duration(every)),
                Some("a heartbeat every minute (the default) is plenty: set the check's grace time to a few periods".into()),
            );
            ok = false;
        }
        if timeout >= every {
            self.err(
                &path.key("timeout"),
                format!(
                    "timeout `{}` is not shorter than every `{}`",
                    humantime::format_duration(timeout),
                    humantime::format_duration(every)
                ),
                Some("a ping must end before the next one is due".into()),
            );
            ok = false;
        }
        ok.then(|| HeartbeatTarget {
            url: url.trim_end_matches('/').to_string(),
            every,
            timeout,
        })
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
        if let Some(sp) = &t.status_page {
            let spp = path.key("status_page");
            out.status_page = sp.enabled.unwrap_or(true);
            if let Some(token) = &sp.token {
                match template::analyze(token) {
                    Ok(_) if token.trim().is_empty() => self.err(
                        &spp.key("token"),
                        "the status page token is empty",
                        Some("e.g. `\"{{ secret.status_page_token }}\"`, or leave `token` out for an open page".into()),
                    ),
                    Ok(_) => out.status_token = Some(token.clone()),
                    Err(e) => self.err(
                        &spp.key("token"),
                        format!("template error: {e}"),
                        Some("only `env.*` and `secret.*` are available here".into()),
                    ),
                }
            }
        }
        let Some(o) = &t.otlp else { return out };
        let op = path.key("otlp");
        if let Some(e) = &o.endpoint {
            if is_http_url(e) {
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
}

/// `rooftop.yaml` as agent settings and probe defaults; `c` collects what is wrong.
pub(super) fn check_agent(c: &mut Checker<'_>, raw: &AgentConfig) -> (Agent, Defaults) {
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
        if let Some(t) = &sc.stop_deadline
            && let Some(d) = c.duration(&sp.key("stop_deadline"), t)
        {
            if d > MAX_STOP_DEADLINE {
                c.err(
                    &sp.key("stop_deadline"),
                    format!("stop_deadline `{t}` is over {}", humantime::format_duration(MAX_STOP_DEADLINE)),
                    Some("the default, 75s, fits systemd's 90 s stop timeout; raise TimeoutStopSec= with it".into()),
                );
            } else {
                scheduler.stop_deadline = d;
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
    let mut self_monitoring = SelfMonitoring::default();
    if let Some(s) = &raw.self_monitoring {
        let sp = root.key("self_monitoring");
        if let Some(t) = &s.check_every
            && let Some(d) = c.duration(&sp.key("check_every"), t)
        {
            self_monitoring.check_every = d;
        }
        for (key, raw, slot) in [
            (
                "outbox_stuck_after",
                &s.outbox_stuck_after,
                &mut self_monitoring.outbox_stuck_after,
            ),
            (
                "export_failing_after",
                &s.export_failing_after,
                &mut self_monitoring.export_failing_after,
            ),
            (
                "scheduler_lag_after",
                &s.scheduler_lag_after,
                &mut self_monitoring.scheduler_lag_after,
            ),
        ] {
            if let Some(t) = raw
                && let Some(d) = c.duration(&sp.key(key), t)
            {
                *slot = d;
            }
        }
        if let Some(m) = &s.min_free_disk {
            match parse_size(m) {
                Some(b) => self_monitoring.min_free_disk = b,
                None => c.err(
                    &sp.key("min_free_disk"),
                    format!("`{m}` is not a size"),
                    Some("a number and a unit: `512MiB`, `2GB`".into()),
                ),
            }
        }
        self_monitoring.heartbeat = s
            .heartbeat
            .as_ref()
            .and_then(|h| c.heartbeat(&sp.key("heartbeat"), h));
    }
    let oncall = super::oncall::check_oncall(c, raw);
    c.check_references(&oncall);
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
    (
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
            self_monitoring,
            oncall,
        },
        defaults,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{agent, agent_errors, paths_and_messages};
    use crate::model::{MissedRuns, OtlpProtocol, SecretSource, Severity};

    fn errors(yaml: &str) -> Vec<(String, String)> {
        paths_and_messages(&agent_errors(yaml))
    }

    #[test]
    fn defaults_scheduler_history_and_secrets_are_taken_as_written() {
        let (a, d) = agent(
            "rooftop: {id: toronto-north, name: Toronto North Honda}\n\
             defaults: {timezone: America/Toronto, severity: p2, timeout: 5m, request_timeout: 10s, cleanup_retries: 5, max_body_bytes: 2048, verify_tls: false}\n\
             secrets: {crm_token: {env: CRM_TOKEN}, dms: {file: /etc/rooftop/dms.token}}\n\
             scheduler: {max_concurrent: 4, missed_runs: run-once, stop_deadline: 2m}\n\
             history: {keep: 7d, max_size: 1GiB}\n",
        );
        assert_eq!(a.rooftop_id, "toronto-north");
        assert_eq!(a.rooftop_name.as_deref(), Some("Toronto North Honda"));
        assert_eq!(d.timezone, chrono_tz::America::Toronto);
        assert_eq!(d.severity, Severity::P2);
        assert_eq!(d.timeout, Duration::from_secs(300));
        assert_eq!(d.request_timeout, Duration::from_secs(10));
        assert_eq!(d.cleanup_retries, 5);
        assert_eq!((a.max_body_bytes, a.verify_tls), (2048, false));
        assert_eq!(
            a.secrets["crm_token"],
            SecretSource::Env("CRM_TOKEN".into())
        );
        assert_eq!(
            a.secrets["dms"],
            SecretSource::File("/etc/rooftop/dms.token".into())
        );
        assert_eq!(a.scheduler.max_concurrent, 4);
        assert_eq!(a.scheduler.missed_runs, MissedRuns::RunOnce);
        assert_eq!(
            a.scheduler.stop_deadline,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(a.history.keep, Duration::from_secs(7 * 86400));
        assert_eq!(a.history.max_bytes, 1 << 30);
    }

    #[test]
    fn out_of_range_defaults_are_refused() {
        assert_eq!(
            errors("defaults: {cleanup_retries: 21, max_body_bytes: 100}"),
            [
                (
                    "defaults.cleanup_retries".into(),
                    "at most 20 cleanup retries".into()
                ),
                (
                    "defaults.max_body_bytes".into(),
                    "max_body_bytes must be at least 1024".into()
                ),
            ]
        );
    }

    #[test]
    fn a_secret_has_one_source_and_files_are_absolute() {
        assert_eq!(
            errors(
                "secrets:\n  crm-token: {env: A}\n  both: {env: B, file: /b}\n  rel: {file: secrets/c}\n"
            ),
            [
                (
                    "secrets.crm-token".into(),
                    "secret name `crm-token` must be letters, digits and underscores".into()
                ),
                (
                    "secrets.both".into(),
                    "secret `both` needs exactly one of `env`, `file`, `credential`".into()
                ),
                (
                    "secrets.rel.file".into(),
                    "secret files need an absolute path".into()
                ),
            ]
        );
    }

    #[test]
    fn scheduler_history_and_rooftop_id_mistakes() {
        let e = agent_errors(
            "rooftop: {id: Toronto North}\nscheduler: {max_concurrent: 5000, missed_runs: run-onse, stop_deadline: 2h}\nhistory: {max_size: 1MB}\n",
        );
        assert_eq!(
            paths_and_messages(&e),
            [
                (
                    "rooftop.id".into(),
                    "rooftop id `Toronto North` must be lowercase letters, digits and dashes"
                        .into()
                ),
                (
                    "scheduler.max_concurrent".into(),
                    "max_concurrent must be between 1 and 4096".into()
                ),
                (
                    "scheduler.missed_runs".into(),
                    "unknown missed_runs `run-onse`".into()
                ),
                (
                    "scheduler.stop_deadline".into(),
                    "stop_deadline `2h` is over 30m".into()
                ),
                (
                    "history.max_size".into(),
                    "max_size `1MB` is below the minimum of 16MB".into()
                ),
            ]
        );
        assert_eq!(e[2].hint.as_deref(), Some("did you mean `run-once`?"));
        assert_eq!(
            errors("history: {max_size: lots}"),
            [("history.max_size".into(), "`lots` is not a size".into())]
        );
    }

    #[test]
    fn a_heartbeat_takes_a_url_template_a_period_and_a_shorter_timeout() {
        let (a, _) = agent(
            "self_monitoring:\n  heartbeat: {url: \"https://hc-ping.com/{{ secret.hc }}/\", every: 2m}\n",
        );
        assert_eq!(
            a.self_monitoring.heartbeat,
            Some(crate::model::HeartbeatTarget {
                url: "https://hc-ping.com/{{ secret.hc }}".into(),
                every: Duration::from_secs(120),
                timeout: Duration::from_secs(10),
            })
        );
        assert_eq!(
            paths_and_messages(&agent_errors(
                "self_monitoring:\n  heartbeat: {url: \"hc-ping.com/x\", every: 5s, timeout: 5s}\n"
            )),
            [
                (
                    "self_monitoring.heartbeat.url".into(),
                    "`hc-ping.com/x` is not an http(s) URL".into()
                ),
                (
                    "self_monitoring.heartbeat.every".into(),
                    "every `5s` is under 10s".into()
                ),
                (
                    "self_monitoring.heartbeat.timeout".into(),
                    "timeout `5s` is not shorter than every `5s`".into()
                ),
            ]
        );
    }

    #[test]
    fn the_status_page_is_on_by_default_and_takes_a_token_template() {
        let (a, _) = agent("telemetry: {listen: \"127.0.0.1:9464\"}");
        assert!(a.telemetry.status_page);
        assert_eq!(a.telemetry.status_token, None);
        let (a, _) =
            agent("telemetry:\n  status_page: {enabled: false, token: \"{{ secret.status }}\"}\n");
        assert!(!a.telemetry.status_page);
        assert_eq!(
            a.telemetry.status_token.as_deref(),
            Some("{{ secret.status }}")
        );
        assert_eq!(
            paths_and_messages(&agent_errors(
                "telemetry:\n  status_page: {token: \"{{ secret.status\"}\n"
            ))
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<String>>(),
            ["telemetry.status_page.token"]
        );
        assert_eq!(
            paths_and_messages(&agent_errors(
                "telemetry:\n  status_page: {token: \"  \"}\n"
            )),
            [(
                "telemetry.status_page.token".into(),
                "the status page token is empty".into()
            )]
        );
    }

    #[test]
    fn telemetry_settings_and_their_mistakes() {
        let (a, _) = agent(
            "telemetry:\n  listen: off\n  interval: 30s\n  otlp: {endpoint: \"http://127.0.0.1:4318/\", protocol: http/protobuf, signals: [metrics], headers: {x-api-key: \"{{ secret.k }}\"}}\n",
        );
        let t = &a.telemetry;
        assert_eq!(t.listen, None);
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(t.otlp_protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!((t.metrics, t.traces, t.logs), (true, false, false));
        assert_eq!(
            t.otlp_headers,
            [("x-api-key".into(), "{{ secret.k }}".into())]
        );

        let (a, _) = agent("telemetry: {listen: \"[::1]:9464\"}");
        assert_eq!(a.telemetry.listen, Some("[::1]:9464".parse().unwrap()));

        assert_eq!(
            errors(
                "telemetry:\n  listen: localhost\n  otlp: {endpoint: \"127.0.0.1:4317\", protocol: grcp, signals: [metric], headers: {\"bad header\": x}}\n"
            ),
            [
                (
                    "telemetry.listen".into(),
                    "`localhost` is not an address and port".into()
                ),
                (
                    "telemetry.otlp.endpoint".into(),
                    "OTLP endpoint `127.0.0.1:4317` must start with http:// or https://".into()
                ),
                (
                    "telemetry.otlp.protocol".into(),
                    "unknown OTLP protocol `grcp`".into()
                ),
                (
                    "telemetry.otlp.signals[0]".into(),
                    "unknown signal `metric`".into()
                ),
                (
                    "telemetry.otlp.headers[\"bad header\"]".into(),
                    "`bad header` is not a valid header name".into()
                ),
            ]
        );
    }
}
