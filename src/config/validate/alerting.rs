//! `alerting:` in rooftop.yaml and `alert:` in probes: the rules that open incidents
//! (`alert_rules`, a probe's over the agent's), contacts and routes, and the channels
//! pages go out on (e-mail, SMS, webhook, PagerDuty), grouping and channel preference.

use std::path::PathBuf;
use std::time::Duration;

use super::Checker;
use super::primitives::{is_email, is_http_url};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{AlertRulesConfig, AlertingConfig, FireAfterConfig, KOfMConfig};
use crate::config::yaml::FieldPath;
use crate::model::{
    AlertRules, AlertingSettings, Contact, EmailDestination, EmailSettings, FireRule,
    PagerDutyTarget, RatioRule, Severity, SmsAccount, SmtpSecurity, SyncRule, WebhookTarget,
    is_e164,
};
use crate::template;

impl Checker<'_> {
    /// `raw` over `base`, field by field.
    pub(super) fn alert_rules(
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

    pub(super) fn alerting(&mut self, path: &FieldPath, raw: &AlertingConfig) -> AlertingSettings {
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
                && !is_e164(p)
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
            if is_http_url(u) {
                out.runbook_base_url = Some(u.trim_end_matches('/').to_string());
            } else {
                self.err(
                    &path.key("runbook_base_url"),
                    format!("`{u}` is not an http(s) URL"),
                    Some("e.g. `https://wiki.dealer.example/rooftop`".into()),
                );
            }
        }
        if let Some(sms) = &raw.sms {
            let sp = path.key("sms");
            if !(is_e164(&sms.from) || sms.from.starts_with("MG")) {
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
                && !is_http_url(u)
            {
                self.err(
                    &sp.key("base_url"),
                    format!("`{u}` is not an http(s) URL"),
                    None,
                );
            }
            out.sms = Some(SmsAccount {
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
            if !is_http_url(&w.url) {
                self.err(
                    &wp.key("url"),
                    format!("`{}` is not an http(s) URL", w.url),
                    Some("e.g. `https://hooks.dealer.example/rooftop`".into()),
                );
            }
            if let Err(e) = template::analyze(&w.secret) {
                self.err(&wp.key("secret"), format!("template error: {e}"), None);
            }
            out.webhook = Some(WebhookTarget {
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
                && !is_http_url(u)
            {
                self.err(&pp.key("url"), format!("`{u}` is not an http(s) URL"), None);
            }
            out.pagerduty = Some(PagerDutyTarget {
                routing_key: pd.routing_key.clone(),
                url: pd.url.clone(),
            });
        }
        if let Some(u) = &raw.ack_base_url {
            if is_http_url(u) {
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
}
