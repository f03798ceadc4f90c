//! `cargo bench --bench outage`: what a WAN outage costs the agent in memory while its
//! OTLP collector is out of reach. The same probes run in three agents side by side,
//! against one sandbox: the collector's port closed (connections refused), the collector
//! silent (connections accepted, never answered: a blackholed route, every export runs
//! into its timeout), and a live collector for comparison. VmRSS is sampled throughout;
//! the figures say whether memory plateaus (span and log queues are bounded, cumulative
//! metrics need no buffer) and what a 4-hour outage would cost at the rate measured.

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rooftop::sandbox::Sandbox;

use common::agent::{proc_usage, sigterm, spawn_agent, start_sandbox, wait_first_run};
use common::agent::{validate_written_config, write_config};
use common::{SmokeCheck, tempfile_dir};

/// The span and log-record queue bound, read from the agent's source so the figure
/// printed is the one the binary was built with.
const OTLP_SOURCE: &str = include_str!("../src/telemetry/otlp.rs");
/// The outage the README asks about.
const OUTAGE: Duration = Duration::from_secs(4 * 3600);

/// Memory over a collector outage: the same probes with OTLP export to a closed port, to
/// a silent one and to a live collector, side by side (RSS at start, at the end, peak,
/// growth per hour over the second half, export queues).
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench outage --")]
pub struct OutageOptions {
    /// Probes each agent schedules.
    #[arg(long, default_value_t = 200)]
    pub probes: usize,
    /// Every probe's period.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// How long each agent runs after its first run, in minutes.
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// How often VmRSS and the export queues are sampled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
}

const CHECKS: &[SmokeCheck] = common::checks![
    checks:
    the_default_options_are_valid,
    the_queue_limit_is_read_from_the_source,
    every_side_config_validates,
    the_growth_is_the_slope_of_the_second_half,
    the_metrics_text_gives_queues_and_failures,
    the_report_renders,
];

fn main() -> ExitCode {
    match common::options_or_smoke::<OutageOptions>("outage", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// `QUEUE_LIMIT` in src/telemetry/otlp.rs.
fn queue_limit() -> anyhow::Result<u64> {
    OTLP_SOURCE
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("pub(super) const QUEUE_LIMIT: usize = ")
        })
        .and_then(|v| v.trim_end_matches(';').replace('_', "").parse().ok())
        .context("no `QUEUE_LIMIT: usize = N;` in src/telemetry/otlp.rs")
}

/// Where one agent's OTLP export goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// Nothing listens: every connection is refused at once.
    Refused,
    /// Connections are accepted and never answered: each export waits out its timeout.
    Silent,
    /// A collector that accepts everything.
    Live,
}

impl Collector {
    const ALL: [Collector; 3] = [Collector::Refused, Collector::Silent, Collector::Live];

    fn name(self) -> &'static str {
        match self {
            Collector::Refused => "refused",
            Collector::Silent => "silent",
            Collector::Live => "live",
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Collector::Refused => "port closed",
            Collector::Silent => "no answer",
            Collector::Live => "collector up",
        }
    }
}

/// The `telemetry:` section: OTLP/HTTP to `endpoint` (default 10 s export timeout), as
/// the telemetry bench configures it.
fn otlp_yaml(endpoint: &str) -> String {
    format!(
        "telemetry:\n  interval: 10s\n  otlp: {{endpoint: \"{endpoint}\", protocol: http/protobuf}}\n"
    )
}

/// A collector behind a blackholed route: accepts connections and never reads or
/// answers; each is closed after `hold` (the exporter gave up on it long before).
async fn start_silent_collector(hold: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                drop(stream);
            });
        }
    });
    Ok(format!("http://{addr}"))
}

/// One VmRSS sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the agent's first run.
    pub at_s: f64,
    pub rss_mb: f64,
}

/// What one agent's `/metrics` says about its exporters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExportState {
    /// Spans and log records waiting for export.
    pub queued_traces: u64,
    pub queued_logs: u64,
    /// Failed exports, every signal.
    pub failures: u64,
    /// Spans and log records dropped because the queue was full.
    pub dropped: u64,
}

/// `rooftop_exporter_queue`, `rooftop_exporter_failures_total` and
/// `rooftop_exporter_dropped_total` in Prometheus text.
fn export_state(metrics: &str) -> ExportState {
    let value = |l: &str| {
        l.rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let mut s = ExportState::default();
    for l in metrics.lines() {
        if l.starts_with("rooftop_exporter_queue{") {
            if l.contains("signal=\"traces\"") {
                s.queued_traces = value(l);
            } else if l.contains("signal=\"logs\"") {
                s.queued_logs = value(l);
            }
        } else if l.starts_with("rooftop_exporter_failures_total{") {
            s.failures += value(l);
        } else if l.starts_with("rooftop_exporter_dropped_total{") {
            s.dropped += value(l);
        }
    }
    s
}

/// One agent's run.
#[derive(Debug, Clone)]
pub struct Side {
    pub collector: Collector,
    pub samples: Vec<Sample>,
    /// VmHWM at the end.
    pub peak_mb: f64,
    /// The largest queues seen, and the failures at the end.
    pub max_queued_traces: u64,
    pub max_queued_logs: u64,
    pub failures: u64,
    pub dropped: u64,
    pub runs: u64,
}

impl Side {
    fn start_mb(&self) -> f64 {
        self.samples.first().map_or(f64::NAN, |s| s.rss_mb)
    }

    fn end_mb(&self) -> f64 {
        self.samples.last().map_or(f64::NAN, |s| s.rss_mb)
    }

    /// RSS at the sample nearest to `fraction` of the run.
    fn rss_at(&self, fraction: f64) -> f64 {
        let end = self.samples.last().map_or(0.0, |s| s.at_s);
        self.samples
            .iter()
            .min_by(|a, b| {
                let d = |s: &Sample| (s.at_s - fraction * end).abs();
                d(a).total_cmp(&d(b))
            })
            .map_or(f64::NAN, |s| s.rss_mb)
    }

    /// MB per hour, the least-squares slope over the second half of the samples.
    fn growth_mb_per_h(&self) -> f64 {
        growth_per_hour(&self.samples)
    }

    /// RSS after `OUTAGE` at the second half's rate.
    fn at_outage_mb(&self) -> f64 {
        let elapsed = self.samples.last().map_or(0.0, |s| s.at_s);
        self.end_mb() + self.growth_mb_per_h() * (OUTAGE.as_secs_f64() - elapsed).max(0.0) / 3600.0
    }
}

/// The least-squares slope of RSS over time in the second half of `samples`, per hour.
fn growth_per_hour(samples: &[Sample]) -> f64 {
    let half_from = samples.last().map_or(0.0, |s| s.at_s) / 2.0;
    let half: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= half_from).collect();
    if half.len() < 2 {
        return f64::NAN;
    }
    let n = half.len() as f64;
    let mean_t = half.iter().map(|s| s.at_s).sum::<f64>() / n;
    let mean_m = half.iter().map(|s| s.rss_mb).sum::<f64>() / n;
    let cov: f64 = half
        .iter()
        .map(|s| (s.at_s - mean_t) * (s.rss_mb - mean_m))
        .sum();
    let var: f64 = half.iter().map(|s| (s.at_s - mean_t).powi(2)).sum();
    if var == 0.0 {
        return f64::NAN;
    }
    cov / var * 3600.0
}

/// Everything the run measured.
#[derive(Debug, Clone)]
pub struct OutageReport {
    pub opts: OutageOptions,
    pub queue_limit: u64,
    pub sides: Vec<Side>,
    /// Requests the live collector took.
    pub live_requests: u64,
}

/// Runs the three agents side by side.
pub async fn run(opts: &OutageOptions) -> anyhow::Result<OutageReport> {
    let queue_limit = queue_limit()?;
    let sb = start_sandbox().await?;
    let work = tempfile_dir("rooftop-bench-outage")?;
    let (live, live_counts) = common::agent::start_otlp_sink().await?;
    let silent = start_silent_collector(Duration::from_secs(60)).await?;
    let refused = format!("http://127.0.0.1:{}", common::free_port()?);
    let endpoint = |c: Collector| match c {
        Collector::Refused => refused.clone(),
        Collector::Silent => silent.clone(),
        Collector::Live => live.clone(),
    };
    eprintln!(
        "bench: {} probes every {} in each of {} agents for {} min",
        opts.probes,
        humantime::format_duration(opts.period),
        Collector::ALL.len(),
        opts.minutes
    );
    let sides = futures_util::future::try_join_all(
        Collector::ALL.map(|c| run_side(&sb, &work, c, endpoint(c), opts)),
    )
    .await?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(OutageReport {
        opts: opts.clone(),
        queue_limit,
        sides,
        live_requests: live_counts.1.load(Ordering::Relaxed),
    })
}

/// One agent exporting to `endpoint`: started, sampled for `opts.minutes` after its
/// first run, stopped with SIGTERM.
async fn run_side(
    sb: &Sandbox,
    work: &Path,
    collector: Collector,
    endpoint: String,
    opts: &OutageOptions,
) -> anyhow::Result<Side> {
    let name = collector.name();
    let (config, state) = (
        work.join(format!("{name}-config")),
        work.join(format!("{name}-state")),
    );
    write_config(
        &config,
        opts.probes,
        opts.period,
        10,
        64,
        &otlp_yaml(&endpoint),
    )?;
    let port = common::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (mut child, lines, err) = spawn_agent(sb, &config, &state, &listen)?;
    let pid = child.id().context("agent pid")?;
    if let Err(e) = wait_first_run(&lines, &mut child, Duration::from_secs(120)).await {
        let _ = child.start_kill();
        bail!("{name}: {e}\n{}", err.await.unwrap_or_default());
    }
    let client = reqwest::Client::builder().no_proxy().build()?;
    let started = Instant::now();
    let length = Duration::from_secs_f64(opts.minutes * 60.0);
    let mut side = Side {
        collector,
        samples: Vec::new(),
        peak_mb: 0.0,
        max_queued_traces: 0,
        max_queued_logs: 0,
        failures: 0,
        dropped: 0,
        runs: 0,
    };
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name}: the agent exited during the run: {status}\n{}",
                err.await.unwrap_or_default()
            );
        }
        let (_, rss, peak) = proc_usage(pid)?;
        side.samples.push(Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_mb: rss,
        });
        side.peak_mb = peak;
        if let Ok(r) = client.get(format!("http://{listen}/metrics")).send().await
            && let Ok(text) = r.text().await
        {
            let s = export_state(&text);
            side.max_queued_traces = side.max_queued_traces.max(s.queued_traces);
            side.max_queued_logs = side.max_queued_logs.max(s.queued_logs);
            side.failures = s.failures;
            side.dropped = s.dropped;
        }
        if started.elapsed() >= length {
            break;
        }
        tokio::time::sleep(opts.sample_every).await;
    }
    sigterm(&mut child).await?;
    side.runs = finished_runs(&state)?;
    Ok(side)
}

/// Runs the agent stored (skipped fires left out).
fn finished_runs(state: &Path) -> anyhow::Result<u64> {
    let db = rusqlite::Connection::open(state.join("rooftop.db"))?;
    let n: i64 = db.query_row(
        "SELECT COUNT(*) FROM runs WHERE outcome != 'skipped'",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

pub fn render(r: &OutageReport) -> String {
    let o = &r.opts;
    let mut s = format!(
        "bench outage: {} probes every {} (10 % lead flows) in each of three agents side by side, \
         {} min each after the first run, VmRSS every {}\n\
         OTLP/HTTP export to a closed port (refused), to one that never answers (each export \
         waits out the 10 s timeout), and to a live collector\n\n",
        o.probes,
        humantime::format_duration(o.period),
        o.minutes,
        humantime::format_duration(o.sample_every)
    );
    s.push_str(&format!("  {:<34}", ""));
    for side in &r.sides {
        s.push_str(&format!(" {:>14}", side.collector.heading()));
    }
    s.push('\n');
    let row = |s: &mut String, name: &str, f: &dyn Fn(&Side) -> String| {
        s.push_str(&format!("  {name:<34}"));
        for side in &r.sides {
            s.push_str(&format!(" {:>14}", f(side)));
        }
        s.push('\n');
    };
    let mb = |v: f64| format!("{v:.1} MB");
    row(&mut s, "RSS at the first sample", &|x| mb(x.start_mb()));
    for quarter in 1..=3 {
        let fraction = f64::from(quarter) / 4.0;
        row(&mut s, &format!("RSS at {quarter}/4 of the run"), &|x| {
            mb(x.rss_at(fraction))
        });
    }
    row(&mut s, "RSS at the end", &|x| mb(x.end_mb()));
    row(&mut s, "peak RSS (VmHWM)", &|x| mb(x.peak_mb));
    row(&mut s, "growth, second half", &|x| {
        format!("{:+.1} MB/h", x.growth_mb_per_h())
    });
    row(&mut s, "4 h at that rate", &|x| mb(x.at_outage_mb()));
    row(&mut s, "runs", &|x| x.runs.to_string());
    row(&mut s, "failed exports", &|x| x.failures.to_string());
    row(&mut s, "spans and log records dropped", &|x| {
        x.dropped.to_string()
    });
    row(&mut s, "most spans queued", &|x| {
        x.max_queued_traces.to_string()
    });
    row(&mut s, "most log records queued", &|x| {
        x.max_queued_logs.to_string()
    });
    s.push_str(&format!(
        "\n  queue bound: {} spans and {} log records (QUEUE_LIMIT, src/telemetry/otlp.rs); \
         beyond it new ones are dropped. Metrics are cumulative: no buffer, the first export \
         after the outage carries every count.\n  the live collector took {} requests.\n",
        r.queue_limit, r.queue_limit, r.live_requests
    ));
    s
}

mod checks {
    use clap::Parser;

    use super::*;

    pub fn the_default_options_are_valid() {
        let o = OutageOptions::parse_from(["outage"]);
        assert_eq!(o.probes, 200);
        assert_eq!(o.period, Duration::from_secs(10));
        assert!(o.minutes > 0.0 && o.sample_every < Duration::from_secs(60));
    }

    pub fn the_queue_limit_is_read_from_the_source() {
        let limit = queue_limit().expect("QUEUE_LIMIT is found");
        assert!((1..=1_000_000).contains(&limit), "{limit}");
    }

    pub fn every_side_config_validates() {
        for endpoint in ["http://127.0.0.1:1", "http://127.0.0.1:4318"] {
            validate_written_config(&otlp_yaml(endpoint));
        }
    }

    fn samples(points: &[(f64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(at_s, rss_mb)| Sample { at_s, rss_mb })
            .collect()
    }

    pub fn the_growth_is_the_slope_of_the_second_half() {
        // A steep warm-up, then 1 MB per 100 s: 36 MB/h.
        let s = samples(&[
            (0.0, 10.0),
            (50.0, 30.0),
            (100.0, 40.0),
            (150.0, 40.5),
            (200.0, 41.0),
        ]);
        assert!(
            (growth_per_hour(&s) - 36.0).abs() < 1e-9,
            "{}",
            growth_per_hour(&s)
        );
        let flat = samples(&[(0.0, 10.0), (100.0, 20.0), (200.0, 20.0)]);
        assert_eq!(growth_per_hour(&flat), 0.0);
        assert!(growth_per_hour(&samples(&[(0.0, 1.0)])).is_nan());
    }

    pub fn the_metrics_text_gives_queues_and_failures() {
        let text = "# TYPE rooftop_exporter_queue gauge\n\
             rooftop_exporter_queue{rooftop=\"bench\",signal=\"traces\"} 2048\n\
             rooftop_exporter_queue{rooftop=\"bench\",signal=\"logs\"} 17\n\
             rooftop_exporter_failures_total{rooftop=\"bench\",signal=\"metrics\"} 3\n\
             rooftop_exporter_failures_total{rooftop=\"bench\",signal=\"traces\"} 40\n\
             rooftop_exporter_dropped_total{rooftop=\"bench\",signal=\"traces\"} 500\n\
             rooftop_probe_runs_total{rooftop=\"bench\"} 9\n";
        assert_eq!(
            export_state(text),
            ExportState {
                queued_traces: 2048,
                queued_logs: 17,
                failures: 43,
                dropped: 500,
            }
        );
    }

    pub fn the_report_renders() {
        let side = |collector, end| Side {
            collector,
            samples: samples(&[(0.0, 20.0), (60.0, end), (120.0, end)]),
            peak_mb: end + 1.0,
            max_queued_traces: 2048,
            max_queued_logs: 9,
            failures: 12,
            dropped: 300,
            runs: 2400,
        };
        let text = render(&OutageReport {
            opts: OutageOptions::parse_from(["outage"]),
            queue_limit: 2048,
            sides: vec![
                side(Collector::Refused, 30.0),
                side(Collector::Silent, 31.0),
                side(Collector::Live, 29.0),
            ],
            live_requests: 36,
        });
        for needle in [
            "port closed",
            "no answer",
            "collector up",
            "+0.0 MB/h",
            "queue bound: 2048",
            "spans and log records dropped",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }
}
