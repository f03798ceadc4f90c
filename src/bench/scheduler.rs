//! `rooftop bench scheduler`: the agent under load. Writes N probes against the sandbox
//! (most a single authenticated lookup, every tenth a full lead flow with a create, a
//! polled sync and a cleanup sweep), starts the real `rooftop run` as a child process,
//! and reports side by side: start lag (actual start − scheduled instant) p50 / p99 /
//! max, the agent's CPU seconds per 1,000 runs, its peak RSS, and the store's write
//! throughput; then the RSS of an agent holding 50 idle probes.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::model::HistorySettings;
use crate::runner::ProbeRun;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::RunStore;

/// Options.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub probes: usize,
    pub period: Duration,
    /// Measured after `warmup`.
    pub measure: Duration,
    pub warmup: Duration,
    /// Every n-th probe is a full lead flow (0: none).
    pub flow_every: usize,
    pub max_concurrent: usize,
    pub idle_probes: usize,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct SchedulerReport {
    pub opts: SchedulerOptions,
    pub load_time: Duration,
    pub runs_in_window: u64,
    pub runs_per_s: f64,
    pub outcomes: Vec<(String, u64)>,
    pub lag: Option<LagPercentiles>,
    pub cpu_s: f64,
    pub cpu_s_per_1000: f64,
    pub peak_rss_mb: f64,
    pub rss_end_mb: f64,
    pub store_mb: f64,
    pub write_single: f64,
    pub write_grouped: f64,
    pub idle_rss_mb: f64,
    pub idle_peak_rss_mb: f64,
}

/// A lookup probe: one authenticated GET with an assertion and a capture.
fn lookup_probe(name: &str, period: Duration) -> String {
    format!(
        r#"name: {name}
schedule: {{every: {period}}}
labels: {{flow: bench-lookup, connector: crm}}
steps:
  - name: find-leads
    request:
      url: "{{{{ env.CRM_URL }}}}/api/leads?email={{{{ synthetic.email() | urlencode }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
    expect: {{status: 200}}
    capture: {{first: "$.items"}}
"#,
        period = humantime::format_duration(period)
    )
}

/// A lead flow: create, poll until it reaches the BDC call list, sweep it away.
fn flow_probe(name: &str, period: Duration) -> String {
    format!(
        r#"name: {name}
schedule: {{every: {period}}}
labels: {{flow: bench-lead, connector: crm-to-bdc}}
vars:
  email: "{{{{ synthetic.email() }}}}"
steps:
  - name: submit-lead
    request:
      method: POST
      url: "{{{{ env.CRM_URL }}}}/api/leads"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
      json: {{name: "{{{{ synthetic.customer() }}}}", email: "{{{{ email }}}}", phone: "{{{{ synthetic.phone() }}}}", source: website}}
    expect: {{status: 201}}
    capture: {{lead_id: "$.id"}}
    creates: {{cleanup: delete-leads}}
  - name: on-call-list
    sync: {{since: submit-lead}}
    request:
      url: "{{{{ env.CRM_URL }}}}/api/bdc/call-list?lead={{{{ lead_id }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
    until: {{json: {{"$.items[0].lead_id": "{{{{ lead_id }}}}"}}}}
    poll: {{interval: 250ms, backoff: 1, within: 20s}}
cleanup:
  - name: delete-leads
    find:
      request:
        url: "{{{{ env.CRM_URL }}}}/api/leads?email={{{{ email | urlencode }}}}"
        headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
      each: "$.items[*].id"
      as: id
    request:
      method: DELETE
      url: "{{{{ env.CRM_URL }}}}/api/leads/{{{{ id }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
"#,
        period = humantime::format_duration(period)
    )
}

fn write_config(
    dir: &Path,
    probes: usize,
    period: Duration,
    flow_every: usize,
    max_concurrent: usize,
    extra_yaml: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("probes"))?;
    std::fs::write(
        dir.join("rooftop.yaml"),
        format!(
            "rooftop: {{id: bench}}\nscheduler: {{max_concurrent: {max_concurrent}}}\nsecrets:\n  crm_token: {{env: ROOFTOP_SECRET_CRM_TOKEN}}\n{extra_yaml}"
        ),
    )?;
    for i in 0..probes {
        let name = format!("bench-{i:05}");
        let text = if flow_every > 0 && i % flow_every == 0 {
            flow_probe(&name, period)
        } else {
            lookup_probe(&name, period)
        };
        std::fs::write(dir.join(format!("probes/{name}.yaml")), text)?;
    }
    Ok(())
}

/// CPU seconds (user + system) and RSS / peak RSS in MB of a process, from /proc.
fn proc_usage(pid: u32) -> anyhow::Result<(f64, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line: 11 and 12 here.
    // Linux reports them in USER_HZ, which is 100 on every architecture rooftop runs on.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks / 100.0, kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0))
}

/// Starts `rooftop run` on `config`; stdout lines are counted, stderr kept for errors.
pub fn spawn_agent(
    sb: &Sandbox,
    config: &Path,
    state: &Path,
    listen: &str,
) -> anyhow::Result<(Child, Arc<AtomicU64>, tokio::task::JoinHandle<String>)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    // The agent goes with the bench, even when the bench is SIGKILLed.
    super::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(["run", "--listen", listen, "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .envs(sb.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `rooftop run`")?;
    let lines = Arc::new(AtomicU64::new(0));
    let (stdout, stderr) = (
        child.stdout.take().context("stdout")?,
        child.stderr.take().context("stderr")?,
    );
    let counter = lines.clone();
    tokio::spawn(async move {
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(_)) = r.next_line().await {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let err = tokio::spawn(async move {
        let mut r = BufReader::new(stderr).lines();
        let mut tail = Vec::new();
        while let Ok(Some(l)) = r.next_line().await {
            if !l.starts_with("  ") {
                tail.push(l);
            }
        }
        tail.join("\n")
    });
    Ok((child, lines, err))
}

/// Stops the agent with SIGTERM and waits (90 s at most) for it to exit.
pub async fn sigterm(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .context("the agent did not stop within 90 s")??;
    Ok(())
}

/// Waits until the agent has printed its first run line (it is loaded and firing).
pub async fn wait_first_run(
    lines: &AtomicU64,
    child: &mut Child,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while lines.load(Ordering::Relaxed) == 0 {
        if let Some(status) = child.try_wait()? {
            bail!("the agent exited early: {status}");
        }
        if start.elapsed() > limit {
            bail!("no run within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One agent's figures over a measurement window.
#[derive(Debug, Clone)]
pub struct AgentWindow {
    pub load_time: Duration,
    pub runs: u64,
    pub runs_per_s: f64,
    pub outcomes: Vec<(String, u64)>,
    pub lag: Option<LagPercentiles>,
    pub cpu_s: f64,
    pub peak_rss_mb: f64,
    pub rss_end_mb: f64,
    pub store_mb: f64,
}

impl AgentWindow {
    pub fn cpu_s_per_1000(&self) -> f64 {
        self.cpu_s / (self.runs.max(1) as f64) * 1000.0
    }
}

/// What one measured agent gets.
pub struct AgentSetup<'a> {
    pub probes: usize,
    pub period: Duration,
    pub flow_every: usize,
    pub max_concurrent: usize,
    pub extra_yaml: &'a str,
    pub listen: &'a str,
    pub warmup: Duration,
    pub measure: Duration,
}

/// Writes a config into `work/name`, runs the real agent on it against `sb`, measures
/// one window after the warm-up, stops it with SIGTERM.
pub async fn measure_agent(
    sb: &Sandbox,
    work: &Path,
    name: &str,
    setup: &AgentSetup<'_>,
) -> anyhow::Result<AgentWindow> {
    let (config, state) = (
        work.join(format!("{name}-config")),
        work.join(format!("{name}-state")),
    );
    write_config(
        &config,
        setup.probes,
        setup.period,
        setup.flow_every,
        setup.max_concurrent,
        setup.extra_yaml,
    )?;
    let started = Instant::now();
    let (mut child, lines, err) = spawn_agent(sb, &config, &state, setup.listen)?;
    let pid = child.id().context("agent pid")?;
    if let Err(e) = wait_first_run(&lines, &mut child, Duration::from_secs(300)).await {
        let _ = child.start_kill();
        let err = err.await.unwrap_or_default();
        bail!("{e}\n{err}");
    }
    let load_time = started.elapsed();
    tokio::time::sleep(setup.warmup).await;
    let (cpu0, _, _) = proc_usage(pid)?;
    let t0 = Utc::now();
    tokio::time::sleep(setup.measure).await;
    let t1 = Utc::now();
    let (cpu1, rss_end, peak) = proc_usage(pid)?;
    sigterm(&mut child).await?;
    let (lag, outcomes, runs, store_mb) = read_window(&state, t0, t1)?;
    let window_s = (t1 - t0).num_milliseconds() as f64 / 1000.0;
    Ok(AgentWindow {
        load_time,
        runs,
        runs_per_s: runs as f64 / window_s,
        outcomes,
        lag,
        cpu_s: cpu1 - cpu0,
        peak_rss_mb: peak,
        rss_end_mb: rss_end,
        store_mb,
    })
}

pub async fn run(opts: &SchedulerOptions) -> anyhow::Result<SchedulerReport> {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse()?,
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(200)),
    )
    .await?;
    let work = tempfile_dir("rooftop-bench-scheduler")?;
    eprintln!(
        "bench: {} probes every {}, warm-up {}, measuring {}",
        opts.probes,
        humantime::format_duration(opts.period),
        humantime::format_duration(opts.warmup),
        humantime::format_duration(opts.measure)
    );
    let w = measure_agent(
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
        load_time: w.load_time,
        runs_in_window: w.runs,
        runs_per_s: w.runs_per_s,
        cpu_s_per_1000: w.cpu_s_per_1000(),
        outcomes: w.outcomes,
        lag: w.lag,
        cpu_s: w.cpu_s,
        peak_rss_mb: w.peak_rss_mb,
        rss_end_mb: w.rss_end_mb,
        store_mb: w.store_mb,
        write_single,
        write_grouped,
        idle_rss_mb: idle_rss,
        idle_peak_rss_mb: idle_peak,
    })
}

/// A fresh directory under the system temp dir.
pub fn tempfile_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

type Window = (Option<LagPercentiles>, Vec<(String, u64)>, u64, f64);

/// Start-lag percentiles in microseconds (lags are often well under a millisecond).
#[derive(Debug, Clone)]
pub struct LagPercentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LagPercentiles {
    fn of(lags_ms: &[f64]) -> Option<LagPercentiles> {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok()?;
        for ms in lags_ms {
            let _ = h.record(((ms * 1000.0).round() as u64).clamp(1, 3_600_000_000));
        }
        (!h.is_empty()).then(|| LagPercentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
    }
}

/// Start lag of runs scheduled in [t0, t1), outcomes of runs finished in it, store size.
fn read_window(state: &Path, t0: DateTime<Utc>, t1: DateTime<Utc>) -> anyhow::Result<Window> {
    let db = rusqlite::Connection::open(state.join("rooftop.db"))?;
    let (a, b) = (t0.timestamp_millis(), t1.timestamp_millis());
    let lags: Vec<f64> = db
        .prepare("SELECT lag_ms FROM runs WHERE scheduled_ms >= ?1 AND scheduled_ms < ?2 AND lag_ms IS NOT NULL")?
        .query_map([a, b], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let outcomes: Vec<(String, u64)> = db
        .prepare("SELECT outcome, COUNT(*) FROM runs WHERE finished_ms >= ?1 AND finished_ms < ?2 GROUP BY outcome ORDER BY 2 DESC")?
        .query_map([a, b], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    let runs = outcomes
        .iter()
        .filter(|(o, _)| o != "skipped")
        .map(|(_, n)| n)
        .sum();
    let size = std::fs::metadata(state.join("rooftop.db"))?.len() as f64 / 1e6;
    Ok((LagPercentiles::of(&lags), outcomes, runs, size))
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
    let o = &r.opts;
    let mut s = String::new();
    s.push_str(&format!(
        "rooftop bench scheduler: {} probes every {} ({} lead flows, the rest lookups), max_concurrent {}\n",
        o.probes,
        humantime::format_duration(o.period),
        if o.flow_every > 0 { o.probes.div_ceil(o.flow_every) } else { 0 },
        o.max_concurrent
    ));
    s.push_str(&format!(
        "agent loaded and first run after {:.1} s; measured {} after a {} warm-up\n\n",
        r.load_time.as_secs_f64(),
        humantime::format_duration(o.measure),
        humantime::format_duration(o.warmup)
    ));
    let lag = |f: fn(&LagPercentiles) -> u64| {
        r.lag
            .as_ref()
            .map_or("-".into(), |p| format!("{:.1} ms", f(p) as f64 / 1000.0))
    };
    let rows = [
        (
            "runs in window",
            format!("{} ({:.1}/s)", r.runs_in_window, r.runs_per_s),
        ),
        (
            "outcomes",
            r.outcomes
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
                r.cpu_s, r.cpu_s_per_1000
            ),
        ),
        (
            "agent peak RSS",
            format!("{:.1} MB (at end {:.1} MB)", r.peak_rss_mb, r.rss_end_mb),
        ),
        ("store file", format!("{:.1} MB", r.store_mb)),
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
        verdict(r.lag.as_ref().is_some_and(|p| p.p99_us <= 10_000)),
        verdict(r.peak_rss_mb <= 150.0),
        verdict(r.idle_rss_mb < 25.0)
    ));
    s
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
