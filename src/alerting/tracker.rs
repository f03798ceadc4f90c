//! The agent's side of the incident state machine: keeps each probe's `ProbeAlerts`,
//! feeds it every finished run, picks up acknowledgements and manual resolves made with
//! `rooftop ack` / `resolve` from the store, persists what the machine decides, and hands
//! the actions back (for the log line and, with paging, for notifications).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::incident::{Action, Event, Open, Phase, ProbeAlerts, ResolvedBy, step};
use super::rules::Fact;
use crate::model::Probe;
use crate::model::ProbeRun;
use crate::store::{IncidentStore, RunStore, StoreError};

/// Incident tracking for every probe of the agent.
#[derive(Debug)]
pub struct Tracker {
    incidents: IncidentStore,
    states: Mutex<HashMap<String, ProbeAlerts>>,
}

impl Tracker {
    /// Rebuilds each probe's state from the store: its recent runs (within the rules'
    /// horizon) and its unresolved incident, so a restart neither re-pages an open
    /// incident nor forgets a failure streak.
    pub async fn restore(
        incidents: IncidentStore,
        runs: &RunStore,
        probes: &[Probe],
        now: DateTime<Utc>,
    ) -> Result<Tracker, StoreError> {
        let states = restore_states(&incidents, runs, probes, now).await?;
        Ok(Tracker {
            incidents,
            states: Mutex::new(states),
        })
    }

    /// After a reload: probes new to the tracker get their state from the store (a probe
    /// re-added under its old name picks up its streak and open incident); removed ones
    /// are forgotten (their stored incidents stay, for a person to resolve). Unchanged
    /// and changed probes keep theirs.
    pub async fn adopt(
        &self,
        runs: &RunStore,
        probes: &[Probe],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let known: Vec<String> = self.states.lock().await.keys().cloned().collect();
        let new: Vec<Probe> = probes
            .iter()
            .filter(|p| !known.contains(&p.name))
            .cloned()
            .collect();
        let restored = restore_states(&self.incidents, runs, &new, now).await?;
        let mut states = self.states.lock().await;
        states.retain(|name, _| probes.iter().any(|p| &p.name == name));
        states.extend(restored);
        Ok(())
    }

    /// (probe, incident id) of every open incident the tracker holds.
    pub async fn open_incidents(&self) -> Vec<(String, String)> {
        self.states
            .lock()
            .await
            .iter()
            .filter_map(|(name, s)| match &s.phase {
                Phase::Open(open) => Some((name.clone(), open.id.clone())),
                _ => None,
            })
            .collect()
    }

    /// Feeds one finished run; returns what the state machine did (already persisted).
    pub async fn observe(
        &self,
        probe: &Probe,
        run: &ProbeRun,
        now: DateTime<Utc>,
    ) -> Result<Vec<Action>, StoreError> {
        let mut states = self.states.lock().await;
        let mut state = states
            .remove(&probe.name)
            .unwrap_or_else(|| ProbeAlerts::new(&probe.name));
        let mut actions = Vec::new();
        // Acknowledged or resolved by a person since the last run?
        if let Phase::Open(open) = &state.phase
            && let Some(row) = self.incidents.get(&open.id).await?
        {
            if row.resolved_at.is_some() {
                let (s, _) = step(
                    state,
                    &probe.alert,
                    Event::Resolve {
                        by: row
                            .resolved_by
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    },
                    now,
                );
                state = s;
            } else if let (Some(by), None) = (&row.acked_by, open.acked_at) {
                // At the instant it was acknowledged, not when the agent noticed.
                let at = row.acked_at.unwrap_or(now);
                let (s, a) = step(state, &probe.alert, Event::Ack { by: by.clone() }, at);
                state = s;
                actions.extend(a);
            }
        }
        let (state, run_actions) = step(state, &probe.alert, Event::Run(Fact::from_run(run)), now);
        states.insert(probe.name.clone(), state);
        drop(states);
        let (sev, conn) = (probe.severity, probe.connector_label().to_string());
        for a in &run_actions {
            match a {
                Action::Opened(open) => {
                    self.incidents
                        .save(open, &probe.name, sev, &conn, None)
                        .await?
                }
                Action::Reopened(open) => {
                    self.incidents.reopen(&open.id).await?;
                    self.incidents
                        .save(open, &probe.name, sev, &conn, None)
                        .await?;
                }
                Action::RunAttached { .. } | Action::Flapping { .. } => {
                    let states = self.states.lock().await;
                    if let Some(ProbeAlerts {
                        phase: Phase::Open(open),
                        ..
                    }) = states.get(&probe.name)
                    {
                        let open = open.clone();
                        drop(states);
                        self.incidents
                            .save(&open, &probe.name, sev, &conn, None)
                            .await?;
                    }
                }
                Action::Resolved { incident, at, by } => {
                    self.incidents
                        .save(incident, &probe.name, sev, &conn, Some((*at, *by)))
                        .await?;
                }
                Action::Acknowledged { .. } => {}
            }
        }
        actions.extend(run_actions);
        Ok(actions)
    }
}

/// One line for the agent's log about an action, or none.
pub fn describe(probe: &Probe, action: &Action) -> Option<String> {
    let runbook = probe
        .runbook
        .as_ref()
        .map(|r| format!("  runbook: {r}"))
        .unwrap_or_default();
    match action {
        Action::Opened(o) => Some(format!(
            "INCIDENT {} opened: {} {} — {}{}",
            o.id,
            probe.severity,
            probe.name,
            super::incident_reason(o),
            runbook
        )),
        Action::Reopened(o) => Some(format!(
            "INCIDENT {} reopened (flapping): {} — {}",
            o.id,
            probe.name,
            super::incident_reason(o)
        )),
        Action::Flapping { id } => Some(format!(
            "INCIDENT {id} is flapping: held open, not re-paged"
        )),
        Action::Acknowledged { id, by, .. } => Some(format!("INCIDENT {id} acknowledged by {by}")),
        Action::Resolved { incident, at, by } => Some(format!(
            "INCIDENT {} resolved ({}) after {}",
            incident.id,
            match by {
                ResolvedBy::Recovery => "recovered",
                ResolvedBy::Manual => "by hand",
            },
            humantime::format_duration(
                (*at - incident.opened_at)
                    .to_std()
                    .map(|d| std::time::Duration::from_secs(d.as_secs()))
                    .unwrap_or_default()
            )
        )),
        Action::RunAttached { .. } => None,
    }
}

/// Each probe's state rebuilt from the store: its recent runs (within the rules'
/// horizon) and its unresolved incident.
async fn restore_states(
    incidents: &IncidentStore,
    runs: &RunStore,
    probes: &[Probe],
    now: DateTime<Utc>,
) -> Result<HashMap<String, ProbeAlerts>, StoreError> {
    let open = incidents.list(true).await?;
    let mut states = HashMap::new();
    for p in probes {
        let since = now
            - chrono::Duration::from_std(p.alert.horizon()).unwrap_or(chrono::Duration::days(7));
        let facts = runs
            .recent_runs(p.name.clone(), since, p.alert.depth().max(1))
            .await?
            .iter()
            .map(|r| Fact::from_run(r).for_window())
            .collect();
        let mut s = ProbeAlerts::new(&p.name);
        s.facts = facts;
        if let Some(row) = open.iter().find(|r| r.probe == p.name) {
            s.phase = Phase::Open(Open {
                successes_in_row: s.facts.iter().rev().take_while(|f| f.success).count() as u32,
                ..row.to_open()
            });
        }
        states.insert(p.name.clone(), s);
    }
    Ok(states)
}
