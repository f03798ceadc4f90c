//! A heartbeat check file (`heartbeats/*.yaml`): name, schedule, grace, severity,
//! runbook, labels, the token (a secret reference, never a literal) and alert rules over
//! the heartbeat defaults. Produces `model::HeartbeatCheck`; that no probe has the same
//! name is checked where both are known (`config::load`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::probe::check_labels;
use super::runbook::check_runbook;
use super::{Checker, Defaults};
use crate::config::raw::HeartbeatCheckConfig;
use crate::config::yaml::FieldPath;
use crate::model::{
    HeartbeatCheck, MAX_DEFAULT_GRACE, Schedule, default_grace, heartbeat_alert_base,
};
use crate::template;

/// What a token must look like, for the hints.
const TOKEN_EXAMPLE: &str = "token: \"{{ secret.price_file_ping }}\"";

/// One heartbeat file over `defaults`; `None` (with `c` holding why) when it does not check.
pub(super) fn check_heartbeat(
    c: &mut Checker<'_>,
    raw: &HeartbeatCheckConfig,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Option<HeartbeatCheck> {
    let root = FieldPath::root();
    super::probe::check_name(c, "check", &raw.name, "price-file-import");
    let schedule = c.schedule(&root.key("schedule"), &raw.schedule, defaults.timezone);
    let grace = match (&raw.grace, &schedule) {
        (Some(g), _) => c.duration(&root.key("grace"), g),
        (None, Some(s)) => Some(default_grace(typical_period(s))),
        (None, None) => None,
    };
    if let Some(Schedule::Every(p)) = &schedule
        && *p < Duration::from_secs(1)
    {
        c.err(
            &root.key("schedule").key("every"),
            format!(
                "every `{}` is under a second",
                humantime::format_duration(*p)
            ),
            Some("a job pings at most every second, e.g. `{every: 24h}`".into()),
        );
    }
    let severity = match &raw.severity {
        Some(s) => c.severity(&root.key("severity"), s),
        None => Some(defaults.severity),
    };
    let base = heartbeat_alert_base(&defaults.alert);
    let alert = match &raw.alert {
        Some(a) => c.alert_rules(&root.key("alert"), a, &base),
        None => base,
    };
    let runbook = raw
        .runbook
        .as_deref()
        .and_then(|r| check_runbook(c, &root.key("runbook"), r, runbooks));
    check_labels(c, &root, &raw.labels);
    check_token(c, &root.key("token"), &raw.token);

    if !c.errors.is_empty() {
        return None;
    }
    Some(HeartbeatCheck {
        name: raw.name.clone(),
        description: raw.description.clone(),
        schedule: schedule?,
        grace: grace?,
        severity: severity?,
        runbook,
        labels: raw
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        connector: raw.labels.get("connector").cloned(),
        token: raw.token.trim().to_string(),
        alert,
        source: c.file.to_path_buf(),
    })
}

/// A token is a template over `secret.*` only: a literal token would sit in a config
/// file that is copied, diffed and committed.
fn check_token(c: &mut Checker<'_>, path: &FieldPath, token: &str) {
    let names = match template::analyze(token.trim()) {
        Ok(n) => n,
        Err(e) => {
            c.err(
                path,
                format!("template error: {e}"),
                Some(format!("e.g. `{TOKEN_EXAMPLE}`")),
            );
            return;
        }
    };
    if names.is_empty() {
        c.err(
            path,
            "the token must come from a secret, not be written in the file",
            Some(format!(
                "declare it under `secrets:` in rooftop.yaml and write `{TOKEN_EXAMPLE}`"
            )),
        );
    } else if let Some(other) = names.iter().find(|n| !n.starts_with("secret.")) {
        c.err(
            path,
            format!("`{other}` is not available here: a token reads only `secret.*`"),
            Some(format!("e.g. `{TOKEN_EXAMPLE}`")),
        );
    }
}

/// The interval between two deadlines, for the default grace: `every` itself, or the
/// shortest gap between the first fires of a cron expression (read in UTC from a fixed
/// instant, so validation stays pure; the grace is capped at an hour anyway).
fn typical_period(s: &Schedule) -> Duration {
    match s {
        Schedule::Every(p) => *p,
        Schedule::Cron { schedule, .. } => {
            let from = chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0)
                .unwrap_or_default();
            let fires: Vec<_> = schedule.after(&from).take(8).collect();
            fires
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .min()
                .unwrap_or(MAX_DEFAULT_GRACE * 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{paths_and_messages, runbooks};
    use crate::config::{Defaults, Diagnostic, load_heartbeat_text};
    use crate::model::{FireRule, HeartbeatCheck, Schedule, Severity};

    fn load(yaml: &str) -> Result<HeartbeatCheck, Vec<Diagnostic>> {
        load_heartbeat_text(
            Path::new("heartbeats/h.yaml"),
            yaml,
            &Defaults::default(),
            &runbooks(),
        )
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        paths_and_messages(&load(yaml).unwrap_err())
    }

    const TOKEN: &str = "token: \"{{ secret.ping }}\"\n";

    #[test]
    fn a_nightly_check_gets_an_hour_of_grace_and_opens_on_one_miss() {
        let h = load(&format!(
            "name: price-file-import\nschedule: {{cron: \"0 0 2 * * *\", timezone: America/Toronto}}\nseverity: P2\nrunbook: runbooks/ro-not-created.md\nlabels: {{flow: parts-pricing, connector: price-file}}\n{TOKEN}"
        ))
        .unwrap();
        assert_eq!(h.grace, std::time::Duration::from_secs(3600));
        assert!(
            matches!(&h.schedule, Schedule::Cron { timezone, .. } if *timezone == chrono_tz::America::Toronto)
        );
        assert_eq!(h.severity, Severity::P2);
        assert_eq!(h.connector.as_deref(), Some("price-file"));
        assert_eq!(h.alert.fire, FireRule::Consecutive(1));
        assert_eq!(h.alert.resolve_after, 1);
        assert_eq!(h.token, "{{ secret.ping }}");
        let p = h.as_probe();
        assert!(p.steps.is_empty());
        assert_eq!(p.labels["flow"], "parts-pricing");
    }

    #[test]
    fn grace_and_alert_rules_can_be_set() {
        let h = load(&format!(
            "name: crm-export\nschedule: {{every: 2s}}\ngrace: 1s\nalert: {{fire_after: 2}}\n{TOKEN}"
        ))
        .unwrap();
        assert_eq!(h.grace, std::time::Duration::from_secs(1));
        assert_eq!(h.alert.fire, FireRule::Consecutive(2));
        assert_eq!(h.alert.resolve_after, 1);
        // An hourly job defaults to six minutes.
        let h = load(&format!("name: x\nschedule: {{every: 1h}}\n{TOKEN}")).unwrap();
        assert_eq!(h.grace, std::time::Duration::from_secs(360));
    }

    #[test]
    fn a_token_must_be_a_secret_reference() {
        assert_eq!(
            errors("name: x\nschedule: {every: 1h}\ntoken: hunter2\n"),
            [(
                "token".into(),
                "the token must come from a secret, not be written in the file".into()
            )]
        );
        assert_eq!(
            errors("name: x\nschedule: {every: 1h}\ntoken: \"{{ env.T }}\"\n"),
            [(
                "token".into(),
                "`env.T` is not available here: a token reads only `secret.*`".into()
            )]
        );
        assert_eq!(
            errors("name: x\nschedule: {every: 1h}\n"),
            [("(document)".into(), "missing field `token`".into())]
        );
    }

    #[test]
    fn every_error_of_a_check_is_reported() {
        let e = errors(&format!(
            "name: Price Import\nschedule: {{every: soon}}\ngrace: 0s\nseverity: P9\nlabels: {{connector: Price File}}\n{TOKEN}"
        ));
        let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "schedule.every",
                "grace",
                "severity",
                "labels.connector"
            ],
            "{e:#?}"
        );
    }
}
