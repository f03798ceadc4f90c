//! Page grouping, decided without I/O: whether a new incident joins the page of another
//! of the same connector and severity or leads its own, when a group's resolve notice is
//! due (once every member recovered) and which notification round comes next. The pager
//! loads the state from the store, calls these functions and carries out the decision.

use chrono::{DateTime, Utc};

use crate::model::{GroupSettings, Severity};

/// One incident of a page group, as grouping sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub probe: String,
    pub severity: Severity,
    pub connector: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The leader of its group (its own id when it leads); `None` before the pager
    /// decided.
    pub group: Option<String>,
}

/// A page group: the incidents paged together under the leader's id.
#[derive(Debug, Clone, PartialEq)]
pub struct PageGroup {
    pub leader: String,
    /// Every incident of the group, the leader among them.
    pub members: Vec<Member>,
}

impl PageGroup {
    fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.id == self.leader)
    }

    /// Members other than `id` that have not resolved.
    pub fn unresolved_besides(&self, id: &str) -> usize {
        self.members
            .iter()
            .filter(|m| m.id != id && m.resolved_at.is_none())
            .count()
    }

    /// The probes of the group, each once, in member order.
    fn probes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.members {
            if !out.contains(&m.probe) {
                out.push(m.probe.clone());
            }
        }
        out
    }
}

/// What the group's notifications so far were (from the outbox).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pages {
    /// Any notification at all was queued for the leader.
    pub queued: bool,
    /// A trigger or flapping notification (someone was paged).
    pub paged: bool,
    /// Resolve rounds so far (the next notices are of the next round).
    pub resolve_rounds: u32,
}

/// The group state a decision needs, loaded by the pager.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupState {
    /// For an opening incident: the groups recently led by an incident on its
    /// connector (the store bounds them by the window; the decision checks it again).
    pub candidates: Vec<PageGroup>,
    /// For the other changes: the incident's own group (a group of one when it was never
    /// grouped).
    pub group: Option<PageGroup>,
    /// The notifications of that group.
    pub pages: Pages,
}

/// What happened to an incident, as far as grouping cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    /// It opened (the probe's connector, `None` when it names none: never grouped).
    Opened {
        id: &'a str,
        severity: Severity,
        connector: Option<&'a str>,
    },
    /// It failed again soon after recovering (flapping).
    Reopened { id: &'a str },
    /// It recovered or was resolved by hand.
    Resolved { id: &'a str },
    /// Someone acknowledged it.
    Acknowledged { id: &'a str },
}

/// What the pager must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to send.
    Nothing,
    /// Lead a new group: record it and queue the trigger page, due at `due` (the
    /// group's wait).
    Lead { due: DateTime<Utc> },
    /// Join `leader`'s group: record it and add the probe to the page still waiting;
    /// no page of its own.
    Join { leader: String },
    /// Other incidents of the group are unresolved: the group's page stands and its
    /// resolve waits for them.
    StillOpen { leader: String, open: usize },
    /// The whole group failed again: one flapping notice under the leader's id.
    Reopen { leader: String, round: u32 },
    /// The last member recovered: the resolve notice under the leader's id, listing
    /// every probe of the group.
    Resolve {
        leader: String,
        round: u32,
        probes: Vec<String>,
    },
    /// The leader was acknowledged: the acknowledgement for the group, once.
    Acknowledge { leader: String, round: u32 },
}

/// Decides what a change of one incident means for its page group.
pub fn decide_group(
    state: &GroupState,
    change: &Change<'_>,
    settings: &GroupSettings,
    now: DateTime<Utc>,
) -> Decision {
    let leader_of = |id: &str| {
        state
            .group
            .as_ref()
            .map_or_else(|| id.to_string(), |g| g.leader.clone())
    };
    match *change {
        Change::Opened {
            id,
            severity,
            connector,
        } => match joinable(state, id, severity, connector, settings, now) {
            Some(leader) => Decision::Join { leader },
            None => Decision::Lead {
                due: now + chrono::Duration::from_std(settings.wait).unwrap_or_default(),
            },
        },
        Change::Reopened { id } | Change::Resolved { id } => {
            let leader = leader_of(id);
            let open = state.group.as_ref().map_or(0, |g| g.unresolved_besides(id));
            if open > 0 {
                return Decision::StillOpen { leader, open };
            }
            let round = state.pages.resolve_rounds;
            if matches!(change, Change::Reopened { .. }) {
                Decision::Reopen { leader, round }
            } else {
                let probes = state.group.as_ref().map(PageGroup::probes);
                Decision::Resolve {
                    leader,
                    round,
                    probes: probes.unwrap_or_default(),
                }
            }
        }
        Change::Acknowledged { id } => {
            let leader = leader_of(id);
            if leader != id || !state.pages.paged {
                // The group's acknowledgement goes out once, for the leader's page.
                return Decision::Nothing;
            }
            Decision::Acknowledge {
                leader,
                round: state.pages.resolve_rounds,
            }
        }
    }
}

/// The group a new incident joins: the latest one of the same connector and severity
/// whose leader opened within the window and that still has an unresolved member.
fn joinable(
    state: &GroupState,
    id: &str,
    severity: Severity,
    connector: Option<&str>,
    settings: &GroupSettings,
    now: DateTime<Utc>,
) -> Option<String> {
    let connector = connector?;
    if settings.window.is_zero() {
        return None;
    }
    let since = now - chrono::Duration::from_std(settings.window).unwrap_or_default();
    state
        .candidates
        .iter()
        .filter(|g| g.leader != id && g.unresolved_besides(id) > 0)
        .filter_map(|g| g.leader().map(|l| (g, l)))
        .filter(|(_, l)| l.connector == connector && l.severity == severity)
        .filter(|(_, l)| l.opened_at >= since)
        .max_by_key(|(_, l)| l.opened_at)
        .map(|(g, _)| g.leader.clone())
}

/// What a restart must queue for an incident the tracker decided on but whose
/// notification never reached the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Its page (it opened; the process died before the pager ran).
    Page,
    /// Its group's resolve, as of `at` (the last member's recovery).
    Resolve { at: Option<DateTime<Utc>> },
}

/// Whether `incident` needs a notification queued after a restart. `group` and `pages`
/// are its group's when it leads one (the pager need not load them otherwise).
pub fn resume_decision(
    incident: &Member,
    group: Option<&PageGroup>,
    pages: &Pages,
) -> Option<Resume> {
    let leads = incident.group.as_deref() == Some(incident.id.as_str());
    if incident.resolved_at.is_none() {
        let unpaged = leads && !pages.queued;
        return (incident.group.is_none() || unpaged).then_some(Resume::Page);
    }
    if !leads {
        return None;
    }
    let members = group.map(|g| g.members.as_slice()).unwrap_or_default();
    if members.iter().any(|m| m.resolved_at.is_none()) {
        return None;
    }
    if pages.resolve_rounds > 0 || !pages.paged {
        return None;
    }
    Some(Resume::Resolve {
        at: members.iter().filter_map(|m| m.resolved_at).max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn settings(window: u64, wait: u64) -> GroupSettings {
        GroupSettings {
            window: Duration::from_secs(window),
            wait: Duration::from_secs(wait),
        }
    }

    fn member(id: &str, leader: &str, severity: Severity, opened: i64) -> Member {
        Member {
            id: id.into(),
            probe: id.trim_start_matches("inc-").into(),
            severity,
            connector: "crm-to-dms".into(),
            opened_at: t(opened),
            resolved_at: None,
            group: Some(leader.into()),
        }
    }

    fn group(members: Vec<Member>) -> PageGroup {
        PageGroup {
            leader: members[0].id.clone(),
            members,
        }
    }

    fn opened<'a>(id: &'a str, severity: Severity) -> Change<'a> {
        Change::Opened {
            id,
            severity,
            connector: Some("crm-to-dms"),
        }
    }

    fn with_candidates(candidates: Vec<PageGroup>) -> GroupState {
        GroupState {
            candidates,
            ..GroupState::default()
        }
    }

    #[test]
    fn an_incident_joins_a_recent_group_of_its_connector_and_severity() {
        let a = group(vec![member("inc-a", "inc-a", Severity::P2, 0)]);
        let s = with_candidates(vec![a]);
        let d = decide_group(&s, &opened("inc-b", Severity::P2), &settings(600, 30), t(5));
        assert_eq!(
            d,
            Decision::Join {
                leader: "inc-a".into()
            }
        );
    }

    #[test]
    fn without_a_group_to_join_it_leads_one_and_its_page_waits() {
        let s = GroupState::default();
        let d = decide_group(&s, &opened("inc-a", Severity::P2), &settings(600, 30), t(0));
        assert_eq!(d, Decision::Lead { due: t(30) });
        // Another connector, or none, or grouping off: a page of its own.
        let a = group(vec![member("inc-a", "inc-a", Severity::P2, 0)]);
        let s = with_candidates(vec![a]);
        let other = Change::Opened {
            id: "inc-d",
            severity: Severity::P2,
            connector: Some("dms-to-crm"),
        };
        let none = Change::Opened {
            id: "inc-e",
            severity: Severity::P2,
            connector: None,
        };
        for c in [other, none] {
            let d = decide(&s, &c, t(1));
            assert_eq!(d, Decision::Lead { due: t(1) }, "{c:?}");
        }
        let off = decide_group(&s, &opened("inc-b", Severity::P2), &settings(0, 0), t(1));
        assert_eq!(off, Decision::Lead { due: t(1) });
    }

    #[test]
    fn a_group_older_than_the_window_is_not_joined() {
        let a = group(vec![member("inc-a", "inc-a", Severity::P2, 0)]);
        let s = with_candidates(vec![a]);
        let at_edge = decide(&s, &opened("inc-b", Severity::P2), t(600));
        assert!(matches!(at_edge, Decision::Join { .. }), "{at_edge:?}");
        let late = decide(&s, &opened("inc-b", Severity::P2), t(601));
        assert_eq!(late, Decision::Lead { due: t(601) });
    }

    #[test]
    fn a_group_whose_members_all_resolved_is_not_joined() {
        let mut a = member("inc-a", "inc-a", Severity::P2, 0);
        let mut b = member("inc-b", "inc-a", Severity::P2, 5);
        a.resolved_at = Some(t(50));
        b.resolved_at = Some(t(60));
        let s = with_candidates(vec![group(vec![a, b])]);
        let d = decide(&s, &opened("inc-c", Severity::P2), t(70));
        assert_eq!(d, Decision::Lead { due: t(70) });
    }

    #[test]
    fn severity_is_never_shared() {
        let p1 = group(vec![member("inc-a", "inc-a", Severity::P1, 0)]);
        let s = with_candidates(vec![p1]);
        let d = decide(&s, &opened("inc-b", Severity::P2), t(5));
        assert_eq!(d, Decision::Lead { due: t(5) });
    }

    #[test]
    fn the_latest_open_group_is_joined() {
        let old = group(vec![member("inc-a", "inc-a", Severity::P2, 0)]);
        let new = group(vec![member("inc-c", "inc-c", Severity::P2, 100)]);
        let s = with_candidates(vec![old, new]);
        let d = decide(&s, &opened("inc-d", Severity::P2), t(110));
        assert_eq!(
            d,
            Decision::Join {
                leader: "inc-c".into()
            }
        );
    }

    /// A decision with a ten-minute window and no wait.
    fn decide(state: &GroupState, change: &Change<'_>, now: DateTime<Utc>) -> Decision {
        decide_group(state, change, &settings(600, 0), now)
    }

    fn own(members: Vec<Member>, pages: Pages) -> GroupState {
        GroupState {
            group: Some(group(members)),
            pages,
            ..GroupState::default()
        }
    }

    const PAGED: Pages = Pages {
        queued: true,
        paged: true,
        resolve_rounds: 0,
    };

    #[test]
    fn the_resolve_waits_for_the_last_member_to_recover() {
        let a = member("inc-a", "inc-a", Severity::P2, 0);
        let mut b = member("inc-b", "inc-a", Severity::P2, 5);
        let c = member("inc-c", "inc-a", Severity::P2, 20);
        b.resolved_at = Some(t(100));
        let s = own(vec![a.clone(), b.clone(), c.clone()], PAGED);
        let d = decide(&s, &Change::Resolved { id: "inc-b" }, t(100));
        assert_eq!(
            d,
            Decision::StillOpen {
                leader: "inc-a".into(),
                open: 2
            }
        );
        let (mut a, mut c) = (a, c);
        a.resolved_at = Some(t(110));
        c.resolved_at = Some(t(120));
        let s = own(vec![a, b, c], PAGED);
        let d = decide(&s, &Change::Resolved { id: "inc-c" }, t(120));
        assert_eq!(
            d,
            Decision::Resolve {
                leader: "inc-a".into(),
                round: 0,
                probes: vec!["a".into(), "b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn reopen_rounds_follow_the_resolves_so_far() {
        let a = member("inc-a", "inc-a", Severity::P2, 0);
        let pages = Pages {
            resolve_rounds: 2,
            ..PAGED
        };
        let s = own(vec![a.clone()], pages);
        let reopen = decide(&s, &Change::Reopened { id: "inc-a" }, t(9));
        assert_eq!(
            reopen,
            Decision::Reopen {
                leader: "inc-a".into(),
                round: 2
            }
        );
        let resolve = decide(&s, &Change::Resolved { id: "inc-a" }, t(9));
        assert!(
            matches!(resolve, Decision::Resolve { round: 2, .. }),
            "{resolve:?}"
        );
        // A member failing again while others are still open: the page stands.
        let b = member("inc-b", "inc-a", Severity::P2, 5);
        let s = own(vec![a, b], pages);
        let d = decide(&s, &Change::Reopened { id: "inc-b" }, t(9));
        assert_eq!(
            d,
            Decision::StillOpen {
                leader: "inc-a".into(),
                open: 1
            }
        );
    }

    #[test]
    fn only_the_leaders_acknowledgement_is_sent_and_only_after_a_page() {
        let a = member("inc-a", "inc-a", Severity::P2, 0);
        let b = member("inc-b", "inc-a", Severity::P2, 5);
        let s = own(vec![a.clone(), b], PAGED);
        let ack = |id| decide(&s, &Change::Acknowledged { id }, t(9));
        assert_eq!(
            ack("inc-a"),
            Decision::Acknowledge {
                leader: "inc-a".into(),
                round: 0
            }
        );
        assert_eq!(ack("inc-b"), Decision::Nothing);
        let unpaged = own(vec![a], Pages::default());
        let d = decide(&unpaged, &Change::Acknowledged { id: "inc-a" }, t(9));
        assert_eq!(d, Decision::Nothing);
    }

    #[test]
    fn a_restart_queues_only_what_never_reached_the_outbox() {
        let mut a = member("inc-a", "inc-a", Severity::P2, 0);
        let none = Pages::default();
        assert_eq!(resume_decision(&a, None, &none), Some(Resume::Page));
        assert_eq!(resume_decision(&a, None, &PAGED), None, "already paged");
        let b = member("inc-b", "inc-a", Severity::P2, 5);
        assert_eq!(resume_decision(&b, None, &none), None, "grouped member");
        let mut ungrouped = b.clone();
        ungrouped.group = None;
        assert_eq!(resume_decision(&ungrouped, None, &none), Some(Resume::Page));

        a.resolved_at = Some(t(60));
        let mut b = b;
        let g = group(vec![a.clone(), b.clone()]);
        assert_eq!(resume_decision(&a, Some(&g), &PAGED), None, "b still open");
        b.resolved_at = Some(t(70));
        let g = group(vec![a.clone(), b.clone()]);
        assert_eq!(
            resume_decision(&a, Some(&g), &PAGED),
            Some(Resume::Resolve { at: Some(t(70)) })
        );
        let resolved = Pages {
            resolve_rounds: 1,
            ..PAGED
        };
        assert_eq!(resume_decision(&a, Some(&g), &resolved), None, "once");
        assert_eq!(
            resume_decision(&b, Some(&g), &PAGED),
            None,
            "not the leader"
        );
        assert_eq!(resume_decision(&a, Some(&g), &none), None, "never paged");
    }
}
