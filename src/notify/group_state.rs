//! Loads what `alerting::grouping` decides on from the stores: the recent groups a new
//! incident might join, an incident's own group and what its notifications so far were.
//! Reads only; the pager carries out the decision.

use chrono::{DateTime, Utc};

use super::{Notice, NoticeKind};
use crate::alerting::grouping::{GroupState, Member, PageGroup, Pages};
use crate::model::GroupSettings;
use crate::store::outbox::{OutboxEntry, OutboxRow, OutboxStore};
use crate::store::{IncidentRow, IncidentStore, StoreError};

/// An incident row as grouping sees it.
pub(super) fn member(row: &IncidentRow) -> Member {
    Member {
        id: row.id.clone(),
        probe: row.probe.clone(),
        severity: row.severity,
        connector: row.connector.clone(),
        opened_at: row.opened_at,
        resolved_at: row.resolved_at,
        group: row.group.clone(),
    }
}

/// Rows of several groups (each member's `group` names its leader), as groups in the
/// order they come.
fn page_groups(rows: &[IncidentRow]) -> Vec<PageGroup> {
    let mut out: Vec<PageGroup> = Vec::new();
    for r in rows {
        let leader = r.group.clone().unwrap_or_else(|| r.id.clone());
        match out.iter_mut().find(|g| g.leader == leader) {
            Some(g) => g.members.push(member(r)),
            None => out.push(PageGroup {
                leader,
                members: vec![member(r)],
            }),
        }
    }
    out
}

/// The groups a new incident on `connector` might join: those whose leader opened
/// within the window (none when grouping is off or the probe names no connector).
pub(super) async fn candidates(
    incidents: &IncidentStore,
    connector: Option<&str>,
    settings: &GroupSettings,
    now: DateTime<Utc>,
) -> Result<GroupState, StoreError> {
    let (Some(connector), false) = (connector, settings.window.is_zero()) else {
        return Ok(GroupState::default());
    };
    let since = now - chrono::Duration::from_std(settings.window).unwrap_or_default();
    let rows = incidents.recent_groups(connector, since).await?;
    Ok(GroupState {
        candidates: page_groups(&rows),
        ..GroupState::default()
    })
}

/// An incident's group, with the notifications of its members (`leader_only`: the
/// leader's notifications only, as acknowledgements use them).
pub(super) async fn own_group(
    incidents: &IncidentStore,
    outbox: &OutboxStore,
    id: &str,
    leader_only: bool,
) -> Result<(GroupState, Vec<OutboxRow>), StoreError> {
    let leader = incidents
        .get(id)
        .await?
        .and_then(|r| r.group)
        .unwrap_or_else(|| id.to_string());
    let members = incidents.group_members(&leader).await?;
    let rows = if leader_only {
        outbox.for_incident(&leader).await?
    } else {
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        outbox.for_incidents(&ids).await?
    };
    let state = GroupState {
        candidates: Vec::new(),
        pages: pages(&rows, &leader),
        group: Some(PageGroup {
            members: members.iter().map(member).collect(),
            leader,
        }),
    };
    Ok((state, rows))
}

/// What the notifications of `leader`'s group so far were.
pub(super) fn pages(rows: &[OutboxRow], leader: &str) -> Pages {
    Pages {
        queued: rows.iter().any(|r| r.entry.incident_id == leader),
        paged: rows.iter().any(is_page),
        resolve_rounds: resolve_rounds(rows, leader),
    }
}

/// A trigger or flapping notification (what paged people).
pub(super) fn is_page(r: &OutboxRow) -> bool {
    matches!(r.entry.kind, NoticeKind::Trigger | NoticeKind::Flapping)
}

/// The notice of the leader's first page (what the on-call engineer got).
pub(super) fn page_notice(rows: &[OutboxRow], leader: &str) -> Option<Notice> {
    rows.iter()
        .find(|r| r.entry.incident_id == leader && is_page(r))
        .and_then(|r| serde_json::from_str::<Notice>(&r.entry.notice).ok())
}

/// How many resolve rounds the leader's group has had (the next notices are of the
/// next round).
fn resolve_rounds(rows: &[OutboxRow], leader: &str) -> u32 {
    let mut rounds: Vec<&str> = rows
        .iter()
        .filter(|r| r.entry.incident_id == leader && r.entry.kind == NoticeKind::Resolve)
        .filter_map(|r| OutboxEntry::key_kind_and_channel(&r.entry.key).map(|(kind, _)| kind))
        .collect();
    rounds.sort();
    rounds.dedup();
    rounds.len() as u32
}
