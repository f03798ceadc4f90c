//! `cargo bench --bench accuracy`: how close rooftop's sync-latency measurements come to
//! the truth. Runs N appointment→RO→survey flows against the sandbox (log-normal sync
//! jobs) under several poll plans side by side, in this process, and compares every
//! measured interval and estimate with the sandbox's ground truth.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rooftop::clock::SystemClock;
use rooftop::config::Config;
use rooftop::model::{Compression, Poll, Probe};
use rooftop::runner::{Outcome, Runner};
use rooftop::sandbox::{Sandbox, SandboxConfig};

use common::SmokeCheck;

/// Sync-latency accuracy against the sandbox's ground truth, per poll plan.
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench accuracy --")]
pub struct AccuracyOptions {
    /// Flows per poll plan.
    #[arg(long, default_value_t = 60)]
    pub flows: usize,
    /// Flows in flight at once.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Sandbox RNG seed (the same latency draws for every plan).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Under `cargo test`: the bundled flow loads and takes every poll plan.
const CHECKS: &[SmokeCheck] = &[("the bundled flow takes every poll plan", || {
    let (_, base) = bundled_flow().expect("the bundled flow loads");
    for (name, plan) in plans() {
        let probe = with_plan(&base, plan);
        assert!(
            probe.steps.iter().any(|s| s.poll == Some(plan)),
            "plan {name}: no polled step"
        );
    }
})];

fn main() -> ExitCode {
    match common::options_or_smoke::<AccuracyOptions>("accuracy", CHECKS) {
        Ok(opts) => common::run_to_figures(async move {
            let rows = run(&opts).await?;
            Ok(render(&opts, &rows))
        }),
        Err(code) => code,
    }
}

/// One poll plan's figures.
#[derive(Debug, Clone)]
pub struct PlanResult {
    pub plan: String,
    pub measurements: usize,
    pub failed_runs: usize,
    pub inside: usize,
    pub median_abs_err_ms: f64,
    pub p95_abs_err_ms: f64,
    pub median_width_ms: f64,
    pub polls_per_measurement: f64,
    pub wall: Duration,
}

fn plans() -> Vec<(&'static str, Poll)> {
    let p = |interval_ms: u64, backoff: f64, max_ms: u64| Poll {
        interval: Duration::from_millis(interval_ms),
        backoff,
        max_interval: Duration::from_millis(max_ms),
        within: Duration::from_secs(60),
    };
    vec![
        ("bundled: 1s ×1.5 ≤30s", p(1000, 1.5, 30_000)),
        ("fixed 1s", p(1000, 1.0, 1000)),
        ("fixed 250ms", p(250, 1.0, 250)),
        ("500ms ×2 ≤8s", p(500, 2.0, 8000)),
    ]
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// The bundled config and its appointment→RO→survey flow.
fn bundled_flow() -> anyhow::Result<(Config, Probe)> {
    let config = rooftop::config::load_embedded(
        "(embedded)",
        rooftop::demo::embedded::PROBES,
        rooftop::demo::embedded::RUNBOOKS,
    )
    .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let base = config
        .probe("appointment-to-ro-to-survey")
        .ok_or_else(|| anyhow::anyhow!("bundled probe appointment-to-ro-to-survey is missing"))?
        .clone();
    Ok((config, base))
}

/// The flow compressed to bench time (syncs in seconds), every poll on `plan`.
fn with_plan(base: &Probe, plan: Poll) -> Probe {
    let mut probe = base.clone();
    probe.compress(&Compression {
        within: Duration::from_secs(60),
        interval: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(180),
    });
    for step in probe.steps.iter_mut() {
        if step.poll.is_some() {
            step.poll = Some(plan);
        }
    }
    probe
}

/// Runs the benchmark and returns one row per poll plan.
pub async fn run(opts: &AccuracyOptions) -> anyhow::Result<Vec<PlanResult>> {
    let (config, base) = bundled_flow()?;
    let mut results = Vec::new();
    for (name, plan) in plans() {
        // A fresh sandbox per plan, same seed: every plan sees the same latency draws.
        let sandbox_config = SandboxConfig {
            seed: Some(opts.seed),
            ..SandboxConfig::default()
        };
        let addr: SocketAddr = "127.0.0.1:0".parse()?;
        let sandbox = Sandbox::start(addr, sandbox_config).await?;
        let state = std::env::temp_dir().join(format!(
            "rooftop-bench-{}-{}",
            std::process::id(),
            results.len()
        ));
        let runner = Runner::from_config(
            &config,
            sandbox.env().into_iter().collect(),
            &state,
            Arc::new(SystemClock),
        )?;
        let probe = with_plan(&base, plan);
        let started = Instant::now();
        let runs: Vec<_> = futures_util::stream::iter(0..opts.flows)
            .map(|_| {
                let (runner, probe) = (runner.clone(), probe.clone());
                async move { runner.run(&probe, None).await }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        let wall = started.elapsed();

        let truth: HashMap<(String, String), f64> = sandbox
            .truth()
            .into_iter()
            .filter_map(|t| {
                let v = serde_json::to_value(&t).ok()?;
                Some((
                    (
                        v["kind"].as_str()?.to_string(),
                        v["source_id"].as_str()?.to_string(),
                    ),
                    v["latency_ms"].as_f64()?,
                ))
            })
            .collect();
        let (mut errs, mut widths, mut polls, mut inside, mut failed) =
            (Vec::new(), Vec::new(), 0u64, 0, 0);
        for run in &runs {
            if run.outcome != Outcome::Success {
                failed += 1;
                continue;
            }
            let cap = |step: &str, name: &str| {
                run.step(step)
                    .and_then(|s| s.captures.get(name))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let pairs = [
                (
                    "ro-in-dms",
                    "repair_order",
                    cap("book-appointment", "appointment_id"),
                ),
                ("survey-triggered", "survey", cap("ro-in-dms", "ro_number")),
            ];
            for (step, kind, source) in pairs {
                let (Some(source), Some(m)) = (source, run.step(step).and_then(|s| s.sync.clone()))
                else {
                    continue;
                };
                let Some(t) = truth.get(&(kind.to_string(), source)) else {
                    continue;
                };
                errs.push((m.estimate_ms - t).abs());
                widths.push(m.width_ms);
                polls += u64::from(m.polls);
                // Float rounding of microsecond timestamps: allow 1 ms.
                if m.lower_ms <= t + 1.0 && *t <= m.upper_ms + 1.0 {
                    inside += 1;
                }
            }
        }
        errs.sort_by(f64::total_cmp);
        widths.sort_by(f64::total_cmp);
        results.push(PlanResult {
            plan: name.to_string(),
            measurements: errs.len(),
            failed_runs: failed,
            inside,
            median_abs_err_ms: quantile(&errs, 0.5),
            p95_abs_err_ms: quantile(&errs, 0.95),
            median_width_ms: quantile(&widths, 0.5),
            polls_per_measurement: polls as f64 / errs.len().max(1) as f64,
            wall,
        });
        let leftovers = sandbox.leftovers().len();
        if leftovers > 0 {
            anyhow::bail!("plan {name}: {leftovers} synthetic leftovers after the runs");
        }
        sandbox.shutdown().await;
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(results)
}

/// The table the command prints.
pub fn render(opts: &AccuracyOptions, rows: &[PlanResult]) -> String {
    let mut out = format!(
        "sync-latency accuracy: {} appointment→RO→survey flows per plan, {} at a time, sandbox jobs log-normal (median 1.5 s, p99 6 s), seed {}\n",
        opts.flows, opts.concurrency, opts.seed
    );
    out.push_str(&format!(
        "{:<24} {:>6} {:>8} {:>10} {:>12} {:>12} {:>13} {:>13} {:>8}\n",
        "poll plan",
        "meas.",
        "failed",
        "in interval",
        "median |err|",
        "p95 |err|",
        "median width",
        "polls/meas.",
        "wall"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:>6} {:>8} {:>10} {:>12} {:>12} {:>13} {:>13.1} {:>8}\n",
            r.plan,
            r.measurements,
            r.failed_runs,
            format!(
                "{:.1}%",
                100.0 * r.inside as f64 / r.measurements.max(1) as f64
            ),
            format!("{:.0} ms", r.median_abs_err_ms),
            format!("{:.0} ms", r.p95_abs_err_ms),
            format!("{:.0} ms", r.median_width_ms),
            r.polls_per_measurement,
            format!("{:.1}s", r.wall.as_secs_f64()),
        ));
    }
    out
}
