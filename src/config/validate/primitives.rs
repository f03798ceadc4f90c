//! The value kinds config fields share: durations, schedules, time zones, severities,
//! sizes, names and identifiers, e-mail addresses, URLs, and templates (their syntax and
//! whether every name they read exists at that point of a probe). Pure; no concern of
//! its own.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use super::{Checker, Scope};
use crate::config::diagnostic::{closest, did_you_mean};
use crate::config::raw::ScheduleConfig;
use crate::config::yaml::FieldPath;
use crate::model::{Schedule, Severity};
use crate::synthetic::HELPERS;
use crate::template::{self, RESERVED};

/// Longest duration accepted anywhere (keeps instant arithmetic far from overflow).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Checker<'_> {
    /// A duration where `0s` means "off" (grouping window, first-page wait).
    pub(super) fn duration_or_zero(&mut self, path: &FieldPath, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() => Some(d),
            _ => self.duration(path, text),
        }
    }

    pub(super) fn duration(&mut self, path: &FieldPath, text: &str) -> Option<Duration> {
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

    pub(super) fn timezone(&mut self, path: &FieldPath, text: &str) -> Option<chrono_tz::Tz> {
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

    pub(super) fn severity(&mut self, path: &FieldPath, text: &str) -> Option<Severity> {
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

    pub(super) fn schedule(
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

/// A probe, step, cleanup or rooftop name: lowercase letters, digits and dashes, at most 64.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A var, capture, secret or label name: letters, digits and underscores, not a digit first.
pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A connector name: bounded, so it can be a metric label and a grouping key.
pub(super) fn is_connector(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// `local@domain.tld`, no spaces: enough to catch typos; the mail server decides the rest.
pub(super) fn is_email(s: &str) -> bool {
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

/// An absolute http(s) URL, as far as config can tell before anything connects.
pub(super) fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// `512MB`, `2GiB`, `1024` (bytes): decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units.
pub(super) fn parse_size(text: &str) -> Option<u64> {
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

/// `check_template` on every string inside a JSON value.
pub(super) fn check_templates_in_value(
    c: &mut Checker<'_>,
    path: &FieldPath,
    v: &Value,
    scope: &Scope<'_>,
) {
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
pub(super) fn check_template(
    c: &mut Checker<'_>,
    path: &FieldPath,
    source: &str,
    scope: &Scope<'_>,
) {
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::super::testing::{check, paths_and_messages, probe_errors};
    use super::*;

    fn at(field: &str) -> FieldPath {
        FieldPath::root().key(field)
    }

    #[test]
    fn durations_are_positive_at_most_a_year_and_say_what_a_duration_looks_like() {
        let (d, errors) = check(|c| c.duration(&at("timeout"), " 1h30m "));
        assert_eq!(d, Some(Duration::from_secs(5400)));
        assert!(errors.is_empty());
        let (d, errors) = check(|c| c.duration(&at("timeout"), "366d"));
        assert_eq!(d, Some(MAX_DURATION));
        assert!(errors.is_empty());
        for (text, message) in [
            ("0s", "duration `0s` must be greater than zero"),
            ("367d", "duration `367d` is longer than a year"),
            ("30", "`30` is not a duration"),
            ("soon", "`soon` is not a duration"),
        ] {
            let (d, errors) = check(|c| c.duration(&at("timeout"), text));
            assert_eq!(d, None, "{text}");
            assert_eq!(
                paths_and_messages(&errors),
                [("timeout".to_string(), message.to_string())]
            );
        }
    }

    #[test]
    fn a_misspelt_time_zone_gets_the_closest_name() {
        let (tz, errors) = check(|c| c.timezone(&at("timezone"), "America/Toronto"));
        assert_eq!(tz, Some(chrono_tz::America::Toronto));
        assert!(errors.is_empty());
        let (tz, errors) = check(|c| c.timezone(&at("timezone"), "America/Torono"));
        assert_eq!(tz, None);
        assert_eq!(errors[0].message, "unknown time zone `America/Torono`");
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("did you mean `America/Toronto`?")
        );
    }

    #[test]
    fn severities_are_p1_to_p4_in_either_case() {
        let (s, errors) = check(|c| c.severity(&at("severity"), " p2 "));
        assert_eq!(s, Some(Severity::P2));
        assert!(errors.is_empty());
        let (s, errors) = check(|c| c.severity(&at("severity"), "P5"));
        assert_eq!(s, None);
        assert_eq!(
            paths_and_messages(&errors),
            [("severity".to_string(), "unknown severity `P5`".to_string())]
        );
    }

    fn schedule(
        cron: Option<&str>,
        every: Option<&str>,
        timezone: Option<&str>,
    ) -> (Option<Schedule>, Vec<crate::config::Diagnostic>) {
        let raw = ScheduleConfig {
            cron: cron.map(str::to_string),
            every: every.map(str::to_string),
            timezone: timezone.map(str::to_string),
        };
        check(|c| c.schedule(&at("schedule"), &raw, chrono_tz::UTC))
    }

    #[test]
    fn schedules_are_every_or_cron_with_seconds() {
        let (s, _) = schedule(None, Some("30m"), None);
        assert!(matches!(s, Some(Schedule::Every(d)) if d == Duration::from_secs(1800)));
        let (s, errors) = schedule(Some("0 15 */2 * * *"), None, Some("America/Toronto"));
        assert!(errors.is_empty());
        assert!(
            matches!(s, Some(Schedule::Cron { timezone, .. }) if timezone == chrono_tz::America::Toronto)
        );
        // Without its own zone a cron schedule takes the default one.
        let (s, _) = schedule(Some("0 0 * * * *"), None, None);
        assert!(matches!(s, Some(Schedule::Cron { timezone, .. }) if timezone == chrono_tz::UTC));
    }

    #[test]
    fn schedule_mistakes_name_the_field_and_a_fix() {
        let (s, errors) = schedule(Some("0 * * * *"), None, None);
        assert!(s.is_none());
        assert_eq!(errors[0].path, "schedule.cron");
        assert!(
            errors[0]
                .message
                .starts_with("invalid cron expression `0 * * * *`")
        );
        assert!(
            errors[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("rooftop cron has seconds")
        );

        let (_, errors) = schedule(Some("0 0 * * * *"), Some("1h"), None);
        assert_eq!(
            paths_and_messages(&errors),
            [(
                "schedule".to_string(),
                "a schedule has either `cron` or `every`, not both".to_string()
            )]
        );
        let (_, errors) = schedule(None, None, None);
        assert_eq!(errors[0].message, "a schedule needs `cron` or `every`");
        let (s, errors) = schedule(None, Some("1h"), Some("UTC"));
        assert!(s.is_some(), "the schedule itself is fine");
        assert_eq!(
            paths_and_messages(&errors),
            [(
                "schedule.timezone".to_string(),
                "`timezone` only applies to `cron` schedules".to_string()
            )]
        );
    }

    /// `check` accepts every one of `ok` and refuses every one of `bad`.
    fn sorts(check: fn(&str) -> bool, ok: &[&str], bad: &[&str]) {
        for s in ok {
            assert!(check(s), "refused `{s}`");
        }
        for s in bad {
            assert!(!check(s), "accepted `{s}`");
        }
    }

    #[test]
    fn names_are_lowercase_digits_and_dashes_up_to_64() {
        sorts(
            is_name,
            &["appointment-to-ro", "a", "9-lives", &"a".repeat(64)],
            &[
                "",
                "-lead",
                "Lead",
                "lead_to_crm",
                "lead.crm",
                &"a".repeat(65),
            ],
        );
    }

    #[test]
    fn identifiers_are_letters_digits_and_underscores_not_a_digit_first() {
        sorts(
            is_identifier,
            &["crm_token", "_x", "RO2"],
            &["", "2fa", "crm-token", "a b", "é"],
        );
    }

    #[test]
    fn connectors_are_bounded_lowercase_names_with_dots_and_underscores() {
        sorts(
            is_connector,
            &["crm-to-dms", "dms_v2", "cdk.drive", "0", &"c".repeat(64)],
            &[
                "",
                "CRM-to-DMS",
                "-crm",
                ".crm",
                "_crm",
                "crm to dms",
                "crm/dms",
                "crm-{{ run.id }}",
                &"c".repeat(65),
            ],
        );
    }

    #[test]
    fn e_mail_addresses_need_a_local_part_and_a_dotted_domain() {
        sorts(
            is_email,
            &["maria@dealer.example", "a.b+c@mail.dealer.example"],
            &[
                "maria",
                "@dealer.example",
                "maria@dealer",
                "maria@.example",
                "maria@dealer.",
                "maria@dealer@example.com",
                "maria lopez@dealer.example",
            ],
        );
    }

    #[test]
    fn urls_are_http_or_https() {
        assert!(is_http_url("https://wiki.dealer.example"));
        assert!(is_http_url("http://127.0.0.1:4318"));
        assert!(!is_http_url("ftp://dealer.example"));
        assert!(!is_http_url("wiki.dealer.example"));
        assert!(!is_http_url("HTTPS://wiki.dealer.example"));
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("10b"), Some(10));
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size(" 2 GiB "), Some(2 << 30));
        assert_eq!(parse_size("3kib"), Some(3 << 10));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("1.5GB"), None);
        assert_eq!(parse_size("99999999999999999999GB"), None);
        assert_eq!(
            parse_size(&format!("{}GiB", u64::MAX >> 20)),
            None,
            "overflow"
        );
    }

    fn template_errors(source: &str) -> Vec<(String, String)> {
        let later = HashMap::from([("ro_number".to_string(), "find-ro".to_string())]);
        let scope = Scope {
            vars: vec!["dealer_id"],
            captures: BTreeSet::from(["appointment_id"]),
            later: &later,
        };
        let (_, errors) = check(|c| check_template(c, &at("url"), source, &scope));
        paths_and_messages(&errors)
    }

    #[test]
    fn templates_may_read_vars_captures_and_built_ins() {
        for ok in [
            "{{ dealer_id }}/{{ appointment_id }}",
            "{{ env.CRM_URL }}",
            "{{ secret.crm_token }}",
            "{{ run.id }} {{ run.probe }}",
            "{{ synthetic.customer() }}",
            "plain text",
        ] {
            assert_eq!(template_errors(ok), [], "{ok}");
        }
    }

    #[test]
    fn template_mistakes_say_what_exists() {
        let one = |source: &str| {
            let errors = template_errors(source);
            assert_eq!(errors.len(), 1, "{source}: {errors:?}");
            assert_eq!(errors[0].0, "url");
            errors[0].1.clone()
        };
        assert_eq!(
            one("{{ ro_number }}"),
            "`ro_number` is used before it exists: it is captured by step `find-ro`, which runs later"
        );
        assert_eq!(one("{{ dealer }}"), "unknown variable `dealer`");
        assert_eq!(one("{{ run.attempt }}"), "`run.attempt` does not exist");
        assert_eq!(
            one("{{ synthetic.plate() }}"),
            "`synthetic.plate()` does not exist"
        );
        assert_eq!(one("{{ env }}"), "`env` needs a name, e.g. `env.NAME`");
        assert!(one("{{ unclosed").starts_with("template syntax error"));
    }

    #[test]
    fn templates_inside_json_are_checked_at_their_own_path() {
        let errors = probe_errors(
            "name: p\nsteps:\n  - name: one\n    request:\n      url: \"https://x\"\n      method: POST\n      json: {customer: {name: \"{{ nme }}\"}, tags: [ok, \"{{ tg }}\"]}\n",
        );
        assert_eq!(
            paths_and_messages(&errors),
            [
                (
                    "steps[0].request.json.customer.name".to_string(),
                    "unknown variable `nme`".to_string()
                ),
                (
                    "steps[0].request.json.tags[1]".to_string(),
                    "unknown variable `tg`".to_string()
                ),
            ]
        );
    }
}
