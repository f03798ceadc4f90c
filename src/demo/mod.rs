//! `rooftop demo`: the embedded default. Starts the sandbox dealership on loopback and
//! the same agent `rooftop run` starts — scheduler, store, alert tracker, pager,
//! telemetry, `/metrics` — with the bundled probes paced back to back (waits compressed
//! to demo scale) and pages written into a folder. Shows each probe's last outcome,
//! sync-latency p50/p95 and success ratio, live.
//!
//! Stopping (Ctrl-C, SIGTERM or `--for`) drains the agent as a service stop does, then
//! reports whether the sandbox holds any synthetic leftovers. The history stays in the
//! demo's directory for `rooftop status`.

pub mod embedded;
mod pages;
mod scenarios;
mod view;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::agent::{Agent, Drained, Parts, Report, Reporter};
use crate::clock::SystemClock;
use crate::model::{Compression, Outcome, ProbeRun};
use crate::notify::pager::Paged;
use crate::runner::Runner;
use crate::sandbox::{Sandbox, SandboxConfig, Scenario};
pub use scenarios::{BUILTIN, builtin};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub scenario: Option<(String, Scenario)>,
    /// Stop after this long (None: until Ctrl-C).
    pub run_for: Option<Duration>,
    /// Pause between two runs of the same probe.
    pub pause: Duration,
    /// Redraw a live table (a terminal) or print one line per run (a pipe).
    pub live: bool,
    /// Where the pages the demo would send are written.
    pub pages: PathBuf,
    /// The agent's state directory (history, incidents, outbox, ledger) and a copy of
    /// the bundled config, kept after the demo for `rooftop status`.
    pub dir: PathBuf,
    /// The agent's listener (`/metrics`); port 0 picks a free port.
    pub metrics: SocketAddr,
}

/// The demo's stop deadline: a run interrupted by the stop only has its cleanup left.
const DEMO_STOP_DEADLINE: Duration = Duration::from_secs(60);

/// The waits of the bundled probes, scaled to a sandbox whose syncs take seconds.
pub const DEMO_COMPRESSION: Compression = Compression {
    within: Duration::from_secs(20),
    interval: Duration::from_millis(500),
    request_timeout: Duration::from_secs(5),
    timeout: Duration::from_secs(90),
};

/// What the demo saw of one probe.
#[derive(Debug)]
pub struct ProbeStats {
    pub runs: u64,
    pub successes: u64,
    pub last: Option<ProbeRun>,
    pub last_failure: Option<ProbeRun>,
    /// Sync-latency estimates per sync step, in milliseconds.
    pub sync_ms: BTreeMap<String, Histogram<u64>>,
    pub cleanup_failures: u64,
}

impl ProbeStats {
    fn new() -> Self {
        ProbeStats {
            runs: 0,
            successes: 0,
            last: None,
            last_failure: None,
            sync_ms: BTreeMap::new(),
            cleanup_failures: 0,
        }
    }

    fn record(&mut self, run: &ProbeRun) {
        self.runs += 1;
        if run.outcome == Outcome::Success {
            self.successes += 1;
        } else {
            self.last_failure = Some(run.clone());
        }
        if run.cleanup.outcome == crate::model::CleanupOutcome::Failed {
            self.cleanup_failures += 1;
        }
        for s in &run.steps {
            if let Some(m) = &s.sync {
                // 1 ms to 24 h at 3 significant figures.
                let h = self.sync_ms.entry(s.name.clone()).or_insert_with(|| {
                    Histogram::new_with_bounds(1, 24 * 3600 * 1000, 3)
                        .expect("static bounds are valid")
                });
                let _ = h.record((m.estimate_ms.round() as u64).max(1));
            }
        }
        self.last = Some(run.clone());
    }
}

pub type Stats = Arc<Mutex<BTreeMap<String, ProbeStats>>>;

/// The demo's result, for the final report and tests.
#[derive(Debug)]
pub struct DemoReport {
    pub runs: u64,
    pub successes: u64,
    pub leftovers: usize,
    pub table: String,
    /// Pages written: (e-mails, SMS).
    pub pages: (usize, usize),
    /// How the agent's stop went.
    pub drained: Drained,
}

/// The demo's reporter: counts runs for the table, keeps the latest incident lines, and
/// prints one line per run and incident when the output is not a terminal.
struct DemoView {
    stats: Stats,
    /// The latest incident lines, newest last (for the live table).
    events: Mutex<Vec<String>>,
    live: bool,
}

impl DemoView {
    fn event(&self, line: String) {
        if !self.live {
            println!("{line}");
        }
        if let Ok(mut ev) = self.events.lock() {
            ev.push(line);
            let excess = ev.len().saturating_sub(8);
            ev.drain(..excess);
        }
    }
}

impl Reporter for DemoView {
    fn report(&self, report: Report<'_>) {
        match report {
            Report::Run { probe, run, .. } => {
                if !self.live {
                    println!("{}", run.summary_line());
                }
                if let Ok(mut s) = self.stats.lock()
                    && let Some(ps) = s.get_mut(&probe.name)
                {
                    ps.record(run);
                }
            }
            Report::Interrupted { run, .. } => {
                if !self.live {
                    println!("{}  (interrupted by the stop)", run.summary_line());
                }
            }
            Report::Incident {
                line: Some(line),
                at,
                ..
            } => {
                self.event(format!("{} {line}", at.format("%H:%M:%S")));
            }
            // Grouping decisions are news; "queued" is what every page does.
            Report::Paged { paged, at, .. } => {
                if let p @ (Paged::Grouped { .. } | Paged::GroupStillOpen { .. }) = paged
                    && let Some(l) = p.describe()
                {
                    self.event(format!("{} {}", at.format("%H:%M:%S"), l.trim()));
                }
            }
            Report::SkippedOverlap { .. } | Report::Incident { line: None, .. } => {}
            Report::Warning(w) => self.event(format!("warning: {w}")),
            // The demo pages into a folder: nobody replies.
            Report::SmsReply(_) => {}
        }
    }
}

/// Writes the bundled probes and runbooks into `dir`, so `rooftop status --config DIR
/// --state-dir DIR` reads the demo's history.
fn write_config_copy(dir: &std::path::Path) -> std::io::Result<()> {
    for (path, text) in embedded::PROBES.iter().chain(embedded::RUNBOOKS) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    Ok(())
}

/// Runs the demo until `shutdown` resolves or `run_for` elapses.
pub async fn run_demo(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DemoReport> {
    let mut config =
        crate::config::load_embedded("(embedded)", embedded::PROBES, embedded::RUNBOOKS)
            .map_err(|e| anyhow::anyhow!("bundled probes do not validate:\n{}", e.render()))?;
    for p in &mut config.probes {
        p.compress(&DEMO_COMPRESSION);
    }
    std::fs::create_dir_all(&opts.dir)?;
    write_config_copy(&opts.dir)?;
    // Runbook sections are quoted from that copy.
    config.dir = opts.dir.clone();
    let extra_channels = pages::page_into_folder(&mut config, &opts.pages)?;
    let sandbox = Sandbox::start(opts.listen, SandboxConfig::default()).await?;
    let env: BTreeMap<String, String> = sandbox.env().into_iter().collect();
    // Kept for the final ledger replay: the agent owns the config once built.
    let replay_config = config.clone();
    let stats: Stats = Arc::new(Mutex::new(
        config
            .probes
            .iter()
            .map(|p| (p.name.clone(), ProbeStats::new()))
            .collect(),
    ));
    let view = Arc::new(DemoView {
        stats: stats.clone(),
        events: Mutex::new(Vec::new()),
        live: opts.live,
    });
    let parts = Parts {
        env: env.clone(),
        state_dir: opts.dir.clone(),
        clock: Arc::new(SystemClock),
        max_concurrent: None,
        keep_history: None,
        stop_deadline: Some(DEMO_STOP_DEADLINE),
        listen: Some(Some(opts.metrics)),
        extra_channels,
        pace: Some(opts.pause),
        reporter: view.clone(),
        ..Parts::service(opts.dir.clone(), Arc::new(SystemClock))
    };
    let agent = Agent::build(config, parts).await?;
    if let Some((_, scenario)) = &opts.scenario {
        sandbox.spawn_scenario(scenario.clone());
    }
    let mut running = agent.spawn().await?;
    let started = tokio::time::Instant::now();

    println!(
        "rooftop demo: sandbox dealership on {} (CRM {}, DMS {}, survey {})",
        sandbox.urls().control,
        sandbox.urls().crm,
        sandbox.urls().dms,
        sandbox.urls().survey
    );
    if let Some((name, _)) = &opts.scenario {
        println!("scenario: {name}");
    }
    if let Some(addr) = running.listen_addr() {
        println!("metrics: http://{addr}/metrics");
        println!("status page: http://{addr}/status");
    }
    println!(
        "history: rooftop status --config {0} --state-dir {0}",
        opts.dir.display()
    );
    println!(
        "pages the on-call engineer would get are written to {}",
        opts.pages.display()
    );
    let deadline = opts.run_for.map(|d| started + d);
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = until_deadline => break,
            _ = running.finished() => break,
            _ = redraw.tick() => {
                if opts.live {
                    let mut table = view::table(&stats, &sandbox.faults(), started.elapsed());
                    if let Ok(ev) = view.events.lock()
                        && !ev.is_empty()
                    {
                        table.push_str("\nincidents:\n");
                        for l in ev.iter() {
                            table.push_str(&format!("  {l}\n"));
                        }
                    }
                    let (mails, sms) = pages::written(&opts.pages);
                    table.push_str(&format!(
                        "\npages written to {}: {mails} e-mail(s), {sms} SMS\n",
                        opts.pages.display()
                    ));
                    print!("\x1b[2J\x1b[H{table}");
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }

    // The service's stop: in-flight runs are interrupted and clean up, the outbox gets
    // its last pass, the exporters flush.
    println!("\nstopping: interrupting in-flight runs, cleaning up, flushing the outbox…");
    let drained = running.drain().await;
    if !drained.unfinished.is_empty() {
        eprintln!(
            "warning: not finished within {}: {}; replaying the cleanup ledger",
            humantime::format_duration(DEMO_STOP_DEADLINE),
            drained.unfinished.join("; ")
        );
    }
    // Whatever a cut-off run left in the ledger is deleted now.
    let runner = Runner::new(&replay_config.agent, env, &opts.dir, Arc::new(SystemClock))?;
    let _ = runner.replay_ledger(&replay_config.probes, None).await;
    sandbox.set_faults(Vec::new());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leftovers = sandbox.leftovers();
    let table = view::table(&stats, &[], started.elapsed());
    let (runs, successes) = stats
        .lock()
        .map(|s| {
            s.values()
                .fold((0, 0), |(r, ok), p| (r + p.runs, ok + p.successes))
        })
        .unwrap_or_default();
    let pages = pages::written(&opts.pages);
    sandbox.shutdown().await;
    Ok(DemoReport {
        runs,
        successes,
        leftovers: leftovers.len(),
        table,
        pages,
        drained,
    })
}
