//! The state machine of one passive heartbeat check (healthchecks.io style): given its
//! schedule, its grace time and the pings its job sends, when the next deadline is and
//! what happened. Pure: every function takes `now`; the agent's evaluator carries out the
//! verdicts (runs to judge) and sleeps until `next_deadline`.
//!
//! Deadlines: `every: P` expects a ping within P of the previous one; `cron` expects one
//! at each fire time of the job's own schedule (the first fire after the previous ping),
//! in its time zone, with the scheduler's DST rule (`next_fire`). A deadline passed is
//! `late`; passed by more than the grace time it is `down` and a `Missed` verdict comes
//! out, once per deadline. A check never pinged (`new`) counts from when the agent first
//! watched it, so a job that was never wired up is caught at its first deadline too.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::next_fire;
use crate::model::Schedule;

/// The most deadlines skipped over in one step (an agent down for a year over a check
/// every second): past it the next deadline is simply counted from `now`.
const MAX_SKIPPED: u32 = 100_000;

/// What a check expects: its schedule and grace time.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    pub schedule: &'a Schedule,
    pub grace: Duration,
}

impl Timing<'_> {
    /// The deadline after `after`: `after + every`, or the cron schedule's next fire.
    pub fn due_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.schedule {
            Schedule::Every(p) => Some(after + chrono::Duration::from_std(*p).ok()?),
            Schedule::Cron { .. } => next_fire(self.schedule, Duration::ZERO, after),
        }
    }

    fn grace(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX)
    }
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// `/ping/NAME/start`: the job began.
    Start,
    /// `/ping/NAME` (or `/0`): the job finished well.
    Success,
    /// `/ping/NAME/fail`.
    Fail,
    /// `/ping/NAME/CODE`: the job's exit status (0 is a success).
    Exit(u8),
}

/// The state of a check as shown (`status`, the status page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Never pinged, its first deadline not yet passed.
    New,
    /// Pinged in time.
    Up,
    /// Its deadline passed, still within grace.
    Late,
    /// Past deadline and grace, or the job reported failure.
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Up => "up",
            Status::Late => "late",
            Status::Down => "down",
        }
    }
}

/// What happened, for the agent to turn into a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The job reported success at `at`; `started` is its matching `/start`, if any.
    Success {
        at: DateTime<Utc>,
        started: Option<DateTime<Utc>>,
    },
    /// The job reported failure (`/fail`: `exit` none; else its non-zero status).
    Failed {
        at: DateTime<Utc>,
        started: Option<DateTime<Utc>>,
        exit: Option<u8>,
    },
    /// No success by `due` + grace (declared at `at`); `skipped` more deadlines passed
    /// unpinged as well (an agent that was down meanwhile).
    Missed {
        due: DateTime<Utc>,
        at: DateTime<Utc>,
        last_ping: Option<DateTime<Utc>>,
        skipped: u32,
    },
    /// A `/start` at `started` without a finish within grace.
    Unfinished {
        started: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

/// How a check's last run ended, read back from the store at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastRun {
    /// A success ping at this instant.
    Success(DateTime<Utc>),
    /// A failure reported at this instant.
    Failed(DateTime<Utc>),
    /// A deadline (this instant) missed.
    Missed(DateTime<Utc>),
}

/// One check's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// `New`, `Up` or `Down` (`Late` is read off the clock by `status`).
    settled: Status,
    /// The last success or failure ping.
    last_ping: Option<DateTime<Utc>>,
    /// A `/start` waiting for its finish.
    started: Option<DateTime<Utc>>,
    /// The next deadline; `None` only for a schedule with no future fire.
    due: Option<DateTime<Utc>>,
}

impl CheckState {
    /// A check first watched at `now`: new, its first deadline counted from now.
    pub fn new(t: Timing<'_>, now: DateTime<Utc>) -> CheckState {
        CheckState {
            settled: Status::New,
            last_ping: None,
            started: None,
            due: t.due_after(now),
        }
    }

    /// A check whose last run was `last` (none: never pinged), watched again from `now`.
    /// A deadline that passed meanwhile is declared missed at the first `tick`.
    pub fn restore(t: Timing<'_>, last: Option<LastRun>, now: DateTime<Utc>) -> CheckState {
        match last {
            None => CheckState::new(t, now),
            Some(LastRun::Success(at)) => CheckState {
                settled: Status::Up,
                last_ping: Some(at),
                started: None,
                due: t.due_after(at),
            },
            Some(LastRun::Failed(at)) => CheckState {
                settled: Status::Down,
                last_ping: Some(at),
                started: None,
                due: t.due_after(at),
            },
            Some(LastRun::Missed(due)) => CheckState {
                settled: Status::Down,
                last_ping: None,
                started: None,
                due: t.due_after(due),
            },
        }
    }

    /// The state moved to a new definition (a reload): what was seen stays, the next
    /// deadline is counted afresh from the last ping (or from `now`).
    pub fn reschedule(&mut self, t: Timing<'_>, now: DateTime<Utc>) {
        self.due = t.due_after(self.last_ping.unwrap_or(now));
    }

    pub fn status(&self, now: DateTime<Utc>) -> Status {
        match (self.settled, self.due) {
            (Status::New | Status::Up, Some(due)) if now > due => Status::Late,
            (s, _) => s,
        }
    }

    /// A `/start` is waiting for its finish.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        self.started
    }

    pub fn last_ping(&self) -> Option<DateTime<Utc>> {
        self.last_ping
    }

    /// The next deadline (a ping is due by then; the check is down after it + grace).
    pub fn due(&self) -> Option<DateTime<Utc>> {
        self.due
    }

    /// When `tick` next has something to say: the deadline plus grace, or a `/start`'s
    /// grace running out, whichever is first.
    pub fn next_deadline(&self, t: Timing<'_>) -> Option<DateTime<Utc>> {
        let g = t.grace();
        let due = self.due.and_then(|d| d.checked_add_signed(g));
        let started = self.started.and_then(|s| s.checked_add_signed(g));
        match (due, started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A ping arrived at `now`.
    pub fn ping(&mut self, t: Timing<'_>, kind: PingKind, now: DateTime<Utc>) -> Option<Verdict> {
        let started = self.started.take();
        let verdict = match kind {
            PingKind::Start => {
                self.started = Some(now);
                return None;
            }
            PingKind::Success | PingKind::Exit(0) => {
                self.settled = Status::Up;
                Verdict::Success { at: now, started }
            }
            PingKind::Fail => {
                self.settled = Status::Down;
                Verdict::Failed {
                    at: now,
                    started,
                    exit: None,
                }
            }
            PingKind::Exit(code) => {
                self.settled = Status::Down;
                Verdict::Failed {
                    at: now,
                    started,
                    exit: Some(code),
                }
            }
        };
        self.last_ping = Some(now);
        self.due = t.due_after(now);
        Some(verdict)
    }

    /// What the clock alone says at `now`: a deadline or a `/start` whose grace ran out.
    pub fn tick(&mut self, t: Timing<'_>, now: DateTime<Utc>) -> Vec<Verdict> {
        let mut out = Vec::new();
        let g = t.grace();
        if let Some(s) = self.started
            && s.checked_add_signed(g).is_some_and(|end| now >= end)
        {
            self.started = None;
            self.settled = Status::Down;
            out.push(Verdict::Unfinished {
                started: s,
                at: now,
            });
        }
        if let Some(due) = self.due
            && due.checked_add_signed(g).is_some_and(|end| now >= end)
        {
            // The next deadline that has not run out yet; those in between are counted.
            let mut next = t.due_after(due);
            let mut skipped = 0;
            while let Some(n) = next {
                if n.checked_add_signed(g).is_none_or(|end| end > now) {
                    break;
                }
                skipped += 1;
                if skipped >= MAX_SKIPPED {
                    next = t.due_after(now);
                    break;
                }
                next = t.due_after(n);
            }
            self.settled = Status::Down;
            self.due = next;
            out.push(Verdict::Missed {
                due,
                at: now,
                last_ping: self.last_ping,
                skipped,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::str::FromStr;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn every(secs: u64) -> Schedule {
        Schedule::Every(Duration::from_secs(secs))
    }

    fn cron(expr: &str, tz: chrono_tz::Tz) -> Schedule {
        Schedule::Cron {
            expr: expr.into(),
            schedule: Box::new(cron::Schedule::from_str(expr).unwrap()),
            timezone: tz,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const TORONTO: chrono_tz::Tz = chrono_tz::America::Toronto;

    /// Nightly at 02:00 Toronto time, an hour's grace: the bundled price-file import.
    fn nightly() -> Schedule {
        cron("0 0 2 * * *", TORONTO)
    }

    fn toronto(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        crate::clock::resolve_local(
            &TORONTO,
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn an_interval_check_is_up_then_late_then_down_once() {
        let s = every(60);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(30),
        };
        let t0 = at("2026-12-04T10:00:00Z");
        let mut c = CheckState::new(t, t0);
        assert_eq!(c.status(t0), Status::New);
        let p = t0 + chrono::Duration::seconds(10);
        assert_eq!(
            c.ping(t, PingKind::Success, p),
            Some(Verdict::Success {
                at: p,
                started: None
            })
        );
        assert_eq!(c.status(p), Status::Up);
        assert_eq!(c.due(), Some(p + chrono::Duration::seconds(60)));
        assert_eq!(c.next_deadline(t), Some(p + chrono::Duration::seconds(90)));
        // Past the deadline, within grace: late, nothing to say yet.
        let late = p + chrono::Duration::seconds(75);
        assert!(c.tick(t, late).is_empty());
        assert_eq!(c.status(late), Status::Late);
        // Past grace: down, one verdict, then quiet until the next deadline runs out.
        let down = p + chrono::Duration::seconds(90);
        assert_eq!(
            c.tick(t, down),
            [Verdict::Missed {
                due: p + chrono::Duration::seconds(60),
                at: down,
                last_ping: Some(p),
                skipped: 0
            }]
        );
        assert_eq!(c.status(down), Status::Down);
        assert!(c.tick(t, down + chrono::Duration::seconds(5)).is_empty());
        // Still nothing a period later: the next deadline is missed too.
        let again = p + chrono::Duration::seconds(150);
        assert_eq!(c.tick(t, again).len(), 1);
        // A ping brings it back up.
        let back = again + chrono::Duration::seconds(1);
        assert!(matches!(
            c.ping(t, PingKind::Success, back),
            Some(Verdict::Success { .. })
        ));
        assert_eq!(c.status(back), Status::Up);
    }

    #[test]
    fn a_check_never_pinged_goes_down_at_its_first_deadline() {
        let s = every(3600);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(600),
        };
        let t0 = at("2026-12-04T10:00:00Z");
        let mut c = CheckState::new(t, t0);
        assert!(c.tick(t, at("2026-12-04T11:09:59Z")).is_empty());
        assert_eq!(c.status(at("2026-12-04T11:05:00Z")), Status::Late);
        let v = c.tick(t, at("2026-12-04T11:10:00Z"));
        assert!(
            matches!(
                v[..],
                [Verdict::Missed {
                    last_ping: None,
                    ..
                }]
            ),
            "{v:?}"
        );
    }

    #[test]
    fn start_then_success_measures_the_job_and_a_start_alone_runs_out() {
        let s = every(3600);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(300),
        };
        let t0 = at("2026-12-04T02:00:00Z");
        let mut c = CheckState::new(t, t0);
        assert_eq!(c.ping(t, PingKind::Start, t0), None);
        assert_eq!(c.started(), Some(t0));
        let done = t0 + chrono::Duration::seconds(125);
        assert_eq!(
            c.ping(t, PingKind::Success, done),
            Some(Verdict::Success {
                at: done,
                started: Some(t0)
            })
        );
        assert_eq!(c.started(), None);
        // A start with no finish: down once its grace is over, before the deadline.
        let s2 = done + chrono::Duration::seconds(600);
        c.ping(t, PingKind::Start, s2);
        assert_eq!(
            c.next_deadline(t),
            Some(s2 + chrono::Duration::seconds(300))
        );
        assert!(c.tick(t, s2 + chrono::Duration::seconds(299)).is_empty());
        assert_eq!(
            c.tick(t, s2 + chrono::Duration::seconds(300)),
            [Verdict::Unfinished {
                started: s2,
                at: s2 + chrono::Duration::seconds(300)
            }]
        );
        assert_eq!(c.status(s2 + chrono::Duration::seconds(301)), Status::Down);
        // Its success later has no start to measure from any more.
        let late = s2 + chrono::Duration::seconds(400);
        assert_eq!(
            c.ping(t, PingKind::Success, late),
            Some(Verdict::Success {
                at: late,
                started: None
            })
        );
    }

    #[test]
    fn fail_and_non_zero_exit_codes_are_failures_and_zero_is_a_success() {
        let s = every(3600);
        let t = Timing {
            schedule: &s,
            grace: HOUR,
        };
        let t0 = at("2026-12-04T02:00:00Z");
        let mut c = CheckState::new(t, t0);
        c.ping(t, PingKind::Start, t0);
        let t1 = t0 + chrono::Duration::seconds(5);
        assert_eq!(
            c.ping(t, PingKind::Fail, t1),
            Some(Verdict::Failed {
                at: t1,
                started: Some(t0),
                exit: None
            })
        );
        assert_eq!(c.status(t1), Status::Down);
        // The deadline counts from the failure: the job did run.
        assert_eq!(c.due(), Some(t1 + chrono::Duration::seconds(3600)));
        assert_eq!(
            c.ping(t, PingKind::Exit(3), t1),
            Some(Verdict::Failed {
                at: t1,
                started: None,
                exit: Some(3)
            })
        );
        assert!(matches!(
            c.ping(t, PingKind::Exit(0), t1),
            Some(Verdict::Success { .. })
        ));
        assert_eq!(c.status(t1), Status::Up);
    }

    #[test]
    fn a_nightly_cron_expects_the_next_fire_after_the_last_ping_plus_grace() {
        let s = nightly();
        let t = Timing {
            schedule: &s,
            grace: HOUR,
        };
        // The job pinged at 02:20 on Thursday; Friday's run is due at 02:00, down at 03:00.
        let ping = toronto(2026, 12, 3, 2, 20);
        let mut c = CheckState::restore(t, Some(LastRun::Success(ping)), ping);
        assert_eq!(c.due(), Some(toronto(2026, 12, 4, 2, 0)));
        assert_eq!(c.next_deadline(t), Some(toronto(2026, 12, 4, 3, 0)));
        assert_eq!(c.status(toronto(2026, 12, 4, 2, 30)), Status::Late);
        // A ping at 02:45 (late, within grace) is a success; the next deadline is Saturday.
        let v = c.ping(t, PingKind::Success, toronto(2026, 12, 4, 2, 45));
        assert!(matches!(v, Some(Verdict::Success { .. })));
        assert!(c.tick(t, toronto(2026, 12, 4, 3, 0)).is_empty());
        assert_eq!(c.due(), Some(toronto(2026, 12, 5, 2, 0)));
    }

    #[test]
    fn spring_forward_in_toronto_the_02_00_that_does_not_exist_is_due_at_03_00_edt() {
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT; 02:00 never happens.
        let s = nightly();
        let t = Timing {
            schedule: &s,
            grace: HOUR,
        };
        let ping = toronto(2026, 3, 7, 2, 10); // 07:10 UTC (EST)
        assert_eq!(ping, Utc.with_ymd_and_hms(2026, 3, 7, 7, 10, 0).unwrap());
        let mut c = CheckState::restore(t, Some(LastRun::Success(ping)), ping);
        let due = Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap(); // 03:00 EDT
        assert_eq!(c.due(), Some(due));
        assert_eq!(
            c.next_deadline(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 8, 8, 0, 0).unwrap())
        );
        assert!(c.tick(t, due + chrono::Duration::minutes(59)).is_empty());
        let v = c.tick(t, due + chrono::Duration::minutes(60));
        assert!(matches!(v[..], [Verdict::Missed { due: d, .. }] if d == due));
        // The next night is 02:00 EDT again: 06:00 UTC, 23 h after the missed one.
        assert_eq!(
            c.due(),
            Some(Utc.with_ymd_and_hms(2026, 3, 9, 6, 0, 0).unwrap())
        );
    }

    #[test]
    fn fall_back_in_toronto_the_repeated_hour_is_due_once_at_its_first_occurrence() {
        // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST; 01:00–02:00 happens twice.
        let s = cron("0 30 1 * * *", TORONTO);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(1800),
        };
        let ping = Utc.with_ymd_and_hms(2026, 10, 31, 5, 40, 0).unwrap(); // 01:40 EDT
        let mut c = CheckState::restore(t, Some(LastRun::Success(ping)), ping);
        let first = Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap(); // 01:30 EDT
        assert_eq!(c.due(), Some(first));
        // The job pings during the first 01:30: nothing is due at the second 01:30 EST.
        c.ping(t, PingKind::Success, first + chrono::Duration::minutes(5));
        assert_eq!(
            c.due(),
            Some(Utc.with_ymd_and_hms(2026, 11, 2, 6, 30, 0).unwrap())
        );
        assert!(
            c.tick(t, Utc.with_ymd_and_hms(2026, 11, 1, 7, 30, 0).unwrap())
                .is_empty()
        );
        // And the nightly 02:00 check: the day of the fall-back is 25 hours long.
        let s = nightly();
        let t = Timing {
            schedule: &s,
            grace: HOUR,
        };
        let ping = toronto(2026, 10, 31, 2, 0); // 06:00 UTC (EDT)
        let c = CheckState::restore(t, Some(LastRun::Success(ping)), ping);
        let due = Utc.with_ymd_and_hms(2026, 11, 1, 7, 0, 0).unwrap(); // 02:00 EST
        assert_eq!(c.due(), Some(due));
        assert_eq!(due - ping, chrono::Duration::hours(25));
        assert_eq!(c.next_deadline(t), Some(due + chrono::Duration::hours(1)));
    }

    #[test]
    fn deadlines_missed_while_the_agent_was_down_are_one_verdict() {
        let s = every(60);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(10),
        };
        let ping = at("2026-12-04T10:00:00Z");
        let now = at("2026-12-04T11:00:05Z");
        let mut c = CheckState::restore(t, Some(LastRun::Success(ping)), now);
        let v = c.tick(t, now);
        assert_eq!(
            v,
            [Verdict::Missed {
                due: at("2026-12-04T10:01:00Z"),
                at: now,
                last_ping: Some(ping),
                skipped: 58
            }]
        );
        // The next deadline is the one still ahead (11:00 + 10 s grace).
        assert_eq!(c.due(), Some(at("2026-12-04T11:00:00Z")));
        assert!(c.tick(t, now).is_empty());
    }

    #[test]
    fn a_restored_failure_or_miss_is_down_and_a_reschedule_keeps_the_last_ping() {
        let s = every(60);
        let t = Timing {
            schedule: &s,
            grace: Duration::from_secs(10),
        };
        let now = at("2026-12-04T10:00:00Z");
        let c = CheckState::restore(t, Some(LastRun::Failed(now)), now);
        assert_eq!(c.status(now), Status::Down);
        let missed = at("2026-12-04T09:59:00Z");
        let c = CheckState::restore(t, Some(LastRun::Missed(missed)), now);
        assert_eq!(c.status(now), Status::Down);
        assert_eq!(c.due(), Some(at("2026-12-04T10:00:00Z")));
        let mut c = CheckState::restore(t, Some(LastRun::Success(now)), now);
        let longer = every(600);
        c.reschedule(
            Timing {
                schedule: &longer,
                grace: Duration::from_secs(10),
            },
            now + chrono::Duration::seconds(30),
        );
        assert_eq!(c.due(), Some(at("2026-12-04T10:10:00Z")));
        assert_eq!(c.last_ping(), Some(now));
    }
}
