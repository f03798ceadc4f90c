//! `rooftop run`: the agent. Retries leftovers of interrupted runs, then runs every probe
//! on its schedule (no self-overlap, a global concurrency limit) and prints one line per
//! run. SIGTERM / Ctrl-C: stop firing, let in-flight runs finish with their cleanup (up
//! to a grace period), and exit; whatever a cut-off run created stays in the ledger for
//! the next start.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, build_runner, load_config};
use crate::alerting::ack::AckSigner;
use crate::alerting::{self, tracker::Tracker};
use crate::clock::{Clock, SystemClock};
use crate::model::EmailDestination;
use crate::model::{HistorySettings, MissedRuns};
use crate::notify::Channel;
use crate::notify::email::{EmailChannel, EmailTransport, SmtpSettings};
use crate::notify::outbox::Router;
use crate::notify::pager::Pager;
use crate::notify::pagerduty::{PagerDutyChannel, PagerDutySettings};
use crate::notify::sms::{SmsChannel, SmsSettings};
use crate::notify::webhook::{WebhookChannel, WebhookSettings};
use crate::scheduler::{self, Event, Fire};
use crate::store::IncidentStore;
use crate::store::RunStore;
use crate::store::outbox::OutboxStore;
use crate::telemetry::{Telemetry, settings};

/// How long in-flight runs get to finish (cleanup included) after a stop signal.
const GRACE: Duration = Duration::from_secs(60);

/// Longest interval between refreshes of the success-ratio, leftover and store-size
/// gauges (they follow `telemetry.interval` when it is shorter).
const GAUGES_EVERY: Duration = Duration::from_secs(60);
/// How often retention runs while the agent is up (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// Missed fires are counted up to this many for the start-up message.
const MISSED_COUNT_CAP: usize = 100_000;

/// Command-line overrides of `rooftop.yaml`'s scheduler and history settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub max_concurrent: Option<usize>,
    pub keep_history: Option<Duration>,
    /// `Some(None)`: no listener.
    pub listen: Option<Option<std::net::SocketAddr>>,
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

/// Hands the heap pages freed after loading the configuration back to the kernel.
/// Parsing thousands of probe files leaves glibc's heap fragmented with free pages it
/// would otherwise keep for the process's lifetime (measured: 88 → see README).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The channels configured in `rooftop.yaml` (secrets rendered) and the outbox.
fn build_pager(
    config: &crate::config::Config,
    runner: &crate::runner::Runner,
    state_dir: &std::path::Path,
) -> Result<Pager, String> {
    let a = &config.agent.alerting;
    let render = |what: &str, t: &str| {
        runner
            .render_setting(t)
            .map_err(|e| format!("alerting.{what}: {e}"))
    };
    let client = reqwest::Client::new();
    let mut personal: Vec<(String, Arc<dyn Channel>)> = Vec::new();
    let mut shared: Vec<Arc<dyn Channel>> = Vec::new();
    if let Some(s) = &a.sms {
        let mut settings = SmsSettings::new(
            s.account_sid.clone(),
            render("sms.auth_token", &s.auth_token)?,
            s.from.clone(),
        );
        if let Some(u) = &s.base_url {
            settings.base_url = u.trim_end_matches('/').to_string();
        }
        personal.push((
            "sms".into(),
            Arc::new(SmsChannel::new(settings, client.clone())),
        ));
    }
    if let Some(w) = &a.webhook {
        let settings = WebhookSettings::new(w.url.clone(), render("webhook.secret", &w.secret)?);
        shared.push(Arc::new(WebhookChannel::new(settings, client.clone())));
    }
    if let Some(pd) = &a.pagerduty {
        let mut settings =
            PagerDutySettings::new(render("pagerduty.routing_key", &pd.routing_key)?);
        if let Some(u) = &pd.url {
            settings.url = u.clone();
        }
        shared.push(Arc::new(PagerDutyChannel::new(settings, client.clone())));
    }
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if let Some(e) = &a.email {
        let transport = match &e.destination {
            EmailDestination::Folder(p) => EmailTransport::Folder(config.dir.join(p)),
            EmailDestination::Smtp {
                host,
                port,
                security,
                username,
                password_template,
                timeout,
                ca_file,
            } => EmailTransport::Smtp(SmtpSettings {
                host: host.clone(),
                port: *port,
                security: *security,
                username: username.clone(),
                password: password_template
                    .as_ref()
                    .map(|t| runner.render_setting(t))
                    .transpose()
                    .map_err(|e| format!("alerting.email.smtp.password: {e}"))?,
                timeout: *timeout,
                ca_pem: ca_file
                    .as_ref()
                    .map(|f| {
                        std::fs::read(config.dir.join(f)).map_err(|e| {
                            format!("alerting.email.smtp.ca_file {}: {e}", f.display())
                        })
                    })
                    .transpose()?,
            }),
        };
        personal.push((
            "email".into(),
            Arc::new(EmailChannel::new(&e.from, transport).map_err(|e| e.to_string())?),
        ));
    }
    // Personal channels in the preferred order, then the shared ones.
    for name in &a.prefer {
        if let Some(i) = personal.iter().position(|(n, _)| n == name) {
            channels.push(personal.remove(i).1);
        }
    }
    channels.extend(personal.into_iter().map(|(_, c)| c));
    channels.extend(shared);
    if channels.is_empty() && !a.routes.is_empty() {
        eprintln!(
            "warning: alerting.routes are set but no channel is configured: incidents are recorded, nobody is paged"
        );
    }
    let outbox = OutboxStore::open_in(state_dir).map_err(|e| e.to_string())?;
    let router = Router {
        contacts: a.contacts.clone(),
        routes: a.routes.clone(),
        channels,
    };
    let ack = match &a.ack_base_url {
        Some(base) => Some(
            AckSigner::load_or_create(state_dir, base)
                .map_err(|e| format!("ack key in {}: {e}", state_dir.display()))?,
        ),
        None => None,
    };
    Ok(Pager::new(
        outbox,
        router,
        &config.agent,
        &config.dir,
        a.runbook_base_url.clone(),
        ack,
        IncidentStore::open_in(state_dir).map_err(|e| e.to_string())?,
    ))
}

/// Resolves telemetry settings (the `OTEL_*` environment over rooftop.yaml) and starts
/// the exporters; prints where telemetry goes.
fn start_telemetry(
    config: &crate::config::Config,
    runner: &crate::runner::Runner,
) -> Result<Telemetry, String> {
    let t = &config.agent.telemetry;
    let headers = t
        .otlp_headers
        .iter()
        .map(|(k, v)| {
            runner
                .render_setting(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("telemetry.otlp.headers.{k}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let resolved =
        settings::resolve(t, &headers, &super::process_env()).map_err(|e| e.to_string())?;
    for note in &resolved.notes {
        eprintln!("telemetry: {note}");
    }
    for (signal, e) in [
        ("metrics", &resolved.metrics),
        ("traces", &resolved.traces),
        ("logs", &resolved.logs),
    ] {
        if let Some(e) = e {
            eprintln!("telemetry: {signal} → {} ({:?})", e.endpoint, e.protocol);
        }
    }
    Telemetry::start(&config.agent, &config.probes, &resolved).map_err(|e| e.to_string())
}

/// Refreshes the gauges that come from the store and the ledger.
async fn refresh_gauges(
    history: &RunStore,
    ledger: &crate::store::Ledger,
    telemetry: &Telemetry,
    now: chrono::DateTime<chrono::Utc>,
) {
    let ratios = history.ratios(now).await.unwrap_or_default();
    let pending = ledger.pending(None).await.unwrap_or_default();
    let size = history.size_bytes();
    if let Ok(mut g) = telemetry.gauges().lock() {
        g.ratios = ratios.into_iter().map(|(p, w, r)| ((p, w), r)).collect();
        // Every probe that creates records reports a count, 0 included.
        for n in g.leftovers.values_mut() {
            *n = 0;
        }
        for e in pending {
            *g.leftovers.entry(e.probe).or_insert(0) += 1;
        }
        g.store_bytes = size;
    }
}

/// Applies retention and says what it removed.
async fn retain(history: &RunStore, now: chrono::DateTime<chrono::Utc>, limits: &HistorySettings) {
    match history.retain(now, limits).await {
        Ok(p) => {
            if p.by_age > 0 {
                eprintln!(
                    "history: removed {} runs older than {}",
                    p.by_age,
                    humantime::format_duration(limits.keep)
                );
            }
            if p.by_size > 0 {
                eprintln!(
                    "history: removed the {} oldest runs to stay under {} MB (now {} MB)",
                    p.by_size,
                    limits.max_bytes / 1_000_000,
                    p.used_bytes / 1_000_000
                );
            }
        }
        Err(e) => eprintln!("warning: history retention: {e}"),
    }
}

pub async fn run(cfg: &ConfigArgs, overrides: Overrides) -> ExitCode {
    let mut config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    release_freed_memory();
    let runner = match build_runner(&config, cfg) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runner.replay_ledger(&config.probes, None).await {
        Ok(replays) => {
            for r in replays {
                match r.result {
                    Ok(c) if c.success => eprintln!(
                        "cleaned up a leftover of {} ({}): {}",
                        r.entry.probe, r.entry.run_id, c.name
                    ),
                    Ok(c) => eprintln!(
                        "warning: leftover of {} ({}) still not cleaned up: {} ({})",
                        r.entry.probe,
                        r.entry.run_id,
                        c.name,
                        c.error.unwrap_or_default()
                    ),
                    Err(m) => eprintln!(
                        "warning: leftover of {} ({}): {m}",
                        r.entry.probe, r.entry.run_id
                    ),
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    }

    let telemetry = match start_telemetry(&config, &runner) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    let history = match RunStore::open_in(&state_dir) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let mut limits = config.agent.history.clone();
    if let Some(keep) = overrides.keep_history {
        limits.keep = keep;
    }
    let max_concurrent = overrides
        .max_concurrent
        .unwrap_or(config.agent.scheduler.max_concurrent);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    retain(&history, now, &limits).await;

    let tracker = match IncidentStore::open_in(&state_dir) {
        Ok(incidents) => Tracker::restore(incidents, &history, &config.probes, now).await,
        Err(e) => Err(e),
    };
    let tracker = match tracker {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let pager = match build_pager(&config, &runner, &state_dir) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match pager.resume(&config.probes, now).await {
        Ok(0) => {}
        Ok(n) => {
            println!("queued {n} notification(s) the previous run decided on but did not queue")
        }
        Err(e) => eprintln!("warning: checking for unqueued pages: {e}"),
    }
    let names: Vec<String> = config.probes.iter().map(|p| p.name.clone()).collect();
    let last = match history.last_scheduled(names.clone()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let catch_up = config.agent.scheduler.missed_runs == MissedRuns::RunOnce;
    eprintln!(
        "rooftop {}: {} probes from {}, at most {max_concurrent} runs at once",
        env!("CARGO_PKG_VERSION"),
        config.probes.len(),
        config.dir.display()
    );
    let mut plans = Vec::with_capacity(config.probes.len());
    for (p, last) in config.probes.iter().zip(last) {
        let offset = scheduler::spread(&p.name, &p.schedule);
        let (missed, latest) = last.map_or((0, None), |l| {
            scheduler::missed_fires(&p.schedule, offset, l, now, MISSED_COUNT_CAP)
        });
        let next = scheduler::next_fire(&p.schedule, offset, now)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into());
        let note = match (missed, catch_up) {
            (0, _) => String::new(),
            (n, false) => format!("  ({} missed while down; not replayed)", count(n)),
            (n, true) => format!("  ({} missed while down; one catch-up run now)", count(n)),
        };
        eprintln!(
            "  {:<32} {:<36} next {next}{note}",
            p.name,
            p.schedule.to_string()
        );
        plans.push(scheduler::Plan {
            schedule: p.schedule.clone(),
            offset,
            catch_up: latest.filter(|_| catch_up),
        });
    }

    // Moved, not cloned: with thousands of probes the copy would double their memory.
    let probes = Arc::new(std::mem::take(&mut config.probes));
    let execute = {
        let (runner, probes, history, telemetry, tracker, clock, pager) = (
            runner.clone(),
            probes.clone(),
            history.clone(),
            telemetry.clone(),
            tracker.clone(),
            clock.clone(),
            pager.clone(),
        );
        move |i: usize, fire: Fire| {
            let (runner, probes, history, telemetry, tracker, clock, pager) = (
                runner.clone(),
                probes.clone(),
                history.clone(),
                telemetry.clone(),
                tracker.clone(),
                clock.clone(),
                pager.clone(),
            );
            async move {
                telemetry.observe_lag(fire.lag);
                let run = runner.run(&probes[i], None).await;
                // Stored first: a run that was reported is a run that was kept.
                if let Err(e) = history.record(&run, Some(fire)).await {
                    eprintln!("warning: run {} not stored in the history: {e}", run.run_id);
                }
                telemetry.observe_run(&run);
                let catch_up = if fire.catch_up.is_some() {
                    "  (catch-up)"
                } else {
                    ""
                };
                println!("{}{catch_up}  {}", run.summary_line(), run.run_id);
                match tracker.observe(&probes[i], &run, clock.now()).await {
                    Ok(actions) => {
                        for a in &actions {
                            if let Some(line) = alerting::tracker::describe(&probes[i], a) {
                                println!("{line}");
                            }
                            telemetry.observe_incident(
                                &probes[i].name,
                                &probes[i].severity.to_string(),
                                a,
                            );
                            match pager.on_action(&probes[i], &run, a, clock.now()).await {
                                Ok(paged) => {
                                    if let Some(line) = paged.describe() {
                                        println!("{line}");
                                    }
                                }
                                Err(e) => {
                                    eprintln!("warning: pages for {} not queued: {e}", run.probe)
                                }
                            }
                        }
                    }
                    Err(e) => eprintln!("warning: incident tracking for {}: {e}", run.probe),
                }
            }
        }
    };
    let on_event = {
        let (history, probes, telemetry) = (history.clone(), probes.clone(), telemetry.clone());
        Arc::new(move |e: &Event| match e {
            Event::SkippedOverlap { probe, scheduled } => {
                let p = &probes[*probe];
                telemetry.observe_skip(&p.name);
                println!(
                    "{} {:<28} skipped: overlap (the run before {} is still going)",
                    scheduled.format("%H:%M:%S"),
                    p.name,
                    scheduled.to_rfc3339()
                );
                let (history, name, scheduled) = (history.clone(), p.name.clone(), *scheduled);
                let connector = p.connector_label().to_string();
                tokio::spawn(async move {
                    if let Err(e) = history.record_skip(&name, &connector, scheduled).await {
                        eprintln!("warning: skipped fire of {name} not stored: {e}");
                    }
                });
            }
            Event::Exhausted { probe } => eprintln!(
                "warning: {} has no future fire time; it will not run again",
                probes[*probe].name
            ),
            Event::Started { .. } => {}
        })
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let listen = overrides.listen.unwrap_or(config.agent.telemetry.listen);
    let ack_routes = match &config.agent.alerting.ack_base_url {
        Some(base) => match (
            AckSigner::load_or_create(&state_dir, base),
            IncidentStore::open_in(&state_dir),
        ) {
            (Ok(signer), Ok(incidents)) => {
                Some(crate::agent::listener::AckRoutes { signer, incidents })
            }
            _ => None,
        },
        None => None,
    };
    if ack_routes.is_some() && listen.is_none() {
        eprintln!(
            "warning: alerting.ack_base_url is set but the listener is off: ack links in pages will not work"
        );
    }
    let listener = match listen {
        Some(addr) => {
            match crate::agent::listener::serve(
                addr,
                telemetry.clone(),
                ack_routes,
                stop_rx.clone(),
            )
            .await
            {
                Ok((bound, task)) => {
                    eprintln!("metrics: http://{bound}/metrics");
                    Some(task)
                }
                Err(e) => {
                    eprintln!("error: cannot listen on {addr} for /metrics: {e}");
                    eprintln!(
                        "  = help: set telemetry.listen in rooftop.yaml to a free address, or `off`"
                    );
                    return ExitCode::from(EXIT_CANNOT_RUN);
                }
            }
        }
        None => None,
    };
    // As fresh as the export needs, at most a minute old.
    let observe_pass = {
        let telemetry = telemetry.clone();
        Arc::new(move |pass: &crate::notify::outbox::Pass| {
            // Keys are `<incident>/<kind>[#round]/<channel>/<person>`.
            let parts = |k: &str| {
                let (kind, channel) = crate::store::outbox::OutboxEntry::key_kind_and_channel(k)
                    .unwrap_or(("-", "-"));
                let kind = kind.split('#').next().unwrap_or(kind);
                (channel.to_string(), kind.to_string())
            };
            let undelivered: Vec<String> =
                pass.undelivered.iter().map(|(k, _)| k.clone()).collect();
            for (keys, result) in [
                (&pass.delivered, "delivered"),
                (&pass.retried, "retry"),
                (&pass.failed, "failed"),
                (&pass.confirmed, "confirmed"),
                (&undelivered, "undelivered"),
            ] {
                for k in keys {
                    let (c, kind) = parts(k);
                    telemetry.observe_notification(&c, &kind, result);
                }
            }
            for (from, _) in &pass.fell_back {
                let (c, kind) = parts(from);
                telemetry.observe_notification(&c, &kind, "fallback");
            }
        }) as Arc<dyn Fn(&crate::notify::outbox::Pass) + Send + Sync>
    };
    let paging = tokio::spawn(
        pager
            .clone()
            .run(clock.clone(), stop_rx.clone(), observe_pass),
    );
    let gauges_every = GAUGES_EVERY.min(config.agent.telemetry.interval);
    let gauges = tokio::spawn({
        let (history, ledger, telemetry, clock, mut stop) = (
            history.clone(),
            runner.ledger.clone(),
            telemetry.clone(),
            clock.clone(),
            stop_rx.clone(),
        );
        async move {
            loop {
                refresh_gauges(&history, &ledger, &telemetry, clock.now()).await;
                tokio::select! {
                    _ = tokio::time::sleep(gauges_every) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    });
    let retention = tokio::spawn({
        let (history, clock, mut stop) = (history.clone(), clock.clone(), stop_rx.clone());
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RETENTION_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                retain(&history, clock.now(), &limits).await;
            }
        }
    });
    let mut agent = tokio::spawn(scheduler::run_schedules(
        plans,
        clock,
        max_concurrent,
        execute,
        on_event,
        stop_rx,
    ));
    tokio::select! {
        _ = super::shutdown_signal() => {}
        _ = &mut agent => return ExitCode::SUCCESS,
    }
    eprintln!(
        "stopping: waiting up to {} for in-flight runs to finish and clean up",
        humantime::format_duration(GRACE)
    );
    let _ = stop_tx.send(true);
    let _ = retention.await;
    let _ = gauges.await;
    if tokio::time::timeout(GRACE, &mut agent).await.is_err() {
        agent.abort();
        eprintln!(
            "warning: runs still going after {}; their records stay in the cleanup ledger for the next start",
            humantime::format_duration(GRACE)
        );
    }
    if let Some(l) = listener {
        let _ = l.await;
    }
    // Pages queued by the last runs get their final delivery pass (bounded by the SMTP
    // timeout); anything still pending stays in the outbox for the next start.
    let _ = tokio::time::timeout(Duration::from_secs(60), paging).await;
    // The SDK's shutdown blocks (bounded by the export timeouts).
    let t = telemetry.clone();
    let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    ExitCode::SUCCESS
}
