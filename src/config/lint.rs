//! What `rooftop check` warns about in the on-call set-up: things that are valid but
//! mean a page would reach nobody — coverage gaps over the coming days, contacts no
//! configured channel reaches, severities whose channels some routed contact cannot
//! receive, escalation steps that can never reach anyone, overlapping overrides and
//! rotation offsets that wrap onto the same person. Pure: the instant is passed in.

use chrono::{DateTime, Utc};

use crate::model::{Agent, Contact, EscalationPolicy, OnCall, Severity, Target};
use crate::oncall::{Via, gaps, shifts};

/// How far ahead `rooftop check` looks for coverage gaps.
pub const GAP_DAYS: i64 = 30;

/// Gaps listed per rotation before "and N more".
const MAX_GAPS_LISTED: usize = 3;

/// One warning: where in rooftop.yaml, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl Finding {
    fn new(path: impl Into<String>, message: impl Into<String>, help: Option<&str>) -> Self {
        Finding {
            path: path.into(),
            message: message.into(),
            help: help.map(str::to_string),
        }
    }
}

/// The personal channels configured in rooftop.yaml that reach `c`.
fn reachable_by(agent: &Agent, c: &Contact) -> Vec<&'static str> {
    let a = &agent.alerting;
    let mut out = Vec::new();
    if c.email.is_some() && a.email.is_some() {
        out.push("email");
    }
    if c.phone.is_some() && a.sms.is_some() {
        out.push("sms");
    }
    out
}

/// Every finding, sorted by path. `now` anchors the gap search.
pub fn findings(agent: &Agent, now: DateTime<Utc>) -> Vec<Finding> {
    let mut out = Vec::new();
    contacts(agent, &mut out);
    severity_channels(agent, &mut out);
    for (severity, policy) in &agent.alerting.routes {
        steps(agent, *severity, policy, &mut out);
    }
    rotations(&agent.oncall, now, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn contacts(agent: &Agent, out: &mut Vec<Finding>) {
    for (i, c) in agent.alerting.contacts.iter().enumerate() {
        if !reachable_by(agent, c).is_empty() {
            continue;
        }
        let has = match (&c.email, &c.phone) {
            (Some(_), Some(_)) => "an e-mail address and a phone",
            (Some(_), None) => "only an e-mail address",
            _ => "only a phone",
        };
        out.push(Finding::new(
            format!("alerting.contacts[{i}]"),
            format!(
                "contact `{}` has {has}, but no channel for it is configured: they can never be paged",
                c.name
            ),
            Some("configure alerting.email and/or alerting.sms, or give the contact the other address"),
        ));
    }
}

/// Contacts a severity's policy can reach (directly or as rotation members).
fn routed_contacts<'a>(agent: &'a Agent, policy: &'a EscalationPolicy) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for step in &policy.steps {
        for t in &step.notify {
            match t {
                Target::Contact(c) => names.push(c),
                Target::Rotation { name, .. } => {
                    if let Some(r) = agent.oncall.rotation(name) {
                        names.extend(r.members.iter().map(String::as_str));
                        names.extend(r.overrides.iter().map(|o| o.who.as_str()));
                        if let Some(Target::Contact(f)) = &r.fallback {
                            names.push(f);
                        }
                    }
                }
            }
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

fn severity_channels(agent: &Agent, out: &mut Vec<Finding>) {
    let a = &agent.alerting;
    for (severity, policy) in &a.severities {
        if policy.channels.is_empty() {
            continue;
        }
        let Some(route) = a.routes.get(severity) else {
            continue;
        };
        for name in routed_contacts(agent, route) {
            let Some(c) = a.contacts.iter().find(|c| c.name == name) else {
                continue;
            };
            let has = reachable_by(agent, c);
            if has.is_empty() || policy.channels.iter().any(|ch| has.contains(&ch.as_str())) {
                continue;
            }
            out.push(Finding::new(
                format!("alerting.severities.{severity}.channels"),
                format!(
                    "{severity} pages only by {}, which cannot reach `{name}` (reachable by {})",
                    policy.channels.join(", "),
                    has.join(", ")
                ),
                Some("add a channel to the severity's list or the missing address to the contact"),
            ));
        }
    }
}

/// A target's possible people: a contact itself, a rotation's members, overrides and
/// contact fallback, or (one level) a fallback rotation's.
fn target_people<'a>(oncall: &'a OnCall, t: &'a Target) -> Vec<&'a str> {
    match t {
        Target::Contact(c) => vec![c.as_str()],
        Target::Rotation { name, .. } => {
            let Some(r) = oncall.rotation(name) else {
                return Vec::new();
            };
            let mut v: Vec<&str> = r.members.iter().map(String::as_str).collect();
            v.extend(r.overrides.iter().map(|o| o.who.as_str()));
            match &r.fallback {
                Some(Target::Contact(c)) => v.push(c),
                Some(Target::Rotation { name, .. }) => {
                    if let Some(f) = oncall.rotation(name) {
                        v.extend(f.members.iter().map(String::as_str));
                    }
                }
                None => {}
            }
            v
        }
    }
}

fn steps(agent: &Agent, severity: Severity, policy: &EscalationPolicy, out: &mut Vec<Finding>) {
    let a = &agent.alerting;
    let allowed = &a.severity_policy(severity).channels;
    let shared = a.webhook.is_some() || a.pagerduty.is_some();
    for (i, step) in policy.steps.iter().enumerate() {
        let path = format!("alerting.escalation.{}.steps[{i}]", policy.name);
        for t in &step.notify {
            if let Target::Rotation { name, offset } = t
                && let Some(r) = agent.oncall.rotation(name)
                && *offset as usize >= r.members.len()
                && !r.members.is_empty()
            {
                out.push(Finding::new(
                    path.clone(),
                    format!(
                        "offset {offset} of rotation `{name}` ({} member{}) wraps round to offset {}: the same person as an earlier turn",
                        r.members.len(),
                        if r.members.len() == 1 { "" } else { "s" },
                        *offset as usize % r.members.len()
                    ),
                    Some("an offset counts turns after the current one; use one below the number of members"),
                ));
            }
        }
        let reachable = step.notify.iter().any(|t| {
            target_people(&agent.oncall, t).iter().any(|p| {
                a.contacts.iter().any(|c| {
                    &c.name == p
                        && reachable_by(agent, c)
                            .iter()
                            .any(|ch| allowed.is_empty() || allowed.iter().any(|x| x == ch))
                })
            })
        });
        if !reachable {
            out.push(Finding::new(
                path,
                format!(
                    "this {severity} step can never reach anyone: nobody it names has an address on a channel {severity} uses{}",
                    if i == 0 && shared {
                        " (only the shared webhook / PagerDuty channels get the page)"
                    } else {
                        ""
                    }
                ),
                Some("check the contacts' email/phone, alerting.email / alerting.sms and the severity's channels"),
            ));
        }
    }
}

fn local_time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M").to_string()
}

fn rotations(oncall: &OnCall, now: DateTime<Utc>, out: &mut Vec<Finding>) {
    let until = now + chrono::Duration::days(GAP_DAYS);
    for r in &oncall.rotations {
        let path = format!("oncall.rotations.{}", r.name);
        let found = gaps(oncall, r, now, until);
        if !found.is_empty() {
            let local = |t: DateTime<Utc>| local_time(t, r.timezone);
            let mut listed: Vec<String> = found
                .iter()
                .take(MAX_GAPS_LISTED)
                .map(|(a, b)| format!("{} – {}", local(*a), local(*b)))
                .collect();
            if found.len() > MAX_GAPS_LISTED {
                listed.push(format!("and {} more", found.len() - MAX_GAPS_LISTED));
            }
            out.push(Finding::new(
                path.clone(),
                format!(
                    "nobody is on call in the next {GAP_DAYS} days at: {} ({})",
                    listed.join("; "),
                    r.timezone
                ),
                Some("add a `fallback` contact or rotation, or widen the restrictions"),
            ));
        }
        for (i, o) in r.overrides.iter().enumerate() {
            let Some(replaces) = &o.replaces else {
                continue;
            };
            // Only future overrides: a past one is history, not a mistake to fix now.
            let applies = o.until <= now
                || shifts(r, o.from, o.until)
                    .iter()
                    .any(|s| s.contact == o.who && matches!(s.via, Via::Override { .. }));
            if !applies {
                out.push(Finding::new(
                    format!("{path}.overrides[{i}]"),
                    format!(
                        "replaces `{replaces}`, who is not on call between {} and {} ({}): it changes nothing",
                        local_time(o.from, r.timezone),
                        local_time(o.until, r.timezone),
                        r.timezone
                    ),
                    Some("check the dates against `rooftop oncall schedule`, or drop `replaces` to put them on call whoever it is"),
                ));
            }
        }
        for (i, a) in r.overrides.iter().enumerate() {
            for (j, b) in r.overrides.iter().enumerate().skip(i + 1) {
                if a.replaces == b.replaces && a.from < b.until && b.from < a.until {
                    out.push(Finding::new(
                        format!("{path}.overrides[{j}]"),
                        format!(
                            "overlaps override [{i}] ({} and {}) from {} to {} UTC: the later one in the list wins",
                            a.who,
                            b.who,
                            a.from.max(b.from).format("%Y-%m-%d %H:%M"),
                            a.until.min(b.until).format("%Y-%m-%d %H:%M")
                        ),
                        Some("shorten one of them, or remove the one that no longer applies"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_agent_text;

    fn agent(yaml: &str) -> Agent {
        load_agent_text(std::path::Path::new("rooftop.yaml"), yaml)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .0
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const BASE: &str = "alerting:\n  email: {from: 'r <r@dealer.example>', smtp: {host: 127.0.0.1, port: 25, security: none}}\n";

    fn messages(f: &[Finding]) -> Vec<String> {
        f.iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect()
    }

    #[test]
    fn a_healthy_set_up_has_no_findings() {
        let a = agent(&format!(
            "{BASE}  contacts:\n    - {{name: Maria, email: m@dealer.example}}\n    - {{name: Dev, email: d@dealer.example}}\n  routes: {{P1: [{{rotation: desk}}]}}\noncall:\n  rotations:\n    desk: {{timezone: America/Toronto, members: [Maria, Dev], handoff: {{every: week, on: monday, at: \"09:00\"}}, start: 2026-11-02}}\n"
        ));
        assert_eq!(findings(&a, t("2026-12-03T12:00:00Z")), vec![]);
    }

    #[test]
    fn unreachable_contacts_steps_and_channels_are_named() {
        let a = agent(&format!(
            "{BASE}  contacts:\n    - {{name: Maria, email: m@dealer.example}}\n    - {{name: Sam, phone: \"+14165550123\"}}\n  severities: {{P1: {{channels: [sms]}}}}\n  escalation:\n    svc: {{steps: [{{notify: [Maria]}}, {{notify: [Sam]}}]}}\n  routes: {{P1: {{escalation: svc}}}}\n"
        ));
        let m = messages(&findings(&a, t("2026-12-03T12:00:00Z")));
        assert!(
            m.iter()
                .any(|s| s.starts_with("alerting.contacts[1]: contact `Sam` has only a phone")),
            "{m:#?}"
        );
        assert!(
            m.iter().any(|s| s.starts_with(
                "alerting.severities.P1.channels: P1 pages only by sms, which cannot reach `Maria`"
            )),
            "{m:#?}"
        );
        assert!(
            m.iter().any(|s| s.starts_with(
                "alerting.escalation.svc.steps[0]: this P1 step can never reach anyone"
            )),
            "{m:#?}"
        );
        assert!(
            m.iter().any(|s| s.starts_with(
                "alerting.escalation.svc.steps[1]: this P1 step can never reach anyone"
            )),
            "{m:#?}"
        );
    }

    #[test]
    fn restriction_gaps_without_a_fallback_are_listed_in_local_time() {
        // Nights only (18:00–08:00) and no fallback: every day 08:00–18:00 is a gap.
        let a = agent(&format!(
            "{BASE}  contacts:\n    - {{name: Maria, email: m@dealer.example}}\n  routes: {{P1: [{{rotation: nights}}]}}\noncall:\n  rotations:\n    nights: {{timezone: America/Vancouver, members: [Maria], handoff: {{every: day, at: \"18:00\"}}, start: 2026-11-01, restrictions: [{{times: [{{start: \"18:00\", end: \"24:00\"}}, {{start: \"00:00\", end: \"08:00\"}}]}}]}}\n"
        ));
        let f = findings(&a, t("2026-12-03T20:00:00Z")); // 12:00 in Vancouver
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].path, "oncall.rotations.nights");
        assert!(
            f[0].message.starts_with(
                "nobody is on call in the next 30 days at: Thu 2026-12-03 12:00 – Thu 2026-12-03 18:00; Fri 2026-12-04 08:00 – Fri 2026-12-04 18:00; Sat 2026-12-05 08:00 – Sat 2026-12-05 18:00; and 28 more (America/Vancouver)"
            ),
            "{}",
            f[0].message
        );
        // With a fallback contact the gaps are covered.
        let covered = agent(&format!(
            "{BASE}  contacts:\n    - {{name: Maria, email: m@dealer.example}}\n    - {{name: Desk, email: desk@dealer.example}}\n  routes: {{P1: [{{rotation: nights}}]}}\noncall:\n  rotations:\n    nights: {{timezone: America/Vancouver, members: [Maria], handoff: {{every: day, at: \"18:00\"}}, start: 2026-11-01, restrictions: [{{times: [{{start: \"18:00\", end: \"24:00\"}}, {{start: \"00:00\", end: \"08:00\"}}]}}], fallback: Desk}}\n"
        ));
        assert_eq!(findings(&covered, t("2026-12-03T20:00:00Z")), vec![]);
    }

    #[test]
    fn overlapping_and_ineffective_overrides_and_wrapping_offsets_are_warned() {
        let a = agent(&format!(
            "{BASE}  contacts:\n    - {{name: Maria, email: m@dealer.example}}\n    - {{name: Dev, email: d@dealer.example}}\n    - {{name: Ann, email: a@dealer.example}}\n  escalation:\n    svc: {{steps: [{{notify: [{{rotation: desk}}]}}, {{notify: [{{rotation: desk, offset: 2}}]}}]}}\n  routes: {{P1: {{escalation: svc}}}}\noncall:\n  rotations:\n    desk:\n      timezone: UTC\n      members: [Maria, Dev]\n      handoff: {{every: day, at: \"09:00\"}}\n      start: 2026-11-01\n      overrides:\n        - {{who: Ann, from: \"2026-12-10 09:00\", until: \"2026-12-12 09:00\"}}\n        - {{who: Dev, from: \"2026-12-11 09:00\", until: \"2026-12-13 09:00\"}}\n        - {{who: Ann, from: \"2026-12-20 09:00\", until: \"2026-12-21 09:00\"}}\n        - {{who: Ann, replaces: Maria, from: \"2026-12-23 09:00\", until: \"2026-12-23 12:00\"}}\n        - {{who: Ann, replaces: Maria, from: \"2026-12-22 09:00\", until: \"2026-12-22 12:00\"}}\n"
        ));
        let m = messages(&findings(&a, t("2026-12-03T12:00:00Z")));
        assert_eq!(
            m,
            vec![

                "alerting.escalation.svc.steps[1]: offset 2 of rotation `desk` (2 members) wraps round to offset 0: the same person as an earlier turn".to_string(),
                "oncall.rotations.desk.overrides[1]: overlaps override [0] (Ann and Dev) from 2026-12-11 09:00 to 2026-12-12 09:00 UTC: the later one in the list wins".to_string(),
                "oncall.rotations.desk.overrides[4]: replaces `Maria`, who is not on call between Tue 2026-12-22 09:00 and Tue 2026-12-22 12:00 (UTC): it changes nothing".to_string(),
            ]
        );
    }
}
