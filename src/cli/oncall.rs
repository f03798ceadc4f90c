//! `rooftop oncall who`, `rooftop oncall schedule` and `rooftop windows`: who a page
//! reaches, the shifts of a span in local time, and which time windows are active — all
//! read from the configuration with `oncall`'s pure functions, the same ones the pager
//! uses, so what these print is what the agent does.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{ConfigArgs, EXIT_CONFIG, load_config};
use crate::clock::{Clock as _, SystemClock, resolve_local};
use crate::model::{OnCall, Rotation, Target, WindowAction, WindowRoute};
use crate::oncall::{self, Shift, Via};

/// Longest `oncall schedule` span.
const MAX_SPAN_DAYS: i64 = 400;

/// An instant as given on the command line: exact, or a local wall time read in each
/// rotation's (or window's) own zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    Local(NaiveDateTime),
}

impl When {
    fn resolve(self, tz: Tz) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            // `resolve_local` only fails at chrono's range ends.
            When::Local(n) => resolve_local(&tz, n).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// `now`, `+DURATION` (from now, e.g. `+7d`), RFC 3339 (`2026-12-05T21:00:00-05:00`), or
/// a local `YYYY-MM-DD[ HH:MM]` (also with `T`), read in the zone of what is asked about.
pub fn parse_when(text: &str) -> Result<When, String> {
    parse_when_at(text, SystemClock.now())
}

fn parse_when_at(text: &str, now: DateTime<Utc>) -> Result<When, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(When::At(now));
    }
    if let Some(d) = t.strip_prefix('+') {
        let d = humantime::parse_duration(d).map_err(|e| format!("`{t}`: {e}"))?;
        let d = chrono::Duration::from_std(d).map_err(|_| format!("`{t}` is too far"))?;
        return now
            .checked_add_signed(d)
            .map(When::At)
            .ok_or_else(|| format!("`{t}` is too far"));
    }
    if let Ok(x) = DateTime::parse_from_rfc3339(t) {
        return Ok(When::At(x.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(When::Local(n));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(When::Local(d.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    Err(format!(
        "`{t}` is not a time: use now, +DURATION (+7d), 2026-12-05T21:00:00-05:00, or a local 2026-12-05 21:00"
    ))
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M").to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The rotations asked for: all, or the one named (an unknown name is an error listing
/// the known ones).
/// The configuration's on-call settings and the rotations asked for (all of them when
/// `only` is `None`), or the exit code after the error is printed.
fn load_rotations(
    cfg: &ConfigArgs,
    only: Option<&str>,
) -> Result<(OnCall, Vec<Rotation>), ExitCode> {
    let oncall = load_config(&cfg.config)?.agent.oncall;
    let rotations = selected(&oncall, only)?.into_iter().cloned().collect();
    Ok((oncall, rotations))
}

fn selected<'a>(oncall: &'a OnCall, only: Option<&str>) -> Result<Vec<&'a Rotation>, ExitCode> {
    if oncall.rotations.is_empty() {
        eprintln!("error: no rotations are configured (oncall.rotations in rooftop.yaml)");
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    match only {
        None => Ok(oncall.rotations.iter().collect()),
        Some(name) => match oncall.rotation(name) {
            Some(r) => Ok(vec![r]),
            None => {
                let known: Vec<&str> = oncall.rotations.iter().map(|r| r.name.as_str()).collect();
                eprintln!(
                    "error: there is no rotation `{name}`\n  = help: rotations: {}",
                    known.join(", ")
                );
                Err(ExitCode::from(EXIT_CONFIG))
            }
        },
    }
}

fn via_text(via: &Via) -> String {
    match via {
        Via::Rotation => "rotation".into(),
        Via::Fallback => "fallback".into(),
        Via::Override { note: Some(n) } => format!("override: {n}"),
        Via::Override { note: None } => "override".into(),
    }
}

fn via_json(via: &Via) -> Value {
    match via {
        Via::Override { note } => json!({"via": "override", "note": note}),
        v => json!({"via": v.as_str(), "note": null}),
    }
}

/// `rooftop oncall who`.
pub fn who(cfg: &ConfigArgs, at: Option<When>, rotation: Option<&str>, as_json: bool) -> ExitCode {
    let (oncall, rotations) = match load_rotations(cfg, rotation) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let oncall = &oncall;
    let at = at.unwrap_or(When::At(SystemClock.now()));
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for r in rotations {
        let t = at.resolve(r.timezone);
        let target = Target::Rotation {
            name: r.name.clone(),
            offset: 0,
        };
        let now = oncall::who_with(oncall, &target, t);
        let until = now.iter().map(|p| p.shift_end).min();
        let next = until
            .map(|u| oncall::who_with(oncall, &target, u))
            .unwrap_or_default();
        let names = |v: &[oncall::OnCallNow]| {
            v.iter()
                .map(|p| p.contact.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(json!({
            "rotation": r.name,
            "timezone": r.timezone.name(),
            "at": rfc3339(t),
            "on_call": now.iter().map(|p| {
                let mut v = json!({
                    "contact": p.contact,
                    "since": rfc3339(p.shift_start),
                    "until": rfc3339(p.shift_end),
                });
                if let (Value::Object(o), Value::Object(w)) = (&mut v, via_json(&p.via)) {
                    o.extend(w);
                }
                v
            }).collect::<Vec<_>>(),
            "next": next.iter().map(|p| json!({"contact": p.contact, "from": until.map(rfc3339)})).collect::<Vec<_>>(),
        }));
        rows.push([
            r.name.clone(),
            if now.is_empty() {
                "(nobody: a page reaches no one)".into()
            } else {
                names(&now)
            },
            now.first()
                .map(|p| {
                    if p.via == Via::Rotation {
                        String::new()
                    } else {
                        via_text(&p.via)
                    }
                })
                .unwrap_or_default(),
            until.map(|u| local(u, r.timezone)).unwrap_or_default(),
            if next.is_empty() {
                String::new()
            } else {
                names(&next)
            },
            r.timezone.name().to_string(),
        ]);
    }
    if as_json {
        println!("{}", Value::Array(out));
        return ExitCode::SUCCESS;
    }
    print_table(
        &[
            "ROTATION",
            "ON CALL",
            "WHY",
            "UNTIL (local)",
            "NEXT",
            "ZONE",
        ],
        &rows,
    );
    ExitCode::SUCCESS
}

fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// One line of a schedule: a shift, or a gap where a page reaches nobody.
enum Line<'a> {
    Shift(&'a Shift),
    Gap(DateTime<Utc>, DateTime<Utc>),
}

impl Line<'_> {
    fn start(&self) -> DateTime<Utc> {
        match self {
            Line::Shift(s) => s.start,
            Line::Gap(a, _) => *a,
        }
    }
}

/// `rooftop oncall schedule`.
pub fn schedule(
    cfg: &ConfigArgs,
    from: Option<When>,
    to: Option<When>,
    rotation: Option<&str>,
    as_json: bool,
) -> ExitCode {
    let (oncall, rotations) = match load_rotations(cfg, rotation) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let oncall = &oncall;
    let mut out = Vec::new();
    for (n, r) in rotations.iter().enumerate() {
        let start = from
            .unwrap_or(When::At(SystemClock.now()))
            .resolve(r.timezone);
        let end = match to {
            Some(w) => w.resolve(r.timezone),
            None => start + chrono::Duration::days(7),
        };
        if end <= start {
            eprintln!(
                "error: --to ({}) is not after --from ({})",
                local(end, r.timezone),
                local(start, r.timezone)
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        if end - start > chrono::Duration::days(MAX_SPAN_DAYS) {
            eprintln!("error: a schedule spans at most {MAX_SPAN_DAYS} days");
            return ExitCode::from(EXIT_CONFIG);
        }
        let shifts = oncall::coverage(oncall, r, start, end);
        let gaps = oncall::gaps(oncall, r, start, end);
        let mut lines: Vec<Line> = shifts.iter().map(Line::Shift).collect();
        lines.extend(gaps.iter().map(|(a, b)| Line::Gap(*a, *b)));
        lines.sort_by_key(Line::start);
        out.push(json!({
            "rotation": r.name,
            "timezone": r.timezone.name(),
            "from": rfc3339(start),
            "to": rfc3339(end),
            "shifts": shifts.iter().map(|s| {
                let mut v = json!({
                    "contact": s.contact,
                    "start": rfc3339(s.start),
                    "end": rfc3339(s.end),
                    "start_local": s.start.with_timezone(&r.timezone).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                    "end_local": s.end.with_timezone(&r.timezone).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                });
                if let (Value::Object(o), Value::Object(w)) = (&mut v, via_json(&s.via)) {
                    o.extend(w);
                }
                v
            }).collect::<Vec<_>>(),
            "gaps": gaps.iter().map(|(a, b)| json!({"start": rfc3339(*a), "end": rfc3339(*b)})).collect::<Vec<_>>(),
        }));
        if as_json {
            continue;
        }
        if n > 0 {
            println!();
        }
        println!(
            "{} ({}): {} → {}",
            r.name,
            r.timezone.name(),
            local(start, r.timezone),
            local(end, r.timezone)
        );
        let rows: Vec<[String; 4]> = lines
            .iter()
            .map(|l| match l {
                Line::Shift(s) => [
                    local(s.start, r.timezone),
                    local(s.end, r.timezone),
                    s.contact.clone(),
                    match &s.via {
                        Via::Rotation => String::new(),
                        v => format!("[{}]", via_text(v)),
                    },
                ],
                Line::Gap(a, b) => [
                    local(*a, r.timezone),
                    local(*b, r.timezone),
                    "(nobody)".into(),
                    "[GAP: a page reaches no one]".into(),
                ],
            })
            .collect();
        print_table(&["FROM", "UNTIL", "ON CALL", ""], &rows);
    }
    if as_json {
        println!("{}", Value::Array(out));
    }
    ExitCode::SUCCESS
}

fn route_text(r: &WindowRoute) -> String {
    let what = match r.action {
        WindowAction::Promote(s) => format!("promote to {s}"),
        a => a.as_str().to_string(),
    };
    let mut scope = Vec::new();
    if !r.severities.is_empty() {
        scope.push(
            r.severities
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if !r.connectors.is_empty() {
        scope.push(format!("connector {}", r.connectors.join(",")));
    }
    if !r.probes.is_empty() {
        scope.push(format!("probe {}", r.probes.join(",")));
    }
    if scope.is_empty() {
        what + " every page"
    } else {
        format!("{what} {}", scope.join(" "))
    }
}

/// `rooftop windows`.
pub fn windows(cfg: &ConfigArgs, at: Option<When>, as_json: bool) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let oncall = &config.agent.oncall;
    let routes = &config.agent.alerting.windows;
    if oncall.windows.is_empty() {
        if as_json {
            println!("[]");
        } else {
            println!("no time windows are configured (time_windows in rooftop.yaml)");
        }
        return ExitCode::SUCCESS;
    }
    let at = at.unwrap_or(When::At(SystemClock.now()));
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for w in &oncall.windows {
        let t = at.resolve(w.timezone);
        let active = oncall::window_active(w, t);
        let change = oncall::window_next_change(w, t);
        let used: Vec<&WindowRoute> = routes.iter().filter(|r| r.window == w.name).collect();
        out.push(json!({
            "window": w.name,
            "timezone": w.timezone.name(),
            "at": rfc3339(t),
            "active": active,
            "next_change": change.map(rfc3339),
            "routes": used.iter().map(|r| json!({
                "action": r.action.as_str(),
                "promote_to": match r.action { WindowAction::Promote(s) => Some(s.to_string()), _ => None },
                "severities": r.severities.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "connectors": r.connectors,
                "probes": r.probes,
            })).collect::<Vec<_>>(),
        }));
        rows.push([
            w.name.clone(),
            if active { "ACTIVE" } else { "-" }.to_string(),
            match change {
                Some(c) if active => format!("ends {}", local(c, w.timezone)),
                Some(c) => format!("starts {}", local(c, w.timezone)),
                None => "never changes again".into(),
            },
            if used.is_empty() {
                "(no route uses it)".into()
            } else {
                used.iter()
                    .map(|r| route_text(r))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            w.timezone.name().to_string(),
        ]);
    }
    if as_json {
        println!("{}", Value::Array(out));
        return ExitCode::SUCCESS;
    }
    print_table(&["WINDOW", "NOW", "NEXT (local)", "EFFECT", "ZONE"], &rows);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_on_the_command_line() {
        let now = utc("2026-12-03T12:00:00Z");
        assert_eq!(parse_when_at("now", now), Ok(When::At(now)));
        assert_eq!(
            parse_when_at("+7d", now),
            Ok(When::At(utc("2026-12-10T12:00:00Z")))
        );
        assert_eq!(
            parse_when_at("2026-12-05T21:00:00-05:00", now),
            Ok(When::At(utc("2026-12-06T02:00:00Z")))
        );
        let l = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            parse_when_at("2026-12-05 21:00", now),
            Ok(When::Local(l("2026-12-05 21:00")))
        );
        assert_eq!(
            parse_when_at("2026-12-05", now),
            Ok(When::Local(l("2026-12-05 00:00")))
        );
        assert!(
            parse_when_at("friday", now)
                .unwrap_err()
                .contains("not a time")
        );
        assert!(parse_when_at("+7x", now).is_err());
    }

    #[test]
    fn a_local_time_is_read_in_each_zone_and_a_skipped_one_moves_past_the_gap() {
        let n = NaiveDateTime::parse_from_str("2026-03-08 02:30", "%Y-%m-%d %H:%M").unwrap();
        // 02:30 does not exist in Toronto that night: the first instant after, 03:00 EDT.
        assert_eq!(
            When::Local(n).resolve(chrono_tz::America::Toronto),
            utc("2026-03-08T07:00:00Z")
        );
        assert_eq!(
            When::Local(n).resolve(chrono_tz::UTC),
            utc("2026-03-08T02:30:00Z")
        );
    }
}
