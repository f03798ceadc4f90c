//! The agent: what `rooftop run` installs and `rooftop demo` shows. `Agent::build` turns a
//! validated config into the composed parts (runner, store, alert tracker, pager,
//! telemetry, scheduler plans); `spawn` starts the scheduler, delivery, housekeeping and
//! the listener; `Running::drain` stops them all within one deadline and names what did
//! not finish. It never prints a run or an incident itself: those go to a `Reporter`.

mod health;
mod heartbeat;
mod housekeeping;
pub mod listener;
mod paging;
mod pings;
mod probes;
mod reload;
pub mod replies;
pub mod report;
pub mod selfcheck;
pub mod signals;
pub mod status;
pub mod systemd;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::alerting::ack::AckSigner;
use crate::alerting::tracker::{Tracker, describe};
use crate::clock::Clock;
use crate::config::Config;
use crate::model::{ErrorClass, MissedRuns, Probe};
use crate::notify::Channel;
use crate::notify::pager::Pager;
use crate::runner::Runner;
use crate::scheduler::{self, Control, Event, Fire, Heartbeat, Plan, Update};
use crate::store::outbox::OutboxStore;
use crate::store::{IncidentStore, RunStore, StoreError};
use crate::telemetry::{Telemetry, settings};
use health::Readiness;
use probes::ProbeTable;
pub use reload::Reloaded;
pub use report::{Lines, Report, Reporter};
pub use signals::{Signal, Signals};
use systemd::Notifier;

pub use crate::model::DEFAULT_STOP_DEADLINE;

/// Longest interval between refreshes of the success-ratio, leftover and store-size
/// gauges (they follow `telemetry.interval` when it is shorter).
const GAUGES_EVERY: Duration = Duration::from_secs(60);
/// How often retention runs while the agent is up (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// How often the running agent replays the ledger entries that are due: re-sweeps whose
/// time has come and failed cleanups (`runner::cleanup::due_in_run`).
const LEDGER_RETRY_EVERY: Duration = Duration::from_secs(10);
/// Missed fires are counted up to this many for the start-up message.
const MISSED_COUNT_CAP: usize = 100_000;

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting that validated but cannot be used (a secret that does not render, a
    /// telemetry endpoint, a CA file): fix `rooftop.yaml`.
    #[error("{0}")]
    Config(String),
    /// The state directory cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client or the cleanup ledger cannot be set up.
    #[error(transparent)]
    Runner(#[from] crate::runner::RunnerInitError),
    /// The ack-link key cannot be read or created.
    #[error("ack key in {dir}: {source}")]
    AckKey {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The listener's address is taken or not allowed.
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// Whether the fix is in the configuration (as opposed to the machine).
    pub fn is_config(&self) -> bool {
        matches!(self, AgentError::Config(_))
    }

    /// A hint for the operator, when there is one.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            AgentError::Config(_) => None,
            AgentError::Store(_) | AgentError::Runner(_) | AgentError::AckKey { .. } => Some(
                "pass --state-dir DIR (or set state_dir in rooftop.yaml) to a writable directory",
            ),
            AgentError::Listen { .. } => {
                Some("set telemetry.listen in rooftop.yaml to a free address, or `off`")
            }
        }
    }
}

/// What the agent is built from besides the config: everything that differs between
/// `rooftop run` on a rooftop server and `rooftop demo` on a laptop.
pub struct Parts {
    /// `env.*` for templates and secret lookup: the process environment (the demo adds
    /// the sandbox's URLs).
    pub env: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    /// Overrides `scheduler.max_concurrent`.
    pub max_concurrent: Option<usize>,
    /// Overrides `history.keep`.
    pub keep_history: Option<Duration>,
    /// Overrides `scheduler.stop_deadline`.
    pub stop_deadline: Option<Duration>,
    /// Overrides `telemetry.listen` (`Some(None)`: no listener).
    pub listen: Option<Option<SocketAddr>>,
    /// Channels besides those of `rooftop.yaml` (the demo's SMS folder).
    pub extra_channels: Vec<Arc<dyn Channel>>,
    /// Instead of each probe's schedule, run it again this long after its previous run
    /// finished (the demo).
    pub pace: Option<Duration>,
    pub reporter: Arc<dyn Reporter>,
    /// systemd's notification socket (a no-op without `$NOTIFY_SOCKET`).
    pub notifier: Arc<Notifier>,
    /// The scheduler-stall test hook (see `scheduler::Control::stall_after`).
    pub stall_scheduler_after: Option<Duration>,
}

impl Parts {
    /// The parts of `rooftop run`: the process environment, the system clock, log lines.
    pub fn service(state_dir: PathBuf, clock: Arc<dyn Clock>) -> Parts {
        Parts {
            env: std::env::vars().collect(),
            state_dir,
            clock,
            max_concurrent: None,
            keep_history: None,
            stop_deadline: None,
            listen: None,
            extra_channels: Vec::new(),
            pace: None,
            reporter: Arc::new(Lines),
            notifier: Arc::new(Notifier::default()),
            stall_scheduler_after: None,
        }
    }
}

/// What the status page needs besides the agent's live probes and on-call state.
struct StatusParts {
    history: RunStore,
    incidents: IncidentStore,
    token: Option<String>,
    title: String,
}

/// A built agent, ready to spawn.
pub struct Agent {
    probes: Arc<ProbeTable>,
    /// `rooftop.yaml` as loaded: a reload names what changed in it.
    settings: crate::model::Agent,
    pace: Option<Duration>,
    notifier: Arc<Notifier>,
    stall_scheduler_after: Option<Duration>,
    heartbeat: Option<heartbeat::Pinger>,
    /// The built-in `rooftop-agent` probe (`selfcheck`).
    self_probe: Arc<Probe>,
    /// Passive heartbeat checks (`heartbeats/*.yaml`) and their `/ping` routes.
    heartbeat_checks: pings::HeartbeatChecks,
    outbox: OutboxStore,
    state_dir: PathBuf,
    plans: Vec<Plan>,
    runner: Runner,
    telemetry: Arc<Telemetry>,
    history: RunStore,
    tracker: Arc<Tracker>,
    pager: Arc<Pager>,
    /// Rotations and time windows the pager reads; a reload replaces them.
    oncall: Arc<crate::notify::pager::LiveOnCall>,
    ack_routes: Option<listener::AckRoutes>,
    /// What the status page reads, when it is on.
    status: Option<StatusParts>,
    /// The zone of the rollups' days (`defaults.timezone`).
    day_zone: chrono_tz::Tz,
    /// Reads SMS replies (`ACK 4821`), when `alerting.sms.replies` is on.
    replies: Option<replies::ReplyPoller>,
    listen: Option<SocketAddr>,
    max_concurrent: usize,
    history_limits: crate::model::HistorySettings,
    telemetry_interval: Duration,
    stop_deadline: Duration,
    clock: Arc<dyn Clock>,
    reporter: Arc<dyn Reporter>,
}

impl Agent {
    /// Opens the state directory, retries leftovers of interrupted runs, starts the
    /// exporters, restores incident state and plans every probe's schedule. Prints what
    /// it finds on stderr (leftovers, telemetry destinations, each probe's next fire).
    pub async fn build(mut config: Config, parts: Parts) -> Result<Agent, AgentError> {
        let dir = parts.state_dir.clone();
        let runner = Runner::new(&config.agent, parts.env.clone(), &dir, parts.clock.clone())?;
        replay_leftovers(&runner, &config.probes).await?;
        // The agent's own probe is judged, exported and paged like the others, but not
        // scheduled or run by the runner: it is in `config.probes` only until the plans.
        let self_probe = selfcheck::self_probe(&config);
        let scheduled = config.probes.len();
        config.probes.push(self_probe.clone());
        // Heartbeat checks are judged, exported and paged as probes too (`pings`).
        config
            .probes
            .extend(config.heartbeats.iter().map(|h| h.as_probe()));
        let telemetry = Arc::new(start_telemetry(&config, &runner, &parts.env)?);
        let history = RunStore::open_in(&dir)?;
        let mut history_limits = config.agent.history.clone();
        if let Some(keep) = parts.keep_history {
            history_limits.keep = keep;
        }
        let now = parts.clock.now();
        let day_zone = config.defaults.timezone;
        // Days are rolled up before retention may prune their runs.
        housekeeping::seal(&history, day_zone, now).await;
        housekeeping::retain(&history, now, &history_limits).await;

        // One store handle and one signer, shared by the tracker, pager and listener.
        let incidents = IncidentStore::open_in(&dir)?;
        let incidents_for_status = incidents.clone();
        let ack = match &config.agent.alerting.ack_base_url {
            Some(base) => Some(AckSigner::load_or_create(&dir, base).map_err(|source| {
                AgentError::AckKey {
                    dir: dir.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let tracker = Tracker::restore(incidents.clone(), &history, &config.probes, now).await?;
        let outbox = OutboxStore::open_in(&dir)?;
        let stores = crate::notify::pager::PagerStores {
            outbox: outbox.clone(),
            incidents: incidents.clone(),
            escalations: crate::store::escalations::EscalationStore::open_in(&dir)?,
        };
        let oncall = Arc::new(crate::notify::pager::LiveOnCall::new(
            config.agent.oncall.clone(),
        ));
        let pager = paging::build_pager(
            &config,
            &runner,
            &parts.extra_channels,
            stores,
            ack.clone(),
            oncall.clone(),
        )?;
        match pager.resume(&config.probes, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    "queued {n} notification(s) the previous run decided on but did not queue"
                )
            }
            Err(e) => tracing::warn!("checking for unqueued pages: {e}"),
        }
        config.probes.truncate(scheduled);
        let listen = parts.listen.unwrap_or(config.agent.telemetry.listen);
        let ack_routes = ack.map(|signer| listener::AckRoutes {
            signer,
            incidents,
            clock: parts.clock.clone(),
        });
        if ack_routes.is_some() && listen.is_none() {
            tracing::warn!(
                "alerting.ack_base_url is set but the listener is off: ack links in pages will not work"
            );
        }
        let max_concurrent = parts
            .max_concurrent
            .unwrap_or(config.agent.scheduler.max_concurrent);
        tracing::info!(target: crate::model::NOTE,
            "rooftop {}: {} probes from {}, at most {max_concurrent} runs at once",
            env!("CARGO_PKG_VERSION"),
            config.probes.len(),
            config.dir.display()
        );
        let heartbeat = match &config.agent.self_monitoring.heartbeat {
            Some(h) => {
                let url = runner.render_setting(&h.url).map_err(|e| {
                    AgentError::Config(format!("self_monitoring.heartbeat.url: {e}"))
                })?;
                let p =
                    heartbeat::Pinger::new(url, h.every, h.timeout).map_err(AgentError::Config)?;
                tracing::info!(target: crate::model::NOTE,
                    "heartbeat: {} every {}",
                    p.shown(),
                    humantime::format_duration(h.every)
                );
                Some(p)
            }
            None => None,
        };
        // `ROOFTOP_LOG=debug` also logs the texts that are not acknowledgements.
        let debug = parts
            .env
            .get("ROOFTOP_LOG")
            .is_some_and(|v| v.eq_ignore_ascii_case("debug"));
        let replies = replies::ReplyPoller::from_config(
            &config,
            &runner,
            &dir,
            parts.clock.clone(),
            parts.reporter.clone(),
            debug,
        )?;
        if let Some(p) = &replies {
            tracing::info!(target: crate::model::NOTE,
                "sms replies: read from Twilio every {} (a contact's `ACK <code>` acknowledges)",
                humantime::format_duration(p.every())
            );
        }
        let status = match (&listen, config.agent.telemetry.status_page) {
            (Some(_), true) => Some(StatusParts {
                // Its own connection: a page being read never holds up the run writer.
                history: RunStore::open_in(&dir)?,
                incidents: incidents_for_status,
                token: match &config.agent.telemetry.status_token {
                    Some(t) => Some(runner.render_setting(t).map_err(|e| {
                        AgentError::Config(format!("telemetry.status_page.token: {e}"))
                    })?),
                    None => None,
                },
                title: config
                    .agent
                    .rooftop_name
                    .clone()
                    .unwrap_or_else(|| config.agent.rooftop_id.clone()),
            }),
            _ => None,
        };
        let plans = plan_probes(&config, &history, now, parts.pace).await?;
        // After the probes' lines: one line per heartbeat check.
        let heartbeat_checks = pings::HeartbeatChecks::build(
            &config.heartbeats,
            &runner,
            &history,
            parts.clock.clone(),
        )
        .await;
        Ok(Agent {
            // Moved, not cloned: with thousands of probes a copy would double their memory.
            probes: Arc::new(ProbeTable::new(std::mem::take(&mut config.probes))),
            settings: config.agent.clone(),
            pace: parts.pace,
            notifier: parts.notifier,
            stall_scheduler_after: parts.stall_scheduler_after,
            heartbeat,
            self_probe: Arc::new(self_probe),
            heartbeat_checks,
            outbox,
            state_dir: dir,
            plans,
            runner,
            telemetry,
            history,
            tracker: Arc::new(tracker),
            pager: Arc::new(pager),
            oncall,
            ack_routes,
            status,
            day_zone,
            replies,
            listen,
            max_concurrent,
            history_limits,
            telemetry_interval: config.agent.telemetry.interval,
            stop_deadline: parts
                .stop_deadline
                .unwrap_or(config.agent.scheduler.stop_deadline),
            clock: parts.clock,
            reporter: parts.reporter,
        })
    }

    /// Binds the listener and starts every task. Nothing runs before this returns `Ok`.
    pub async fn spawn(self) -> Result<Running, AgentError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut listen_addr = None;
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let heartbeat = Heartbeat::default();
        let ready = Arc::new(Readiness::new(heartbeat.clone()));
        if let Some(addr) = self.listen {
            let status = self.status.as_ref().map(|s| status::StatusSource {
                history: s.history.clone(),
                incidents: s.incidents.clone(),
                ledger: self.runner.ledger.clone(),
                probes: self.probes.clone(),
                self_probe: self.self_probe.clone(),
                heartbeats: self.heartbeat_checks.definitions(),
                oncall: self.oncall.clone(),
                clock: self.clock.clone(),
                tz: self.day_zone,
                title: s.title.clone(),
                token: s.token.clone(),
            });
            let (bound, task) = listener::serve(
                addr,
                self.telemetry.clone(),
                self.ack_routes.clone(),
                status,
                Some(self.heartbeat_checks.routes()),
                ready.clone(),
                stop_rx.clone(),
            )
            .await
            .map_err(|source| AgentError::Listen { addr, source })?;
            listen_addr = Some(bound);
            tasks.push(("listener", task));
        }
        let in_flight: InFlight = Arc::new(Mutex::new(BTreeMap::new()));
        let execute = self.executor(stop_rx.clone(), in_flight.clone(), ready.clone());
        let (skips_tx, skips) = tokio::sync::mpsc::unbounded_channel();
        let on_event = self.on_event(skips_tx);
        // Ends when the scheduler (holding the sender) ends: drained, never detached.
        tasks.push(("skip recording", self.spawn_skip_recorder(skips)));
        // The delivery loop stops last, on its own signal: its final pass must see the
        // pages that the last runs, escalations and acknowledgements queue while stopping.
        let (delivery_stop, delivery_stop_rx) = watch::channel(false);
        let delivery = tokio::spawn(self.pager.clone().run(
            self.clock.clone(),
            delivery_stop_rx,
            paging::observe_passes(self.telemetry.clone()),
        ));
        let mut page_sources: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        page_sources.push((
            "escalation",
            tokio::spawn(
                self.pager
                    .clone()
                    .run_escalations(self.clock.clone(), stop_rx.clone()),
            ),
        ));
        tasks.push(("gauges", self.spawn_gauges(stop_rx.clone())));
        tasks.push(("retention", self.spawn_retention(stop_rx.clone())));
        tasks.push(("ledger retry", self.spawn_ledger_retry(stop_rx.clone())));
        tasks.push((
            "store check",
            health::spawn_store_check(
                ready.clone(),
                self.history.clone(),
                self.clock.clone(),
                stop_rx.clone(),
            ),
        ));
        if let Some(task) = health::spawn_watchdog(
            self.notifier.clone(),
            ready.clone(),
            self.probes.clone(),
            self.telemetry.clone(),
            stop_rx.clone(),
        ) {
            tasks.push(("watchdog", task));
        }
        page_sources.push((
            "self-check",
            selfcheck::spawn(
                self.settings.self_monitoring.clone(),
                self.self_probe.clone(),
                ready.clone(),
                self.outbox.clone(),
                self.state_dir.clone(),
                self.judge(),
                stop_rx.clone(),
            ),
        ));
        // Heartbeat checks queue pages like probes do: drained before the last delivery pass.
        let judge = self.judge();
        let (heartbeat_checks, task) = self.heartbeat_checks.spawn(judge, stop_rx.clone());
        page_sources.push(("heartbeat checks", task));
        if let Some(p) = self.heartbeat.clone() {
            tasks.push((
                "heartbeat",
                p.spawn(ready.clone(), self.reporter.clone(), stop_rx.clone()),
            ));
        }
        if let Some(p) = self.replies {
            page_sources.push(("sms replies", p.spawn(stop_rx.clone())));
        }
        let (updates_tx, updates) = tokio::sync::mpsc::unbounded_channel();
        let scheduler = tokio::spawn(scheduler::run_schedules(
            self.plans,
            self.clock.clone(),
            self.max_concurrent,
            execute,
            on_event,
            Control {
                stop: stop_rx,
                updates,
                heartbeat,
                stall_after: self.stall_scheduler_after,
            },
        ));
        Ok(Running {
            stop_tx,
            scheduler,
            delivery,
            delivery_stop,
            page_sources,
            tasks,
            in_flight,
            telemetry: self.telemetry,
            listen_addr,
            stop_deadline: self.stop_deadline,
            probes: self.probes,
            updates: updates_tx,
            settings: self.settings,
            tracker: self.tracker,
            history: self.history,
            clock: self.clock,
            pace: self.pace,
            ready,
            self_probe: self.self_probe,
            heartbeat_checks,
            oncall: self.oncall,
        })
    }

    /// What one fire does: run (interruptible by the stop), store, export, judge, page.
    fn executor(
        &self,
        stop: watch::Receiver<bool>,
        in_flight: InFlight,
        ready: Arc<Readiness>,
    ) -> impl Fn(usize, Fire) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static
    {
        let (runner, probes, telemetry, reporter, judge) = (
            self.runner.clone(),
            self.probes.clone(),
            self.telemetry.clone(),
            self.reporter.clone(),
            self.judge(),
        );
        move |i: usize, fire: Fire| {
            let (runner, probes, telemetry, reporter, judge) = (
                runner.clone(),
                probes.clone(),
                telemetry.clone(),
                reporter.clone(),
                judge.clone(),
            );
            let (stop, in_flight, ready) = (stop.clone(), in_flight.clone(), ready.clone());
            Box::pin(async move {
                // Removed by a reload after this fire was due.
                let Some(probe) = probes.get(i) else { return };
                let probe = probe.as_ref();
                telemetry.observe_lag(fire.lag);
                ready.note_lag(fire.lag);
                let key = InFlightGuard::enter(&in_flight, &probe.name);
                let run = runner.run_until(probe, None, Some(stop)).await;
                drop(key);
                if run.error_class == Some(ErrorClass::Interrupted) {
                    reporter.report(Report::Interrupted { probe, run: &run });
                    return;
                }
                judge.finished(probe, &run, fire).await;
            }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        }
    }

    fn judge(&self) -> Judge {
        Judge {
            history: self.history.clone(),
            telemetry: self.telemetry.clone(),
            tracker: self.tracker.clone(),
            clock: self.clock.clone(),
            pager: self.pager.clone(),
            reporter: self.reporter.clone(),
        }
    }

    /// The scheduler's events: skips are counted, reported and queued for the store.
    fn on_event(&self, skips: SkipQueue) -> Arc<dyn Fn(&Event) + Send + Sync> {
        let (probes, telemetry, reporter) = (
            self.probes.clone(),
            self.telemetry.clone(),
            self.reporter.clone(),
        );
        Arc::new(move |e: &Event| match e {
            Event::SkippedOverlap { probe, scheduled } => {
                let Some(p) = probes.get(*probe) else { return };
                let p = p.as_ref();
                report::tell(
                    &telemetry,
                    reporter.as_ref(),
                    Report::SkippedOverlap {
                        probe: p,
                        scheduled: *scheduled,
                    },
                );
                // The receiver lives until the scheduler has ended.
                let _ = skips.send((*probe, *scheduled));
            }
            Event::Exhausted { probe } => {
                if let Some(p) = probes.get(*probe) {
                    let w = format!("{} has no future fire time; it will not run again", p.name);
                    reporter.report(Report::Warning(&w));
                }
            }
            Event::Started { .. } => {}
        })
    }

    /// Stores skipped fires, in order, until the scheduler drops its sender.
    fn spawn_skip_recorder(
        &self,
        mut skips: tokio::sync::mpsc::UnboundedReceiver<(usize, chrono::DateTime<chrono::Utc>)>,
    ) -> JoinHandle<()> {
        let (history, probes, reporter) = (
            self.history.clone(),
            self.probes.clone(),
            self.reporter.clone(),
        );
        tokio::spawn(async move {
            while let Some((i, scheduled)) = skips.recv().await {
                let Some(p) = probes.get(i) else { continue };
                if let Err(e) = history
                    .record_skip(&p.name, p.connector_label(), scheduled)
                    .await
                {
                    let w = format!("skipped fire of {} not stored: {e}", p.name);
                    reporter.report(Report::Warning(&w));
                }
            }
        })
    }

    fn spawn_gauges(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let every = GAUGES_EVERY.min(self.telemetry_interval);
        let (history, ledger, telemetry, clock) = (
            self.history.clone(),
            self.runner.ledger.clone(),
            self.telemetry.clone(),
            self.clock.clone(),
        );
        tokio::spawn(async move {
            loop {
                housekeeping::refresh_gauges(&history, &ledger, &telemetry, clock.now()).await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    }

    fn spawn_retention(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let (history, clock, limits, zone) = (
            self.history.clone(),
            self.clock.clone(),
            self.history_limits.clone(),
            self.day_zone,
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RETENTION_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                housekeeping::seal(&history, zone, clock.now()).await;
                housekeeping::retain(&history, clock.now(), &limits).await;
            }
        })
    }

    fn spawn_ledger_retry(&self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        housekeeping::spawn_ledger_retry(
            self.runner.clone(),
            self.probes.clone(),
            LEDGER_RETRY_EVERY,
            stop,
        )
    }
}

/// What happens to every finished run, a probe's or the agent's own check: stored,
/// exported, reported, judged by the alert rules, paged.
#[derive(Clone)]
struct Judge {
    history: RunStore,
    telemetry: Arc<Telemetry>,
    tracker: Arc<Tracker>,
    clock: Arc<dyn Clock>,
    pager: Arc<Pager>,
    reporter: Arc<dyn Reporter>,
}

impl Judge {
    async fn finished(&self, probe: &Probe, run: &crate::model::ProbeRun, fire: Fire) {
        let reporter = &self.reporter;
        // Stored first: a run that was reported is a run that was kept.
        if let Err(e) = self.history.record(run, Some(fire)).await {
            let w = format!("run {} not stored in the history: {e}", run.run_id);
            reporter.report(Report::Warning(&w));
        }
        let tell = |r: Report<'_>| report::tell(&self.telemetry, reporter.as_ref(), r);
        tell(Report::Run {
            probe,
            run,
            fire: &fire,
        });
        let actions = match self.tracker.observe(probe, run, self.clock.now()).await {
            Ok(a) => a,
            Err(e) => {
                let w = format!("incident tracking for {}: {e}", run.probe);
                reporter.report(Report::Warning(&w));
                return;
            }
        };
        for a in &actions {
            let at = self.clock.now();
            let line = describe(probe, a);
            tell(Report::Incident {
                probe,
                action: a,
                line: line.as_deref(),
                at,
            });
            match self.pager.on_action(probe, run, a, at).await {
                Ok(paged) => reporter.report(Report::Paged {
                    probe,
                    paged: &paged,
                    at,
                }),
                Err(e) => {
                    let w = format!("pages for {} not queued: {e}", run.probe);
                    reporter.report(Report::Warning(&w));
                }
            }
        }
    }
}

/// Skipped fires on their way to the store: (probe index, scheduled instant).
type SkipQueue = tokio::sync::mpsc::UnboundedSender<(usize, chrono::DateTime<chrono::Utc>)>;

/// Runs in flight, by a unique key: the probe's name (for the stop report).
type InFlight = Arc<Mutex<BTreeMap<u64, String>>>;

/// Removes its entry from the in-flight set when dropped (also when the run's task is
/// aborted at the deadline: then the entry is already reported).
struct InFlightGuard {
    set: InFlight,
    key: u64,
}

impl InFlightGuard {
    fn enter(set: &InFlight, probe: &str) -> InFlightGuard {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let key = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = set.lock() {
            s.insert(key, probe.to_string());
        }
        InFlightGuard {
            set: set.clone(),
            key,
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.key);
        }
    }
}

/// The agent while it runs.
pub struct Running {
    stop_tx: watch::Sender<bool>,
    scheduler: JoinHandle<()>,
    delivery: JoinHandle<()>,
    /// Stops the delivery loop once nothing can queue a page any more.
    delivery_stop: watch::Sender<bool>,
    /// Tasks that queue pages (escalation, self-check, SMS replies): drained before the
    /// delivery loop's last pass.
    page_sources: Vec<(&'static str, JoinHandle<()>)>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    in_flight: InFlight,
    telemetry: Arc<Telemetry>,
    listen_addr: Option<SocketAddr>,
    stop_deadline: Duration,
    // What a reload changes.
    probes: Arc<ProbeTable>,
    updates: tokio::sync::mpsc::UnboundedSender<Update>,
    settings: crate::model::Agent,
    tracker: Arc<Tracker>,
    history: RunStore,
    clock: Arc<dyn Clock>,
    pace: Option<Duration>,
    ready: Arc<Readiness>,
    self_probe: Arc<Probe>,
    /// The heartbeat checks' evaluator, for a reload.
    heartbeat_checks: pings::ChecksHandle,
    oncall: Arc<crate::notify::pager::LiveOnCall>,
}

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// How long it took.
    pub took: Duration,
    /// What was still going at the deadline and was cut off, in words (empty: all done).
    pub unfinished: Vec<String>,
}

impl Running {
    /// The listener's bound address (for `port 0`), when it is on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// The one deadline `drain` is given (`scheduler.stop_deadline` or its override).
    pub fn stop_deadline(&self) -> Duration {
        self.stop_deadline
    }

    /// Adds `note` to the status line until replaced (`None`: removed).
    pub fn set_status_note(&self, note: Option<String>) {
        self.ready.set_note(note);
    }

    /// `5 probes, 1 failing, 1 open incident` (and what is not ready), for `STATUS=`.
    pub fn status_line(&self) -> String {
        health::status_line(&self.probes, &self.telemetry, &self.ready)
    }

    /// Resolves if the scheduler ends before a stop was asked for (it does not, short of a
    /// bug: with no probe due it waits, and a reload may add some).
    pub async fn finished(&mut self) {
        let _ = (&mut self.scheduler).await;
    }

    /// Stops firing, interrupts in-flight runs (their cleanup still runs), lets the pager
    /// make its last delivery pass and the exporters flush, all within `stop_deadline`.
    /// Whatever is still going then is stopped and named in `unfinished`: a cut-off run's
    /// records stay in the cleanup ledger and undelivered pages in the outbox, both for
    /// the next start.
    pub async fn drain(self) -> Drained {
        let started = Instant::now();
        let at = started + self.stop_deadline;
        let _ = self.stop_tx.send(true);
        let mut unfinished = Vec::new();

        let mut scheduler = self.scheduler;
        if tokio::time::timeout_at(at, &mut scheduler).await.is_err() {
            let names: Vec<String> = self
                .in_flight
                .lock()
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default();
            scheduler.abort();
            unfinished.push(format!(
                "{} run(s) still cleaning up ({}): their records stay in the cleanup ledger for the next start",
                names.len(),
                names.join(", ")
            ));
        }
        for (name, mut task) in self.page_sources {
            if tokio::time::timeout_at(at, &mut task).await.is_err() {
                task.abort();
                unfinished.push(name.to_string());
            }
        }
        // Pages queued by the last runs get their final delivery pass: only now is
        // nothing left that could queue one.
        let _ = self.delivery_stop.send(true);
        let mut delivery = self.delivery;
        if tokio::time::timeout_at(at, &mut delivery).await.is_err() {
            delivery.abort();
            unfinished.push(
                "the last outbox delivery pass: pending pages stay in the outbox for the next start"
                    .into(),
            );
        }
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(at, &mut task).await.is_err() {
                task.abort();
                unfinished.push(name.to_string());
            }
        }
        // The SDK's shutdown blocks (bounded by its export timeouts, and by ours).
        let t = self.telemetry.clone();
        let flush = tokio::task::spawn_blocking(move || t.shutdown());
        if tokio::time::timeout_at(at, flush).await.is_err() {
            unfinished.push("the telemetry exporters' last flush".into());
        }
        Drained {
            took: started.elapsed(),
            unfinished,
        }
    }
}

/// Cleans up what interrupted runs of a previous start left in the ledger.
async fn replay_leftovers(runner: &Runner, probes: &[Probe]) -> Result<(), StoreError> {
    log_replays(runner.replay_ledger(probes, None).await?);
    Ok(())
}

/// Logs what a replay of the ledger cleaned up and what it could not.
fn log_replays(replays: Vec<crate::runner::cleanup::LedgerReplay>) {
    for r in replays {
        match r.result {
            Ok(c) if c.success => tracing::info!(target: crate::model::NOTE,
                "cleaned up a leftover of {} ({}): {}",
                r.entry.record.probe, r.entry.record.run_id, c.name
            ),
            Ok(c) => tracing::warn!(
                "leftover of {} ({}) still not cleaned up: {} ({})",
                r.entry.record.probe,
                r.entry.record.run_id,
                c.name,
                c.error.unwrap_or_default()
            ),
            Err(m) => tracing::warn!(
                "leftover of {} ({}): {m}",
                r.entry.record.probe,
                r.entry.record.run_id
            ),
        }
    }
}

/// Resolves telemetry settings (the `OTEL_*` environment over rooftop.yaml) and starts
/// the exporters; prints where telemetry goes.
fn start_telemetry(
    config: &Config,
    runner: &Runner,
    env: &BTreeMap<String, String>,
) -> Result<Telemetry, AgentError> {
    let t = &config.agent.telemetry;
    let headers = t
        .otlp_headers
        .iter()
        .map(|(k, v)| {
            runner
                .render_setting(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| AgentError::Config(format!("telemetry.otlp.headers.{k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let resolved =
        settings::resolve(t, &headers, env).map_err(|e| AgentError::Config(e.to_string()))?;
    for note in &resolved.notes {
        tracing::info!(target: crate::model::NOTE, "telemetry: {note}");
    }
    for (signal, e) in [
        ("metrics", &resolved.metrics),
        ("traces", &resolved.traces),
        ("logs", &resolved.logs),
    ] {
        if let Some(e) = e {
            tracing::info!(target: crate::model::NOTE, "telemetry: {signal} → {} ({:?})", e.endpoint, e.protocol);
        }
    }
    Telemetry::start(&config.agent, &config.probes, &resolved)
        .map_err(|e| AgentError::Config(e.to_string()))
}

fn count(n: usize) -> String {
    if n >= MISSED_COUNT_CAP {
        format!("{MISSED_COUNT_CAP}+ fires")
    } else if n == 1 {
        "1 fire".into()
    } else {
        format!("{n} fires")
    }
}

/// Each probe's place in the scheduler, with what it missed while the agent was down;
/// prints one line per probe.
async fn plan_probes(
    config: &Config,
    history: &RunStore,
    now: chrono::DateTime<chrono::Utc>,
    pace: Option<Duration>,
) -> Result<Vec<Plan>, AgentError> {
    let names: Vec<String> = config.probes.iter().map(|p| p.name.clone()).collect();
    let last = history.last_scheduled(names).await?;
    let catch_up = config.agent.scheduler.missed_runs == MissedRuns::RunOnce;
    let mut plans = Vec::with_capacity(config.probes.len());
    for (p, last) in config.probes.iter().zip(last) {
        let offset = scheduler::spread(&p.name, &p.schedule);
        let (missed, latest) = last.map_or((0, None), |l| {
            scheduler::missed_fires(&p.schedule, offset, l, now, MISSED_COUNT_CAP)
        });
        let next = match pace {
            Some(d) => format!("now, then {} after each run", humantime::format_duration(d)),
            None => scheduler::next_fire(&p.schedule, offset, now)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into()),
        };
        let note = match (missed, catch_up) {
            (0, _) => String::new(),
            (n, false) => format!("  ({} missed while down; not replayed)", count(n)),
            (n, true) => format!("  ({} missed while down; one catch-up run now)", count(n)),
        };
        tracing::info!(target: crate::model::NOTE,
            "  {:<32} {:<36} next {next}{note}",
            p.name,
            p.schedule.to_string()
        );
        plans.push(Plan {
            schedule: p.schedule.clone(),
            offset,
            catch_up: latest.filter(|_| catch_up && pace.is_none()),
            pace,
        });
    }
    Ok(plans)
}
