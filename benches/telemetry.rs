//! `cargo bench --bench telemetry`: what OpenTelemetry export costs the agent. The same
//! 1,000 probes run twice against the sandbox, side by side: export off (no OTLP, no
//! listener) and export on (metrics, traces and logs over OTLP/HTTP to an in-process
//! sink, plus `/metrics` scraped every 5 s). Reports CPU per 1,000 runs, peak RSS and the
//! bytes exported.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::agent::{
    AgentSetup, AgentWindow, measure_agent, start_sandbox, validate_written_config,
};
use common::{SmokeCheck, tempfile_dir};

/// What telemetry export costs: the same probes with OTLP export off and on, side by side
/// (CPU per 1,000 runs, peak RSS, bytes exported).
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench telemetry --")]
pub struct TelemetryOptions {
    /// Probes to schedule, on each side.
    #[arg(long, default_value_t = 1000)]
    pub probes: usize,
    /// Every probe's period.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Wait this long after the first run before measuring, on each side.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measurement window of each side.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub measure: Duration,
}

/// Under `cargo test`: the "export on" agent's config is valid rooftop config.
const CHECKS: &[SmokeCheck] = &[("the export-on config validates", || {
    validate_written_config(&otlp_yaml("http://127.0.0.1:4318"))
})];

fn main() -> ExitCode {
    match common::options_or_smoke::<TelemetryOptions>("telemetry", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// The `telemetry:` section of the "export on" agent: OTLP/HTTP to `endpoint`.
fn otlp_yaml(endpoint: &str) -> String {
    format!(
        "telemetry:\n  interval: 10s\n  otlp: {{endpoint: \"{endpoint}\", protocol: http/protobuf}}\n"
    )
}

/// Both sides.
#[derive(Debug, Clone)]
pub struct TelemetryReport {
    pub opts: TelemetryOptions,
    pub off: AgentWindow,
    pub on: AgentWindow,
    pub otlp_bytes: u64,
    pub otlp_requests: u64,
    pub scrapes: u64,
}

pub async fn run(opts: &TelemetryOptions) -> anyhow::Result<TelemetryReport> {
    let sb = start_sandbox().await?;
    let work = tempfile_dir("rooftop-bench-telemetry")?;
    let (endpoint, counts) = common::agent::start_otlp_sink().await?;
    let setup = |extra: &'static str, listen: &'static str| AgentSetup {
        probes: opts.probes,
        period: opts.period,
        flow_every: 10,
        max_concurrent: 64,
        extra_yaml: extra,
        listen,
        warmup: opts.warmup,
        measure: opts.measure,
    };
    eprintln!("bench: export off");
    let off = measure_agent(&sb, &work, "off", &setup("", "off")).await?;

    eprintln!("bench: export on ({endpoint})");
    let port = common::free_port()?;
    let listen: &'static str = Box::leak(format!("127.0.0.1:{port}").into_boxed_str());
    let extra: &'static str = Box::leak(otlp_yaml(&endpoint).into_boxed_str());
    // Scrape /metrics every 5 s while the "on" agent runs, like a Prometheus would.
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if client
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .await
                    .is_ok()
                {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let on = measure_agent(&sb, &work, "on", &setup(extra, listen)).await?;
    scraper.abort();
    let _ = std::fs::remove_dir_all(&work);
    Ok(TelemetryReport {
        opts: opts.clone(),
        off,
        on,
        otlp_bytes: counts.0.load(Ordering::Relaxed),
        otlp_requests: counts.1.load(Ordering::Relaxed),
        scrapes: scrapes.load(Ordering::Relaxed),
    })
}

pub fn render(r: &TelemetryReport) -> String {
    let o = &r.opts;
    let mut s = format!(
        "bench telemetry: {} probes every {} (10 % lead flows), measured {} after {} warm-up, each side\n\n",
        o.probes,
        humantime::format_duration(o.period),
        humantime::format_duration(o.measure),
        humantime::format_duration(o.warmup)
    );
    s.push_str(&format!(
        "  {:<28} {:>14} {:>14} {:>8}\n",
        "", "export off", "export on", "on/off"
    ));
    let row = |name: &str, off: f64, on: f64, unit: &str| {
        format!(
            "  {name:<28} {:>11.2} {unit:<2} {:>11.2} {unit:<2} {:>7.2}×\n",
            off,
            on,
            if off > 0.0 { on / off } else { f64::NAN }
        )
    };
    s.push_str(&row("runs/s", r.off.runs_per_s, r.on.runs_per_s, ""));
    s.push_str(&row(
        "CPU per 1,000 runs",
        r.off.cpu_s_per_1000(),
        r.on.cpu_s_per_1000(),
        "s",
    ));
    s.push_str(&row("peak RSS", r.off.peak_rss_mb, r.on.peak_rss_mb, "MB"));
    let p99 = |w: &AgentWindow| {
        w.lag
            .as_ref()
            .map_or(f64::NAN, |l| l.p99_us as f64 / 1000.0)
    };
    s.push_str(&row("start lag p99", p99(&r.off), p99(&r.on), "ms"));
    s.push_str(&format!(
        "\n  exported: {} OTLP requests, {:.1} MB ({:.1} kB per run); /metrics scraped {} times\n",
        r.otlp_requests,
        r.otlp_bytes as f64 / 1e6,
        r.otlp_bytes as f64 / 1e3 / (r.on.runs.max(1) as f64),
        r.scrapes
    ));
    s
}
