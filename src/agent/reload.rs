//! A reload (`SIGHUP`, `systemctl reload`): the caller has re-read and validated the
//! configuration; here the running agent moves to it. Only what changed moves: an added
//! probe starts, a removed one stops firing, a changed one is rescheduled under its new
//! definition; unchanged probes keep their schedule, history, failure streak and open
//! incident. A run in flight finishes under the definition it started with.
//! Heartbeat checks (`heartbeats/*.yaml`) move the same way: an added check is watched
//! from now, a removed one refuses pings, a changed one keeps its last ping and counts its
//! next deadline from it under the new schedule; their names are listed with the probes'.
//! `oncall:` and `time_windows:` (rotations, overrides, windows) apply at once: the pager
//! reads them live, and an escalation in progress pages whoever is on call at its next
//! step. Other `rooftop.yaml` settings than those folded into probes (defaults) are read
//! at start: a change to them is named, on every reload until a restart applies it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Running;
use crate::config::Config;
use crate::model::{Agent as AgentSettings, Probe};
use crate::scheduler::{self, Plan, Update};
use crate::store::StoreError;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// What the operator should know: settings that wait for a restart, incidents of
    /// removed probes left open.
    pub notes: Vec<String>,
}

impl Reloaded {
    /// One line: `2 added (a, b), 1 changed (c), 0 removed, 5 unchanged`.
    pub fn summary(&self) -> String {
        // At most ten names each: a reload of thousands of probes stays one readable line.
        let part = |n: &str, v: &[String]| match v.len() {
            0 => format!("0 {n}"),
            1..=10 => format!("{} {n} ({})", v.len(), v.join(", ")),
            k => format!("{k} {n} ({}, … and {} more)", v[..10].join(", "), k - 10),
        };
        format!(
            "{}, {}, {}, {} unchanged",
            part("added", &self.added),
            part("changed", &self.changed),
            part("removed", &self.removed),
            self.unchanged
        )
    }
}

/// How the probes of a new configuration relate to those running.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    pub added: Vec<Probe>,
    /// (index, new definition).
    pub changed: Vec<(usize, Probe)>,
    /// (index, name).
    pub removed: Vec<(usize, String)>,
    pub unchanged: usize,
}

/// Whether two validated definitions (probes, heartbeat checks, settings) are the same.
/// The model holds compiled values (cron schedules, regexes, JSONPaths) without
/// `PartialEq`; their `Debug` form shows every field (maps in the model are ordered),
/// and both sides come from the same binary, so equal text is an equal definition.
pub(super) fn same(a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

pub(crate) fn diff(live: &[(usize, Arc<Probe>)], new: Vec<Probe>) -> Diff {
    let mut d = Diff::default();
    let by_name: HashMap<&str, (usize, &Probe)> = live
        .iter()
        .map(|(i, p)| (p.name.as_str(), (*i, p.as_ref())))
        .collect();
    let new_names: HashSet<String> = new.iter().map(|p| p.name.clone()).collect();
    for p in new {
        match by_name.get(p.name.as_str()) {
            None => d.added.push(p),
            Some((_, old)) if same(old, &p) => d.unchanged += 1,
            Some((i, _)) => d.changed.push((*i, p)),
        }
    }
    d.removed = live
        .iter()
        .filter(|(_, p)| !new_names.contains(&p.name))
        .map(|(i, p)| (*i, p.name.clone()))
        .collect();
    d
}

/// The `rooftop.yaml` sections that differ (those a running agent reads only at start).
fn changed_settings(old: &AgentSettings, new: &AgentSettings) -> Vec<&'static str> {
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| !same(a, b);
    let mut out = Vec::new();
    if differs(
        &(&old.rooftop_id, &old.rooftop_name, &old.dealer_group),
        &(&new.rooftop_id, &new.rooftop_name, &new.dealer_group),
    ) {
        out.push("rooftop");
    }
    for (name, a, b) in [
        (
            "state_dir",
            &old.state_dir as &dyn std::fmt::Debug,
            &new.state_dir as &dyn std::fmt::Debug,
        ),
        ("secrets", &old.secrets, &new.secrets),
        ("env", &old.env, &new.env),
        (
            "defaults.max_body_bytes",
            &old.max_body_bytes,
            &new.max_body_bytes,
        ),
        ("defaults.verify_tls", &old.verify_tls, &new.verify_tls),
        ("scheduler", &old.scheduler, &new.scheduler),
        ("history", &old.history, &new.history),
        ("telemetry", &old.telemetry, &new.telemetry),
        ("alerting", &old.alerting, &new.alerting),
    ] {
        if differs(a, b) {
            out.push(name);
        }
    }
    out
}

impl Running {
    /// Moves the running agent to `config` (already validated). Errors only when the
    /// store cannot be read for the added probes' history; nothing has changed then.
    pub async fn reload(&mut self, config: Config) -> Result<Reloaded, StoreError> {
        let now = self.clock.now();
        let mut notes = Vec::new();
        let settings = changed_settings(&self.settings, &config.agent);
        let oncall_changed = self.settings.oncall != config.agent.oncall;
        if !settings.is_empty() {
            notes.push(format!(
                "rooftop.yaml: {} changed; {} read at start: restart the agent to apply (systemctl restart rooftop)",
                settings.join(", "),
                if settings.len() == 1 { "it is" } else { "they are" }
            ));
        }
        // Incidents of probes about to be removed, while the tracker still knows them.
        let open = self.tracker.open_incidents().await;
        // Then the one step that can fail, before anything has moved. The agent's own
        // probe is neither added nor removed by a reload.
        let mut config = config;
        let scheduled = config.probes.len();
        config.probes.push(self.self_probe.as_ref().clone());
        config
            .probes
            .extend(config.heartbeats.iter().map(|h| h.as_probe()));
        let adopted = self.tracker.adopt(&self.history, &config.probes, now).await;
        if adopted.is_ok() {
            self.telemetry.set_probes(&config.probes);
        }
        config.probes.truncate(scheduled);
        adopted?;
        let d = diff(&self.probes.live(), config.probes);
        let mut out = Reloaded {
            unchanged: d.unchanged,
            notes,
            ..Reloaded::default()
        };
        let plan = |p: &Probe| Plan {
            schedule: p.schedule.clone(),
            offset: scheduler::spread(&p.name, &p.schedule),
            catch_up: None,
            pace: self.pace,
        };
        for (i, p) in d.changed {
            let update = Update::Set {
                probe: i,
                plan: plan(&p),
            };
            out.changed.push(p.name.clone());
            self.probes.set(i, Some(Arc::new(p)));
            let _ = self.updates.send(update);
        }
        for p in d.added {
            let i = self.probes.next_index();
            let update = Update::Set {
                probe: i,
                plan: plan(&p),
            };
            out.added.push(p.name.clone());
            self.probes.set(i, Some(Arc::new(p)));
            let _ = self.updates.send(update);
        }
        for (i, name) in d.removed {
            self.probes.set(i, None);
            let _ = self.updates.send(Update::Remove { probe: i });
            if let Some(id) = open.iter().find(|(p, _)| *p == name).map(|(_, id)| id) {
                out.notes.push(format!(
                    "{name} was removed with incident {id} open: resolve it with `rooftop resolve {id}` once its cause is dealt with"
                ));
            }
            out.removed.push(name);
        }
        let checks = self
            .heartbeat_checks
            .reload(std::mem::take(&mut config.heartbeats));
        out.added.extend(checks.added);
        out.changed.extend(checks.changed);
        out.removed.extend(checks.removed);
        out.unchanged += checks.unchanged;
        // Only what was applied moves into the settings: a change that waits for a restart
        // is named again by the next reload.
        if oncall_changed {
            self.oncall.replace(config.agent.oncall.clone());
            out.notes.push(format!(
                "oncall / time_windows applied ({} rotation{}, {} window{}): escalations in progress page whoever is on call at their next step",
                config.agent.oncall.rotations.len(),
                if config.agent.oncall.rotations.len() == 1 { "" } else { "s" },
                config.agent.oncall.windows.len(),
                if config.agent.oncall.windows.len() == 1 { "" } else { "s" },
            ));
            self.settings.oncall = config.agent.oncall;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_at_most_ten_probes_of_each_kind() {
        let names = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        let r = Reloaded {
            added: names(1),
            changed: names(12),
            unchanged: 3,
            ..Reloaded::default()
        };
        assert_eq!(
            r.summary(),
            "1 added (p0), 12 changed (p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, … and 2 more), 0 removed, 3 unchanged"
        );
    }
}
