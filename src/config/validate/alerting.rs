//! `alerting:` in rooftop.yaml and `alert:` in probes: the rules that open incidents
//! (`alert_rules`, a probe's over the agent's), contacts and routes, and the channels
//! pages go out on (e-mail, SMS, webhook, PagerDuty), grouping and channel preference.

use std::path::PathBuf;
use std::time::Duration;

use super::Checker;
use super::primitives::{is_email, is_http_url};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{
    AlertRulesConfig, AlertingConfig, FireAfterConfig, KOfMConfig, SmsRepliesConfig,
};
use crate::config::yaml::FieldPath;
use crate::model::{
    AlertRules, AlertingSettings, Contact, EmailDestination, EmailSettings, FireRule,
    PagerDutyTarget, RatioRule, SmsAccount, SmsReplies, SmtpSecurity, SyncRule, WebhookTarget,
    is_e164,
};
use crate::model::{DEFAULT_REPLY_POLL, MIN_REPLY_POLL};
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

    /// `alerting.sms.replies`: on with a 30 s poll unless `enabled: false`.
    fn sms_replies(
        &mut self,
        path: &FieldPath,
        raw: Option<&SmsRepliesConfig>,
    ) -> Option<SmsReplies> {
        let Some(raw) = raw else {
            return Some(SmsReplies {
                poll: DEFAULT_REPLY_POLL,
            });
        };
        let poll = match &raw.poll {
            Some(text) => {
                let poll = self.duration(&path.key("poll"), text)?;
                if poll < MIN_REPLY_POLL {
                    self.err(
                        &path.key("poll"),
                        format!("poll `{text}` is shorter than 5s"),
                        Some("Twilio rate-limits its message list: e.g. `30s`".into()),
                    );
                    return None;
                }
                poll
            }
            None => DEFAULT_REPLY_POLL,
        };
        (raw.enabled != Some(false)).then_some(SmsReplies { poll })
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
        self.paging_policy(path, raw, &mut out);
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
            let replies = self.sms_replies(&sp.key("replies"), sms.replies.as_ref());
            out.sms = Some(SmsAccount {
                account_sid: sms.account_sid.clone(),
                auth_token: sms.auth_token.clone(),
                from: sms.from.clone(),
                base_url: sms
                    .base_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_string()),
                replies,
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
                && let Some(d) = self.duration_or_zero(&gp.key("window"), w)
            {
                out.group.window = d;
            }
            if let Some(w) = &g.wait
                && let Some(d) = self.duration_or_zero(&gp.key("wait"), w)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{
        ONE_STEP, agent, agent_errors, paths_and_messages, probe, probe_errors,
    };
    use crate::model::{
        DEFAULT_REPLY_POLL, EmailDestination, FireRule, MIN_REPLY_POLL, Severity, SmsReplies,
        SmtpSecurity, Target,
    };

    fn errors(yaml: &str) -> Vec<(String, String)> {
        paths_and_messages(&agent_errors(yaml))
    }

    #[test]
    fn a_probes_alert_rules_override_the_agents_field_by_field() {
        let (_, d) = agent("alerting: {rules: {fire_after: 3, resolve_after: 2}}");
        assert_eq!(d.alert.fire, FireRule::Consecutive(3));
        assert_eq!(d.alert.resolve_after, 2);
        let p = probe(&format!(
            "name: p\nalert: {{fire_after: {{failed: 3, of: 5}}, success_ratio: {{below: 0.9, window: 1h}}, flapping: {{changes: 4, window: 30m}}}}\n{ONE_STEP}"
        ));
        assert_eq!(p.alert.fire, FireRule::KOfM { k: 3, m: 5 });
        let ratio = p.alert.ratio.expect("success_ratio");
        assert_eq!(
            (ratio.below, ratio.window, ratio.min_runs),
            (0.9, Duration::from_secs(3600), 5)
        );
        assert_eq!(
            (p.alert.flap_changes, p.alert.flap_window),
            (4, Duration::from_secs(1800))
        );
        let p = probe(&format!(
            "name: p\nalert: {{sync_latency: {{p95_over: 10m}}}}\n{ONE_STEP}"
        ));
        let sync = p.alert.sync.expect("sync_latency");
        assert_eq!(sync.p95_over, Some(Duration::from_secs(600)));
        assert_eq!(
            (sync.window, sync.min_measurements, sync.hard_limit),
            (Duration::from_secs(3600), 3, None)
        );
    }

    #[test]
    fn impossible_alert_rules_are_refused() {
        let e = probe_errors(&format!(
            "name: p\nalert: {{fire_after: {{failed: 6, of: 5}}, resolve_after: 0, success_ratio: {{below: 1.5, window: 1h}}, sync_latency: {{window: 1h}}}}\n{ONE_STEP}"
        ));
        assert_eq!(
            paths_and_messages(&e),
            [
                (
                    "alert.fire_after".into(),
                    "fire_after {failed: 6, of: 5} needs 1 ≤ failed ≤ of ≤ 1000".into()
                ),
                (
                    "alert.resolve_after".into(),
                    "resolve_after must be at least 1".into()
                ),
                (
                    "alert.success_ratio.below".into(),
                    "`1.5` is not a ratio between 0 and 1".into()
                ),
                (
                    "alert.sync_latency".into(),
                    "sync_latency needs `p95_over`, `hard_limit` or both".into()
                ),
            ]
        );
        assert_eq!(
            paths_and_messages(&probe_errors(&format!(
                "name: p\nalert: {{fire_after: 0}}\n{ONE_STEP}"
            ))),
            [(
                "alert.fire_after".to_string(),
                "fire_after must be at least 1".to_string()
            )]
        );
    }

    #[test]
    fn contacts_and_routes() {
        let (a, _) = agent(
            "alerting:\n  contacts:\n    - {name: Maria Lopez, email: maria@dealer.example}\n    - {name: Sam, phone: \"+14165550123\"}\n  routes: {P1: [Sam, Maria Lopez], P3: [Maria Lopez]}\n",
        );
        let al = &a.alerting;
        assert_eq!(al.contacts[1].phone.as_deref(), Some("+14165550123"));
        let to = |s: Severity| al.routes[&s].steps[0].notify.clone();
        assert_eq!(
            to(Severity::P1),
            [
                Target::Contact("Sam".into()),
                Target::Contact("Maria Lopez".into())
            ]
        );
        assert_eq!(to(Severity::P3), [Target::Contact("Maria Lopez".into())]);
        assert_eq!(al.prefer, ["sms", "email"], "the default preference");

        let e = agent_errors(
            "alerting:\n  contacts:\n    - {name: Maria Lopez, email: maria@dealer, phone: \"416-555-0123\"}\n    - {name: Maria Lopez, email: m@dealer.example}\n    - {name: \" \"}\n  routes: {P1: [Maria Lopz], P7: [Maria Lopez]}\n",
        );
        assert_eq!(
            paths_and_messages(&e),
            [
                (
                    "alerting.contacts[0].email".into(),
                    "`maria@dealer` is not an e-mail address".into()
                ),
                (
                    "alerting.contacts[0].phone".into(),
                    "`416-555-0123` is not an E.164 phone number".into()
                ),
                (
                    "alerting.contacts[1].name".into(),
                    "contact `Maria Lopez` is listed twice".into()
                ),
                (
                    "alerting.contacts[2]".into(),
                    "contact ` ` has neither `email` nor `phone`".into()
                ),
                (
                    "alerting.contacts[2].name".into(),
                    "a contact needs a name".into()
                ),
                (
                    "alerting.routes.P1[0]".into(),
                    "no contact named `Maria Lopz`".into()
                ),
                ("alerting.routes.P7".into(), "unknown severity `P7`".into()),
            ]
        );
        assert_eq!(e[5].hint.as_deref(), Some("did you mean `Maria Lopez`?"));
    }

    #[test]
    fn channels_urls_and_templates() {
        let (a, _) = agent(
            "alerting:\n  runbook_base_url: https://wiki.dealer.example/rooftop/\n  sms: {account_sid: AC1, auth_token: \"{{ secret.t }}\", from: MG123, base_url: \"http://127.0.0.1:1/\"}\n  webhook: {url: \"https://hooks.dealer.example\", secret: s}\n  pagerduty: {routing_key: k}\n  ack_base_url: \"https://rooftop.dealer.example:9464/\"\n  group: {window: 10m, wait: 30s}\n  prefer: [email]\n",
        );
        let al = &a.alerting;
        assert_eq!(
            al.runbook_base_url.as_deref(),
            Some("https://wiki.dealer.example/rooftop")
        );
        let sms = al.sms.as_ref().expect("sms");
        assert_eq!(
            (sms.from.as_str(), sms.base_url.as_deref()),
            ("MG123", Some("http://127.0.0.1:1"))
        );
        assert_eq!(
            sms.replies,
            Some(SmsReplies {
                poll: Duration::from_secs(30)
            }),
            "replies are read by default"
        );
        assert_eq!(
            al.webhook.as_ref().map(|w| w.url.as_str()),
            Some("https://hooks.dealer.example")
        );
        assert_eq!(al.pagerduty.as_ref().map(|p| p.url.clone()), Some(None));
        assert_eq!(
            al.ack_base_url.as_deref(),
            Some("https://rooftop.dealer.example:9464")
        );
        assert_eq!(
            (al.group.window, al.group.wait),
            (Duration::from_secs(600), Duration::from_secs(30))
        );
        assert_eq!(al.prefer, ["email"]);
        // `0s` turns grouping (window) or the first-page wait off, as documented.
        let (a, _) = agent("alerting:\n  group: {window: 0s, wait: 0s}\n");
        assert_eq!(
            (a.alerting.group.window, a.alerting.group.wait),
            (Duration::ZERO, Duration::ZERO)
        );

        assert_eq!(
            errors(
                "alerting:\n  runbook_base_url: wiki.dealer.example\n  sms: {account_sid: AC1, auth_token: \"{{ secret.t\", from: \"4165550100\", base_url: ftp://x}\n  webhook: {url: hooks.dealer.example, secret: s}\n  pagerduty: {routing_key: k, url: x}\n  ack_base_url: rooftop.dealer.example\n  group: {wait: 10m}\n  prefer: [pager]\n"
            )
            .into_iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect::<Vec<_>>(),
            [
                "alerting.runbook_base_url: `wiki.dealer.example` is not an http(s) URL",
                "alerting.sms.auth_token: template error: template syntax error: unexpected end of input, expected end of variable block",
                "alerting.sms.from: `4165550100` is neither an E.164 number nor a Messaging Service SID",
                "alerting.sms.base_url: `ftp://x` is not an http(s) URL",
                "alerting.webhook.url: `hooks.dealer.example` is not an http(s) URL",
                "alerting.pagerduty.url: `x` is not an http(s) URL",
                "alerting.ack_base_url: `rooftop.dealer.example` is not an http(s) URL",
                "alerting.group.wait: `10m` holds every first page too long",
                "alerting.prefer[0]: `pager` is not a personal channel",
            ]
        );
    }

    #[test]
    fn sms_replies_are_on_by_default_polled_no_faster_than_every_5s_and_can_be_off() {
        let sms = |replies: &str| {
            format!(
                "alerting:\n  sms: {{account_sid: AC1, auth_token: t, from: \"+14165550100\"{replies}}}\n"
            )
        };
        let replies = |yaml: &str| {
            let (a, _) = agent(yaml);
            a.alerting.sms.expect("sms").replies
        };
        assert_eq!(
            replies(&sms(", replies: {poll: 1m}")),
            Some(SmsReplies {
                poll: Duration::from_secs(60)
            })
        );
        assert_eq!(
            replies(&sms(", replies: {poll: 5s}")).map(|r| r.poll),
            Some(MIN_REPLY_POLL)
        );
        assert_eq!(
            replies(&sms(", replies: {}")).map(|r| r.poll),
            Some(DEFAULT_REPLY_POLL)
        );
        assert_eq!(replies(&sms(", replies: {enabled: false}")), None);
        assert_eq!(
            errors(&sms(", replies: {poll: 2s}"))
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect::<Vec<_>>(),
            ["alerting.sms.replies.poll: poll `2s` is shorter than 5s"]
        );
        let e = agent_errors(&sms(", replies: {poll: 2s}"));
        assert_eq!(
            e[0].hint.as_deref(),
            Some("Twilio rate-limits its message list: e.g. `30s`")
        );
        assert_eq!(
            errors(&sms(", replies: {poll: often}"))
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect::<Vec<_>>(),
            ["alerting.sms.replies.poll: `often` is not a duration"]
        );
    }

    #[test]
    fn e_mail_goes_to_smtp_or_a_folder() {
        let (a, _) = agent(
            "alerting:\n  email: {from: rooftop@dealer.example, smtp: {host: smtp.dealer.example, security: tls, password: \"{{ secret.smtp }}\"}}\n",
        );
        let email = a.alerting.email.expect("email");
        match email.destination {
            EmailDestination::Smtp {
                port,
                security,
                timeout,
                ..
            } => {
                assert_eq!(
                    (port, security, timeout),
                    (465, SmtpSecurity::Implicit, Duration::from_secs(30))
                );
            }
            other => panic!("{other:?}"),
        }
        let (a, _) = agent(
            "alerting:\n  email: {from: rooftop@dealer.example, folder: /var/spool/rooftop}\n",
        );
        assert!(matches!(
            a.alerting.email.unwrap().destination,
            EmailDestination::Folder(_)
        ));

        let e =
            agent_errors("alerting:\n  email: {from: rooftop, smtp: {host: h, security: ssl}}\n");
        assert_eq!(
            paths_and_messages(&e),
            [
                (
                    "alerting.email.from".into(),
                    "`rooftop` is not a sender address".into()
                ),
                (
                    "alerting.email.smtp.security".into(),
                    "unknown security `ssl`".into()
                ),
            ]
        );
        assert_eq!(
            errors("alerting:\n  email: {from: r@d.example, smtp: {host: h}, folder: /tmp}\n"),
            [(
                "alerting.email".into(),
                "e-mail needs exactly one of `smtp` and `folder`".into()
            )]
        );
    }
}
