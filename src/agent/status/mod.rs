//! The status page: `/status` (every probe and heartbeat check, incidents, who is on call,
//! active time windows, leftovers) and `/status/probe/<name>` (one probe's last runs and
//! charts), server-rendered HTML from the store, no script and no external asset, for the
//! service director's phone and the integration council's screen. Read-only: it changes
//! nothing, shows no secret (run messages are masked before they are stored; contacts
//! appear by name only) and escapes everything it prints. With
//! `telemetry.status_page.token` set it asks for the token.

mod chart;
mod html;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::probes::ProbeTable;
use crate::clock::Clock;
use crate::model::Probe;
use crate::notify::pager::LiveOnCall;
use crate::store::rollups::{DayCell, RecentCell, RunLine, SyncSeries};
use crate::store::{IncidentRow, IncidentStore, Ledger, RunStore};

/// Days of the long bar.
pub const BAR_DAYS: u64 = 90;
/// Runs listed on a probe's page.
const LAST_RUNS: usize = 50;
/// Resolved incidents stay on the page this long.
const RECENT_INCIDENTS: chrono::Duration = chrono::Duration::days(7);

/// What the status routes read.
#[derive(Clone)]
pub struct StatusSource {
    pub history: RunStore,
    pub incidents: IncidentStore,
    pub ledger: Ledger,
    pub(crate) probes: Arc<ProbeTable>,
    /// The built-in `rooftop-agent` check, shown with the probes.
    pub self_probe: Arc<Probe>,
    /// The heartbeat checks in force (a reload replaces them), shown with the probes.
    pub(crate) heartbeats: super::pings::Definitions,
    pub oncall: Arc<LiveOnCall>,
    pub clock: Arc<dyn Clock>,
    /// The zone of the bars' days (`defaults.timezone`).
    pub tz: Tz,
    /// The rooftop's name for the title.
    pub title: String,
    /// The token the page asks for, rendered; `None`: open.
    pub token: Option<String>,
}

/// One probe as the page shows it.
#[derive(Debug, Clone)]
pub struct ProbeView {
    pub probe: Arc<Probe>,
    pub last: Option<RunLine>,
    pub days: Vec<DayCell>,
    pub recent: Vec<RecentCell>,
    /// (runs, successes) over the last 24 h.
    pub day_ratio: (u64, u64),
    /// Sync latency, hourly over the last 24 h.
    pub sync: Vec<SyncSeries>,
    pub incident: Option<IncidentRow>,
}

/// How a probe is doing, for its badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last run succeeded and no incident is open.
    Up,
    /// The last run did not succeed, or an incident is open.
    Failing,
    /// Never ran (within the history).
    NoData,
}

impl ProbeView {
    pub fn health(&self) -> Health {
        match (&self.last, &self.incident) {
            (_, Some(_)) => Health::Failing,
            (None, None) => Health::NoData,
            (Some(l), None) if l.run.outcome == "success" => Health::Up,
            (Some(l), None) if l.run.outcome == "skipped" => Health::Up,
            _ => Health::Failing,
        }
    }
}

/// The whole page's data.
#[derive(Debug, Clone)]
pub struct Overview {
    pub title: String,
    pub now: DateTime<Utc>,
    pub tz: Tz,
    pub probes: Vec<ProbeView>,
    pub open: Vec<IncidentRow>,
    pub resolved: Vec<IncidentRow>,
    /// (rotation, contact, until).
    pub on_call: Vec<(String, Option<String>, Option<DateTime<Utc>>)>,
    /// (window, until).
    pub windows: Vec<(String, Option<DateTime<Utc>>)>,
    /// Synthetic records waiting for cleanup (not those of a run in flight).
    pub leftovers: u64,
    /// Query string carrying the token for links (`""` or `?token=…`).
    pub token_query: String,
}

/// One probe's page.
#[derive(Debug, Clone)]
pub struct Detail {
    pub overview: Overview,
    pub view: ProbeView,
    pub runs: Vec<RunLine>,
    /// Daily sync latency over the last 30 days.
    pub daily_sync: Vec<SyncSeries>,
    pub incidents: Vec<IncidentRow>,
}

impl StatusSource {
    fn all_probes(&self) -> Vec<Arc<Probe>> {
        let mut probes: Vec<Arc<Probe>> = self.probes.live().into_iter().map(|(_, p)| p).collect();
        if let Ok(checks) = self.heartbeats.read() {
            probes.extend(checks.values().map(|c| Arc::new(c.as_probe())));
        }
        probes.push(self.self_probe.clone());
        probes
    }

    async fn view(
        &self,
        probe: Arc<Probe>,
        open: &[IncidentRow],
        now: DateTime<Utc>,
    ) -> Result<ProbeView, crate::store::StoreError> {
        let name = probe.name.clone();
        let h = &self.history;
        Ok(ProbeView {
            last: h.last_runs(name.clone(), 1).await?.into_iter().next(),
            days: h.days(name.clone(), self.tz, now, BAR_DAYS).await?,
            recent: h.recent_cells(name.clone(), now).await?,
            day_ratio: h.last_24h(name.clone(), now).await?,
            sync: h
                .sync_series(
                    name.clone(),
                    now - chrono::Duration::hours(24),
                    now,
                    std::time::Duration::from_secs(3_600),
                )
                .await?,
            incident: open.iter().find(|i| i.probe == name).cloned(),
            probe,
        })
    }

    async fn overview(
        &self,
        now: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<Overview, crate::store::StoreError> {
        let all = self.incidents.list(false).await?;
        let (open, resolved): (Vec<IncidentRow>, Vec<IncidentRow>) =
            all.into_iter().partition(|i| i.resolved_at.is_none());
        let resolved: Vec<IncidentRow> = resolved
            .into_iter()
            .filter(|i| i.resolved_at.is_some_and(|r| now - r <= RECENT_INCIDENTS))
            .collect();
        let mut probes = Vec::new();
        if only.is_none() {
            for p in self.all_probes() {
                probes.push(self.view(p, &open, now).await?);
            }
        }
        let oncall = self.oncall.snapshot();
        let on_call = oncall
            .rotations
            .iter()
            .map(|r| {
                let target = crate::model::Target::Rotation {
                    name: r.name.clone(),
                    offset: 0,
                };
                let who = crate::oncall::who_with(&oncall, &target, now);
                let first = who.into_iter().next();
                (
                    r.name.clone(),
                    first.as_ref().map(|w| w.contact.clone()),
                    first.map(|w| w.shift_end),
                )
            })
            .collect();
        let windows = oncall
            .windows
            .iter()
            .filter(|w| crate::oncall::window_active(w, now))
            .map(|w| (w.name.clone(), crate::oncall::window_next_change(w, now)))
            .collect();
        let leftovers = self
            .ledger
            .pending(None)
            .await?
            .iter()
            .filter(|e| e.is_leftover())
            .count() as u64;
        Ok(Overview {
            title: self.title.clone(),
            now,
            tz: self.tz,
            probes,
            open,
            resolved,
            on_call,
            windows,
            leftovers,
            token_query: match &self.token {
                Some(t) => format!("?token={}", crate::model::escape::encode_uri_component(t)),
                None => String::new(),
            },
        })
    }

    async fn detail(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Detail>, crate::store::StoreError> {
        let Some(probe) = self.all_probes().into_iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        let overview = self.overview(now, Some(name)).await?;
        let view = self.view(probe, &overview.open, now).await?;
        let runs = self.history.last_runs(name.to_string(), LAST_RUNS).await?;
        let daily_sync = self
            .history
            .daily_sync(name.to_string(), self.tz, now, 30)
            .await?;
        let incidents = overview
            .open
            .iter()
            .chain(overview.resolved.iter())
            .filter(|i| i.probe == name)
            .cloned()
            .collect();
        Ok(Some(Detail {
            overview,
            view,
            runs,
            daily_sync,
            incidents,
        }))
    }

    /// Whether the request carries the token (always, without one).
    fn allowed(&self, headers: &HeaderMap, query: &TokenQuery) -> bool {
        let Some(want) = &self.token else { return true };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        [bearer, query.token.as_deref()]
            .into_iter()
            .flatten()
            .any(|given| super::listener::same_token(given.as_bytes(), want.as_bytes()))
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A page with the headers every status page carries: HTML, never cached, framed or
/// referred, no script and no resource but inline styles.
fn html_page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

fn refused() -> Response {
    html_page(
        StatusCode::UNAUTHORIZED,
        html::message(
            "Token needed",
            "This status page asks for its token: open it as /status?token=… (the token is in the rooftop's configuration, telemetry.status_page.token).",
        ),
    )
}

fn failed(e: crate::store::StoreError) -> Response {
    tracing::warn!("status page: {e}");
    html_page(
        StatusCode::SERVICE_UNAVAILABLE,
        html::message(
            "Status unavailable",
            "The store could not be read just now; the agent logs say why. Try again in a minute.",
        ),
    )
}

async fn overview_page(
    State(s): State<StatusSource>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !s.allowed(&headers, &q) {
        return refused();
    }
    match s.overview(s.clock.now(), None).await {
        Ok(o) => html_page(StatusCode::OK, html::overview(&o)),
        Err(e) => failed(e),
    }
}

async fn probe_page(
    State(s): State<StatusSource>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !s.allowed(&headers, &q) {
        return refused();
    }
    match s.detail(&name, s.clock.now()).await {
        Ok(Some(d)) => html_page(StatusCode::OK, html::detail(&d)),
        Ok(None) => html_page(
            StatusCode::NOT_FOUND,
            html::message("No such probe", "The agent runs no probe of that name."),
        ),
        Err(e) => failed(e),
    }
}

/// `/` and `/status` (the overview) and `/status/probe/{name}`.
pub fn routes(source: StatusSource) -> axum::Router {
    axum::Router::new()
        .route("/", get(overview_page))
        .route("/status", get(overview_page))
        .route("/status/probe/{name}", get(probe_page))
        .with_state(source)
}
