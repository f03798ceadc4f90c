//! Passive heartbeat checks (`heartbeats/*.yaml`) on the running agent: the listener's
//! `/ping/NAME[/start|/fail|/CODE]` routes take a dealership job's pings, and one
//! evaluator task owns every check's state (`scheduler::heartbeat_check`), turning pings
//! and missed deadlines into runs of the check's probe for the `Judge` — stored,
//! exported, judged by the alert rules and paged like any probe's runs.
//! Not `heartbeat.rs`: that is the agent's own outgoing dead-man's switch.
//! Tokens are rendered from secrets here and never logged; a ping's body is masked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as AxPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Judge;
use crate::clock::Clock;
use crate::model::{
    CleanupReport, ErrorClass, Fire, HeartbeatCheck, MAX_PING_BODY, Outcome, Probe, ProbeRun,
};
use crate::runner::Runner;
use crate::scheduler::heartbeat_check::{CheckState, LastRun, PingKind, Timing, Verdict};
use crate::secrets::Masker;
use crate::store::RunStore;

/// The longest the evaluator sleeps between looks at the deadlines (it also wakes at the
/// next deadline and on every ping).
pub const EVALUATE_EVERY: Duration = Duration::from_secs(10);

/// The largest request body read (a job piping its log); only its last `MAX_PING_BODY`
/// bytes are kept.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// A check as the listener sees it: its token (`None`: its secret could not be read, so
/// every ping is refused) and what masks it.
#[derive(Debug, Clone)]
struct Gate {
    token: Option<String>,
    masker: Masker,
}

/// What the evaluator is told.
enum Msg {
    Ping {
        name: String,
        kind: PingKind,
        at: DateTime<Utc>,
        body: Option<String>,
    },
    /// A reload: the checks now configured, each with what masks its token.
    Reload(Vec<(HeartbeatCheck, Masker)>),
}

/// The `/ping` routes' state.
#[derive(Debug, Clone)]
pub struct PingRoutes {
    gates: Arc<RwLock<BTreeMap<String, Gate>>>,
    tx: mpsc::UnboundedSender<MsgBox>,
    clock: Arc<dyn Clock>,
}

/// `Msg` behind a `Debug` a `PingRoutes` can derive (a ping's body is not printed).
struct MsgBox(Msg);

impl std::fmt::Debug for MsgBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// The heartbeat checks of a built agent: their rendered tokens, restored states and the
/// channel the routes and a reload talk to the evaluator on.
pub(super) struct HeartbeatChecks {
    routes: PingRoutes,
    rx: mpsc::UnboundedReceiver<MsgBox>,
    live: BTreeMap<String, Live>,
    runner: Runner,
    /// The definitions now in force (a reload replaces them), for the status page too.
    current: Definitions,
}

/// The heartbeat checks now configured, by name.
pub(super) type Definitions = Arc<RwLock<BTreeMap<String, HeartbeatCheck>>>;

/// One check the evaluator watches.
struct Live {
    check: HeartbeatCheck,
    probe: Arc<Probe>,
    state: CheckState,
    masker: Masker,
}

/// What a check expects, for its state machine.
fn timing(check: &HeartbeatCheck) -> Timing<'_> {
    Timing {
        schedule: &check.schedule,
        grace: check.grace,
    }
}

/// What a reload of the checks did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecksReloaded {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

/// A handle a running agent keeps for reloads.
#[derive(Clone)]
pub(super) struct ChecksHandle {
    routes: PingRoutes,
    runner: Runner,
    /// Definitions last sent to the evaluator, by name (to diff the next reload against).
    current: Definitions,
}

/// Renders a check's token; on failure says so (the secret's name, never a value).
fn gate(runner: &Runner, check: &HeartbeatCheck) -> Gate {
    let masker = Masker::default();
    let token = match runner.render_setting(&check.token) {
        Ok(t) if !t.trim().is_empty() => {
            masker.add(t.trim());
            Some(t.trim().to_string())
        }
        Ok(_) => {
            tracing::warn!(
                "heartbeat check {}: its token is empty: every ping is refused until it is set",
                check.name
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "heartbeat check {}: token: {e}: every ping is refused until it can be read",
                check.name
            );
            None
        }
    };
    Gate { token, masker }
}

/// The state a check resumes with: from its last stored run, if any.
async fn restore_state(
    history: &RunStore,
    check: &HeartbeatCheck,
    now: DateTime<Utc>,
) -> CheckState {
    let t = timing(check);
    let last = match history.recent_runs(check.name.clone(), now, 1).await {
        Ok(runs) => runs.last().map(|r| match (r.outcome, r.error_class) {
            (Outcome::Success, _) => LastRun::Success(r.finished_at),
            (_, Some(ErrorClass::HeartbeatMissed)) => LastRun::Missed(r.started_at),
            _ => LastRun::Failed(r.finished_at),
        }),
        Err(e) => {
            tracing::warn!(
                "heartbeat check {}: its last run cannot be read ({e}); counting from now",
                check.name
            );
            None
        }
    };
    CheckState::restore(t, last, now)
}

impl HeartbeatChecks {
    /// Renders every token and restores every state from the history.
    pub(super) async fn build(
        checks: &[HeartbeatCheck],
        runner: &Runner,
        history: &RunStore,
        clock: Arc<dyn Clock>,
    ) -> HeartbeatChecks {
        let now = clock.now();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut gates = BTreeMap::new();
        let mut live = BTreeMap::new();
        for c in checks {
            let g = gate(runner, c);
            let state = restore_state(history, c, now).await;
            live.insert(
                c.name.clone(),
                Live {
                    check: c.clone(),
                    probe: Arc::new(c.as_probe()),
                    state,
                    masker: g.masker.clone(),
                },
            );
            gates.insert(c.name.clone(), g);
            tracing::info!(target: crate::model::NOTE,
                "  {:<32} {:<36} heartbeat, grace {}: ping /ping/{}",
                c.name,
                c.schedule.to_string(),
                humantime::format_duration(c.grace),
                c.name
            );
        }
        let current = live
            .iter()
            .map(|(n, l)| (n.clone(), l.check.clone()))
            .collect();
        HeartbeatChecks {
            routes: PingRoutes {
                gates: Arc::new(RwLock::new(gates)),
                tx,
                clock,
            },
            rx,
            live,
            runner: runner.clone(),
            current: Arc::new(RwLock::new(current)),
        }
    }

    pub(super) fn routes(&self) -> PingRoutes {
        self.routes.clone()
    }

    /// The definitions in force, shared with reloads.
    pub(super) fn definitions(&self) -> Definitions {
        self.current.clone()
    }

    /// Starts the evaluator; it ends on `stop` after judging the pings already received.
    pub(super) fn spawn(
        self,
        judge: Judge,
        stop: watch::Receiver<bool>,
    ) -> (ChecksHandle, JoinHandle<()>) {
        let handle = ChecksHandle {
            routes: self.routes.clone(),
            runner: self.runner.clone(),
            current: self.current.clone(),
        };
        let task = tokio::spawn(evaluate(self.live, self.rx, judge, stop));
        (handle, task)
    }
}

impl ChecksHandle {
    /// Moves to `checks` (validated): tokens rendered again, the listener takes the new
    /// names at once, the evaluator keeps the state of every check that stays.
    pub(super) fn reload(&self, checks: Vec<HeartbeatCheck>) -> ChecksReloaded {
        let mut out = ChecksReloaded::default();
        let Ok(mut current) = self.current.write() else {
            return out;
        };
        for c in &checks {
            match current.get(&c.name) {
                None => out.added.push(c.name.clone()),
                Some(old) if super::reload::same(old, c) => out.unchanged += 1,
                Some(_) => out.changed.push(c.name.clone()),
            }
        }
        out.removed = current
            .keys()
            .filter(|n| !checks.iter().any(|c| &c.name == *n))
            .cloned()
            .collect();
        let gates: BTreeMap<String, Gate> = checks
            .iter()
            .map(|c| (c.name.clone(), gate(&self.runner, c)))
            .collect();
        *current = checks.iter().map(|c| (c.name.clone(), c.clone())).collect();
        let with_maskers = checks
            .into_iter()
            .map(|c| {
                let m = gates
                    .get(&c.name)
                    .map(|g| g.masker.clone())
                    .unwrap_or_default();
                (c, m)
            })
            .collect();
        if let Ok(mut g) = self.routes.gates.write() {
            *g = gates;
        }
        let _ = self.routes.tx.send(MsgBox(Msg::Reload(with_maskers)));
        out
    }
}

/// The evaluator: every ping and every deadline, in order, one at a time.
async fn evaluate(
    mut live: BTreeMap<String, Live>,
    mut rx: mpsc::UnboundedReceiver<MsgBox>,
    judge: Judge,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = judge.clock.now();
        for l in live.values_mut() {
            let verdicts = l.state.tick(timing(&l.check), now);
            for v in verdicts {
                judge_verdict(&judge, l, &v, None).await;
            }
        }
        let next = live
            .values()
            .filter_map(|l| l.state.next_deadline(timing(&l.check)))
            .min();
        let wait = next
            .map(|n| (n - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(EVALUATE_EVERY)
            .min(EVALUATE_EVERY)
            // The wall clock may run a little behind tokio's timer: never wake just short.
            + Duration::from_millis(5);
        let woke = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            m = rx.recv() => Some(m),
            _ = tokio::time::sleep(wait) => Some(None),
        };
        match woke {
            Some(Some(MsgBox(m))) => handle(&mut live, m, &judge).await,
            Some(None) if rx.is_closed() => break,
            Some(None) => {}
            None => {
                // What the listener took before the stop is judged (its job was told OK).
                while let Ok(MsgBox(m)) = rx.try_recv() {
                    handle(&mut live, m, &judge).await;
                }
                break;
            }
        }
    }
}

async fn handle(live: &mut BTreeMap<String, Live>, m: Msg, judge: &Judge) {
    match m {
        Msg::Ping {
            name,
            kind,
            at,
            body,
        } => {
            // Removed by a reload since the listener took it.
            let Some(l) = live.get_mut(&name) else { return };
            if let Some(v) = l.state.ping(timing(&l.check), kind, at) {
                let body = body.map(|b| l.masker.mask(&b));
                judge_verdict(judge, l, &v, body.as_deref()).await;
            }
        }
        Msg::Reload(checks) => {
            let now = judge.clock.now();
            let mut next = BTreeMap::new();
            for (c, masker) in checks {
                let entry = match live.remove(&c.name) {
                    Some(mut old) => {
                        if format!("{:?}", old.check) != format!("{c:?}") {
                            old.probe = Arc::new(c.as_probe());
                            old.check = c;
                            old.state.reschedule(timing(&old.check), now);
                        }
                        old.masker = masker;
                        old
                    }
                    None => {
                        let state = CheckState::new(timing(&c), now);
                        Live {
                            probe: Arc::new(c.as_probe()),
                            check: c,
                            state,
                            masker,
                        }
                    }
                };
                next.insert(entry.check.name.clone(), entry);
            }
            *live = next;
        }
    }
}

async fn judge_verdict(judge: &Judge, l: &Live, v: &Verdict, body: Option<&str>) {
    let (run, scheduled) = as_run(&l.check, &l.probe, v, body);
    let fire = Fire {
        scheduled,
        lag: Duration::ZERO,
        catch_up: None,
    };
    judge.finished(&l.probe, &run, fire).await;
}

/// `2026-12-04 02:00 EST` in the check's zone for cron schedules, else UTC.
fn shown(check: &HeartbeatCheck, t: DateTime<Utc>) -> String {
    match &check.schedule {
        crate::model::Schedule::Cron { timezone, .. } => t
            .with_timezone(timezone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        crate::model::Schedule::Every(_) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// A verdict as a run of the check's probe, and the instant it was due.
fn as_run(
    check: &HeartbeatCheck,
    probe: &Probe,
    v: &Verdict,
    body: Option<&str>,
) -> (ProbeRun, DateTime<Utc>) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let grace = humantime::format_duration(check.grace);
    let with_body = |m: String| match body.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => format!("{m}: {b}"),
        None => m,
    };
    let (started, at, scheduled, outcome, class, message) = match v {
        Verdict::Success { at, started } => (
            started.unwrap_or(*at),
            *at,
            *at,
            Outcome::Success,
            None,
            body.map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_string),
        ),
        Verdict::Failed { at, started, exit } => (
            started.unwrap_or(*at),
            *at,
            *at,
            Outcome::Failed,
            Some(ErrorClass::HeartbeatFailed),
            Some(with_body(match exit {
                Some(code) => format!("the job exited with status {code}"),
                None => "the job reported failure".to_string(),
            })),
        ),
        Verdict::Missed {
            due,
            at,
            last_ping,
            skipped,
        } => {
            let last = last_ping.map_or("never".to_string(), |t| shown(check, t));
            let more = match skipped {
                0 => String::new(),
                n => format!(" ({n} later deadline(s) passed unpinged too)"),
            };
            (
                *due,
                *at,
                *due,
                Outcome::Failed,
                Some(ErrorClass::HeartbeatMissed),
                Some(format!(
                    "no ping by {} + {grace} grace (last ping: {last}){more}",
                    shown(check, *due)
                )),
            )
        }
        Verdict::Unfinished { started, at } => (
            *started,
            *at,
            *started,
            Outcome::Failed,
            Some(ErrorClass::HeartbeatMissed),
            Some(format!(
                "the job started at {} and reported neither success nor failure within the {grace} grace",
                shown(check, *started)
            )),
        ),
    };
    let failed = outcome != Outcome::Success;
    let ms = at.timestamp_millis();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in check.name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let run = ProbeRun {
        run_id: format!("{}-{ms}-{seq}", check.name),
        probe: check.name.clone(),
        trace_id: format!("{:016x}{:016x}", ms as u64, h ^ seq),
        started_at: started,
        finished_at: at,
        // A missed deadline took no time of the job's: only a measured run has a duration.
        duration_ms: match v {
            Verdict::Missed { .. } => 0.0,
            _ => (at - started).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0,
        },
        outcome,
        error_class: class,
        failed_step: failed.then(|| "heartbeat".to_string()),
        message,
        labels: probe.labels.clone(),
        runbook: failed
            .then(|| probe.runbook.as_ref().map(|r| r.to_string()))
            .flatten(),
        steps: Vec::new(),
        cleanup: CleanupReport::default(),
    };
    (run, scheduled)
}

// ---------------------------------------------------------------------------------------
// The routes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: Option<String>,
}

/// The token a request carries: `Authorization: Bearer TOKEN`, else `?key=TOKEN`.
fn presented<'a>(headers: &'a HeaderMap, q: &'a KeyQuery) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or(q.key.as_deref())
        .filter(|t| !t.is_empty())
}

/// `start`, `fail` or an exit status 0–255.
fn parse_action(action: &str) -> Option<PingKind> {
    match action {
        "start" => Some(PingKind::Start),
        "fail" => Some(PingKind::Fail),
        code if !code.is_empty() && code.len() <= 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
            code.parse::<u8>().ok().map(PingKind::Exit)
        }
        _ => None,
    }
}

/// The last `MAX_PING_BODY` bytes of a body, as text (cut at a character boundary).
fn body_tail(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let tail = &body[body.len().saturating_sub(MAX_PING_BODY)..];
    let text = String::from_utf8_lossy(tail);
    let text = text.trim_start_matches('\u{fffd}');
    Some(if tail.len() < body.len() {
        format!("…{text}")
    } else {
        text.to_string()
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

impl PingRoutes {
    fn take(
        &self,
        name: String,
        kind: PingKind,
        headers: &HeaderMap,
        q: &KeyQuery,
        body: &[u8],
    ) -> Response {
        let gate = match self.gates.read() {
            Ok(g) => g.get(&name).cloned(),
            Err(_) => return plain(StatusCode::SERVICE_UNAVAILABLE, "unavailable\n"),
        };
        let Some(gate) = gate else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let Some(given) = presented(headers, q) else {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "unauthorized\n",
            )
                .into_response();
        };
        let ok = gate
            .token
            .as_deref()
            .is_some_and(|t| super::listener::same_token(t.as_bytes(), given.as_bytes()));
        if !ok {
            return plain(StatusCode::FORBIDDEN, "forbidden\n");
        }
        let msg = Msg::Ping {
            name,
            kind,
            at: self.clock.now(),
            body: body_tail(body),
        };
        match self.tx.send(MsgBox(msg)) {
            Ok(()) => plain(StatusCode::OK, "OK\n"),
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        }
    }

    /// `GET|POST|HEAD /ping/NAME` and `/ping/NAME/{start,fail,CODE}`.
    pub fn router(self) -> Router {
        async fn success(
            State(r): State<PingRoutes>,
            AxPath(name): AxPath<String>,
            Query(q): Query<KeyQuery>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            r.take(name, PingKind::Success, &headers, &q, &body)
        }
        async fn action(
            State(r): State<PingRoutes>,
            AxPath((name, action)): AxPath<(String, String)>,
            Query(q): Query<KeyQuery>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            match parse_action(&action) {
                Some(kind) => r.take(name, kind, &headers, &q, &body),
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            }
        }
        Router::new()
            .route("/ping/{name}", get(success).post(success))
            .route("/ping/{name}/{action}", get(action).post(action))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
            .with_state(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_start_fail_or_an_exit_status() {
        assert_eq!(parse_action("start"), Some(PingKind::Start));
        assert_eq!(parse_action("fail"), Some(PingKind::Fail));
        assert_eq!(parse_action("0"), Some(PingKind::Exit(0)));
        assert_eq!(parse_action("255"), Some(PingKind::Exit(255)));
        assert_eq!(parse_action("256"), None);
        assert_eq!(parse_action("-1"), None);
        assert_eq!(parse_action("+1"), None);
        assert_eq!(parse_action("log"), None);
    }

    #[test]
    fn a_token_comes_from_the_bearer_header_or_the_key_query() {
        let mut h = HeaderMap::new();
        let none = KeyQuery { key: None };
        assert_eq!(presented(&h, &none), None);
        let q = KeyQuery {
            key: Some("abc".into()),
        };
        assert_eq!(presented(&h, &q), Some("abc"));
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(presented(&h, &q), Some("xyz"));
        assert!(crate::agent::listener::same_token(b"xyz", b"xyz"));
        assert!(!crate::agent::listener::same_token(b"xyz", b"xyZ"));
        assert!(!crate::agent::listener::same_token(b"xyz", b"xy"));
    }

    #[test]
    fn a_long_body_keeps_its_end() {
        assert_eq!(body_tail(b""), None);
        assert_eq!(
            body_tail(b"done: 1200 prices").as_deref(),
            Some("done: 1200 prices")
        );
        let mut long = vec![b'a'; MAX_PING_BODY * 2];
        long.extend_from_slice("é the end".as_bytes());
        let t = body_tail(&long).unwrap();
        assert!(
            t.starts_with('…') && t.ends_with("é the end"),
            "{}",
            &t[..20]
        );
        assert!(t.len() <= MAX_PING_BODY + '…'.len_utf8());
    }

    fn check() -> HeartbeatCheck {
        let text = "name: price-file-import\nschedule: {cron: \"0 0 2 * * *\", timezone: America/Toronto}\nlabels: {connector: price-file}\ntoken: \"{{ secret.t }}\"\n";
        crate::config::load_heartbeat_text(
            std::path::Path::new("heartbeats/p.yaml"),
            text,
            &crate::config::Defaults::default(),
            &BTreeMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn a_success_after_a_start_is_a_run_as_long_as_the_job() {
        let c = check();
        let p = c.as_probe();
        let start: DateTime<Utc> = "2026-12-04T07:00:00Z".parse().unwrap();
        let at = start + chrono::Duration::seconds(754);
        let (run, _) = as_run(
            &c,
            &p,
            &Verdict::Success {
                at,
                started: Some(start),
            },
            Some("imported 1200 prices\n"),
        );
        assert_eq!(run.outcome, Outcome::Success);
        assert_eq!(run.duration_ms, 754_000.0);
        assert_eq!(run.message.as_deref(), Some("imported 1200 prices"));
        assert_eq!(run.connector_label(), "price-file");
        assert_eq!(run.trace_id.len(), 32);
        let (run, due) = as_run(
            &c,
            &p,
            &Verdict::Missed {
                due: start,
                at,
                last_ping: None,
                skipped: 0,
            },
            None,
        );
        assert_eq!(due, start);
        assert_eq!(run.error_class, Some(ErrorClass::HeartbeatMissed));
        assert_eq!(
            run.message.as_deref(),
            Some("no ping by 2026-12-04 02:00:00 EST + 1h grace (last ping: never)")
        );
        let (run, _) = as_run(
            &c,
            &p,
            &Verdict::Failed {
                at,
                started: None,
                exit: Some(2),
            },
            Some("file not found"),
        );
        assert_eq!(run.error_class, Some(ErrorClass::HeartbeatFailed));
        assert_eq!(
            run.message.as_deref(),
            Some("the job exited with status 2: file not found")
        );
    }
}
