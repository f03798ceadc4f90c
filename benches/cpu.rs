//! `cargo bench --bench cpu`: CPU per single-request probe, rooftop against Debian's
//! prometheus-blackbox-exporter, side by side on the same local target, alternating, in
//! rounds. The target is one GET answering 200, served by this bench on loopback in two
//! kinds: one that closes every connection after its answer, and one that keeps
//! connections alive. blackbox_exporter (fetched by tests/tools/install) is driven over
//! `/probe` at the agent's rate; `rooftop run` runs `--probes` probes `every: --period`
//! as shipped: history written to its store, incidents evaluated, `/metrics` served and
//! scraped every 15 s. Prints CPU per probe, RSS and the ratio per kind, median of the
//! rounds.
// Benches time the agents from outside, on the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use common::agent::{AgentWindow, measure_spawned, proc_usage, spawn_agent_with};
use common::{SmokeCheck, checks, tempfile_dir};

/// CPU per single-request probe: rooftop and blackbox_exporter side by side on the same
/// local target, closing and keep-alive, median of `--rounds`.
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench cpu --")]
pub struct CpuOptions {
    /// Probes the agent schedules.
    #[arg(long, default_value_t = 100)]
    pub probes: usize,
    /// Every probe's period (the agent's); blackbox is driven at the same rate.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Wait this long after the agent's first run before measuring it.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measurement window of each side in each round.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub measure: Duration,
    /// Rounds; the figures are the medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measure only this target kind (`close` or `keepalive`); both by default.
    #[arg(long)]
    pub only: Option<Kind>,
}

/// How the target treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `Connection: close` after every answer.
    Close,
    /// HTTP/1.1 keep-alive.
    Keepalive,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Close => "target closes connections",
            Kind::Keepalive => "target keeps connections alive",
        }
    }
}

const CHECKS: &[SmokeCheck] = checks![smoke: the_probes_validate, the_median_is_the_middle];

fn main() -> ExitCode {
    match common::options_or_smoke::<CpuOptions>("cpu", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&opts, &run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// The probe the agent runs, `n`-th of the set: one GET to `url`, expecting 200.
fn probe(n: usize, period: Duration, url: &str) -> String {
    format!(
        "name: cpu-{n:04}\nschedule: {{every: {}}}\nlabels: {{flow: bench-cpu, connector: target}}\nsteps:\n  - name: get\n    request: {{url: \"{url}\"}}\n    expect: {{status: 200}}\n",
        humantime::format_duration(period)
    )
}

fn write_agent_config(dir: &Path, opts: &CpuOptions, url: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("probes"))?;
    std::fs::write(dir.join("rooftop.yaml"), "rooftop: {id: bench-cpu}\n")?;
    for n in 0..opts.probes {
        std::fs::write(
            dir.join(format!("probes/cpu-{n:04}.yaml")),
            probe(n, opts.period, url),
        )?;
    }
    Ok(())
}

/// The target: answers every request on `/health` with 200 and a small JSON body; `kind`
/// says whether it closes the connection after each answer. Returns its URL and the
/// number of requests answered.
async fn start_target(kind: Kind) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/health", listener.local_addr()?);
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                loop {
                    // One request: read up to the blank line (GETs carry no body).
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break Some(i + 4);
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let Some(end) = end else { return };
                    buf.drain(..end);
                    let body = br#"{"status":"ok"}"#;
                    let connection = match kind {
                        Kind::Close => "close",
                        Kind::Keepalive => "keep-alive",
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                        body.len()
                    );
                    if sock.write_all(head.as_bytes()).await.is_err()
                        || sock.write_all(body).await.is_err()
                    {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    if kind == Kind::Close {
                        let _ = sock.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Ok((url, answered))
}

/// One side's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Figures {
    cpu_ms_per_probe: f64,
    rss_mb: f64,
    probes: u64,
}

/// blackbox_exporter on a free port with one `http_2xx` module.
async fn start_blackbox(work: &Path) -> anyhow::Result<(Child, u16)> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/tools/bin/prometheus-blackbox-exporter");
    if !bin.exists() {
        bail!(
            "{} is missing: run tests/tools/install first",
            bin.display()
        );
    }
    let config = work.join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      valid_status_codes: [200]\n",
    )?;
    let port = common::free_port()?;
    let mut cmd = Command::new(bin);
    common::die_with_parent(&mut cmd);
    let child = cmd
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start prometheus-blackbox-exporter")?;
    let client = reqwest::Client::new();
    let start = Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("blackbox_exporter did not listen on {port} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, port))
}

/// Drives blackbox's `/probe` at `opts.probes` per `opts.period` for `opts.measure` (after
/// a short warm-up) and reads its CPU and RSS from /proc.
async fn measure_blackbox(
    pid: u32,
    port: u16,
    target: &str,
    opts: &CpuOptions,
) -> anyhow::Result<Figures> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/probe?module=http_2xx&target={target}");
    let gap = opts.period / opts.probes.max(1) as u32;
    let probe_once = |client: reqwest::Client, url: String| async move {
        let body = client.get(url).send().await?.text().await?;
        anyhow::Ok(body.lines().any(|l| l == "probe_success 1"))
    };
    // Warm-up, then the window.
    for _ in 0..opts.probes.min(50) {
        probe_once(client.clone(), url.clone()).await?;
    }
    let (cpu0, _, _) = proc_usage(pid)?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(gap);
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < opts.measure {
        tick.tick().await;
        tasks.spawn(probe_once(client.clone(), url.clone()));
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(true) => ok += 1,
            _ => failed += 1,
        }
    }
    let (cpu1, rss, _) = proc_usage(pid)?;
    if failed > 0 {
        bail!(
            "blackbox_exporter: {failed} of {} probes failed",
            ok + failed
        );
    }
    Ok(Figures {
        cpu_ms_per_probe: (cpu1 - cpu0) * 1000.0 / ok.max(1) as f64,
        rss_mb: rss,
        probes: ok,
    })
}

/// One `rooftop run` on fresh config and state against `target`, with `/metrics` served
/// and scraped every 15 s.
async fn measure_rooftop(
    work: &Path,
    round: usize,
    kind: Kind,
    target: &str,
    opts: &CpuOptions,
) -> anyhow::Result<(Figures, AgentWindow)> {
    let name = format!("{kind:?}-{round}").to_lowercase();
    let (config, state) = (
        work.join(format!("{name}-config")),
        work.join(format!("{name}-state")),
    );
    write_agent_config(&config, opts, target)?;
    let port = common::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let spawned = spawn_agent_with(Vec::new(), &config, &state, &listen)?;
    let pid = spawned.0.id().context("agent pid")?;
    let scraper = tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let _ = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await;
        }
    });
    let window = measure_spawned(spawned, &state, opts.warmup, opts.measure).await;
    scraper.abort();
    let window = window?;
    let failed: u64 = window
        .outcomes
        .iter()
        .filter(|(o, _)| o != "success" && o != "skipped")
        .map(|(_, n)| n)
        .sum();
    if failed > 0 {
        bail!(
            "rooftop (pid {pid}): {failed} runs did not succeed: {:?}",
            window.outcomes
        );
    }
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&config);
    Ok((
        Figures {
            cpu_ms_per_probe: window.cpu_s * 1000.0 / window.runs.max(1) as f64,
            rss_mb: window.rss_end_mb,
            probes: window.runs,
        },
        window,
    ))
}

/// Every round's figures of one target kind.
#[derive(Debug)]
struct KindRounds {
    kind: Kind,
    blackbox: Vec<Figures>,
    rooftop: Vec<Figures>,
    /// The agent's start lag p99 per round, ms.
    lag_p99_ms: Vec<f64>,
}

/// Every round's figures per kind.
#[derive(Debug, Default)]
pub struct CpuReport {
    sides: Vec<KindRounds>,
}

pub async fn run(opts: &CpuOptions) -> anyhow::Result<CpuReport> {
    let work = tempfile_dir("rooftop-bench-cpu")?;
    let (mut blackbox, bb_port) = start_blackbox(&work).await?;
    let bb_pid = blackbox.id().context("blackbox pid")?;
    let kinds: Vec<Kind> = match opts.only {
        Some(k) => vec![k],
        None => vec![Kind::Close, Kind::Keepalive],
    };
    let mut report = CpuReport::default();
    for kind in kinds {
        let (target, _answered) = start_target(kind).await?;
        let (mut bb, mut rt, mut lag) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..opts.rounds {
            // Alternate which side goes first.
            let bb_first = round % 2 == 0;
            if bb_first {
                eprintln!("bench cpu: {kind:?} round {}: blackbox_exporter", round + 1);
                bb.push(measure_blackbox(bb_pid, bb_port, &target, opts).await?);
            }
            eprintln!("bench cpu: {kind:?} round {}: rooftop", round + 1);
            let (f, w) = measure_rooftop(&work, round, kind, &target, opts).await?;
            rt.push(f);
            lag.push(w.lag.map_or(f64::NAN, |l| l.p99_us as f64 / 1000.0));
            if !bb_first {
                eprintln!("bench cpu: {kind:?} round {}: blackbox_exporter", round + 1);
                bb.push(measure_blackbox(bb_pid, bb_port, &target, opts).await?);
            }
        }
        report.sides.push(KindRounds {
            kind,
            blackbox: bb,
            rooftop: rt,
            lag_p99_ms: lag,
        });
    }
    let _ = blackbox.kill().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub fn render(opts: &CpuOptions, r: &CpuReport) -> String {
    let mut s = format!(
        "bench cpu: one GET per probe, {} probes every {} (blackbox driven at the same rate), {} measured per side, median of {} rounds, alternating\n",
        opts.probes,
        humantime::format_duration(opts.period),
        humantime::format_duration(opts.measure),
        opts.rounds
    );
    for KindRounds {
        kind,
        blackbox: bb,
        rooftop: rt,
        lag_p99_ms: lag,
    } in &r.sides
    {
        let f = |v: &[Figures], g: fn(&Figures) -> f64| median(v.iter().map(g).collect());
        let (bb_cpu, rt_cpu) = (f(bb, |x| x.cpu_ms_per_probe), f(rt, |x| x.cpu_ms_per_probe));
        s.push_str(&format!("\n  {}\n", kind.label()));
        s.push_str(&format!(
            "  {:<34} {:>16} {:>10} {:>16}\n",
            "", "CPU per probe", "RSS", "probes / round"
        ));
        for (name, side) in [("prometheus-blackbox-exporter", bb), ("rooftop run", rt)] {
            s.push_str(&format!(
                "  {name:<34} {:>13.3} ms {:>7.1} MB {:>16.0}\n",
                f(side, |x| x.cpu_ms_per_probe),
                f(side, |x| x.rss_mb),
                f(side, |x| x.probes as f64)
            ));
        }
        s.push_str(&format!(
            "  blackbox / rooftop: {:.2}×   rooftop start lag p99: {:.2} ms   rounds (rooftop ms): {}\n",
            bb_cpu / rt_cpu,
            median(lag.clone()),
            rt.iter()
                .map(|x| format!("{:.3}", x.cpu_ms_per_probe))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    s
}

mod smoke {
    use super::*;

    pub fn the_probes_validate() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let opts = <CpuOptions as clap::Parser>::parse_from(["cpu", "--probes", "3"]);
        write_agent_config(dir.path(), &opts, "http://127.0.0.1:9/health").expect("written");
        let config = rooftop::config::load(dir.path())
            .unwrap_or_else(|e| panic!("the bench's config is invalid:\n{}", e.render()));
        assert_eq!(config.probes.len(), 3);
    }

    pub fn the_median_is_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
    }
}
