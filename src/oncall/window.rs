//! Time windows and rotation restrictions: whether a set of rules matches an instant in a
//! zone, and the exact instants where that flips. Flips can only happen at a rule edge
//! (a local midnight or a `times` bound, resolved by the DST rule) or at a DST transition,
//! so those are the only candidates examined: exact, and cheap over 400 days.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use super::{horizon, plus};
use crate::clock::resolve_local;
use crate::model::{TimeWindow, WindowRule};

/// Whether one rule matches a local wall time: every field that is set must match.
pub fn rule_matches(rule: &WindowRule, local: NaiveDateTime) -> bool {
    let date = local.date();
    let minute = local.hour() * 60 + local.minute();
    (rule.weekdays.is_empty() || rule.weekdays.contains(&date.weekday()))
        && (rule.months.is_empty()
            || rule
                .months
                .iter()
                .any(|&(a, b)| (a..=b).contains(&date.month())))
        && (rule.dates.is_empty() || rule.dates.iter().any(|&(a, b)| a <= date && date <= b))
        && (rule.days_of_month.is_empty()
            || rule
                .days_of_month
                .iter()
                .any(|&(a, b)| day_of_month_in(date, a, b)))
        && (rule.times.is_empty() || rule.times.iter().any(|&(s, e)| s <= minute && minute < e))
}

/// `date`'s day within `a..=b`, where a negative bound counts from the month's end.
fn day_of_month_in(date: NaiveDate, a: i32, b: i32) -> bool {
    let len = days_in_month(date) as i32;
    let at = |x: i32| if x < 0 { len + 1 + x } else { x };
    (at(a)..=at(b)).contains(&(date.day() as i32))
}

fn days_in_month(date: NaiveDate) -> u32 {
    let (y, m) = (date.year(), date.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map(|last| last.day())
        .unwrap_or(31)
}

/// Whether any of `rules` matches the instant's wall time in `tz` (no rules: never).
pub fn rules_active(rules: &[WindowRule], tz: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&tz).naive_local();
    rules.iter().any(|r| rule_matches(r, local))
}

/// Whether the window is active at `at`, in its own zone.
pub fn window_active(window: &TimeWindow, at: DateTime<Utc>) -> bool {
    rules_active(&window.rules, window.timezone, at)
}

/// The first instant after `at` at which the window turns on or off, looking at most
/// `HORIZON_DAYS` ahead (`None`: no change in that time, e.g. a past sales event).
pub fn window_next_change(window: &TimeWindow, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_flip(&window.rules, window.timezone, at, plus(at, horizon()))
}

/// The first flip in `(after, limit]`, searching a short span first (the usual case).
pub(super) fn next_flip(
    rules: &[WindowRule],
    tz: Tz,
    after: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    for days in [2, 32, i64::MAX] {
        let to = if days == i64::MAX {
            limit
        } else {
            plus(after, Duration::days(days)).min(limit)
        };
        if let Some(first) = flips(rules, tz, after, to).first() {
            return Some(*first);
        }
        if to >= limit {
            break;
        }
    }
    None
}

/// The last flip in `(limit, at]`.
pub(super) fn prev_flip(
    rules: &[WindowRule],
    tz: Tz,
    at: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    for days in [2, 32, i64::MAX] {
        let from = if days == i64::MAX {
            limit
        } else {
            plus(at, -Duration::days(days)).max(limit)
        };
        if let Some(last) = flips(rules, tz, from, at).last() {
            return Some(*last);
        }
        if from <= limit {
            break;
        }
    }
    None
}

/// Every instant in `(from, to]` where the rules' state differs from the second before
/// (rule edges are whole minutes, so a second before is still the old state), in order.
fn flips(
    rules: &[WindowRule],
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    if rules.is_empty() || from >= to {
        return Vec::new();
    }
    // Local minutes of the day where some rule may start or stop matching.
    let mut minutes: BTreeSet<u32> = BTreeSet::from([0]);
    for r in rules {
        for &(s, e) in &r.times {
            minutes.insert(s);
            if e < 24 * 60 {
                minutes.insert(e);
            }
        }
    }
    // A day's margin either side: a local time's instants stay within a day of its date.
    let (Some(first), Some(last)) = (
        from.with_timezone(&tz).date_naive().pred_opt(),
        to.with_timezone(&tz).date_naive().succ_opt(),
    ) else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    let mut day = first;
    while day <= last {
        for &m in &minutes {
            let Some(naive) = day.and_hms_opt(m / 60, m % 60, 0) else {
                continue;
            };
            match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => candidates.push(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => {
                    candidates.push(a.with_timezone(&Utc));
                    candidates.push(b.with_timezone(&Utc));
                }
                LocalResult::None => candidates.extend(resolve_local(&tz, naive)),
            }
        }
        candidates.extend(transition_on(tz, day));
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    candidates.sort();
    candidates.dedup();
    let second = Duration::seconds(1);
    candidates
        .into_iter()
        .filter(|c| *c > from && *c <= to)
        .filter(|c| rules_active(rules, tz, *c) != rules_active(rules, tz, plus(*c, -second)))
        .collect()
}

/// The instant the UTC offset changes during local `day`, if it does (to the second).
fn transition_on(tz: Tz, day: NaiveDate) -> Option<DateTime<Utc>> {
    let start = resolve_local(&tz, day.and_hms_opt(0, 0, 0)?)?;
    let end = resolve_local(&tz, day.succ_opt()?.and_hms_opt(0, 0, 0)?)?;
    let offset = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0)
            .map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix())
    };
    let (mut lo, mut hi) = (start.timestamp(), end.timestamp());
    let before = offset(lo)?;
    if before == offset(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(mid)? == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::<Utc>::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn window(rules: Vec<WindowRule>) -> TimeWindow {
        TimeWindow {
            name: "w".into(),
            timezone: chrono_tz::America::Toronto,
            rules,
        }
    }

    fn last_day() -> WindowRule {
        WindowRule {
            days_of_month: vec![(-1, -1)],
            ..Default::default()
        }
    }

    #[test]
    fn minus_one_is_the_last_day_of_every_month_leap_years_included() {
        let r = last_day();
        for (day, expected) in [
            ("2026-02-28 12:00", true),
            ("2026-02-27 12:00", false),
            ("2028-02-28 12:00", false),
            ("2028-02-29 12:00", true),
            ("2026-01-31 00:00", true),
            ("2026-01-30 23:59", false),
            ("2026-04-30 08:00", true),
            ("2026-04-29 08:00", false),
            ("2026-12-31 23:59", true),
        ] {
            assert_eq!(rule_matches(&r, local(day)), expected, "{day}");
        }
    }

    #[test]
    fn negative_ranges_count_back_from_the_months_end() {
        let r = WindowRule {
            days_of_month: vec![(-3, -1), (1, 1)],
            ..Default::default()
        };
        // February 2026 has 28 days: 26, 27, 28 and the 1st.
        let hits: Vec<u32> = (1..=28)
            .filter(|d| {
                rule_matches(
                    &r,
                    NaiveDate::from_ymd_opt(2026, 2, *d)
                        .unwrap()
                        .and_hms_opt(9, 0, 0)
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(hits, [1, 26, 27, 28]);
        // A 30-day month: 28, 29, 30; a 31-day month: 29, 30, 31.
        assert!(rule_matches(&r, local("2026-06-28 09:00")));
        assert!(!rule_matches(&r, local("2026-06-27 09:00")));
        assert!(rule_matches(&r, local("2026-07-29 09:00")));
        assert!(!rule_matches(&r, local("2026-07-28 09:00")));
        // Day 31 simply never happens in a 30-day month.
        let r31 = WindowRule {
            days_of_month: vec![(31, 31)],
            ..Default::default()
        };
        assert!(!rule_matches(&r31, local("2026-06-30 09:00")));
        assert!(rule_matches(&r31, local("2026-07-31 09:00")));
    }

    #[test]
    fn times_start_inclusive_end_exclusive_and_24_00_ends_the_day() {
        let r = WindowRule {
            weekdays: vec![Weekday::Tue, Weekday::Wed, Weekday::Thu],
            times: vec![(20 * 60, 24 * 60)],
            ..Default::default()
        };
        // 2026-12-01 is a Tuesday.
        assert!(!rule_matches(&r, local("2026-12-01 19:59")));
        assert!(rule_matches(&r, local("2026-12-01 20:00")));
        assert!(rule_matches(&r, local("2026-12-01 23:59")));
        assert!(!rule_matches(&r, local("2026-12-02 00:00")));
        assert!(rule_matches(&r, local("2026-12-03 21:00")), "Thursday");
        assert!(!rule_matches(&r, local("2026-12-04 21:00")), "Friday");
        assert!(!rule_matches(&r, local("2026-11-30 21:00")), "Monday");
    }

    #[test]
    fn months_and_dates_are_inclusive_ranges() {
        let r = WindowRule {
            months: vec![(11, 12), (1, 1)],
            ..Default::default()
        };
        assert!(rule_matches(&r, local("2026-11-01 00:00")));
        assert!(rule_matches(&r, local("2027-01-31 23:59")));
        assert!(!rule_matches(&r, local("2027-02-01 00:00")));
        let d = NaiveDate::from_ymd_opt;
        let r = WindowRule {
            dates: vec![(d(2026, 12, 26).unwrap(), d(2026, 12, 31).unwrap())],
            ..Default::default()
        };
        assert!(!rule_matches(&r, local("2026-12-25 23:59")));
        assert!(rule_matches(&r, local("2026-12-26 00:00")));
        assert!(rule_matches(&r, local("2026-12-31 23:59")));
        assert!(!rule_matches(&r, local("2027-01-01 00:00")));
    }

    #[test]
    fn an_empty_rule_matches_always_and_no_rules_never() {
        assert!(rule_matches(
            &WindowRule::default(),
            local("2026-03-08 02:30")
        ));
        assert!(!rules_active(
            &[],
            chrono_tz::UTC,
            utc("2026-03-08T07:30:00Z")
        ));
    }

    #[test]
    fn a_change_window_is_active_in_its_own_zone_and_its_next_change_is_exact() {
        let w = window(vec![WindowRule {
            weekdays: vec![Weekday::Tue, Weekday::Wed, Weekday::Thu],
            times: vec![(20 * 60, 24 * 60)],
            ..Default::default()
        }]);
        // Tuesday 2026-12-01 19:59 EST is 2026-12-02 00:59 UTC.
        assert!(!window_active(&w, utc("2026-12-02T00:59:00Z")));
        assert_eq!(
            window_next_change(&w, utc("2026-12-02T00:59:00Z")),
            Some(utc("2026-12-02T01:00:00Z"))
        );
        assert!(window_active(&w, utc("2026-12-02T01:00:00Z")));
        assert_eq!(
            window_next_change(&w, utc("2026-12-02T01:00:00Z")),
            Some(utc("2026-12-02T05:00:00Z")),
            "ends at local midnight"
        );
        // After Thursday's window the next opening is the next Tuesday.
        assert_eq!(
            window_next_change(&w, utc("2026-12-04T05:00:00Z")),
            Some(utc("2026-12-09T01:00:00Z"))
        );
        // Between two seconds of a minute, still the edge itself.
        assert_eq!(
            window_next_change(&w, utc("2026-12-02T00:59:59Z")),
            Some(utc("2026-12-02T01:00:00Z"))
        );
    }

    #[test]
    fn next_change_of_a_month_end_window_across_february() {
        let w = window(vec![last_day()]);
        // 2028-02-28 noon EST: the window opens at local midnight into the 29th.
        assert_eq!(
            window_next_change(&w, utc("2028-02-28T17:00:00Z")),
            Some(utc("2028-02-29T05:00:00Z"))
        );
        assert_eq!(
            window_next_change(&w, utc("2028-02-29T05:00:00Z")),
            Some(utc("2028-03-01T05:00:00Z"))
        );
        assert_eq!(
            window_next_change(&w, utc("2026-02-27T17:00:00Z")),
            Some(utc("2026-02-28T05:00:00Z"))
        );
    }

    #[test]
    fn a_past_date_range_never_changes_again() {
        let d = NaiveDate::from_ymd_opt;
        let w = window(vec![WindowRule {
            dates: vec![(d(2026, 12, 26).unwrap(), d(2026, 12, 31).unwrap())],
            ..Default::default()
        }]);
        assert_eq!(window_next_change(&w, utc("2027-01-05T00:00:00Z")), None);
        assert_eq!(
            window_next_change(&w, utc("2026-06-01T00:00:00Z")),
            Some(utc("2026-12-26T05:00:00Z"))
        );
        let always = window(vec![WindowRule::default()]);
        assert_eq!(
            window_next_change(&always, utc("2026-06-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn rule_edges_inside_dst_changes_resolve_by_the_dst_rule() {
        // 01:30–02:00 local on fall-back night 2026-11-01 in Toronto: active from 01:30
        // EDT, off when the clocks go back (01:59:59 EDT → 01:00 EST), on again 01:30 EST.
        let w = window(vec![WindowRule {
            times: vec![(90, 120)],
            ..Default::default()
        }]);
        let at = utc("2026-11-01T05:00:00Z"); // 01:00 EDT
        let changes: Vec<DateTime<Utc>> = std::iter::successors(Some(at), |t| {
            window_next_change(&w, *t).filter(|n| *n < utc("2026-11-01T12:00:00Z"))
        })
        .skip(1)
        .collect();
        assert_eq!(
            changes,
            [
                utc("2026-11-01T05:30:00Z"),
                utc("2026-11-01T06:00:00Z"),
                utc("2026-11-01T06:30:00Z"),
                utc("2026-11-01T07:00:00Z"),
            ]
        );
        // 02:30–04:00 on spring-forward night 2026-03-08: 02:30 does not exist, the
        // window opens when the clocks jump to 03:00 EDT (07:00 UTC).
        let w = window(vec![WindowRule {
            times: vec![(150, 240)],
            ..Default::default()
        }]);
        assert_eq!(
            window_next_change(&w, utc("2026-03-08T06:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            window_next_change(&w, utc("2026-03-08T07:00:00Z")),
            Some(utc("2026-03-08T08:00:00Z"))
        );
    }

    #[test]
    fn the_transition_instant_is_found_to_the_second() {
        let tz = chrono_tz::America::Vancouver;
        assert_eq!(
            transition_on(tz, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()),
            Some(utc("2026-03-08T10:00:00Z"))
        );
        assert_eq!(
            transition_on(tz, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            Some(utc("2026-11-01T09:00:00Z"))
        );
        assert_eq!(
            transition_on(tz, NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()),
            None
        );
    }
}
