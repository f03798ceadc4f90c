//! Who is paged and when: `alerting.routes` (a list of contacts and rotations, or a named
//! policy), `alerting.severities` (deadlines, re-notification, channels),
//! `alerting.escalation` (the policies) and `alerting.windows` (mute, delay, promote over
//! `time_windows`). Rotation and window names are collected as references and resolved
//! once `oncall` and `time_windows` are checked.

use std::collections::BTreeMap;

use super::Checker;
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{AlertingConfig, PageTargetConfig, RouteConfig};
use crate::config::yaml::FieldPath;
use crate::model::{
    AlertingSettings, EscalationPolicy, EscalationStep, OnCall, Severity, SeverityPolicy, Target,
    WindowAction, WindowRoute,
};

/// A name of another section, checked once that section is.
#[derive(Debug, Clone)]
pub(super) struct Reference {
    pub path: FieldPath,
    pub kind: RefKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Rotation,
    Window,
}

const SEVERITIES: [Severity; 4] = [Severity::P1, Severity::P2, Severity::P3, Severity::P4];

impl Checker<'_> {
    /// Routes, severities, escalation policies and window rules of `raw` into `out`
    /// (contacts already checked and in `out.contacts`).
    pub(super) fn paging_policy(
        &mut self,
        path: &FieldPath,
        raw: &AlertingConfig,
        out: &mut AlertingSettings,
    ) {
        for sev in SEVERITIES {
            out.severities.insert(sev, SeverityPolicy::default_for(sev));
        }
        for (key, s) in &raw.severities {
            let sp = path.key("severities").key(key);
            let Some(sev) = Severity::parse(key) else {
                self.err_key(
                    &sp,
                    format!("unknown severity `{key}`"),
                    Some("severities are `P1`, `P2`, `P3`, `P4`".into()),
                );
                continue;
            };
            let policy = out
                .severities
                .entry(sev)
                .or_insert_with(|| SeverityPolicy::default_for(sev));
            if let Some(t) = &s.ack_within {
                policy.ack_within = self.duration_or_none(&sp.key("ack_within"), t);
            }
            if let Some(t) = &s.renotify {
                policy.renotify = self.duration_or_none(&sp.key("renotify"), t);
                if let Some(d) = policy.renotify
                    && d < std::time::Duration::from_secs(60)
                {
                    self.err(
                        &sp.key("renotify"),
                        format!("re-notifying every `{t}` floods the on-call phone"),
                        Some("at least `1m`, e.g. `5m`".into()),
                    );
                }
            }
            if let Some(channels) = &s.channels {
                policy.channels.clear();
                for (i, c) in channels.iter().enumerate() {
                    match c.as_str() {
                        "sms" | "email" => policy.channels.push(c.clone()),
                        other => self.err(
                            &sp.key("channels").index(i),
                            format!("`{other}` is not a personal channel"),
                            did_you_mean(other, ["sms", "email"]).or_else(|| {
                                Some(
                                    "`sms` or `email` (webhook and PagerDuty get every page)"
                                        .into(),
                                )
                            }),
                        ),
                    }
                }
                if channels.is_empty() {
                    self.err(
                        &sp.key("channels"),
                        "an empty channel list would page nobody",
                        Some("e.g. `[email]`; leave it out for every channel".into()),
                    );
                }
            }
        }
        let mut policies: BTreeMap<String, EscalationPolicy> = BTreeMap::new();
        for (name, e) in &raw.escalation {
            let ep = path.key("escalation").key(name);
            if e.steps.is_empty() {
                self.err(
                    &ep.key("steps"),
                    format!("escalation `{name}` has no steps"),
                    Some(
                        "e.g. `steps: [{notify: [{rotation: service-desk}]}, {notify: [IT Lead]}]`"
                            .into(),
                    ),
                );
            }
            let mut steps = Vec::new();
            for (i, step) in e.steps.iter().enumerate() {
                let stp = ep.key("steps").index(i);
                let notify = self.targets(&stp.key("notify"), &step.notify, raw);
                let wait = step
                    .wait
                    .as_ref()
                    .and_then(|w| self.duration(&stp.key("wait"), w));
                steps.push(EscalationStep { notify, wait });
            }
            let repeat = e.repeat.unwrap_or(0);
            if repeat > 10 {
                self.err(
                    &ep.key("repeat"),
                    format!("repeat {repeat} pages the same people {} times", repeat + 1),
                    Some("at most 10".into()),
                );
            }
            let remind_after_ack = e
                .remind_after_ack
                .as_ref()
                .and_then(|t| self.duration(&ep.key("remind_after_ack"), t));
            policies.insert(
                name.clone(),
                EscalationPolicy {
                    name: name.clone(),
                    steps,
                    repeat,
                    remind_after_ack,
                },
            );
        }
        for (key, route) in &raw.routes {
            let rp = path.key("routes").key(key);
            let Some(severity) = Severity::parse(key) else {
                self.err_key(
                    &rp,
                    format!("unknown severity `{key}`"),
                    Some("routes are keyed `P1`, `P2`, `P3`, `P4`".into()),
                );
                continue;
            };
            match route {
                RouteConfig::Policy { escalation } => match policies.get(escalation) {
                    Some(p) => {
                        out.routes.insert(severity, p.clone());
                    }
                    None => self.err(
                        &rp.key("escalation"),
                        format!("no escalation policy named `{escalation}`"),
                        did_you_mean(escalation, policies.keys().map(String::as_str))
                            .or_else(|| Some("define it under `alerting.escalation`".into())),
                    ),
                },
                RouteConfig::Targets(targets) => {
                    let notify = self.targets(&rp, targets, raw);
                    out.routes.insert(
                        severity,
                        EscalationPolicy {
                            name: format!("routes.{key}"),
                            steps: vec![EscalationStep { notify, wait: None }],
                            repeat: 0,
                            remind_after_ack: None,
                        },
                    );
                }
            }
        }
        for (i, w) in raw.windows.iter().enumerate() {
            let wp = path.key("windows").index(i);
            self.refs.push(super::escalation::Reference {
                path: wp.key("window"),
                kind: RefKind::Window,
                name: w.window.clone(),
            });
            let mut actions = Vec::new();
            if w.mute == Some(true) {
                actions.push(WindowAction::Mute);
            }
            if w.delay == Some(true) {
                actions.push(WindowAction::Delay);
            }
            if let Some(p) = &w.promote
                && let Some(sev) = self.severity(&wp.key("promote"), p)
            {
                actions.push(WindowAction::Promote(sev));
            }
            let action = match actions.as_slice() {
                [one] => *one,
                _ => {
                    self.err(
                        &wp,
                        format!(
                            "window rule for `{}` needs exactly one of `mute: true`, `delay: true`, `promote: P1`",
                            w.window
                        ),
                        Some("one rule per action: write two rules for the same window".into()),
                    );
                    continue;
                }
            };
            let severities = w
                .severities
                .iter()
                .enumerate()
                .filter_map(|(j, s)| self.severity(&wp.key("severities").index(j), s))
                .collect();
            out.windows.push(WindowRoute {
                window: w.window.clone(),
                action,
                severities,
                connectors: w.connectors.clone(),
                probes: w.probes.clone(),
            });
        }
    }

    /// A duration, or `none`.
    fn duration_or_none(&mut self, path: &FieldPath, text: &str) -> Option<std::time::Duration> {
        if text.trim() == "none" {
            None
        } else {
            self.duration(path, text)
        }
    }

    fn targets(
        &mut self,
        path: &FieldPath,
        raw: &[PageTargetConfig],
        alerting: &AlertingConfig,
    ) -> Vec<Target> {
        if raw.is_empty() {
            self.err(
                path,
                "nobody to page",
                Some("contact names or `{rotation: NAME}`, e.g. `[Maria Lopez]`".into()),
            );
        }
        let mut out = Vec::new();
        for (j, t) in raw.iter().enumerate() {
            let tp = path.index(j);
            match t {
                PageTargetConfig::Contact(n) => {
                    if alerting.contacts.iter().any(|c| &c.name == n) {
                        out.push(Target::Contact(n.clone()));
                    } else {
                        self.err(
                            &tp,
                            format!("no contact named `{n}`"),
                            did_you_mean(n, alerting.contacts.iter().map(|c| c.name.as_str()))
                                .or_else(|| Some("add it under `alerting.contacts`".into())),
                        );
                    }
                }
                PageTargetConfig::Rotation(r) => {
                    self.refs.push(Reference {
                        path: tp.key("rotation"),
                        kind: RefKind::Rotation,
                        name: r.rotation.clone(),
                    });
                    out.push(Target::Rotation {
                        name: r.rotation.clone(),
                        offset: r.offset.unwrap_or(0),
                    });
                }
            }
        }
        out
    }

    /// Every rotation and window name used in `alerting` exists in `oncall`.
    pub(super) fn check_references(&mut self, oncall: &OnCall) {
        for r in std::mem::take(&mut self.refs) {
            let (known, section, example): (Vec<&str>, _, _) = match r.kind {
                RefKind::Rotation => (
                    oncall.rotations.iter().map(|x| x.name.as_str()).collect(),
                    "oncall.rotations",
                    "rotation",
                ),
                RefKind::Window => (
                    oncall.windows.iter().map(|x| x.name.as_str()).collect(),
                    "time_windows",
                    "time window",
                ),
            };
            if !known.contains(&r.name.as_str()) {
                self.err(
                    &r.path,
                    format!("no {example} named `{}`", r.name),
                    did_you_mean(&r.name, known.iter().copied())
                        .or_else(|| Some(format!("define it under `{section}`"))),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{agent, agent_errors, paths_and_messages};
    use crate::model::{Severity, Target, WindowAction};

    const CONTACTS: &str = "alerting:\n  contacts:\n    - {name: Maria Lopez, email: maria@dealer.example}\n    - {name: IT Lead, phone: \"+14165550123\"}\n";

    #[test]
    fn a_plain_route_is_a_one_step_policy_and_severities_have_defaults() {
        let (a, _) = agent(&format!(
            "{CONTACTS}  routes: {{P1: [IT Lead, Maria Lopez]}}\n  severities: {{P3: {{ack_within: none, channels: [email]}}, P1: {{renotify: 5m}}}}\n"
        ));
        let al = &a.alerting;
        let p1 = &al.routes[&Severity::P1];
        assert_eq!(p1.name, "routes.P1");
        assert_eq!(
            p1.steps[0].notify,
            [
                Target::Contact("IT Lead".into()),
                Target::Contact("Maria Lopez".into())
            ]
        );
        assert_eq!(
            al.severities[&Severity::P1].ack_within,
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            al.severities[&Severity::P1].renotify,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            al.severities[&Severity::P2].ack_within,
            Some(Duration::from_secs(1800))
        );
        assert_eq!(al.severities[&Severity::P3].ack_within, None);
        assert_eq!(al.severities[&Severity::P3].channels, ["email"]);
    }

    #[test]
    fn a_named_policy_and_window_rules() {
        let (a, _) = agent(&format!(
            "{CONTACTS}  escalation:\n    it:\n      steps:\n        - {{notify: [Maria Lopez]}}\n        - {{notify: [IT Lead], wait: 30m}}\n      repeat: 1\n      remind_after_ack: 2h\n  routes: {{P1: {{escalation: it}}}}\n"
        ));
        let p = &a.alerting.routes[&Severity::P1];
        assert_eq!((p.name.as_str(), p.steps.len(), p.repeat), ("it", 2, 1));
        assert_eq!(p.steps[1].wait, Some(Duration::from_secs(1800)));
        assert_eq!(p.remind_after_ack, Some(Duration::from_secs(7200)));
        assert!(a.alerting.windows.is_empty());
        let _ = WindowAction::Mute;
    }

    #[test]
    fn every_mistake_in_routes_escalation_and_windows_is_reported_where_it_is() {
        let errors = paths_and_messages(&agent_errors(&format!(
            "{CONTACTS}  severities: {{P5: {{}}, P1: {{renotify: 10s, channels: [pager]}}}}\n  escalation:\n    it: {{steps: []}}\n    b: {{steps: [{{notify: [Marie Lopez]}}], repeat: 20}}\n  routes: {{P1: {{escalation: iit}}, P2: [{{rotation: desk}}]}}\n  windows:\n    - {{window: change, mute: true, delay: true}}\n    - {{window: month-end, promote: P9}}\n"
        )));
        let expect = [
            ("alerting.severities.P5", "unknown severity `P5`"),
            (
                "alerting.severities.P1.renotify",
                "re-notifying every `10s` floods the on-call phone",
            ),
            (
                "alerting.severities.P1.channels[0]",
                "`pager` is not a personal channel",
            ),
            (
                "alerting.escalation.it.steps",
                "escalation `it` has no steps",
            ),
            (
                "alerting.escalation.b.steps[0].notify[0]",
                "no contact named `Marie Lopez`",
            ),
            (
                "alerting.escalation.b.repeat",
                "repeat 20 pages the same people 21 times",
            ),
            (
                "alerting.routes.P1.escalation",
                "no escalation policy named `iit`",
            ),
            (
                "alerting.windows[0]",
                "window rule for `change` needs exactly one of `mute: true`, `delay: true`, `promote: P1`",
            ),
            ("alerting.windows[1].promote", "unknown severity `P9`"),
            ("alerting.routes.P2[0].rotation", "no rotation named `desk`"),
            (
                "alerting.windows[0].window",
                "no time window named `change`",
            ),
            (
                "alerting.windows[1].window",
                "no time window named `month-end`",
            ),
        ];
        for (path, message) in expect {
            assert!(
                errors
                    .iter()
                    .any(|(p, m)| p == path && m.starts_with(message)),
                "missing {path}: {message} in {errors:#?}"
            );
        }
    }
}
