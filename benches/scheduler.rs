//! `cargo bench --bench scheduler`: the agent under load. Writes N probes against the
//! sandbox (most a single authenticated lookup, every tenth a full lead flow with a
//! create, a polled sync and a cleanup sweep), starts the real `rooftop run` as a child
//! process, and reports side by side: start lag (actual start − scheduled instant) p50 /
//! p99 / max, the agent's CPU seconds per 1,000 runs, its peak RSS, and the store's write
//! throughput; then the RSS of an agent holding 50 idle probes.
// Benches time the agent from outside, on the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rooftop::model::HistorySettings;
use rooftop::runner::ProbeRun;
use rooftop::store::RunStore;

use common::agent::{
    AgentSetup, AgentWindow, LagPercentiles, measure_agent, proc_usage, sigterm, spawn_agent,
    start_sandbox, validate_written_config, write_config,
};
use common::{SmokeCheck, tempfile_dir};

/// The agent under load: start lag, CPU per 1,000 runs, peak RSS, store writes, and the
/// RSS of an idle agent. Runs the real `rooftop run` against the sandbox.
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench scheduler --")]
pub struct SchedulerOptions {
    /// Probes to schedule.
    #[arg(long, default_value_t = 10_000)]
    pub probes: usize,
    /// Every probe's period.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Wait this long after the first run before measuring.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measurement window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub measure: Duration,
    /// Every n-th probe is a full lead flow (create, polled sync, cleanup); 0: none.
    #[arg(long, default_value_t = 10)]
    pub flow_every: usize,
    /// The agent's scheduler.max_concurrent.
    #[arg(long, default_value_t = 64)]
    pub max_concurrent: usize,
    /// Probes of the idle-agent measurement.
    #[arg(long, default_value_t = 50)]
    pub idle_probes: usize,
}

/// Under `cargo test`: the probes the bench writes are valid rooftop config.
const CHECKS: &[SmokeCheck] = &[("the written probes validate", || {
    validate_written_config("")
})];

fn main() -> ExitCode {
    match common::options_or_smoke::<SchedulerOptions>("scheduler", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// The figures.
#[derive(Debug, Clone)]
pub struct SchedulerReport {
    pub opts: SchedulerOptions,
    /// The agent under load.
    pub load: AgentWindow,
    pub write_single: f64,
    pub write_grouped: f64,
    pub idle_rss_mb: f64,
    pub idle_peak_rss_mb: f64,
}

pub async fn run(opts: &SchedulerOptions) -> anyhow::Result<SchedulerReport> {
    let sb = start_sandbox().await?;
    let work = tempfile_dir("rooftop-bench-scheduler")?;
    eprintln!(
        "bench: {} probes every {}, warm-up {}, measuring {}",
        opts.probes,
        humantime::format_duration(opts.period),
        humantime::format_duration(opts.warmup),
        humantime::format_duration(opts.measure)
    );
    let load = measure_agent(
        &sb,
        &work,
        "load",
        &AgentSetup {
            probes: opts.probes,
            period: opts.period,
            flow_every: opts.flow_every,
            max_concurrent: opts.max_concurrent,
            extra_yaml: "",
            listen: "127.0.0.1:0",
            warmup: opts.warmup,
            measure: opts.measure,
        },
    )
    .await?;
    let sample = sample_run(&work.join("load-state"))?;
    let (write_single, write_grouped) = write_throughput(&work.join("write"), &sample).await?;

    // Idle: a small rooftop's agent between fires.
    let idle_dir = work.join("idle");
    write_config(
        &idle_dir,
        opts.idle_probes,
        Duration::from_secs(3600),
        5,
        16,
        "",
    )?;
    let (mut idle, _, _) = spawn_agent(&sb, &idle_dir, &work.join("idle-state"), "127.0.0.1:0")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, idle_rss, idle_peak) = proc_usage(idle.id().context("idle pid")?)?;
    sigterm(&mut idle).await?;
    let _ = std::fs::remove_dir_all(&work);

    Ok(SchedulerReport {
        opts: opts.clone(),
        load,
        write_single,
        write_grouped,
        idle_rss_mb: idle_rss,
        idle_peak_rss_mb: idle_peak,
    })
}

/// One stored flow run, to write again in the throughput test.
fn sample_run(state: &Path) -> anyhow::Result<ProbeRun> {
    let db = rusqlite::Connection::open(state.join("rooftop.db"))?;
    let json: String = db.query_row(
        "SELECT json FROM runs WHERE outcome != 'skipped' ORDER BY length(json) DESC LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    ProbeRun::from_stored_json(&json).context("a stored run does not read back")
}

/// Runs/s written one at a time (each waits for its own commit) and by 256 concurrent
/// writers (group commit).
async fn write_throughput(dir: &Path, sample: &ProbeRun) -> anyhow::Result<(f64, f64)> {
    let store = RunStore::open_in(dir)?;
    let n_single = 300;
    let start = Instant::now();
    for i in 0..n_single {
        let mut r = sample.clone();
        r.run_id = format!("single-{i}");
        store.record(&r, None).await?;
    }
    let single = n_single as f64 / start.elapsed().as_secs_f64();
    let n_grouped = 5000;
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n_grouped);
    for i in 0..n_grouped {
        let (store, mut r, sem) = (store.clone(), sample.clone(), sem.clone());
        r.run_id = format!("grouped-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            store.record(&r, None).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let grouped = n_grouped as f64 / start.elapsed().as_secs_f64();
    let _ = store.retain(Utc::now(), &HistorySettings::default()).await;
    Ok((single, grouped))
}

pub fn render(r: &SchedulerReport) -> String {
    let (o, w) = (&r.opts, &r.load);
    let mut s = String::new();
    s.push_str(&format!(
        "bench scheduler: {} probes every {} ({} lead flows, the rest lookups), max_concurrent {}\n",
        o.probes,
        humantime::format_duration(o.period),
        if o.flow_every > 0 { o.probes.div_ceil(o.flow_every) } else { 0 },
        o.max_concurrent
    ));
    s.push_str(&format!(
        "agent loaded and first run after {:.1} s; measured {} after a {} warm-up\n\n",
        w.load_time.as_secs_f64(),
        humantime::format_duration(o.measure),
        humantime::format_duration(o.warmup)
    ));
    let lag = |f: fn(&LagPercentiles) -> u64| {
        w.lag
            .as_ref()
            .map_or("-".into(), |p| format!("{:.1} ms", f(p) as f64 / 1000.0))
    };
    let rows = [
        (
            "runs in window",
            format!("{} ({:.1}/s)", w.runs, w.runs_per_s),
        ),
        (
            "outcomes",
            w.outcomes
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("start lag p50", lag(|p| p.p50_us)),
        ("start lag p99", lag(|p| p.p99_us)),
        ("start lag max", lag(|p| p.max_us)),
        (
            "agent CPU",
            format!(
                "{:.1} s ({:.2} s per 1,000 runs)",
                w.cpu_s,
                w.cpu_s_per_1000()
            ),
        ),
        (
            "agent peak RSS",
            format!("{:.1} MB (at end {:.1} MB)", w.peak_rss_mb, w.rss_end_mb),
        ),
        ("store file", format!("{:.1} MB", w.store_mb)),
        (
            "store writes",
            format!(
                "{:.0} runs/s one at a time, {:.0} runs/s grouped (256 writers): ×{:.1}",
                r.write_single,
                r.write_grouped,
                r.write_grouped / r.write_single
            ),
        ),
        (
            "idle agent RSS",
            format!(
                "{:.1} MB with {} probes (peak {:.1} MB)",
                r.idle_rss_mb, o.idle_probes, r.idle_peak_rss_mb
            ),
        ),
    ];
    for (k, v) in rows {
        s.push_str(&format!("  {k:<16} {v}\n"));
    }
    s.push_str(&format!(
        "\ntargets: lag p99 ≤ 10 ms {}, RSS ≤ 150 MB {}, idle RSS < 25 MB {}\n",
        verdict(w.lag.as_ref().is_some_and(|p| p.p99_us <= 10_000)),
        verdict(w.peak_rss_mb <= 150.0),
        verdict(r.idle_rss_mb < 25.0)
    ));
    s
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
