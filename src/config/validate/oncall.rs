//! `time_windows` and `oncall` of `rooftop.yaml`: zones, window rules (weekdays, times,
//! days of the month, months, dates), rotations (members from `alerting.contacts`,
//! handoff, start, restrictions, fallback, overrides) and fallback cycles. Produces
//! `model::OnCall`; who is on call is `crate::oncall`'s business, not this file's.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Weekday};

use super::Checker;
use super::primitives::is_name;
use crate::clock::resolve_local;
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{
    AgentConfig, FallbackConfig, HandoffConfig, NumberOrText, RotationConfig, WindowRuleConfig,
};
use crate::config::yaml::FieldPath;
use crate::model::{Handoff, OnCall, Override, Rotation, Target, TimeWindow, WindowRule};

/// Longest `every: Nd`.
const MAX_HANDOFF_DAYS: u32 = 365;
/// How many rotations a fallback chain may pass through (`oncall::who_with` follows 4).
const MAX_FALLBACK_CHAIN: usize = 4;

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Validates `time_windows` and `oncall`; contact names are checked against the raw
/// `alerting.contacts` (their own mistakes are `alerting.rs`'s to report).
pub(super) fn check_oncall(c: &mut Checker<'_>, raw: &AgentConfig) -> OnCall {
    let mut out = OnCall::default();
    let root = FieldPath::root();
    for (name, w) in &raw.time_windows {
        let wp = root.key("time_windows").key(name);
        c.check_name(&wp, "window", name);
        let tz = c.timezone(&wp.key("timezone"), &w.timezone);
        if w.when.is_empty() {
            c.err(
                &wp.key("when"),
                format!("window `{name}` has no rules"),
                Some("e.g. `when: [{weekdays: [tuesday:thursday], times: [{start: \"20:00\", end: \"24:00\"}]}]`".into()),
            );
        }
        let rules = c.window_rules(&wp.key("when"), &w.when);
        if let (Some(timezone), Some(rules)) = (tz, rules)
            && !rules.is_empty()
        {
            out.windows.push(TimeWindow {
                name: name.clone(),
                timezone,
                rules,
            });
        }
    }
    let contacts: Vec<&str> = raw
        .alerting
        .as_ref()
        .map(|a| a.contacts.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let Some(oc) = &raw.oncall else { return out };
    let rp = root.key("oncall").key("rotations");
    let names: Vec<&str> = oc.rotations.keys().map(String::as_str).collect();
    for (name, r) in &oc.rotations {
        if let Some(rot) = c.rotation(&rp.key(name), name, r, &contacts, &names) {
            out.rotations.push(rot);
        }
    }
    c.fallback_chains(&rp, oc.rotations.iter());
    out
}

impl Checker<'_> {
    fn check_name(&mut self, path: &FieldPath, what: &str, name: &str) {
        if !is_name(name) {
            self.err_key(
                path,
                format!("{what} name `{name}` must be lowercase letters, digits and dashes"),
                Some("e.g. `change-window`, `service-desk`".into()),
            );
        }
    }

    /// A contact name that must be in `alerting.contacts`.
    fn contact(&mut self, path: &FieldPath, name: &str, contacts: &[&str]) -> bool {
        if contacts.contains(&name) {
            return true;
        }
        self.err(
            path,
            format!("no contact named `{name}`"),
            did_you_mean(name, contacts.iter().copied()).or_else(|| {
                Some("add it under `alerting.contacts` (name and email or phone)".into())
            }),
        );
        false
    }

    fn rotation(
        &mut self,
        path: &FieldPath,
        name: &str,
        r: &RotationConfig,
        contacts: &[&str],
        rotations: &[&str],
    ) -> Option<Rotation> {
        let mut ok = true;
        self.check_name(path, "rotation", name);
        let tz = self.timezone(&path.key("timezone"), &r.timezone);
        if r.members.is_empty() {
            self.err(
                &path.key("members"),
                format!("rotation `{name}` has no members"),
                Some(
                    "list contact names in turn order, e.g. `members: [Maria Lopez, Dev Patel]`"
                        .into(),
                ),
            );
            ok = false;
        }
        for (i, m) in r.members.iter().enumerate() {
            ok &= self.contact(&path.key("members").index(i), m, contacts);
        }
        let start = parse_date(&r.start);
        if start.is_none() {
            self.err(
                &path.key("start"),
                format!("`{}` is not a date", r.start),
                Some("the local date of the first shift, `YYYY-MM-DD`, e.g. `2026-11-30`".into()),
            );
        }
        let handoff = self.handoff(&path.key("handoff"), &r.handoff, start);
        let restrictions = self.window_rules(&path.key("restrictions"), &r.restrictions);
        let fallback = match &r.fallback {
            None => None,
            Some(FallbackConfig::Contact(c)) => {
                ok &= self.contact(&path.key("fallback"), c, contacts);
                Some(Target::Contact(c.clone()))
            }
            Some(FallbackConfig::Rotation(f)) => {
                if !rotations.contains(&f.rotation.as_str()) {
                    self.err(
                        &path.key("fallback").key("rotation"),
                        format!("no rotation named `{}`", f.rotation),
                        did_you_mean(&f.rotation, rotations.iter().copied())
                            .or_else(|| Some("a name under `oncall.rotations`".into())),
                    );
                    ok = false;
                }
                Some(Target::Rotation {
                    name: f.rotation.clone(),
                    offset: 0,
                })
            }
        };
        let mut overrides = Vec::new();
        for (i, o) in r.overrides.iter().enumerate() {
            let op = path.key("overrides").index(i);
            ok &= self.contact(&op.key("who"), &o.who, contacts);
            if let Some(rep) = &o.replaces
                && !r.members.contains(rep)
            {
                self.err(
                    &op.key("replaces"),
                    format!("`{rep}` is not a member of rotation `{name}`"),
                    did_you_mean(rep, r.members.iter().map(String::as_str)).or_else(|| {
                        Some("leave `replaces` out to override whoever is on call".into())
                    }),
                );
                ok = false;
            }
            let from = self.local_instant(&op.key("from"), &o.from, tz);
            let until = self.local_instant(&op.key("until"), &o.until, tz);
            match (from, until) {
                (Some(from), Some(until)) if until <= from => {
                    self.err(
                        &op.key("until"),
                        format!(
                            "override ends (`{}`) before it begins (`{}`)",
                            o.until, o.from
                        ),
                        Some("`until` is the local time the override stops, after `from`".into()),
                    );
                    ok = false;
                }
                (Some(from), Some(until)) => overrides.push(Override {
                    who: o.who.clone(),
                    replaces: o.replaces.clone(),
                    from,
                    until,
                    note: o.note.clone(),
                }),
                _ => ok = false,
            }
        }
        let (Some(timezone), Some(start), Some(handoff), Some(restrictions), true) =
            (tz, start, handoff, restrictions, ok)
        else {
            return None;
        };
        Some(Rotation {
            name: name.to_string(),
            timezone,
            members: r.members.clone(),
            handoff,
            start,
            restrictions,
            fallback,
            overrides,
        })
    }

    fn handoff(
        &mut self,
        path: &FieldPath,
        h: &HandoffConfig,
        start: Option<NaiveDate>,
    ) -> Option<Handoff> {
        let at = parse_hhmm(&h.at).filter(|m| *m < 24 * 60);
        if at.is_none() {
            self.err(
                &path.key("at"),
                format!("`{}` is not a time of day", h.at),
                Some("`HH:MM` from `00:00` to `23:59`, e.g. `\"09:00\"`".into()),
            );
        }
        let at = at.and_then(|m| NaiveTime::from_hms_opt(m / 60, m % 60, 0));
        let every = h.every.trim().to_ascii_lowercase();
        let days = match every.as_str() {
            "day" => Some(1),
            "week" => Some(7),
            other => other
                .strip_suffix('d')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|d| (1..=MAX_HANDOFF_DAYS).contains(d)),
        };
        let Some(days) = days else {
            self.err(
                &path.key("every"),
                format!("`{}` is not a handoff period", h.every),
                Some("`day`, `week`, or a number of days such as `3d` (at most `365d`)".into()),
            );
            return None;
        };
        if every != "week" {
            if h.on.is_some() {
                self.err_key(
                    &path.key("on"),
                    "`on` only applies to `every: week`",
                    Some("remove `on`, or hand off `every: week`".into()),
                );
                return None;
            }
            return Some(match days {
                1 => Handoff::Daily { at: at? },
                days => Handoff::EveryDays { days, at: at? },
            });
        }
        let on = match &h.on {
            Some(text) => {
                let day = parse_weekday(text);
                if day.is_none() {
                    self.weekday_error(&path.key("on"), text);
                }
                day?
            }
            None => chrono::Datelike::weekday(&start?),
        };
        let handoff = Handoff::Weekly { on, at: at? };
        Some(handoff)
    }

    fn weekday_error(&mut self, path: &FieldPath, text: &str) {
        self.err(
            path,
            format!("`{text}` is not a weekday"),
            did_you_mean(&text.to_ascii_lowercase(), WEEKDAYS.iter().map(|(n, _)| *n))
                .filter(|h| h.starts_with("did"))
                .or_else(|| Some("a weekday name, full or 3 letters: `monday`, `tue`".into())),
        );
    }

    /// `YYYY-MM-DD HH:MM` in the rotation's zone (first occurrence when ambiguous).
    fn local_instant(
        &mut self,
        path: &FieldPath,
        text: &str,
        tz: Option<chrono_tz::Tz>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match parse_local(text) {
            Some(naive) => resolve_local(&tz?, naive),
            None => {
                self.err(
                    path,
                    format!("`{text}` is not a local date and time"),
                    Some(
                        "`YYYY-MM-DD HH:MM` in the rotation's zone, e.g. `\"2026-12-24 18:00\"`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// Rules of a window or of restrictions; `None` when any is wrong (all reported).
    fn window_rules(
        &mut self,
        path: &FieldPath,
        rules: &[WindowRuleConfig],
    ) -> Option<Vec<WindowRule>> {
        let before = self.errors.len();
        let out: Vec<WindowRule> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| self.window_rule(&path.index(i), r))
            .collect();
        (self.errors.len() == before).then_some(out)
    }

    fn window_rule(&mut self, path: &FieldPath, r: &WindowRuleConfig) -> WindowRule {
        let mut out = WindowRule::default();
        for (i, text) in r.weekdays.iter().enumerate() {
            let p = path.key("weekdays").index(i);
            let (a, b) = match text.split_once(':') {
                Some((a, b)) => (a, b),
                None => (text.as_str(), text.as_str()),
            };
            match (parse_weekday(a), parse_weekday(b)) {
                (Some(a), Some(b)) => {
                    let mut d = a;
                    loop {
                        if !out.weekdays.contains(&d) {
                            out.weekdays.push(d);
                        }
                        if d == b {
                            break;
                        }
                        d = d.succ();
                    }
                }
                (None, _) => self.weekday_error(&p, a.trim()),
                (_, None) => self.weekday_error(&p, b.trim()),
            }
        }
        for (i, t) in r.times.iter().enumerate() {
            let p = path.key("times").index(i);
            let start = parse_hhmm(&t.start).filter(|m| *m < 24 * 60);
            let end = parse_hhmm(&t.end);
            if start.is_none() {
                self.err(
                    &p.key("start"),
                    format!("`{}` is not a time of day", t.start),
                    Some("`HH:MM` from `00:00` to `23:59`".into()),
                );
            }
            if end.is_none() {
                self.err(
                    &p.key("end"),
                    format!("`{}` is not a time of day", t.end),
                    Some("`HH:MM` from `00:01` to `24:00` (the end of the day)".into()),
                );
            }
            if let (Some(s), Some(e)) = (start, end) {
                if s >= e {
                    self.err(
                        &p,
                        format!("start `{}` is not before end `{}`", t.start, t.end),
                        Some(format!(
                            "a span over midnight is two: `{{start: \"{}\", end: \"24:00\"}}` and `{{start: \"00:00\", end: \"{}\"}}`",
                            t.start, t.end
                        )),
                    );
                } else {
                    out.times.push((s, e));
                }
            }
        }
        for (i, d) in r.days_of_month.iter().enumerate() {
            let p = path.key("days_of_month").index(i);
            match parse_day_range(d) {
                Ok(range) => out.days_of_month.push(range),
                Err((message, hint)) => self.err(&p, message, Some(hint)),
            }
        }
        for (i, m) in r.months.iter().enumerate() {
            let p = path.key("months").index(i);
            match parse_month_range(m) {
                Some((a, b)) if a <= b => out.months.push((a, b)),
                // `nov:feb` wraps over the year end.
                Some((a, b)) => {
                    out.months.push((a, 12));
                    out.months.push((1, b));
                }
                None => self.err(
                    &p,
                    format!("`{}` is not a month", text_of(m)),
                    Some(
                        "1–12 or a name (`dec`, `december`), or a range such as `\"nov:feb\"`"
                            .into(),
                    ),
                ),
            }
        }
        for (i, text) in r.dates.iter().enumerate() {
            let p = path.key("dates").index(i);
            let (a, b) = match text.split_once(':') {
                Some((a, b)) => (parse_date(a), parse_date(b)),
                None => (parse_date(text), parse_date(text)),
            };
            match (a, b) {
                (Some(a), Some(b)) if a <= b => out.dates.push((a, b)),
                (Some(_), Some(_)) => self.err(
                    &p,
                    format!("date range `{text}` ends before it begins"),
                    Some("write the earlier date first, e.g. `\"2026-12-26:2026-12-31\"`".into()),
                ),
                _ => self.err(
                    &p,
                    format!("`{text}` is not a date or a date range"),
                    Some(
                        "`YYYY-MM-DD` or `YYYY-MM-DD:YYYY-MM-DD`, e.g. `\"2026-12-26:2026-12-31\"`"
                            .into(),
                    ),
                ),
            }
        }
        out
    }

    /// Fallbacks that lead back to where they started, or pass through more rotations
    /// than paging follows.
    fn fallback_chains<'r>(
        &mut self,
        path: &FieldPath,
        rotations: impl Iterator<Item = (&'r String, &'r RotationConfig)> + Clone,
    ) {
        let next = |name: &str| {
            rotations
                .clone()
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, r)| match &r.fallback {
                    Some(FallbackConfig::Rotation(f)) => Some(f.rotation.clone()),
                    _ => None,
                })
        };
        let mut reported: Vec<String> = Vec::new();
        for (name, _) in rotations.clone() {
            let mut chain = vec![name.clone()];
            while let Some(n) = next(chain.last().map(String::as_str).unwrap_or_default()) {
                if chain.contains(&n) {
                    chain.push(n);
                    break;
                }
                chain.push(n);
                if chain.len() > MAX_FALLBACK_CHAIN + 2 {
                    break;
                }
            }
            let fp = path.key(name).key("fallback").key("rotation");
            let cycle = chain.len() > 1 && chain[1..].contains(&chain[0]);
            if cycle {
                // One error per cycle, at the first of its rotations in the file.
                if !reported.contains(name) {
                    reported.extend(chain.iter().cloned());
                    self.err(
                        &fp,
                        format!("fallback cycle: {}", chain.join(" → ")),
                        Some("end the chain at a contact: `fallback: IT Lead`".into()),
                    );
                }
            } else if chain.len() > MAX_FALLBACK_CHAIN + 1
                && !chain[1..]
                    .iter()
                    .any(|n| chain[1..].iter().filter(|m| *m == n).count() > 1)
            {
                self.err(
                    &fp,
                    format!(
                        "fallback chain {} passes through more than {MAX_FALLBACK_CHAIN} rotations",
                        chain.join(" → ")
                    ),
                    Some(format!("paging follows at most {MAX_FALLBACK_CHAIN} fallback rotations; end the chain sooner")),
                );
            }
        }
    }
}

fn text_of(v: &NumberOrText) -> String {
    match v {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(t) => t.clone(),
    }
}

/// `HH:MM` → minutes after midnight, `24:00` included (callers refuse it as a start).
fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    let t = text.trim().to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == t || (t.len() == 3 && name.starts_with(&t)))
        .map(|(_, d)| *d)
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// `YYYY-MM-DD HH:MM` (or with a `T`).
fn parse_local(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim().replacen('T', " ", 1);
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M").ok()
}

/// A day of the month or a range of them, same sign at both ends, within ±31.
fn parse_day_range(v: &NumberOrText) -> Result<(i32, i32), (String, String)> {
    let shown = text_of(v);
    let bad = || {
        (
            format!("`{shown}` is not a day of the month"),
            "1–31, or -1 (the last day) to -31; a range such as `\"-3:-1\"` or `\"1:5\"`"
                .to_string(),
        )
    };
    let one = |t: &str| -> Result<i32, (String, String)> {
        let n: i64 = t.trim().parse().map_err(|_| bad())?;
        if n == 0 || !(-31..=31).contains(&n) {
            return Err((
                format!("day of month `{n}` is out of range"),
                "1–31 from the start of the month, -1 (the last day) to -31 from its end".into(),
            ));
        }
        Ok(n as i32)
    };
    let (a, b) = match v {
        NumberOrText::Number(n) => {
            let d = one(&n.to_string())?;
            (d, d)
        }
        NumberOrText::Text(t) => match split_range(t) {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let d = one(t)?;
                (d, d)
            }
        },
    };
    if (a < 0) != (b < 0) {
        return Err((
            format!("day range `{shown}` mixes a day from the start with one from the end"),
            "use two entries, e.g. `[\"-2:-1\", 1]` for the last two days and the first".into(),
        ));
    }
    if a > b {
        return Err((
            format!("day range `{shown}` runs backwards"),
            "write the earlier day first, e.g. `\"1:5\"` or `\"-3:-1\"`".into(),
        ));
    }
    Ok((a, b))
}

/// `a:b` where `b` may be negative (`-3:-1`): the separator is the first `:` after the
/// first character.
fn split_range(t: &str) -> Option<(&str, &str)> {
    let t = t.trim();
    let at = t.get(1..)?.find(':')? + 1;
    Some((&t[..at], &t[at + 1..]))
}

fn parse_month_range(v: &NumberOrText) -> Option<(u32, u32)> {
    let one = |t: &str| -> Option<u32> {
        let t = t.trim().to_ascii_lowercase();
        if let Ok(n) = t.parse::<u32>() {
            return (1..=12).contains(&n).then_some(n);
        }
        MONTHS
            .iter()
            .position(|m| *m == t || (t.len() == 3 && m.starts_with(&t)))
            .map(|i| i as u32 + 1)
    };
    match v {
        NumberOrText::Number(n) => {
            let m = u32::try_from(*n).ok().filter(|m| (1..=12).contains(m))?;
            Some((m, m))
        }
        NumberOrText::Text(t) => match t.split_once(':') {
            Some((a, b)) => Some((one(a)?, one(b)?)),
            None => one(t).map(|m| (m, m)),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::testing::{agent, agent_errors, paths_and_messages};
    use super::*;

    const CONTACTS: &str = "alerting:\n  contacts:\n    - {name: Maria Lopez, email: maria@dealer.example}\n    - {name: Dev Patel, phone: \"+14165550123\"}\n    - {name: IT Lead, email: it@dealer.example}\n";

    fn errors(yaml: &str) -> Vec<(String, String)> {
        paths_and_messages(&agent_errors(&format!("{CONTACTS}{yaml}")))
    }

    #[test]
    fn the_documented_example_validates() {
        let (a, _) = agent(&format!(
            "{CONTACTS}time_windows:\n  change-window:\n    timezone: America/Toronto\n    when:\n      - {{weekdays: [tuesday:thursday], times: [{{start: \"20:00\", end: \"24:00\"}}]}}\n  month-end:\n    timezone: America/Toronto\n    when: [{{days_of_month: [\"-2:-1\", \"1\", -1, 1], months: [nov:feb, 6]}}]\n  sales-event: {{timezone: America/Toronto, when: [{{dates: [\"2026-12-26:2026-12-31\", \"2027-01-02\"]}}]}}\noncall:\n  rotations:\n    service-desk:\n      timezone: America/Toronto\n      members: [Maria Lopez, Dev Patel]\n      handoff: {{every: week, on: monday, at: \"09:00\"}}\n      start: 2026-11-30\n      restrictions: [{{weekdays: [Mon:FRI], times: [{{start: \"08:00\", end: \"18:00\"}}]}}]\n      fallback: IT Lead\n      overrides:\n        - {{who: Dev Patel, from: \"2026-12-24 18:00\", until: \"2026-12-27 09:00\", note: Maria away, replaces: Maria Lopez}}\n    nights:\n      timezone: America/Vancouver\n      members: [IT Lead]\n      handoff: {{every: 3d, at: \"18:00\"}}\n      start: 2026-12-01\n      fallback: {{rotation: service-desk}}\n"
        ));
        let oc = &a.oncall;
        assert_eq!(oc.windows.len(), 3);
        let cw = oc.window("change-window").unwrap();
        assert_eq!(
            cw.rules[0].weekdays,
            [Weekday::Tue, Weekday::Wed, Weekday::Thu]
        );
        assert_eq!(cw.rules[0].times, [(1200, 1440)]);
        let me = oc.window("month-end").unwrap();
        assert_eq!(
            me.rules[0].days_of_month,
            [(-2, -1), (1, 1), (-1, -1), (1, 1)]
        );
        assert_eq!(me.rules[0].months, [(11, 12), (1, 2), (6, 6)]);
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(
            oc.window("sales-event").unwrap().rules[0].dates,
            [
                (d(2026, 12, 26), d(2026, 12, 31)),
                (d(2027, 1, 2), d(2027, 1, 2))
            ]
        );
        let desk = oc.rotation("service-desk").unwrap();
        assert_eq!(
            desk.handoff,
            Handoff::Weekly {
                on: Weekday::Mon,
                at: NaiveTime::from_hms_opt(9, 0, 0).unwrap()
            }
        );
        assert_eq!(desk.start, d(2026, 11, 30));
        assert_eq!(desk.restrictions[0].weekdays.len(), 5);
        assert_eq!(desk.fallback, Some(Target::Contact("IT Lead".into())));
        let o = &desk.overrides[0];
        assert_eq!(
            o.from,
            Utc.with_ymd_and_hms(2026, 12, 24, 23, 0, 0).unwrap()
        );
        assert_eq!(
            o.until,
            Utc.with_ymd_and_hms(2026, 12, 27, 14, 0, 0).unwrap()
        );
        assert_eq!(
            (o.note.as_deref(), o.replaces.as_deref()),
            (Some("Maria away"), Some("Maria Lopez"))
        );
        let nights = oc.rotation("nights").unwrap();
        assert_eq!(nights.handoff.days(), 3);
        assert_eq!(
            nights.fallback,
            Some(Target::Rotation {
                name: "service-desk".into(),
                offset: 0
            })
        );
    }

    #[test]
    fn a_weekly_handoff_without_on_uses_the_start_dates_weekday_and_friday_monday_wraps() {
        let (a, _) = agent(&format!(
            "{CONTACTS}oncall:\n  rotations:\n    desk: {{timezone: UTC, members: [IT Lead], handoff: {{every: week, at: \"08:00\"}}, start: 2026-12-02, restrictions: [{{weekdays: [\"fri:mon\"]}}]}}\n"
        ));
        let r = a.oncall.rotation("desk").unwrap();
        assert!(matches!(
            r.handoff,
            Handoff::Weekly {
                on: Weekday::Wed,
                ..
            }
        ));
        assert_eq!(
            r.restrictions[0].weekdays,
            [Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Mon]
        );
    }

    #[test]
    fn window_mistakes_are_all_reported() {
        assert_eq!(
            errors(
                "time_windows:\n  Change Window: {timezone: America/Torono, when: []}\n  w2:\n    timezone: UTC\n    when:\n      - {weekdays: [tuesday:thurday], times: [{start: \"25:00\", end: \"24:00\"}, {start: \"20:00\", end: \"08:00\"}]}\n      - {days_of_month: [0, 32, \"-3:2\", \"5:1\", x], months: [13, \"smarch\"], dates: [\"2026-12-31:2026-12-26\", \"12/26\"]}\n"
            ),
            [
                (
                    "time_windows[\"Change Window\"]".into(),
                    "window name `Change Window` must be lowercase letters, digits and dashes"
                        .into()
                ),
                (
                    "time_windows[\"Change Window\"].timezone".into(),
                    "unknown time zone `America/Torono`".into()
                ),
                (
                    "time_windows[\"Change Window\"].when".into(),
                    "window `Change Window` has no rules".into()
                ),
                (
                    "time_windows.w2.when[0].weekdays[0]".into(),
                    "`thurday` is not a weekday".into()
                ),
                (
                    "time_windows.w2.when[0].times[0].start".into(),
                    "`25:00` is not a time of day".into()
                ),
                (
                    "time_windows.w2.when[0].times[1]".into(),
                    "start `20:00` is not before end `08:00`".into()
                ),
                (
                    "time_windows.w2.when[1].days_of_month[0]".into(),
                    "day of month `0` is out of range".into()
                ),
                (
                    "time_windows.w2.when[1].days_of_month[1]".into(),
                    "day of month `32` is out of range".into()
                ),
                (
                    "time_windows.w2.when[1].days_of_month[2]".into(),
                    "day range `-3:2` mixes a day from the start with one from the end".into()
                ),
                (
                    "time_windows.w2.when[1].days_of_month[3]".into(),
                    "day range `5:1` runs backwards".into()
                ),
                (
                    "time_windows.w2.when[1].days_of_month[4]".into(),
                    "`x` is not a day of the month".into()
                ),
                (
                    "time_windows.w2.when[1].months[0]".into(),
                    "`13` is not a month".into()
                ),
                (
                    "time_windows.w2.when[1].months[1]".into(),
                    "`smarch` is not a month".into()
                ),
                (
                    "time_windows.w2.when[1].dates[0]".into(),
                    "date range `2026-12-31:2026-12-26` ends before it begins".into()
                ),
                (
                    "time_windows.w2.when[1].dates[1]".into(),
                    "`12/26` is not a date or a date range".into()
                ),
            ]
        );
    }

    #[test]
    fn rotation_mistakes_are_all_reported() {
        let e = agent_errors(&format!(
            "{CONTACTS}oncall:\n  rotations:\n    desk:\n      timezone: Toronto\n      members: [Maria Lopz]\n      handoff: {{every: fortnight, on: monday, at: \"9am\"}}\n      start: 30/11/2026\n      fallback: {{rotation: nihgts}}\n      overrides:\n        - {{who: Sam, from: \"2026-12-24 18:00\", until: \"2026-12-24 09:00\", replaces: Dev Patel}}\n    empty: {{timezone: UTC, members: [], handoff: {{every: day, on: monday, at: \"24:00\"}}, start: 2026-12-01, fallback: Nobody}}\n"
        ));
        assert_eq!(
            paths_and_messages(&e),
            [
                (
                    "oncall.rotations.desk.timezone".to_string(),
                    "unknown time zone `Toronto`".to_string()
                ),
                (
                    "oncall.rotations.desk.members[0]".into(),
                    "no contact named `Maria Lopz`".into()
                ),
                (
                    "oncall.rotations.desk.handoff.every".into(),
                    "`fortnight` is not a handoff period".into()
                ),
                (
                    "oncall.rotations.desk.handoff.at".into(),
                    "`9am` is not a time of day".into()
                ),
                (
                    "oncall.rotations.desk.start".into(),
                    "`30/11/2026` is not a date".into()
                ),
                (
                    "oncall.rotations.desk.fallback.rotation".into(),
                    "no rotation named `nihgts`".into()
                ),
                (
                    "oncall.rotations.desk.overrides[0].who".into(),
                    "no contact named `Sam`".into()
                ),
                (
                    "oncall.rotations.desk.overrides[0].replaces".into(),
                    "`Dev Patel` is not a member of rotation `desk`".into()
                ),
                (
                    "oncall.rotations.empty.members".into(),
                    "rotation `empty` has no members".into()
                ),
                (
                    "oncall.rotations.empty.handoff.on".into(),
                    "`on` only applies to `every: week`".into()
                ),
                (
                    "oncall.rotations.empty.handoff.at".into(),
                    "`24:00` is not a time of day".into()
                ),
                (
                    "oncall.rotations.empty.fallback".into(),
                    "no contact named `Nobody`".into()
                ),
            ]
        );
        assert_eq!(e[1].hint.as_deref(), Some("did you mean `Maria Lopez`?"));
        // The zone is wrong, so the override's times are not checked against each other;
        // with a good zone they are.
        assert_eq!(
            errors(
                "oncall:\n  rotations:\n    desk:\n      timezone: America/Toronto\n      members: [Maria Lopez]\n      handoff: {every: day, at: \"09:00\"}\n      start: 2026-11-30\n      overrides: [{who: Dev Patel, from: \"2026-12-24 18:00\", until: \"2026-12-24 09:00\"}, {who: Dev Patel, from: \"tomorrow\", until: \"2026-12-24 09:00\"}]\n"
            ),
            [
                (
                    "oncall.rotations.desk.overrides[0].until".into(),
                    "override ends (`2026-12-24 09:00`) before it begins (`2026-12-24 18:00`)"
                        .into()
                ),
                (
                    "oncall.rotations.desk.overrides[1].from".into(),
                    "`tomorrow` is not a local date and time".into()
                ),
            ]
        );
    }

    #[test]
    fn a_fallback_cycle_is_refused_once() {
        let rot = |name: &str, fallback: &str| {
            format!(
                "    {name}: {{timezone: UTC, members: [IT Lead], handoff: {{every: day, at: \"09:00\"}}, start: 2026-12-01, fallback: {fallback}}}\n"
            )
        };
        assert_eq!(
            errors(&format!(
                "oncall:\n  rotations:\n{}{}{}",
                rot("a", "{rotation: b}"),
                rot("b", "{rotation: a}"),
                rot("c", "{rotation: c}"),
            )),
            [
                (
                    "oncall.rotations.a.fallback.rotation".into(),
                    "fallback cycle: a → b → a".into()
                ),
                (
                    "oncall.rotations.c.fallback.rotation".into(),
                    "fallback cycle: c → c".into()
                ),
            ]
        );
        assert_eq!(
            errors(&format!(
                "oncall:\n  rotations:\n{}{}{}{}{}{}",
                rot("a", "{rotation: b}"),
                rot("b", "{rotation: c}"),
                rot("c", "{rotation: d}"),
                rot("d", "{rotation: e}"),
                rot("e", "{rotation: f}"),
                rot("f", "IT Lead"),
            )),
            [(
                "oncall.rotations.a.fallback.rotation".into(),
                "fallback chain a → b → c → d → e → f passes through more than 4 rotations".into()
            )]
        );
    }

    #[test]
    fn day_ranges_split_at_the_right_colon() {
        assert_eq!(split_range("-3:-1"), Some(("-3", "-1")));
        assert_eq!(split_range("1:5"), Some(("1", "5")));
        assert_eq!(split_range("-1"), None);
        assert_eq!(parse_hhmm("7:05"), Some(425));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_weekday("THU"), Some(Weekday::Thu));
        assert_eq!(parse_weekday("th"), None);
    }
}
