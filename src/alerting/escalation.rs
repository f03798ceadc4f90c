//! Escalation of one paged incident (a group's leader): a pure state machine over its
//! policy's steps. Held (muted by a change window, delayed, or waiting on a failing
//! dependency) → paging step 1 → not acknowledged within the step's deadline → step 2 …
//! → after the last step, `repeat` more rounds → exhausted. An acknowledgement stops it
//! at once (a reminder follows if the incident is still open `remind_after_ack` later);
//! resolving closes it. A step with nobody on call is skipped at once, never waited out.
//!
//! `advance` is a function of (state, facts, now, who is on call) → (state, pages); the
//! agent persists the state after queuing the pages, whose outbox keys are derived from
//! the state alone, so a crash between the two re-queues the same keys (a no-op) and a
//! restart neither re-pages anyone nor misses a deadline that passed while it was down.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{EscalationPolicy, Severity, SeverityPolicy, Target};

/// The persisted escalation of one incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// The incident (a group's leader) whose page this is.
    pub incident: String,
    /// The policy's name (`routes.P1` for a plain route).
    pub policy: String,
    /// The severity it pages at (after a window's promotion).
    pub severity: Severity,
    /// The kind part of this cycle's outbox keys: `trigger`, or `flapping#2` after the
    /// incident reopened.
    pub cycle: String,
    pub phase: Phase,
    /// The current step (index into the policy's steps) and round (0: the first pass).
    pub step: usize,
    pub round: u32,
    /// When the current step gives up waiting and the next one is paged.
    pub deadline: Option<DateTime<Utc>>,
    /// When the current step's people are paged again (`renotify`).
    pub renotify_at: Option<DateTime<Utc>>,
    /// Re-notifications of the current step so far.
    pub renotified: u32,
    /// The current step's people.
    pub current: Vec<String>,
    /// Everyone paged so far, in order (resolve notices reach them all through the
    /// outbox; this is for `rooftop incidents` and reminders).
    pub paged: Vec<String>,
    /// Reminders sent after the acknowledgement.
    pub reminders: u32,
    /// What happened, in words, newest last (for `rooftop incidents`).
    pub log: Vec<String>,
}

/// Where an escalation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Nobody paged yet: waiting for `until` (re-checked then) or for a dependency.
    Held { hold: Hold },
    /// Paging the current step.
    Paging,
    /// Every step and round paged, nobody acknowledged: the current step's people keep
    /// being re-notified (when `renotify` is set); nobody else is left.
    Exhausted,
    Acknowledged {
        at: DateTime<Utc>,
        by: String,
        remind_at: Option<DateTime<Utc>>,
    },
    /// Resolved: nothing more to do.
    Closed,
}

/// Why nobody is paged yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "hold")]
pub enum Hold {
    /// A change window (`mute`): recorded and shown, paged only if still open after it.
    Muted {
        window: String,
        until: DateTime<Utc>,
    },
    /// `delay`: the page waits for the window's end.
    Delayed {
        window: String,
        until: DateTime<Utc>,
    },
    /// A probe this one depends on is failing: its incident lists this one. Paged only
    /// if this one is still failing `grace` after that incident resolved (both usually
    /// recover together; this one needs its own runs to show it).
    Dependency {
        probe: String,
        incident: String,
        #[serde(default)]
        grace_secs: u64,
    },
}

impl Hold {
    /// One line: "muted by change window `change-window` until 22:00 UTC".
    pub fn describe(&self) -> String {
        match self {
            Hold::Muted { window, until } => format!(
                "muted by change window `{window}` until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            Hold::Delayed { window, until } => format!(
                "delayed by window `{window}` until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            Hold::Dependency {
                probe, incident, ..
            } => {
                format!("not paged: its dependency `{probe}` is failing ({incident})")
            }
        }
    }
}

/// What the agent knows now about the incident and the world.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Acknowledged (the group's leader): when and by whom.
    pub acked: Option<(DateTime<Utc>, String)>,
    /// The incident (every incident of its group) resolved.
    pub resolved: bool,
    /// For a held escalation: the hold as it stands now (`None`: it no longer holds,
    /// page). The agent re-evaluates windows and dependencies each time.
    pub hold: Option<Hold>,
}

/// Why a page goes out.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// The first page of the incident (or of a cycle after it reopened).
    First,
    /// The first page, after it was held.
    Released { hold: Hold },
    /// The previous step was not acknowledged in time.
    Escalated {
        step: usize,
        steps: usize,
        round: u32,
        waited: Duration,
        skipped: Vec<usize>,
    },
    /// The current step again (`renotify`).
    Renotify { count: u32 },
    /// Acknowledged, still open.
    Reminder {
        acked_by: String,
        acked_at: DateTime<Utc>,
    },
}

/// Pages to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The kind part of the outbox keys (`trigger`, `trigger@2.1` …).
    pub key_part: String,
    /// Contacts to page, each over their first reachable channel.
    pub contacts: Vec<String>,
    /// Whether the channels that are not per person (webhook, PagerDuty) get it too:
    /// only the cycle's first page (they track the incident, not the people).
    pub shared: bool,
    pub why: Why,
}

/// Who is on call for a target at an instant (contact names).
pub type Who<'a> = &'a dyn Fn(&Target, DateTime<Utc>) -> Vec<String>;

fn after(now: DateTime<Utc>, d: Option<Duration>) -> Option<DateTime<Utc>> {
    d.and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now + d)
}

impl Escalation {
    /// A new escalation, held or about to page step 1 at the next `advance`.
    pub fn new(
        incident: &str,
        policy: &EscalationPolicy,
        severity: Severity,
        cycle: &str,
        hold: Option<Hold>,
    ) -> Escalation {
        Escalation {
            incident: incident.to_string(),
            policy: policy.name.clone(),
            severity,
            cycle: cycle.to_string(),
            phase: match hold {
                Some(hold) => Phase::Held { hold },
                None => Phase::Paging,
            },
            step: 0,
            round: 0,
            deadline: None,
            renotify_at: None,
            renotified: 0,
            current: Vec::new(),
            paged: Vec::new(),
            reminders: 0,
            log: Vec::new(),
        }
    }

    /// A new cycle of pages after the incident reopened (flapping): from step 1 again,
    /// keeping who was paged before.
    pub fn restart(&mut self, cycle: &str) {
        self.cycle = cycle.to_string();
        self.phase = Phase::Paging;
        self.step = 0;
        self.round = 0;
        self.deadline = None;
        self.renotify_at = None;
        self.renotified = 0;
        self.current.clear();
        self.reminders = 0;
    }

    /// Still something to do (not closed).
    pub fn is_active(&self) -> bool {
        self.phase != Phase::Closed
    }

    /// Whether step 1 was paged in this cycle.
    fn started(&self) -> bool {
        !self.current.is_empty() || self.deadline.is_some() || self.step > 0 || self.round > 0
    }

    /// The next instant `advance` has something to do without a new fact (`None`: only
    /// a fact — an acknowledgement, a resolve, a hold lifting — moves it).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        match &self.phase {
            Phase::Held {
                hold: Hold::Muted { until, .. } | Hold::Delayed { until, .. },
            } => Some(*until),
            Phase::Held { .. } | Phase::Closed => None,
            Phase::Paging => match (self.deadline, self.renotify_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Phase::Exhausted => self.renotify_at,
            Phase::Acknowledged { remind_at, .. } => *remind_at,
        }
    }

    fn key(&self, extra: &str) -> String {
        if self.step == 0 && self.round == 0 && extra.is_empty() {
            self.cycle.clone()
        } else {
            format!("{}@{}.{}{extra}", self.cycle, self.step + 1, self.round + 1)
        }
    }
}

/// One move of the machine.
pub fn advance(
    mut e: Escalation,
    policy: &EscalationPolicy,
    severity: &SeverityPolicy,
    facts: &Facts,
    now: DateTime<Utc>,
    who: Who<'_>,
) -> (Escalation, Vec<Page>) {
    let mut pages = Vec::new();
    if facts.resolved {
        if e.phase != Phase::Closed {
            e.log.push(format!("{} resolved", now.format("%H:%M:%S")));
        }
        e.phase = Phase::Closed;
        return (e, pages);
    }
    if let Some((at, by)) = &facts.acked
        && !matches!(e.phase, Phase::Acknowledged { .. } | Phase::Closed)
    {
        e.log
            .push(format!("{} acknowledged by {by}", at.format("%H:%M:%S")));
        e.phase = Phase::Acknowledged {
            at: *at,
            by: by.clone(),
            remind_at: after(*at, policy.remind_after_ack),
        };
        e.deadline = None;
        e.renotify_at = None;
    }
    match e.phase.clone() {
        Phase::Closed => {}
        Phase::Held { hold } => match &facts.hold {
            Some(h) => {
                if *h != hold {
                    e.phase = Phase::Held { hold: h.clone() };
                }
            }
            None => {
                e.log.push(format!(
                    "{} released ({})",
                    now.format("%H:%M:%S"),
                    hold.describe()
                ));
                e.phase = Phase::Paging;
                enter(
                    &mut e,
                    policy,
                    severity,
                    now,
                    who,
                    Why::Released { hold },
                    &mut pages,
                );
            }
        },
        Phase::Paging if !e.started() => {
            enter(&mut e, policy, severity, now, who, Why::First, &mut pages);
        }
        Phase::Paging => {
            if e.deadline.is_some_and(|d| now >= d) {
                let waited = step_wait(policy, severity, e.step);
                let (from_step, from_round) = (e.step, e.round);
                if next_step(&mut e, policy) {
                    let why = Why::Escalated {
                        step: e.step,
                        steps: policy.steps.len(),
                        round: e.round,
                        waited,
                        skipped: Vec::new(),
                    };
                    enter(&mut e, policy, severity, now, who, why, &mut pages);
                } else {
                    e.step = from_step;
                    e.round = from_round;
                    e.deadline = None;
                    e.phase = Phase::Exhausted;
                    e.log.push(format!(
                        "{} every step paged, nobody acknowledged",
                        now.format("%H:%M:%S")
                    ));
                }
            } else if e.renotify_at.is_some_and(|r| now >= r) {
                renotify(&mut e, severity, now, &mut pages);
            }
        }
        Phase::Exhausted => {
            if e.renotify_at.is_some_and(|r| now >= r) {
                renotify(&mut e, severity, now, &mut pages);
            }
        }
        Phase::Acknowledged { at, by, remind_at } => {
            if let Some(r) = remind_at
                && now >= r
            {
                e.reminders += 1;
                // The person who acknowledged it, when they are a contact we paged;
                // else everyone who was paged.
                let to: Vec<String> = match e.paged.iter().find(|p| p.eq_ignore_ascii_case(&by)) {
                    Some(p) => vec![p.clone()],
                    None => e.paged.clone(),
                };
                if !to.is_empty() {
                    pages.push(Page {
                        key_part: format!("{}@ack+{}", e.cycle, e.reminders),
                        contacts: to,
                        shared: false,
                        why: Why::Reminder {
                            acked_by: by.clone(),
                            acked_at: at,
                        },
                    });
                }
                e.phase = Phase::Acknowledged {
                    at,
                    by,
                    remind_at: after(now, policy.remind_after_ack),
                };
            }
        }
    }
    (e, pages)
}

/// How long step `step` waits for an acknowledgement.
fn step_wait(policy: &EscalationPolicy, severity: &SeverityPolicy, step: usize) -> Duration {
    policy
        .steps
        .get(step)
        .and_then(|s| s.wait)
        .or(severity.ack_within)
        .unwrap_or_default()
}

/// Moves to the next step (or the first of the next round); false when none is left.
fn next_step(e: &mut Escalation, policy: &EscalationPolicy) -> bool {
    if e.step + 1 < policy.steps.len() {
        e.step += 1;
        true
    } else if e.round < policy.repeat {
        e.round += 1;
        e.step = 0;
        true
    } else {
        false
    }
}

/// Pages the current step, skipping steps with nobody on call at once; exhausted when no
/// step has anyone.
fn enter(
    e: &mut Escalation,
    policy: &EscalationPolicy,
    severity: &SeverityPolicy,
    now: DateTime<Utc>,
    who: Who<'_>,
    mut why: Why,
    pages: &mut Vec<Page>,
) {
    let mut skipped = Vec::new();
    let total = policy.steps.len() * (policy.repeat as usize + 1);
    for _ in 0..total.max(1) {
        let people: Vec<String> = policy
            .steps
            .get(e.step)
            .map(|s| {
                let mut out: Vec<String> = Vec::new();
                for t in &s.notify {
                    for p in who(t, now) {
                        if !out.contains(&p) {
                            out.push(p);
                        }
                    }
                }
                out
            })
            .unwrap_or_default();
        if !people.is_empty() {
            if let Why::Escalated { skipped: s, .. } = &mut why {
                *s = skipped.clone();
            }
            let first = e.step == 0 && e.round == 0;
            let shared = first && !matches!(why, Why::Escalated { .. });
            e.log.push(format!(
                "{} step {} paged: {}{}",
                now.format("%H:%M:%S"),
                e.step + 1,
                people.join(", "),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (skipped step {}: nobody on call)",
                        skipped
                            .iter()
                            .map(|s: &usize| (s + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
            for p in &people {
                if !e.paged.contains(p) {
                    e.paged.push(p.clone());
                }
            }
            e.current = people.clone();
            e.renotified = 0;
            e.deadline = after(now, Some(step_wait(policy, severity, e.step)))
                .filter(|_| !step_wait(policy, severity, e.step).is_zero());
            e.renotify_at = after(now, severity.renotify);
            pages.push(Page {
                key_part: e.key(""),
                contacts: people,
                shared,
                why,
            });
            return;
        }
        skipped.push(e.step);
        if !next_step(e, policy) {
            break;
        }
    }
    // Nobody on call at any step: the shared channels still hear of it on the first page.
    e.log.push(format!(
        "{} nobody on call at any step",
        now.format("%H:%M:%S")
    ));
    e.phase = Phase::Exhausted;
    e.deadline = None;
    e.renotify_at = None;
    if matches!(why, Why::First | Why::Released { .. }) {
        pages.push(Page {
            key_part: e.cycle.clone(),
            contacts: Vec::new(),
            shared: true,
            why,
        });
    }
}

fn renotify(
    e: &mut Escalation,
    severity: &SeverityPolicy,
    now: DateTime<Utc>,
    pages: &mut Vec<Page>,
) {
    e.renotified += 1;
    e.renotify_at = after(now, severity.renotify);
    if e.current.is_empty() {
        return;
    }
    pages.push(Page {
        key_part: e.key(&format!("+{}", e.renotified)),
        contacts: e.current.clone(),
        shared: false,
        why: Why::Renotify {
            count: e.renotified,
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EscalationStep;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + min * 60, 0).unwrap()
    }

    fn policy(steps: &[&[&str]], repeat: u32) -> EscalationPolicy {
        EscalationPolicy {
            name: "it".into(),
            steps: steps
                .iter()
                .map(|s| EscalationStep {
                    notify: s.iter().map(|n| Target::Contact(n.to_string())).collect(),
                    wait: None,
                })
                .collect(),
            repeat,
            remind_after_ack: Some(Duration::from_secs(3600)),
        }
    }

    fn p1() -> SeverityPolicy {
        SeverityPolicy::default_for(Severity::P1)
    }

    /// Everyone is on call except `nobody`.
    fn who(t: &Target, _: DateTime<Utc>) -> Vec<String> {
        match t {
            Target::Contact(c) if c == "nobody" => vec![],
            Target::Contact(c) => vec![c.clone()],
            Target::Rotation { .. } => vec![],
        }
    }

    /// Runs the machine at each minute in `at`, with the facts of that minute.
    fn run(
        policy: &EscalationPolicy,
        sev: &SeverityPolicy,
        events: &[(i64, Facts)],
    ) -> (Escalation, Vec<(i64, Page)>) {
        let mut e = Escalation::new("inc-a-0", policy, Severity::P1, "trigger", None);
        let mut out = Vec::new();
        for (at, facts) in events {
            let (next, pages) = advance(e, policy, sev, facts, t(*at), &who);
            e = next;
            out.extend(pages.into_iter().map(|p| (*at, p)));
        }
        (e, out)
    }

    fn quiet() -> Facts {
        Facts::default()
    }

    fn keys(pages: &[(i64, Page)]) -> Vec<(i64, String, Vec<String>)> {
        pages
            .iter()
            .map(|(at, p)| (*at, p.key_part.clone(), p.contacts.clone()))
            .collect()
    }

    /// When each page went, and its key part.
    fn times(pages: &[(i64, Page)]) -> Vec<(i64, &str)> {
        pages
            .iter()
            .map(|(at, p)| (*at, p.key_part.as_str()))
            .collect()
    }

    /// One page as `keys` lists it: at `at`, key part `key`, to `who`.
    fn page(at: i64, key: &str, who: &str) -> (i64, String, Vec<String>) {
        (at, key.to_string(), vec![who.to_string()])
    }

    #[test]
    fn no_ack_escalates_at_the_deadline_and_an_ack_stops_it() {
        let pol = policy(&[&["Maria"], &["Dev"], &["IT Lead"]], 0);
        let acked = Facts {
            acked: Some((t(17), "Dev".into())),
            ..Facts::default()
        };
        let (e, pages) = run(
            &pol,
            &p1(),
            &[
                (0, quiet()),
                (14, quiet()),
                (15, quiet()),
                (17, acked.clone()),
                (31, acked.clone()),
                (60, acked),
            ],
        );
        assert_eq!(
            keys(&pages),
            [page(0, "trigger", "Maria"), page(15, "trigger@2.1", "Dev")]
        );
        assert!(pages[0].1.shared && !pages[1].1.shared);
        assert!(
            matches!(pages[1].1.why, Why::Escalated { step: 1, waited, .. } if waited == Duration::from_secs(900))
        );
        assert!(matches!(e.phase, Phase::Acknowledged { .. }));
        assert_eq!(e.paged, ["Maria", "Dev"]);
        assert_eq!(
            e.next_due(),
            Some(t(77)),
            "the reminder an hour after the ack"
        );
    }

    #[test]
    fn a_reminder_goes_to_whoever_acknowledged_when_still_open() {
        let pol = policy(&[&["Maria"]], 0);
        let acked = Facts {
            acked: Some((t(5), "maria".into())),
            ..Facts::default()
        };
        let (_, pages) = run(
            &pol,
            &p1(),
            &[
                (0, quiet()),
                (5, acked.clone()),
                (64, acked.clone()),
                (65, acked.clone()),
                (125, acked),
            ],
        );
        assert_eq!(
            keys(&pages),
            [
                page(0, "trigger", "Maria"),
                page(65, "trigger@ack+1", "Maria"),
                page(125, "trigger@ack+2", "Maria")
            ]
        );
    }

    #[test]
    fn a_step_with_nobody_on_call_is_skipped_at_once() {
        let pol = policy(&[&["nobody"], &["Dev"]], 0);
        let (e, pages) = run(&pol, &p1(), &[(0, quiet())]);
        assert_eq!(keys(&pages), [page(0, "trigger@2.1", "Dev")]);
        assert_eq!(e.deadline, Some(t(15)));
        // And mid-escalation.
        let pol = policy(&[&["Maria"], &["nobody"], &["IT Lead"]], 0);
        let (_, pages) = run(&pol, &p1(), &[(0, quiet()), (15, quiet())]);
        assert_eq!(pages[1].1.key_part, "trigger@3.1");
        assert!(matches!(&pages[1].1.why, Why::Escalated { skipped, .. } if skipped == &[1]));
    }

    #[test]
    fn nobody_anywhere_still_tells_the_shared_channels_once() {
        let pol = policy(&[&["nobody"]], 2);
        let (e, pages) = run(&pol, &p1(), &[(0, quiet()), (30, quiet())]);
        assert_eq!(keys(&pages), [(0, "trigger".into(), vec![])]);
        assert!(pages[0].1.shared);
        assert_eq!(e.phase, Phase::Exhausted);
    }

    #[test]
    fn repeat_starts_over_then_it_is_exhausted() {
        let pol = policy(&[&["Maria"], &["Dev"]], 1);
        let minutes: Vec<(i64, Facts)> = (0..=90).step_by(15).map(|m| (m, quiet())).collect();
        let (e, pages) = run(&pol, &p1(), &minutes);
        assert_eq!(
            times(&pages),
            [
                (0, "trigger"),
                (15, "trigger@2.1"),
                (30, "trigger@1.2"),
                (45, "trigger@2.2"),
            ]
        );
        assert_eq!(e.phase, Phase::Exhausted);
        assert_eq!(e.next_due(), None);
    }

    #[test]
    fn renotify_pages_the_current_step_again_until_the_deadline() {
        let pol = policy(&[&["Maria"], &["Dev"]], 0);
        let sev = SeverityPolicy {
            renotify: Some(Duration::from_secs(300)),
            ..p1()
        };
        let minutes: Vec<(i64, Facts)> = (0..=20).step_by(5).map(|m| (m, quiet())).collect();
        let (_, pages) = run(&pol, &sev, &minutes);
        assert_eq!(
            times(&pages),
            [
                (0, "trigger"),
                (5, "trigger@1.1+1"),
                (10, "trigger@1.1+2"),
                (15, "trigger@2.1"),
                (20, "trigger@2.1+1"),
            ]
        );
    }

    #[test]
    fn a_resolve_closes_it_and_a_restart_finds_the_deadline_passed() {
        let pol = policy(&[&["Maria"], &["Dev"]], 0);
        let (e, _) = run(&pol, &p1(), &[(0, quiet())]);
        // Persisted, then the agent was down from minute 1 to minute 40.
        let json = serde_json::to_string(&e).unwrap();
        let e: Escalation = serde_json::from_str(&json).unwrap();
        let (e, pages) = advance(e, &pol, &p1(), &quiet(), t(40), &who);
        assert_eq!(pages.len(), 1, "paged at once on start, once");
        assert_eq!(pages[0].key_part, "trigger@2.1");
        assert_eq!(e.deadline, Some(t(55)));
        let (e, pages) = advance(
            e,
            &pol,
            &p1(),
            &Facts {
                resolved: true,
                ..quiet()
            },
            t(41),
            &who,
        );
        assert!(pages.is_empty());
        assert!(!e.is_active());
    }

    #[test]
    fn a_held_page_waits_and_goes_out_when_the_hold_lifts() {
        let pol = policy(&[&["Maria"]], 0);
        let hold = Hold::Muted {
            window: "change-window".into(),
            until: t(60),
        };
        let e = Escalation::new("inc-a-0", &pol, Severity::P3, "trigger", Some(hold.clone()));
        assert_eq!(e.next_due(), Some(t(60)));
        let held = Facts {
            hold: Some(hold.clone()),
            ..quiet()
        };
        let (e, pages) = advance(e, &pol, &p1(), &held, t(10), &who);
        assert!(pages.is_empty());
        let (e, pages) = advance(e, &pol, &p1(), &quiet(), t(60), &who);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].key_part, "trigger");
        assert!(matches!(&pages[0].why, Why::Released { hold: h } if *h == hold));
        assert_eq!(e.phase, Phase::Paging);
        // Resolved while held: nobody is ever paged.
        let e = Escalation::new("inc-b-0", &pol, Severity::P3, "trigger", Some(hold.clone()));
        let (e, pages) = advance(
            e,
            &pol,
            &p1(),
            &Facts {
                resolved: true,
                ..held
            },
            t(20),
            &who,
        );
        assert!(pages.is_empty() && !e.is_active());
    }

    #[test]
    fn a_reopened_incident_pages_a_new_cycle_with_its_own_keys() {
        let pol = policy(&[&["Maria"], &["Dev"]], 0);
        let (mut e, _) = run(&pol, &p1(), &[(0, quiet()), (15, quiet())]);
        e.restart("flapping#2");
        let (_, pages) = advance(e, &pol, &p1(), &quiet(), t(40), &who);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].key_part, "flapping#2");
        assert_eq!(pages[0].contacts, ["Maria"]);
        assert!(pages[0].shared);
    }
}
