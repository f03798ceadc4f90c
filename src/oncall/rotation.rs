//! Rotations: whose turn it is, overrides on top, restrictions and fallback around it.
//!
//! Handoff N happens at local date `first + N × days` at the handoff time, resolved by the
//! DST rule, so a 09:00 handoff stays 09:00 on the wall clock and the shift across a DST
//! change is an hour shorter or longer. Everything else is spans: the state (who and
//! why) is constant between boundaries (handoffs, restriction flips, override edges), so a
//! span is found by walking boundaries until the state changes.

use chrono::{DateTime, Datelike, Days, Duration, NaiveDate, Utc};

use super::window::{next_flip, prev_flip, rules_active};
use super::{OnCallNow, Shift, Via, horizon, plus};
use crate::clock::resolve_local;
use crate::model::{Handoff, OnCall, Rotation, Target};

/// How many rotations deep a fallback chain is followed (config refuses cycles; this
/// keeps a hand-built `OnCall` from looping).
const MAX_FALLBACK_DEPTH: u32 = 4;

/// Who is on call in `rotation` at `at`: the member whose turn it is, an override, or
/// the fallback when it is a contact. `None` when nobody is (before the start, outside
/// the restrictions) and the fallback is not a contact: `who_with` follows a fallback
/// rotation.
pub fn who(rotation: &Rotation, at: DateTime<Utc>) -> Option<OnCallNow> {
    resolve(None, rotation, 0, at, 0).people.into_iter().next()
}

/// Whom `target` reaches at `at`: a contact is itself; a rotation with `offset` N is the
/// member N turns after the current one (overrides apply to offset 0 only). When the
/// rotation has nobody, its fallback is followed, rotations included (up to 4 deep).
/// A contact named directly is returned as `Via::Rotation`, spanning `HORIZON_DAYS`
/// either side. Empty: nobody is reachable (or the rotation does not exist).
pub fn who_with(oncall: &OnCall, target: &Target, at: DateTime<Utc>) -> Vec<OnCallNow> {
    match target {
        Target::Contact(c) => vec![OnCallNow {
            contact: c.clone(),
            shift_start: plus(at, -horizon()),
            shift_end: plus(at, horizon()),
            via: Via::Rotation,
        }],
        Target::Rotation { name, offset } => oncall
            .rotation(name)
            .map(|r| resolve(Some(oncall), r, *offset, at, 0).people)
            .unwrap_or_default(),
    }
}

/// The shifts of `rotation` that overlap `[from, to)`, in order, with their real bounds
/// (the first may begin before `from`): turns split by restrictions and overrides,
/// overrides marked, a contact fallback included. A fallback rotation's people are not
/// (see `coverage`).
pub fn shifts(rotation: &Rotation, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
    timeline(None, rotation, from, to).0
}

/// Like `shifts`, with fallback rotations followed: everyone a page to this rotation
/// reaches over `[from, to)`.
pub fn coverage(
    oncall: &OnCall,
    rotation: &Rotation,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Shift> {
    timeline(Some(oncall), rotation, from, to).0
}

/// The spans within `[from, to)` where a page to `rotation` reaches nobody at all,
/// fallbacks considered; clipped to `[from, to)`, adjacent spans merged.
pub fn gaps(
    oncall: &OnCall,
    rotation: &Rotation,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    timeline(Some(oncall), rotation, from, to).1
}

/// What decides who is on call; a span is where it stays the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The override at this index of `rotation.overrides`.
    Override(usize),
    /// Shift number N's member (at the offset asked for).
    Member(u64),
    /// Before the start or outside the restrictions.
    Nobody,
}

/// People reached and the span over which that answer holds.
struct Resolved {
    people: Vec<OnCallNow>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn resolve(
    oncall: Option<&OnCall>,
    rot: &Rotation,
    offset: u32,
    at: DateTime<Utc>,
    depth: u32,
) -> Resolved {
    let (state, start, end) = span(rot, offset, at);
    let person = |contact: &str, via: Via| OnCallNow {
        contact: contact.to_string(),
        shift_start: start,
        shift_end: end,
        via,
    };
    let people = match state {
        State::Override(i) => rot
            .overrides
            .get(i)
            .map(|o| {
                person(
                    &o.who,
                    Via::Override {
                        note: o.note.clone(),
                    },
                )
            })
            .into_iter()
            .collect(),
        State::Member(n) => member(rot, n, offset)
            .map(|m| person(m, Via::Rotation))
            .into_iter()
            .collect(),
        State::Nobody => match &rot.fallback {
            None => Vec::new(),
            Some(Target::Contact(c)) => vec![person(c, Via::Fallback)],
            Some(Target::Rotation { name, offset }) => {
                let next = oncall
                    .filter(|_| depth < MAX_FALLBACK_DEPTH)
                    .and_then(|o| o.rotation(name));
                let Some(next) = next else {
                    return Resolved {
                        people: Vec::new(),
                        start,
                        end,
                    };
                };
                let r = resolve(oncall, next, *offset, at, depth + 1);
                let (start, end) = (start.max(r.start), end.min(r.end));
                let people = r
                    .people
                    .into_iter()
                    .map(|p| OnCallNow {
                        shift_start: start,
                        shift_end: end,
                        via: Via::Fallback,
                        ..p
                    })
                    .collect();
                return Resolved { people, start, end };
            }
        },
    };
    Resolved { people, start, end }
}

/// Shifts and gaps over `[from, to)`, by stepping from one span to the next.
type Timeline = (Vec<Shift>, Vec<(DateTime<Utc>, DateTime<Utc>)>);

fn timeline(
    oncall: Option<&OnCall>,
    rot: &Rotation,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Timeline {
    let (mut shifts, mut gaps): Timeline = (Vec::new(), Vec::new());
    let mut t = from;
    while t < to {
        let r = resolve(oncall, rot, 0, t, 0);
        if r.people.is_empty() {
            let (s, e) = (r.start.max(from), r.end.min(to));
            match gaps.last_mut() {
                Some((_, last_end)) if *last_end == s => *last_end = e,
                _ => gaps.push((s, e)),
            }
        }
        shifts.extend(r.people.into_iter().map(|p| Shift {
            contact: p.contact,
            start: p.shift_start,
            end: p.shift_end,
            via: p.via,
        }));
        if r.end <= t {
            break;
        }
        t = r.end;
    }
    (shifts, gaps)
}

/// The state at `at` and the span `[start, end)` over which it holds (cut at the horizon).
fn span(rot: &Rotation, offset: u32, at: DateTime<Utc>) -> (State, DateTime<Utc>, DateTime<Utc>) {
    let state = state_at(rot, offset, at);
    let (lo, hi) = (plus(at, -horizon()), plus(at, horizon()));
    let mut end = hi;
    let mut t = at;
    while let Some(b) = next_boundary(rot, t, hi) {
        if state_at(rot, offset, b) != state {
            end = b;
            break;
        }
        t = b;
    }
    let mut start = lo;
    let mut t = at;
    let second = Duration::seconds(1);
    while let Some(b) = prev_boundary(rot, t, lo) {
        let before = plus(b, -second);
        if state_at(rot, offset, before) != state {
            start = b;
            break;
        }
        t = before;
    }
    (state, start, end)
}

fn state_at(rot: &Rotation, offset: u32, t: DateTime<Utc>) -> State {
    let covered = rot.restrictions.is_empty() || rules_active(&rot.restrictions, rot.timezone, t);
    let base = shift_index(rot, t).filter(|_| covered);
    if offset == 0 {
        let applies = |o: &&crate::model::Override| {
            o.from <= t
                && t < o.until
                && match &o.replaces {
                    None => true,
                    Some(r) => base.and_then(|n| member(rot, n, 0)) == Some(r.as_str()),
                }
        };
        if let Some(i) = rot.overrides.iter().rposition(|o| applies(&o)) {
            return State::Override(i);
        }
    }
    base.map_or(State::Nobody, State::Member)
}

fn member(rot: &Rotation, shift: u64, offset: u32) -> Option<&str> {
    let len = rot.members.len() as u64;
    if len == 0 {
        return None;
    }
    let i = (shift % len + u64::from(offset) % len) % len;
    rot.members.get(i as usize).map(String::as_str)
}

/// The local date of the first handoff: the start, or for a weekly handoff the first
/// `on` weekday on or after it.
fn first_day(rot: &Rotation) -> NaiveDate {
    match rot.handoff {
        Handoff::Weekly { on, .. } => {
            let ahead =
                (7 + on.num_days_from_monday() - rot.start.weekday().num_days_from_monday()) % 7;
            rot.start
                .checked_add_days(Days::new(u64::from(ahead)))
                .unwrap_or(rot.start)
        }
        Handoff::Daily { .. } | Handoff::EveryDays { .. } => rot.start,
    }
}

/// Handoff N (the start of shift N) as an instant.
fn handoff(rot: &Rotation, n: i64) -> Option<DateTime<Utc>> {
    let days = u64::try_from(n)
        .ok()?
        .checked_mul(u64::from(rot.handoff.days()))?;
    let date = first_day(rot).checked_add_days(Days::new(days))?;
    resolve_local(&rot.timezone, date.and_time(rot.handoff.at()))
}

/// N with handoff N ≤ t < handoff N+1; `None` before the first handoff.
fn shift_index(rot: &Rotation, t: DateTime<Utc>) -> Option<u64> {
    let local = t.with_timezone(&rot.timezone).date_naive();
    let days = i64::from(rot.handoff.days());
    let mut n = (local - first_day(rot)).num_days().div_euclid(days);
    // The estimate from the local date is off by at most one (the time of day).
    for _ in 0..3 {
        match handoff(rot, n) {
            Some(h) if h > t => n -= 1,
            _ => break,
        }
    }
    for _ in 0..3 {
        match handoff(rot, n + 1) {
            Some(h) if h <= t => n += 1,
            _ => break,
        }
    }
    let start = handoff(rot, n)?;
    (start <= t)
        .then_some(n)
        .and_then(|n| u64::try_from(n).ok())
}

/// The first instant after `t` (up to `limit`) where the state may change.
fn next_boundary(rot: &Rotation, t: DateTime<Utc>, limit: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next_handoff = match shift_index(rot, t) {
        Some(n) => i64::try_from(n).ok().and_then(|n| handoff(rot, n + 1)),
        None => handoff(rot, 0).filter(|h| *h > t),
    };
    let flip = if rot.restrictions.is_empty() {
        None
    } else {
        next_flip(&rot.restrictions, rot.timezone, t, limit)
    };
    let edges = rot
        .overrides
        .iter()
        .flat_map(|o| [o.from, o.until])
        .filter(|e| *e > t);
    next_handoff
        .into_iter()
        .chain(flip)
        .chain(edges)
        .filter(|b| *b <= limit)
        .min()
}

/// The last instant at or before `t` (down to `limit`) where the state may change.
fn prev_boundary(rot: &Rotation, t: DateTime<Utc>, limit: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let this_handoff = shift_index(rot, t).and_then(|n| handoff(rot, i64::try_from(n).ok()?));
    let flip = if rot.restrictions.is_empty() {
        None
    } else {
        prev_flip(&rot.restrictions, rot.timezone, t, limit)
    };
    let edges = rot
        .overrides
        .iter()
        .flat_map(|o| [o.from, o.until])
        .filter(|e| *e <= t);
    this_handoff
        .into_iter()
        .chain(flip)
        .chain(edges)
        .filter(|b| *b > limit)
        .max()
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, TimeZone, Timelike, Weekday};
    use chrono_tz::America::{Toronto, Vancouver};
    use chrono_tz::Tz;

    use super::*;
    use crate::model::{Override, WindowRule};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hhmm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rotation(tz: Tz, handoff: Handoff, start: &str, members: &[&str]) -> Rotation {
        Rotation {
            name: "desk".into(),
            timezone: tz,
            members: members.iter().map(|m| m.to_string()).collect(),
            handoff,
            start: date(start),
            restrictions: Vec::new(),
            fallback: None,
            overrides: Vec::new(),
        }
    }

    fn weekly(tz: Tz) -> Rotation {
        rotation(
            tz,
            Handoff::Weekly {
                on: Weekday::Mon,
                at: hhmm(9, 0),
            },
            "2026-01-05",
            &["Maria Lopez", "Dev Patel"],
        )
    }

    fn daily(tz: Tz, at: NaiveTime, start: &str) -> Rotation {
        rotation(
            tz,
            Handoff::Daily { at },
            start,
            &["Maria Lopez", "Dev Patel"],
        )
    }

    fn hours(s: &Shift) -> i64 {
        (s.end - s.start).num_hours()
    }

    /// Local `YYYY-MM-DD HH:MM` in Toronto as an instant (unambiguous times only).
    fn toronto(s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        Toronto
            .from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn override_(who: &str, from: &str, until: &str, replaces: Option<&str>) -> Override {
        Override {
            who: who.into(),
            replaces: replaces.map(str::to_string),
            from: toronto(from),
            until: toronto(until),
            note: Some(format!("{who} covers")),
        }
    }

    #[test]
    fn a_weekly_0900_handoff_keeps_local_time_across_both_dst_changes() {
        for (tz, spring, fall) in [
            (
                Toronto,
                ("2026-03-02T14:00:00Z", "2026-03-09T13:00:00Z"),
                ("2026-10-26T13:00:00Z", "2026-11-02T14:00:00Z"),
            ),
            (
                Vancouver,
                ("2026-03-02T17:00:00Z", "2026-03-09T16:00:00Z"),
                ("2026-10-26T16:00:00Z", "2026-11-02T17:00:00Z"),
            ),
        ] {
            let r = weekly(tz);
            // Sunday noon UTC of each change: inside the shift that spans the night.
            let now = who(&r, utc("2026-03-08T12:00:00Z")).unwrap();
            assert_eq!(
                (now.shift_start, now.shift_end),
                (utc(spring.0), utc(spring.1)),
                "{tz}"
            );
            assert_eq!((now.shift_end - now.shift_start).num_hours(), 167, "{tz}");
            assert_eq!(now.contact, "Maria Lopez", "week 8 is members[0]");
            assert_eq!(now.via, Via::Rotation);
            let now = who(&r, utc("2026-11-01T12:00:00Z")).unwrap();
            assert_eq!(
                (now.shift_start, now.shift_end),
                (utc(fall.0), utc(fall.1)),
                "{tz}"
            );
            assert_eq!((now.shift_end - now.shift_start).num_hours(), 169, "{tz}");
            // Every handoff of the year is at 09:00 on the wall clock, on a Monday.
            let all = shifts(&r, utc("2026-01-05T20:00:00Z"), utc("2027-01-04T00:00:00Z"));
            assert_eq!(all.len(), 52);
            for s in &all {
                let local = s.start.with_timezone(&tz);
                assert_eq!(
                    (local.hour(), local.minute(), local.weekday()),
                    (9, 0, Weekday::Mon)
                );
                assert!([167, 168, 169].contains(&hours(s)), "{s:?}");
            }
            assert_eq!(all.iter().filter(|s| hours(s) != 168).count(), 2);
            // Turns alternate.
            assert!(
                all.windows(2)
                    .all(|w| w[0].contact != w[1].contact && w[0].end == w[1].start)
            );
        }
    }

    #[test]
    fn a_daily_0900_shift_is_23_hours_in_spring_and_25_in_fall() {
        for (tz, spring, fall) in [
            (
                Toronto,
                ("2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"),
                ("2026-10-31T13:00:00Z", "2026-11-01T14:00:00Z"),
            ),
            (
                Vancouver,
                ("2026-03-07T17:00:00Z", "2026-03-08T16:00:00Z"),
                ("2026-10-31T16:00:00Z", "2026-11-01T17:00:00Z"),
            ),
        ] {
            let r = daily(tz, hhmm(9, 0), "2026-01-01");
            let now = who(&r, utc("2026-03-08T12:00:00Z")).unwrap();
            assert_eq!(
                (now.shift_start, now.shift_end),
                (utc(spring.0), utc(spring.1)),
                "{tz}"
            );
            assert_eq!((now.shift_end - now.shift_start).num_hours(), 23);
            let now = who(&r, utc("2026-11-01T12:00:00Z")).unwrap();
            assert_eq!(
                (now.shift_start, now.shift_end),
                (utc(fall.0), utc(fall.1)),
                "{tz}"
            );
            assert_eq!((now.shift_end - now.shift_start).num_hours(), 25);
        }
    }

    #[test]
    fn a_0230_handoff_on_spring_forward_night_happens_when_the_clocks_reach_0300() {
        let r = daily(Toronto, hhmm(2, 30), "2026-03-01");
        let s = shifts(&r, utc("2026-03-07T00:00:00Z"), utc("2026-03-09T12:00:00Z"));
        let starts: Vec<DateTime<Utc>> = s.iter().map(|s| s.start).collect();
        assert_eq!(
            starts,
            [
                utc("2026-03-06T07:30:00Z"), // 02:30 EST
                utc("2026-03-07T07:30:00Z"), // 02:30 EST
                utc("2026-03-08T07:00:00Z"), // 02:30 does not exist: 03:00 EDT
                utc("2026-03-09T06:30:00Z"), // 02:30 EDT
            ]
        );
        // One handoff that night, neither missing nor doubled, and the turns alternate.
        assert_eq!(s[1].contact, "Maria Lopez");
        assert_eq!(s[2].contact, "Dev Patel");
        assert_eq!((s[1].end - s[1].start).num_minutes(), 23 * 60 + 30);
    }

    #[test]
    fn an_ambiguous_0130_handoff_on_fall_back_night_is_at_its_first_occurrence() {
        let r = daily(Toronto, hhmm(1, 30), "2026-10-01");
        let s = shifts(&r, utc("2026-10-31T12:00:00Z"), utc("2026-11-02T12:00:00Z"));
        let bounds: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            s.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(
            bounds,
            [
                (utc("2026-10-31T05:30:00Z"), utc("2026-11-01T05:30:00Z")),
                // 01:30 EDT, the first of the two; the shift runs 25 h.
                (utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")),
                (utc("2026-11-02T06:30:00Z"), utc("2026-11-03T06:30:00Z")),
            ]
        );
    }

    #[test]
    fn before_the_start_nobody_is_on_call_unless_there_is_a_fallback() {
        let mut r = weekly(Toronto);
        assert_eq!(who(&r, utc("2026-01-05T13:59:00Z")), None);
        assert_eq!(
            who(&r, utc("2026-01-05T14:00:00Z")).map(|n| n.contact),
            Some("Maria Lopez".into())
        );
        r.fallback = Some(Target::Contact("IT Lead".into()));
        let now = who(&r, utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            (now.contact.as_str(), &now.via),
            ("IT Lead", &Via::Fallback)
        );
        assert_eq!(now.shift_end, utc("2026-01-05T14:00:00Z"));
    }

    #[test]
    fn a_weekly_rotation_starting_midweek_begins_on_the_next_handoff_day() {
        let mut r = weekly(Toronto);
        r.start = date("2026-12-02"); // a Wednesday
        assert_eq!(who(&r, toronto("2026-12-03 12:00")), None);
        let first = who(&r, toronto("2026-12-07 09:00")).unwrap();
        assert_eq!(
            (first.contact.as_str(), first.shift_start),
            ("Maria Lopez", toronto("2026-12-07 09:00"))
        );
    }

    /// Maria's weeks start 2026-11-30, 12-14, 12-28; Dev's 12-07, 12-21.
    fn desk() -> Rotation {
        let mut r = weekly(Toronto);
        r.start = date("2026-11-30");
        r
    }

    #[test]
    fn an_override_of_a_whole_shift_takes_its_bounds() {
        let mut r = desk();
        r.overrides = vec![override_(
            "Dev Patel",
            "2026-11-30 09:00",
            "2026-12-07 09:00",
            Some("Maria Lopez"),
        )];
        let now = who(&r, toronto("2026-12-03 12:00")).unwrap();
        assert_eq!(now.contact, "Dev Patel");
        assert_eq!(
            now.via,
            Via::Override {
                note: Some("Dev Patel covers".into())
            }
        );
        assert_eq!(
            (now.shift_start, now.shift_end),
            (toronto("2026-11-30 09:00"), toronto("2026-12-07 09:00"))
        );
    }

    #[test]
    fn a_partial_override_splits_the_shift_and_is_marked() {
        let mut r = desk();
        r.overrides = vec![override_(
            "Dev Patel",
            "2026-12-17 18:00",
            "2026-12-19 09:00",
            Some("Maria Lopez"),
        )];
        let s = shifts(&r, toronto("2026-12-14 09:00"), toronto("2026-12-21 09:00"));
        let rows: Vec<(&str, &str, DateTime<Utc>, DateTime<Utc>)> = s
            .iter()
            .map(|s| (s.contact.as_str(), s.via.as_str(), s.start, s.end))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "Maria Lopez",
                    "rotation",
                    toronto("2026-12-14 09:00"),
                    toronto("2026-12-17 18:00")
                ),
                (
                    "Dev Patel",
                    "override",
                    toronto("2026-12-17 18:00"),
                    toronto("2026-12-19 09:00")
                ),
                (
                    "Maria Lopez",
                    "rotation",
                    toronto("2026-12-19 09:00"),
                    toronto("2026-12-21 09:00")
                ),
            ]
        );
    }

    #[test]
    fn an_override_replacing_someone_not_on_call_has_no_effect() {
        let mut r = desk();
        r.overrides = vec![override_(
            "Sam",
            "2026-12-22 09:00",
            "2026-12-23 09:00",
            Some("Maria Lopez"),
        )];
        let now = who(&r, toronto("2026-12-22 12:00")).unwrap();
        assert_eq!(
            (now.contact.as_str(), &now.via),
            ("Dev Patel", &Via::Rotation)
        );
        assert_eq!(
            (now.shift_start, now.shift_end),
            (toronto("2026-12-21 09:00"), toronto("2026-12-28 09:00"))
        );
    }

    #[test]
    fn the_later_of_two_overlapping_overrides_wins_and_one_may_span_a_handoff() {
        let mut r = desk();
        r.overrides = vec![
            override_("Sam", "2026-12-01 00:00", "2026-12-03 00:00", None),
            override_("Lee", "2026-12-02 00:00", "2026-12-02 12:00", None),
            override_("Ana", "2026-12-06 00:00", "2026-12-08 00:00", None),
        ];
        let at = |s: &str| who(&r, toronto(s)).unwrap();
        assert_eq!(at("2026-12-01 12:00").contact, "Sam");
        let lee = at("2026-12-02 06:00");
        assert_eq!(
            (lee.contact.as_str(), lee.shift_start, lee.shift_end),
            (
                "Lee",
                toronto("2026-12-02 00:00"),
                toronto("2026-12-02 12:00")
            )
        );
        let sam = at("2026-12-02 13:00");
        assert_eq!(
            (sam.contact.as_str(), sam.shift_start, sam.shift_end),
            (
                "Sam",
                toronto("2026-12-02 12:00"),
                toronto("2026-12-03 00:00")
            )
        );
        let ana = at("2026-12-07 12:00");
        assert_eq!(
            (ana.shift_start, ana.shift_end),
            (toronto("2026-12-06 00:00"), toronto("2026-12-08 00:00")),
            "one span across the Monday handoff"
        );
    }

    fn business_hours() -> Vec<WindowRule> {
        vec![WindowRule {
            weekdays: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            times: vec![(8 * 60, 18 * 60)],
            ..Default::default()
        }]
    }

    #[test]
    fn restrictions_hand_the_pager_to_the_fallback_contact_outside_them() {
        let mut r = daily(Toronto, hhmm(9, 0), "2026-11-30");
        r.restrictions = business_hours();
        r.fallback = Some(Target::Contact("IT Lead".into()));
        // Monday 2026-12-07 noon: Dev's day (shift 7), from the 09:00 handoff to 18:00.
        let now = who(&r, toronto("2026-12-07 12:00")).unwrap();
        assert_eq!(
            (now.contact.as_str(), now.shift_start, now.shift_end),
            (
                "Dev Patel",
                toronto("2026-12-07 09:00"),
                toronto("2026-12-07 18:00")
            )
        );
        // The evening: the fallback until 08:00, when Monday's member covers until 09:00.
        let now = who(&r, toronto("2026-12-07 20:00")).unwrap();
        assert_eq!(
            (
                now.contact.as_str(),
                &now.via,
                now.shift_start,
                now.shift_end
            ),
            (
                "IT Lead",
                &Via::Fallback,
                toronto("2026-12-07 18:00"),
                toronto("2026-12-08 08:00")
            )
        );
        let now = who(&r, toronto("2026-12-08 08:30")).unwrap();
        assert_eq!(
            (now.contact.as_str(), now.shift_start, now.shift_end),
            (
                "Dev Patel",
                toronto("2026-12-08 08:00"),
                toronto("2026-12-08 09:00")
            )
        );
        // The weekend is one fallback span, across two handoffs.
        let now = who(&r, toronto("2026-12-12 12:00")).unwrap();
        assert_eq!(
            (now.shift_start, now.shift_end),
            (toronto("2026-12-11 18:00"), toronto("2026-12-14 08:00"))
        );
        // Without a fallback: nobody, and those are the gaps.
        r.fallback = None;
        assert_eq!(who(&r, toronto("2026-12-12 12:00")), None);
        let oncall = OnCall {
            rotations: vec![r.clone()],
            windows: Vec::new(),
        };
        assert_eq!(
            gaps(
                &oncall,
                &r,
                toronto("2026-12-11 00:00"),
                toronto("2026-12-15 00:00")
            ),
            [
                (toronto("2026-12-11 00:00"), toronto("2026-12-11 08:00")),
                (toronto("2026-12-11 18:00"), toronto("2026-12-14 08:00")),
                (toronto("2026-12-14 18:00"), toronto("2026-12-15 00:00")),
            ]
        );
    }

    fn two_rotations() -> OnCall {
        let mut desk = daily(Toronto, hhmm(9, 0), "2026-11-30");
        desk.restrictions = business_hours();
        desk.fallback = Some(Target::Rotation {
            name: "nights".into(),
            offset: 0,
        });
        let mut nights = daily(Toronto, hhmm(18, 0), "2026-11-30");
        nights.name = "nights".into();
        nights.members = vec!["Sam".into(), "Lee".into()];
        OnCall {
            rotations: vec![desk, nights],
            windows: Vec::new(),
        }
    }

    #[test]
    fn a_fallback_rotation_is_followed_by_who_with_not_by_who() {
        let oncall = two_rotations();
        let desk = &oncall.rotations[0];
        let evening = toronto("2026-12-07 20:00");
        assert_eq!(who(desk, evening), None);
        let target = Target::Rotation {
            name: "desk".into(),
            offset: 0,
        };
        let people = who_with(&oncall, &target, evening);
        assert_eq!(people.len(), 1);
        // Nights: shift 7 (Lee) from 18:00; desk has nobody until 08:00: the overlap.
        assert_eq!(
            (
                people[0].contact.as_str(),
                &people[0].via,
                people[0].shift_start,
                people[0].shift_end
            ),
            (
                "Lee",
                &Via::Fallback,
                toronto("2026-12-07 18:00"),
                toronto("2026-12-08 08:00")
            )
        );
        assert!(
            gaps(
                &oncall,
                desk,
                toronto("2026-12-01 00:00"),
                toronto("2026-12-31 00:00")
            )
            .is_empty()
        );
        // In hours, the desk's own member.
        let people = who_with(&oncall, &target, toronto("2026-12-07 12:00"));
        assert_eq!(
            (people[0].contact.as_str(), &people[0].via),
            ("Dev Patel", &Via::Rotation)
        );
        // A contact target is just that contact.
        let people = who_with(&oncall, &Target::Contact("IT Lead".into()), evening);
        assert_eq!(people[0].contact, "IT Lead");
        // An unknown rotation reaches nobody.
        assert!(
            who_with(
                &oncall,
                &Target::Rotation {
                    name: "x".into(),
                    offset: 0
                },
                evening
            )
            .is_empty()
        );
    }

    #[test]
    fn a_fallback_cycle_built_by_hand_stops_at_the_depth_guard() {
        let mut oncall = two_rotations();
        oncall.rotations[1].restrictions = business_hours();
        oncall.rotations[1].fallback = Some(Target::Rotation {
            name: "desk".into(),
            offset: 0,
        });
        let target = Target::Rotation {
            name: "desk".into(),
            offset: 0,
        };
        assert!(who_with(&oncall, &target, toronto("2026-12-12 12:00")).is_empty());
        let desk = &oncall.rotations[0];
        assert_eq!(
            gaps(
                &oncall,
                desk,
                toronto("2026-12-12 00:00"),
                toronto("2026-12-13 00:00")
            ),
            [(toronto("2026-12-12 00:00"), toronto("2026-12-13 00:00"))]
        );
    }

    #[test]
    fn offset_one_is_the_next_member_and_ignores_overrides() {
        let mut r = daily(Toronto, hhmm(9, 0), "2026-11-30");
        r.members = vec!["A".into(), "B".into(), "C".into()];
        r.overrides = vec![override_("Z", "2026-12-01 00:00", "2026-12-02 00:00", None)];
        let oncall = OnCall {
            rotations: vec![r],
            windows: Vec::new(),
        };
        let at = toronto("2026-12-01 12:00"); // shift 1: B, C after
        let primary = who_with(
            &oncall,
            &Target::Rotation {
                name: "desk".into(),
                offset: 0,
            },
            at,
        );
        assert_eq!(primary[0].contact, "Z");
        let secondary = who_with(
            &oncall,
            &Target::Rotation {
                name: "desk".into(),
                offset: 1,
            },
            at,
        );
        assert_eq!(
            (secondary[0].contact.as_str(), secondary[0].shift_start),
            ("C", toronto("2026-12-01 09:00"))
        );
        let third = who_with(
            &oncall,
            &Target::Rotation {
                name: "desk".into(),
                offset: 2,
            },
            at,
        );
        assert_eq!(third[0].contact, "A");
    }

    #[test]
    fn every_days_counts_from_the_start_date() {
        let r = rotation(
            Toronto,
            Handoff::EveryDays {
                days: 3,
                at: hhmm(8, 0),
            },
            "2026-12-01",
            &["A", "B"],
        );
        let s = shifts(&r, toronto("2026-12-01 08:00"), toronto("2026-12-10 08:00"));
        let rows: Vec<(&str, DateTime<Utc>)> =
            s.iter().map(|s| (s.contact.as_str(), s.start)).collect();
        assert_eq!(
            rows,
            [
                ("A", toronto("2026-12-01 08:00")),
                ("B", toronto("2026-12-04 08:00")),
                ("A", toronto("2026-12-07 08:00")),
            ]
        );
    }
}
