//! The incident state machine of one probe: quiet → open (firing) → acknowledged →
//! resolved, with flap damping. A pure function of (state, event, now) → (state,
//! actions); the agent persists the state and carries out the actions (store the
//! incident, queue notifications).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::rules::breaches;
pub use crate::model::incident::{Open, Phase, ProbeAlerts, ResolvedBy};
use crate::model::{AlertRules, Fact};

/// Most facts kept per probe, whatever the rules' horizon.
const MAX_FACTS: usize = 10_000;
/// Run ids attached to one incident (the first ones and the latest are what matter).
const MAX_INCIDENT_RUNS: usize = 100;

/// What happens to a probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Run(Fact),
    Ack { by: String },
    Resolve { by: String },
}

/// What the agent must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new incident: store it and page (trigger notices).
    Opened(Open),
    /// Another failing run of the open incident (no page).
    RunAttached { id: String, run_id: String },
    /// The incident keeps flipping while open: mark it; no page.
    Flapping { id: String },
    /// It failed again soon after recovering: the same incident is open again, marked
    /// flapping; one notice, not a new page.
    Reopened(Open),
    Acknowledged {
        id: String,
        by: String,
        at: DateTime<Utc>,
        opened_at: DateTime<Utc>,
    },
    /// Store it and send resolve notices on every channel that was paged.
    Resolved {
        incident: Open,
        at: DateTime<Utc>,
        by: ResolvedBy,
    },
}

impl ProbeAlerts {
    pub fn new(probe: &str) -> ProbeAlerts {
        ProbeAlerts {
            probe: probe.to_string(),
            phase: Phase::Quiet,
            facts: VecDeque::new(),
            recovered: None,
        }
    }

    /// Success/failure flips among the facts since `from`.
    fn flips_since(&self, from: DateTime<Utc>) -> u32 {
        let mut flips = 0;
        let mut prev: Option<bool> = None;
        for f in self.facts.iter().filter(|f| f.at >= from) {
            if prev.is_some_and(|p| p != f.success) {
                flips += 1;
            }
            prev = Some(f.success);
        }
        flips
    }

    fn remember(&mut self, fact: Fact, rules: &AlertRules, now: DateTime<Utc>) {
        self.facts.push_back(fact);
        let horizon =
            now - chrono::Duration::from_std(rules.horizon()).unwrap_or(chrono::Duration::MAX);
        while self.facts.len() > rules.depth().max(1)
            && self.facts.front().is_some_and(|f| f.at < horizon)
        {
            self.facts.pop_front();
        }
        while self.facts.len() > MAX_FACTS {
            self.facts.pop_front();
        }
    }
}

/// One transition.
pub fn step(
    mut state: ProbeAlerts,
    rules: &AlertRules,
    event: Event,
    now: DateTime<Utc>,
) -> (ProbeAlerts, Vec<Action>) {
    let mut actions = Vec::new();
    match event {
        Event::Run(mut fact) => {
            let success = fact.success;
            // What only the newest run's page needs is taken out, not kept for the window
            // (a failing probe every second would hold an hour of messages).
            let (run_id, error_class, failed_step, message) = (
                fact.run_id.clone(),
                fact.error_class.take(),
                fact.failed_step.take(),
                fact.message.take(),
            );
            state.remember(fact, rules, now);
            // Judged in place: copying the window per run cost more than the run itself
            // for probes every few seconds (an hour's window is thousands of facts).
            let found = breaches(rules, state.facts.make_contiguous(), now);
            let failing_runs: Vec<String> = if found.is_empty() {
                Vec::new()
            } else {
                let mut ids: Vec<String> = state
                    .facts
                    .iter()
                    .rev()
                    .take_while(|f| !f.success)
                    .map(|f| f.run_id.clone())
                    .collect();
                ids.reverse();
                ids
            };
            let flap_from = now
                - chrono::Duration::from_std(rules.flap_window).unwrap_or(chrono::Duration::MAX);
            let last_failure = state.facts.iter().rev().find(|f| !f.success).map(|f| f.at);
            let phase = std::mem::replace(&mut state.phase, Phase::Quiet);
            let reopen = state.recovered.take().filter(|(_, at)| *at >= flap_from);
            state.phase = match phase {
                Phase::Quiet if !found.is_empty() && reopen.is_some() => {
                    let (mut open, _) = reopen.expect("checked");
                    open.flapping = true;
                    open.successes_in_row = 0;
                    open.breaches = found;
                    open.last_message = message.or(open.last_message);
                    if open.runs.len() < MAX_INCIDENT_RUNS {
                        open.runs.push(run_id);
                    }
                    actions.push(Action::Reopened(open.clone()));
                    Phase::Open(open)
                }
                Phase::Quiet if !found.is_empty() => {
                    let open = Open {
                        id: format!("inc-{}-{}", state.probe, now.timestamp_millis()),
                        opened_at: now,
                        acked_at: None,
                        acked_by: None,
                        breaches: found,
                        error_class,
                        failed_step,
                        last_message: message,
                        runs: failing_runs
                            .into_iter()
                            .chain(success.then(|| run_id.clone()))
                            .collect(),
                        flapping: false,
                        successes_in_row: 0,
                    };
                    actions.push(Action::Opened(open.clone()));
                    Phase::Open(open)
                }
                Phase::Quiet => {
                    state.recovered = reopen;
                    Phase::Quiet
                }
                Phase::Open(mut open) => {
                    // What holds now (e.g. the failure streak joining a cleanup failure
                    // that opened it): `rooftop incidents` and the resolve show it.
                    if !found.is_empty() && found != open.breaches {
                        open.breaches = found.clone();
                    }
                    if success {
                        open.successes_in_row += 1;
                    } else {
                        open.successes_in_row = 0;
                        open.last_message = message.or(open.last_message);
                        if open.runs.len() < MAX_INCIDENT_RUNS {
                            open.runs.push(run_id.clone());
                        }
                        actions.push(Action::RunAttached {
                            id: open.id.clone(),
                            run_id,
                        });
                    }
                    // Flips while this incident is open (a blip before it opened is
                    // not flapping).
                    let flips = state.flips_since(open.opened_at.max(flap_from));
                    if !open.flapping && rules.flap_changes > 0 && flips >= rules.flap_changes {
                        open.flapping = true;
                        actions.push(Action::Flapping {
                            id: open.id.clone(),
                        });
                    }
                    // A flapping incident resolves only once a whole flap window passed
                    // without a failure.
                    let settled = !open.flapping || last_failure.is_none_or(|at| at < flap_from);
                    if found.is_empty() && open.successes_in_row >= rules.resolve_after && settled {
                        state.recovered = Some((open.clone(), now));
                        actions.push(Action::Resolved {
                            incident: open,
                            at: now,
                            by: ResolvedBy::Recovery,
                        });
                        Phase::Quiet
                    } else {
                        Phase::Open(open)
                    }
                }
            };
        }
        Event::Ack { by } => {
            if let Phase::Open(open) = &mut state.phase
                && open.acked_at.is_none()
            {
                open.acked_at = Some(now);
                open.acked_by = Some(by.clone());
                actions.push(Action::Acknowledged {
                    id: open.id.clone(),
                    by,
                    at: now,
                    opened_at: open.opened_at,
                });
            }
        }
        Event::Resolve { .. } => {
            // A person says it is fixed: a new failure is a new incident.
            state.recovered = None;
            if let Phase::Open(open) = std::mem::replace(&mut state.phase, Phase::Quiet) {
                actions.push(Action::Resolved {
                    incident: open,
                    at: now,
                    by: ResolvedBy::Manual,
                });
            }
        }
    }
    (state, actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Breach, FireRule, RatioRule, SyncRule};
    use std::time::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn fact(at: i64, ok: bool) -> Fact {
        Fact {
            at: t(at),
            run_id: format!("run-{at}"),
            success: ok,
            error_class: (!ok).then(|| "http_5xx".to_string()),
            failed_step: (!ok).then(|| "book".to_string()),
            message: None,
            syncs: vec![],
            cleanup_failed: false,
        }
    }

    /// Feeds runs (at second i*60, ok or not) and collects the action kinds.
    fn feed(rules: &AlertRules, outcomes: &[bool]) -> (ProbeAlerts, Vec<String>) {
        let mut s = ProbeAlerts::new("p");
        let mut log = Vec::new();
        for (i, ok) in outcomes.iter().enumerate() {
            let at = i as i64 * 60;
            let (next, actions) = step(s, rules, Event::Run(fact(at, *ok)), t(at));
            s = next;
            for a in actions {
                log.push(match a {
                    Action::Opened(_) => format!("open@{i}"),
                    Action::RunAttached { .. } => format!("attach@{i}"),
                    Action::Flapping { .. } => format!("flapping@{i}"),
                    Action::Acknowledged { .. } => format!("ack@{i}"),
                    Action::Resolved { .. } => format!("resolve@{i}"),
                    Action::Reopened(_) => format!("reopen@{i}"),
                });
            }
        }
        (s, log)
    }

    /// A window of an hour of runs every second must not hold an hour of messages: the
    /// newest run's details go to the incident, the window keeps what the rules read.
    #[test]
    fn the_window_keeps_what_the_rules_read_not_each_runs_message() {
        let rules = AlertRules::default();
        let mut s = ProbeAlerts::new("p");
        let mut opened = None;
        for i in 0..3 {
            let mut f = fact(i, false);
            f.message = Some(format!("HTTP 503; body: {}", "x".repeat(2_000)));
            let (next, actions) = step(s, &rules, Event::Run(f), t(i));
            s = next;
            opened = opened.or(actions.into_iter().find_map(|a| match a {
                Action::Opened(o) => Some(o),
                _ => None,
            }));
        }
        let open = opened.expect("two failures in a row open an incident");
        assert_eq!(
            open.runs,
            ["run-0", "run-1"],
            "the failing streak, oldest first"
        );
        assert!(open.last_message.is_some_and(|m| m.starts_with("HTTP 503")));
        assert_eq!(open.failed_step.as_deref(), Some("book"));
        assert_eq!(s.facts.len(), 3);
        assert!(
            s.facts
                .iter()
                .all(|f| f.message.is_none() && f.failed_step.is_none() && f.error_class.is_none()),
            "{:?}",
            s.facts
        );
    }

    #[test]
    fn n_consecutive_failures_open_and_r_successes_resolve() {
        let rules = AlertRules::default(); // 2 in a row, resolve after 2
        let (_, log) = feed(
            &rules,
            &[true, false, true, false, false, false, true, true],
        );
        assert_eq!(log, vec!["open@4", "attach@5", "resolve@7"]);
    }

    #[test]
    fn k_of_m_fires_on_scattered_failures() {
        let rules = AlertRules {
            fire: FireRule::KOfM { k: 3, m: 5 },
            ..AlertRules::default()
        };
        let (_, log) = feed(&rules, &[false, true, false, true, false]);
        assert_eq!(log, vec!["open@4"]);
        let (_, log) = feed(&rules, &[false, true, true, true, false]);
        assert!(log.is_empty(), "{log:?}");
    }

    #[test]
    fn success_ratio_needs_its_minimum_of_runs() {
        let rules = AlertRules {
            fire: FireRule::Consecutive(99),
            ratio: Some(RatioRule {
                below: 0.8,
                window: Duration::from_secs(3600),
                min_runs: 6,
            }),
            ..AlertRules::default()
        };
        // 2 of 5 failed: under 80 % but only 5 runs; the 6th (a failure) opens.
        let (_, log) = feed(&rules, &[true, false, true, true, false, false]);
        assert_eq!(log, vec!["open@5"]);
    }

    #[test]
    fn sync_slo_p95_and_hard_limit() {
        let rules = AlertRules {
            fire: FireRule::Consecutive(99),
            sync: Some(SyncRule {
                p95_over: Some(Duration::from_secs(60)),
                window: Duration::from_secs(3600),
                min_measurements: 3,
                hard_limit: Some(Duration::from_secs(600)),
            }),
            ..AlertRules::default()
        };
        let mut s = ProbeAlerts::new("p");
        let mut opened = Vec::new();
        for (i, ms) in [10_000.0, 20_000.0, 90_000.0].iter().enumerate() {
            let mut f = fact(i as i64 * 60, true);
            f.syncs = vec![("ro-in-dms".into(), *ms)];
            let (next, a) = step(s, &rules, Event::Run(f), t(i as i64 * 60));
            s = next;
            opened.extend(a);
        }
        match &opened[..] {
            [Action::Opened(o)] => assert!(matches!(o.breaches[0], Breach::SyncP95 { .. })),
            other => panic!("{other:?}"),
        }
        let mut f = fact(0, true);
        f.syncs = vec![("survey".into(), 700_000.0)];
        let (_, a) = step(ProbeAlerts::new("q"), &rules, Event::Run(f), t(0));
        assert!(
            matches!(&a[..], [Action::Opened(o)] if matches!(o.breaches[0], Breach::SyncHardLimit { .. }))
        );
    }

    #[test]
    fn a_cleanup_failure_opens_even_on_a_successful_run() {
        let rules = AlertRules::default();
        let mut f = fact(0, true);
        f.cleanup_failed = true;
        let (_, a) = step(ProbeAlerts::new("p"), &rules, Event::Run(f), t(0));
        assert!(
            matches!(&a[..], [Action::Opened(o)] if o.breaches == vec![Breach::CleanupFailing])
        );
    }

    #[test]
    fn a_flapping_probe_is_one_incident_held_open_until_it_settles() {
        let rules = AlertRules::default(); // 2 to open, 2 to resolve, 4 flips / 1 h
        // Fails twice, recovers twice, over and over: without damping that is a page
        // every four minutes.
        let outcomes: Vec<bool> = (0..24).map(|i| i % 4 >= 2).collect();
        let (state, log) = feed(&rules, &outcomes);
        let opens = log.iter().filter(|l| l.starts_with("open")).count();
        let reopens = log.iter().filter(|l| l.starts_with("reopen")).count();
        let resolves = log.iter().filter(|l| l.starts_with("resolve")).count();
        assert_eq!(opens, 1, "one incident: {log:?}");
        assert_eq!(reopens, 1, "reopened once as flapping, then held: {log:?}");
        assert_eq!(resolves, 1, "{log:?}");
        let Phase::Open(open) = &state.phase else {
            panic!("held open while flapping: {log:?}")
        };
        assert!(open.flapping);
        // A flap window of steady successes resolves it, once.
        let mut s = state;
        let mut resolved = 0;
        for i in 0..70 {
            let at = 24 * 60 + i * 60;
            let (next, a) = step(s, &rules, Event::Run(fact(at, true)), t(at));
            s = next;
            resolved += a
                .iter()
                .filter(|a| {
                    matches!(
                        a,
                        Action::Resolved {
                            by: ResolvedBy::Recovery,
                            ..
                        }
                    )
                })
                .count();
        }
        assert_eq!(resolved, 1);
    }

    #[test]
    fn flips_while_open_mark_the_incident_flapping_without_a_page() {
        let rules = AlertRules::default();
        // Opens, then alternates without ever two successes in a row.
        let (state, log) = feed(
            &rules,
            &[false, false, true, false, true, false, true, false],
        );
        assert_eq!(log.iter().filter(|l| l.starts_with("open")).count(), 1);
        assert!(log.iter().any(|l| l.starts_with("flapping")), "{log:?}");
        assert!(matches!(
            state.phase,
            Phase::Open(Open { flapping: true, .. })
        ));
    }

    #[test]
    fn ack_once_and_manual_resolve() {
        let rules = AlertRules::default();
        let (s, _) = feed(&rules, &[false, false]);
        let (s, a) = step(s, &rules, Event::Ack { by: "maria".into() }, t(500));
        assert!(matches!(&a[..], [Action::Acknowledged { by, .. }] if by == "maria"));
        let (s, a) = step(s, &rules, Event::Ack { by: "joe".into() }, t(501));
        assert!(a.is_empty(), "a second ack changes nothing");
        let (s, a) = step(s, &rules, Event::Resolve { by: "maria".into() }, t(600));
        match &a[..] {
            [
                Action::Resolved {
                    incident,
                    by: ResolvedBy::Manual,
                    ..
                },
            ] => {
                assert_eq!(incident.acked_at, Some(t(500)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.phase, Phase::Quiet);
    }
}
