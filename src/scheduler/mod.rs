//! When probes run: next fire times for cron (with an IANA time zone and a defined DST
//! rule) and interval schedules, a stable per-probe spread, and the loop that fires runs
//! without letting a probe overlap itself or exceed a global concurrency limit.
//!
//! Pure time arithmetic plus one loop generic over how a run is executed, so it is tested
//! on paused tokio time with an injected clock. It knows nothing of HTTP or storage.
//!
//! DST rule: cron fields match local wall-clock time in the schedule's zone. A local time
//! that does not exist (spring forward) fires once, at the first instant after the gap;
//! a local time that happens twice (fall back) fires once, at its first occurrence.
//! (The `cron` crate alone would skip the first and fire the second twice.)

pub mod heartbeat_check;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::{Clock, resolve_local};
use crate::model::Schedule;

/// Largest spread added to cron fire times (interval schedules spread over their period).
pub const CRON_SPREAD: Duration = Duration::from_secs(30);

/// A stable offset for a probe, from its name: FNV-1a, so it does not change between
/// builds or restarts (std's hasher may).
pub fn spread(name: &str, schedule: &Schedule) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let range = match schedule {
        Schedule::Every(period) => *period,
        Schedule::Cron { .. } => CRON_SPREAD,
    };
    let range_ms = range.as_millis().max(1) as u64;
    Duration::from_millis(h % range_ms)
}

/// The first fire time strictly after `after`, with `offset` (the probe's spread) added.
pub fn next_fire(
    schedule: &Schedule,
    offset: Duration,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let offset = chrono::Duration::from_std(offset).ok()?;
    match schedule {
        Schedule::Every(period) => {
            // Aligned to the Unix epoch, so fire times do not depend on when the agent
            // started, and a restart does not shift them.
            let period_ms = i64::try_from(period.as_millis()).ok()?.max(1);
            let shifted = (after - offset).timestamp_millis();
            let k = shifted.div_euclid(period_ms) + 1;
            let t = DateTime::<Utc>::from_timestamp_millis(k.checked_mul(period_ms)?)?;
            Some(t + offset)
        }
        Schedule::Cron {
            schedule, timezone, ..
        } => {
            let base = after - offset;
            // Iterate candidate local wall times, matching cron fields on the naive
            // local time (expressed as UTC so the cron crate applies no zone of its own).
            let local_after = base.with_timezone(timezone).naive_local();
            let fake = Utc.from_utc_datetime(&local_after);
            for candidate in schedule.after(&fake).take(10_000) {
                let fire = resolve_local(timezone, candidate.naive_utc())?;
                if fire > base {
                    return Some(fire + offset);
                }
            }
            None
        }
    }
}

/// One probe's place in the loop.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schedule: Schedule,
    /// The probe's spread.
    pub offset: Duration,
    /// Run once right at start, for a fire missed while the agent was down (only with
    /// `missed_runs: run-once`); the instant is the missed fire, for the record.
    pub catch_up: Option<DateTime<Utc>>,
    /// Instead of the schedule: the first run at once, each next one this long after the
    /// previous run finished (the demo's back-to-back pacing).
    pub pace: Option<Duration>,
}

pub use crate::model::Fire;

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A run started.
    Started { probe: usize, fire: Fire },
    /// The previous run of this probe was still going: this fire was skipped.
    SkippedOverlap {
        probe: usize,
        scheduled: DateTime<Utc>,
    },
    /// No further fire time exists (a cron expression with a past year).
    Exhausted { probe: usize },
}

/// Fires of `schedule` strictly after `last` and up to `now`: how many (counting at most
/// `cap`) and the latest one counted. What the agent missed while it was down.
pub fn missed_fires(
    schedule: &Schedule,
    offset: Duration,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    cap: usize,
) -> (usize, Option<DateTime<Utc>>) {
    let (mut n, mut latest, mut t) = (0, None, last);
    while n < cap {
        match next_fire(schedule, offset, t) {
            Some(f) if f <= now => {
                n += 1;
                latest = Some(f);
                t = f;
            }
            _ => break,
        }
    }
    (n, latest)
}

/// A change to the plans while the loop runs (a configuration reload).
#[derive(Debug, Clone)]
pub enum Update {
    /// Probe `probe` now follows `plan`: a new index is added, an existing one replaced
    /// (its next fire is computed afresh; a run of it still in flight finishes, and the
    /// replaced probe does not start beside it).
    Set { probe: usize, plan: Plan },
    /// Probe `probe` fires no more (a run in flight finishes).
    Remove { probe: usize },
}

/// The loop's proof of life: the last instant it turned. It turns at least every
/// `TICK`, also with nothing to fire, so a stale heartbeat means a wedged loop.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<std::sync::Mutex<tokio::time::Instant>>);

/// Longest pause between two turns of an idle loop.
pub const TICK: Duration = Duration::from_secs(1);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())))
    }
}

impl Heartbeat {
    fn beat(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = tokio::time::Instant::now();
        }
    }

    /// How long ago the loop last turned.
    pub fn age(&self) -> Duration {
        self.0.lock().map(|t| t.elapsed()).unwrap_or(Duration::MAX)
    }
}

/// How the loop is steered from outside.
pub struct Control {
    /// Turns true to stop: no new fires; returns once in-flight runs have finished.
    pub stop: watch::Receiver<bool>,
    pub updates: mpsc::UnboundedReceiver<Update>,
    pub heartbeat: Heartbeat,
    /// A test hook (debug builds of `rooftop run`, `ROOFTOP_TEST_STALL_SCHEDULER`): this
    /// long after start the loop blocks its thread for good, as a deadlock would.
    pub stall_after: Option<Duration>,
}

impl Control {
    /// A loop steered only by `stop`.
    pub fn stop_only(stop: watch::Receiver<bool>) -> Control {
        let (_, updates) = mpsc::unbounded_channel();
        Control {
            stop,
            updates,
            heartbeat: Heartbeat::default(),
            stall_after: None,
        }
    }
}

/// A probe's place in the loop: its plan (none once removed), the generation that tells
/// its current queue entry from stale ones, and whether a run of it is in flight.
struct Slot {
    plan: Option<Plan>,
    generation: u64,
    busy: Arc<AtomicBool>,
}

/// Runs every plan until `control.stop` turns true. `execute(i, fire)` carries out one
/// run of probe `i`; at most `max_concurrent` run at once. Fires missed while the agent
/// was down are not replayed, except one catch-up run per plan that asks for it.
/// `control.updates` adds, replaces and removes plans while it runs. Returns once
/// in-flight runs have finished.
///
/// One loop and one timer for all probes: a queue ordered by next fire time, so ten
/// thousand idle probes cost a queue entry each, not a task each.
pub async fn run_schedules<E, Fut>(
    plans: Vec<Plan>,
    clock: Arc<dyn Clock>,
    max_concurrent: usize,
    execute: E,
    on_event: Arc<dyn Fn(&Event) + Send + Sync>,
    control: Control,
) where
    E: Fn(usize, Fire) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Control {
        mut stop,
        mut updates,
        heartbeat,
        stall_after,
    } = control;
    let started_at = tokio::time::Instant::now();
    let execute = Arc::new(execute);
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut slots: Vec<Slot> = Vec::with_capacity(plans.len());
    let mut runs: JoinSet<usize> = JoinSet::new();
    // Starts one run of probe `i` unless its previous run is still going.
    let start = |runs: &mut JoinSet<usize>,
                 slot: &Slot,
                 i: usize,
                 scheduled: DateTime<Utc>,
                 catch_up: Option<DateTime<Utc>>| {
        if slot.busy.swap(true, Ordering::SeqCst) {
            on_event(&Event::SkippedOverlap {
                probe: i,
                scheduled,
            });
            return;
        }
        let (execute, permits, on_event, busy, clock) = (
            execute.clone(),
            permits.clone(),
            on_event.clone(),
            slot.busy.clone(),
            clock.clone(),
        );
        runs.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return i;
            };
            let lag = (clock.now() - scheduled).to_std().unwrap_or(Duration::ZERO);
            let fire = Fire {
                scheduled,
                lag,
                catch_up,
            };
            on_event(&Event::Started { probe: i, fire });
            execute(i, fire).await;
            busy.store(false, Ordering::SeqCst);
            i
        });
    };
    // Queues the first fire of a (new) plan, or says it has none.
    let first = |queue: &mut BinaryHeap<Reverse<(DateTime<Utc>, usize, u64)>>,
                 slot: &Slot,
                 i: usize,
                 now: DateTime<Utc>| {
        let Some(plan) = &slot.plan else { return };
        if plan.pace.is_some() {
            queue.push(Reverse((now, i, slot.generation)));
            return;
        }
        match next_fire(&plan.schedule, plan.offset, now) {
            Some(t) => queue.push(Reverse((t, i, slot.generation))),
            None => on_event(&Event::Exhausted { probe: i }),
        }
    };

    let now = clock.now();
    let mut queue = BinaryHeap::with_capacity(plans.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let slot = Slot {
            plan: Some(plan),
            generation: 0,
            busy: Arc::default(),
        };
        if let Some(catch_up) = slot.plan.as_ref().and_then(|p| p.catch_up) {
            start(&mut runs, &slot, i, now, Some(catch_up));
        }
        first(&mut queue, &slot, i, now);
        slots.push(slot);
    }
    let mut updates_open = true;
    loop {
        heartbeat.beat();
        if stall_after.is_some_and(|d| started_at.elapsed() >= d) {
            // The test hook: wedge this thread as a deadlock would.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let wait = queue
            .peek()
            .map(|Reverse((t, _, _))| (*t - clock.now()).to_std().unwrap_or(Duration::ZERO))
            .map_or(TICK, |w| w.min(TICK));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished runs so their results do not pile up; a paced plan's next
            // run is due `pace` after this one finished.
            Some(done) = runs.join_next(), if !runs.is_empty() => {
                if let Ok(i) = done
                    && let Some(slot) = slots.get(i)
                    && let Some(pace) = slot.plan.as_ref().and_then(|p| p.pace)
                {
                    let next = clock.now() + chrono::Duration::from_std(pace).unwrap_or_default();
                    queue.push(Reverse((next, i, slot.generation)));
                }
                continue;
            }
            u = updates.recv(), if updates_open => {
                let Some(u) = u else {
                    updates_open = false;
                    continue;
                };
                let (i, plan) = match u {
                    Update::Set { probe, plan } => (probe, Some(plan)),
                    Update::Remove { probe } => (probe, None),
                };
                while slots.len() <= i {
                    slots.push(Slot { plan: None, generation: 0, busy: Arc::default() });
                }
                let slot = &mut slots[i];
                slot.plan = plan;
                // Entries queued for the previous plan are now stale.
                slot.generation += 1;
                first(&mut queue, &slots[i], i, clock.now());
                continue;
            }
        }
        let now = clock.now();
        while let Some(Reverse((t, i, generation))) = queue.peek().copied() {
            if t > now {
                break;
            }
            queue.pop();
            let slot = &slots[i];
            let Some(plan) = slot.plan.as_ref().filter(|_| slot.generation == generation) else {
                continue;
            };
            start(&mut runs, slot, i, t, None);
            if plan.pace.is_some() {
                continue;
            }
            match next_fire(&plan.schedule, plan.offset, t) {
                Some(next) => queue.push(Reverse((next, i, generation))),
                None => on_event(&Event::Exhausted { probe: i }),
            }
        }
    }
    while runs.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::Mutex;

    fn cron(expr: &str, tz: chrono_tz::Tz) -> Schedule {
        Schedule::Cron {
            expr: expr.into(),
            schedule: Box::new(cron::Schedule::from_str(expr).unwrap()),
            timezone: tz,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = next_fire(s, Duration::ZERO, t).unwrap();
                t.with_timezone(&chrono_tz::America::Toronto)
                    .format("%m-%d %H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn spring_forward_runs_a_skipped_local_time_once_after_the_gap() {
        // 2026-03-08: Toronto jumps from 02:00 EST to 03:00 EDT.
        let s = cron("0 30 2 * * *", chrono_tz::America::Toronto);
        assert_eq!(
            fires(&s, "2026-03-07T12:00:00Z", 3),
            vec!["03-08 03:00 EDT", "03-09 02:30 EDT", "03-10 02:30 EDT"]
        );
        // Every 10 minutes through the missing hour: one fire for the whole gap.
        let s = cron("0 */10 2 * * *", chrono_tz::America::Toronto);
        let f = fires(&s, "2026-03-08T06:55:00Z", 2);
        assert_eq!(f, vec!["03-08 03:00 EDT", "03-09 02:00 EDT"]);
    }

    #[test]
    fn fall_back_runs_a_repeated_local_time_once() {
        // 2026-11-01: Toronto goes from 02:00 EDT back to 01:00 EST.
        let s = cron("0 30 1 * * *", chrono_tz::America::Toronto);
        assert_eq!(
            fires(&s, "2026-10-31T12:00:00Z", 3),
            vec!["11-01 01:30 EDT", "11-02 01:30 EST", "11-03 01:30 EST"]
        );
    }

    #[test]
    fn cron_in_a_zone_and_every_aligned_to_the_epoch() {
        let s = cron("0 15 */2 * * *", chrono_tz::America::Toronto);
        assert_eq!(
            fires(&s, "2026-06-01T12:00:00Z", 2),
            vec!["06-01 08:15 EDT", "06-01 10:15 EDT"]
        );
        let every = Schedule::Every(Duration::from_secs(1800));
        let t = next_fire(&every, Duration::ZERO, at("2026-06-01T12:07:00Z")).unwrap();
        assert_eq!(t, at("2026-06-01T12:30:00Z"));
        let t = next_fire(&every, Duration::from_secs(60), at("2026-06-01T12:31:00Z")).unwrap();
        assert_eq!(
            t,
            at("2026-06-01T13:01:00Z"),
            "offset shifts the grid, strictly after"
        );
    }

    #[test]
    fn spread_is_stable_within_range_and_spreads_out() {
        let every = Schedule::Every(Duration::from_secs(60));
        assert_eq!(
            spread("lead-to-bdc-call-list", &every),
            spread("lead-to-bdc-call-list", &every)
        );
        let offsets: std::collections::BTreeSet<u128> = (0..500)
            .map(|i| spread(&format!("probe-{i}"), &every).as_millis())
            .collect();
        assert!(offsets.iter().all(|o| *o < 60_000));
        assert!(
            offsets.len() > 450,
            "500 probes on one schedule land on {} distinct ms",
            offsets.len()
        );
    }

    fn plan(schedule: Schedule, catch_up: Option<&str>) -> Plan {
        Plan {
            schedule,
            offset: Duration::ZERO,
            catch_up: catch_up.map(at),
            pace: None,
        }
    }

    /// A wall clock that follows tokio's (paused) time.
    #[derive(Debug)]
    struct TokioClock(DateTime<Utc>, tokio::time::Instant);

    impl Clock for TokioClock {
        fn now(&self) -> DateTime<Utc> {
            self.0 + chrono::Duration::from_std(self.1.elapsed()).unwrap()
        }
    }

    async fn drive(
        plans: Vec<Plan>,
        run_for: Duration,
        run_len: Duration,
        max: usize,
    ) -> Vec<Event> {
        let clock = Arc::new(TokioClock(
            at("2026-06-01T12:00:00Z"),
            tokio::time::Instant::now(),
        ));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = watch::channel(false);
        let ev = events.clone();
        let sched = tokio::spawn(run_schedules(
            plans,
            clock,
            max,
            move |_, _| tokio::time::sleep(run_len),
            Arc::new(move |e: &Event| ev.lock().unwrap().push(e.clone())),
            Control::stop_only(rx),
        ));
        tokio::time::sleep(run_for).await;
        tx.send(true).unwrap();
        sched.await.unwrap();
        events.lock().unwrap().clone()
    }

    /// What `pick` reads off each fire that started, in order.
    fn started<T>(events: &[Event], pick: impl Fn(&Fire) -> T) -> Vec<T> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Started { fire, .. } => Some(pick(fire)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_outlasts_its_period_makes_the_next_fire_skip() {
        let every = Schedule::Every(Duration::from_secs(10));
        let events = drive(
            vec![plan(every, None)],
            Duration::from_secs(65),
            Duration::from_secs(15),
            4,
        )
        .await;
        let started = events
            .iter()
            .filter(|e| matches!(e, Event::Started { .. }))
            .count();
        let skipped = events
            .iter()
            .filter(|e| matches!(e, Event::SkippedOverlap { .. }))
            .count();
        // Fires at 10, 20, …, 60 s; each run takes 15 s, so every other fire is skipped.
        assert_eq!((started, skipped), (3, 3), "{events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_plan_runs_at_once_then_a_pause_after_each_finish_never_overlapping() {
        let mut paced = plan(Schedule::Every(Duration::from_secs(3600)), None);
        paced.pace = Some(Duration::from_secs(2));
        // Runs take 3 s and restart 2 s after finishing: starts at 0, 5, 10, 15, 20 s.
        let events = drive(
            vec![paced],
            Duration::from_secs(21),
            Duration::from_secs(3),
            4,
        )
        .await;
        let starts = started(&events, |fire| fire.scheduled.format("%M:%S").to_string());
        assert_eq!(starts, vec!["00:00", "00:05", "00:10", "00:15", "00:20"]);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::SkippedOverlap { .. })),
            "{events:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_limit_delays_starts_and_shows_as_lag() {
        let every = Schedule::Every(Duration::from_secs(60));
        let probes = (0..4).map(|_| plan(every.clone(), None)).collect();
        let events = drive(probes, Duration::from_secs(61), Duration::from_secs(5), 2).await;
        let mut lags = started(&events, |fire| fire.lag.as_secs());
        lags.sort();
        assert_eq!(
            lags,
            vec![0, 0, 5, 5],
            "two start on time, two wait for a permit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn missed_fires_are_not_replayed_after_a_late_start() {
        // The agent starts at 12:00:00 on a 10 s grid: the first fire is the next grid
        // point, not a burst for fires before the start.
        let every = Schedule::Every(Duration::from_secs(10));
        let events = drive(
            vec![plan(every, None)],
            Duration::from_secs(25),
            Duration::from_millis(1),
            4,
        )
        .await;
        let starts = started(&events, |fire| {
            (
                fire.scheduled.format("%H:%M:%S").to_string(),
                fire.lag.as_millis(),
            )
        });
        assert_eq!(
            starts,
            vec![("12:00:10".to_string(), 0), ("12:00:20".to_string(), 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_once_catches_up_with_one_run_at_start_not_a_burst() {
        // Down from 11:00 to 12:00 on a 10 s grid: 360 fires missed, one catch-up run.
        let every = Schedule::Every(Duration::from_secs(10));
        let (n, latest) = missed_fires(
            &every,
            Duration::ZERO,
            at("2026-06-01T11:00:00Z"),
            at("2026-06-01T12:00:00Z"),
            10_000,
        );
        assert_eq!((n, latest), (360, Some(at("2026-06-01T12:00:00Z"))));
        assert_eq!(
            missed_fires(
                &every,
                Duration::ZERO,
                at("2026-06-01T11:00:00Z"),
                at("2026-06-01T12:00:00Z"),
                5
            )
            .0,
            5,
            "counting stops at the cap"
        );
        let events = drive(
            vec![plan(every, Some("2026-06-01T12:00:00Z"))],
            Duration::from_secs(15),
            Duration::from_millis(1),
            4,
        )
        .await;
        let starts = started(&events, |fire| {
            (
                fire.scheduled.format("%H:%M:%S").to_string(),
                fire.catch_up.is_some(),
            )
        });
        assert_eq!(
            starts,
            vec![
                ("12:00:00".to_string(), true),
                ("12:00:10".to_string(), false)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn updates_add_replace_and_remove_plans_while_the_loop_runs() {
        let clock = Arc::new(TokioClock(
            at("2026-06-01T12:00:00Z"),
            tokio::time::Instant::now(),
        ));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop) = watch::channel(false);
        let (tx, updates) = mpsc::unbounded_channel();
        let heartbeat = Heartbeat::default();
        let ev = events.clone();
        let sched = tokio::spawn(run_schedules(
            vec![plan(Schedule::Every(Duration::from_secs(10)), None)],
            clock,
            4,
            |_, _| tokio::time::sleep(Duration::from_millis(1)),
            Arc::new(move |e: &Event| ev.lock().unwrap().push(e.clone())),
            Control {
                stop,
                updates,
                heartbeat: heartbeat.clone(),
                stall_after: None,
            },
        ));
        // 0–25 s: probe 0 every 10 s (fires at 10, 20).
        tokio::time::sleep(Duration::from_secs(25)).await;
        // Probe 0 now every 4 s; probe 1 added, every 5 s.
        let every = |s| plan(Schedule::Every(Duration::from_secs(s)), None);
        tx.send(Update::Set {
            probe: 0,
            plan: every(4),
        })
        .unwrap();
        tx.send(Update::Set {
            probe: 1,
            plan: every(5),
        })
        .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // 35 s: probe 0 removed.
        tx.send(Update::Remove { probe: 0 }).unwrap();
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(heartbeat.age() <= TICK, "an idle loop still turns");
        stop_tx.send(true).unwrap();
        sched.await.unwrap();
        let starts: Vec<(usize, String)> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Started { probe, fire } => {
                    Some((*probe, fire.scheduled.format("%S").to_string()))
                }
                _ => None,
            })
            .collect();
        let of = |p: usize| -> Vec<String> {
            starts
                .iter()
                .filter(|(i, _)| *i == p)
                .map(|(_, t)| t.clone())
                .collect()
        };
        assert_eq!(of(0), vec!["10", "20", "28", "32"], "{starts:?}");
        assert_eq!(of(1), vec!["30", "35", "40", "45"], "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_turns_every_tick_and_a_stalled_one_does_not() {
        let clock = Arc::new(TokioClock(
            at("2026-06-01T12:00:00Z"),
            tokio::time::Instant::now(),
        ));
        let (stop_tx, stop) = watch::channel(false);
        let heartbeat = Heartbeat::default();
        let sched = tokio::spawn(run_schedules(
            Vec::new(),
            clock,
            1,
            |_, _| async {},
            Arc::new(|_: &Event| {}),
            Control {
                heartbeat: heartbeat.clone(),
                ..Control::stop_only(stop)
            },
        ));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(heartbeat.age() <= TICK, "{:?}", heartbeat.age());
        }
        stop_tx.send(true).unwrap();
        sched.await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            heartbeat.age() >= Duration::from_secs(5),
            "a stopped loop no longer beats"
        );
    }
}
