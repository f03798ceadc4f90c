//! `rooftop demo`: the embedded default. Starts the sandbox dealership on loopback, runs
//! the bundled probes against it back to back (with waits compressed to demo scale), and
//! shows each probe's last outcome, sync-latency p50/p95 and success ratio, live.
//!
//! Stopping (Ctrl-C, SIGTERM or `--for`) lets every in-flight run finish, cleanup
//! included, then reports whether the sandbox holds any synthetic leftovers.

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
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::model::{Compression, Probe};
use crate::runner::{Outcome, ProbeRun, Runner};
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
}

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
        if run.cleanup.outcome == crate::runner::CleanupOutcome::Failed {
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
}

/// Runs the demo until `shutdown` resolves or `run_for` elapses.
pub async fn run_demo(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DemoReport> {
    let config = crate::config::load_embedded("(embedded)", embedded::PROBES, embedded::RUNBOOKS)
        .map_err(|e| anyhow::anyhow!("bundled probes do not validate:\n{}", e.render()))?;
    let sandbox = Sandbox::start(opts.listen, SandboxConfig::default()).await?;
    let state_dir = std::env::temp_dir().join(format!("rooftop-demo-{}", std::process::id()));
    let env: BTreeMap<String, String> = sandbox.env().into_iter().collect();
    let runner = Runner::from_config(&config, env, &state_dir, Arc::new(SystemClock))?;
    if let Some((_, scenario)) = &opts.scenario {
        sandbox.spawn_scenario(scenario.clone());
    }
    let probes: Vec<Probe> = config
        .probes
        .iter()
        .cloned()
        .map(|mut p| {
            p.compress(&DEMO_COMPRESSION);
            p
        })
        .collect();
    let paging =
        Arc::new(pages::DemoPaging::start(&config.agent, &probes, &state_dir, &opts.pages).await?);
    let stats: Stats = Arc::new(Mutex::new(
        probes
            .iter()
            .map(|p| (p.name.clone(), ProbeStats::new()))
            .collect(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = tokio::time::Instant::now();

    let delivery = tokio::spawn(paging.pager.clone().run(
        Arc::new(SystemClock),
        stop_rx.clone(),
        Arc::new(|_: &crate::notify::outbox::Pass| {}),
    ));
    let mut tasks = Vec::new();
    for probe in probes {
        let (runner, stats, mut stop, paging) = (
            runner.clone(),
            stats.clone(),
            stop_rx.clone(),
            paging.clone(),
        );
        let (live, pause) = (opts.live, opts.pause);
        tasks.push(tokio::spawn(async move {
            while !*stop.borrow() {
                let run = runner.run(&probe, None).await;
                if !live {
                    println!("{}", run.summary_line());
                }
                if let Ok(mut s) = stats.lock()
                    && let Some(ps) = s.get_mut(&probe.name)
                {
                    ps.record(&run);
                }
                for line in paging.observe(&probe, &run).await {
                    if !live {
                        println!("{line}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }));
    }

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
            _ = redraw.tick() => {
                if opts.live {
                    let mut table = view::table(&stats, &sandbox.faults(), started.elapsed());
                    if let Ok(ev) = paging.events.lock()
                        && !ev.is_empty()
                    {
                        table.push_str("\nincidents:\n");
                        for l in ev.iter() {
                            table.push_str(&format!("  {l}\n"));
                        }
                    }
                    let (mails, sms) = paging.written();
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

    // One shutdown path: stop starting runs, let running ones finish their cleanup.
    println!("\nstopping: waiting for in-flight runs to finish and clean up…");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(120);
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    if tokio::time::timeout(grace, futures_util::future::join_all(tasks))
        .await
        .is_err()
    {
        eprintln!(
            "warning: some runs did not finish within {}; stopping them and replaying the cleanup ledger",
            humantime::format_duration(grace)
        );
        // Stopped before the replay, so it cannot race a run still creating records.
        for a in &aborts {
            a.abort();
        }
    }
    // Whatever a cut-off run left in the ledger is deleted now.
    let _ = runner.replay_ledger(&config.probes, None).await;
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
    // Resolve notices of incidents that recovered at the end get their delivery pass.
    let _ = tokio::time::timeout(Duration::from_secs(10), delivery).await;
    let pages = paging.written();
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(DemoReport {
        runs,
        successes,
        leftovers: leftovers.len(),
        table,
        pages,
    })
}
