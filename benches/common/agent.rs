//! The agent under measurement: writes N probes against the sandbox (most a single
//! authenticated lookup, every n-th a full lead flow with a create, a polled sync and a
//! cleanup sweep), starts the real `rooftop` binary Cargo built for the benches
//! (`CARGO_BIN_EXE_rooftop`) as `rooftop run`, and reads its CPU, RSS and the start lag
//! of its runs from /proc and its store.
// Benches time the agent from outside, on the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rooftop::sandbox::{Sandbox, SandboxConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// Writes `rooftop.yaml` (with `extra_yaml` appended) and `probes` probe files into `dir`:
/// every `flow_every`-th a lead flow (0: none), the rest lookups.
pub fn write_config(
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
pub fn proc_usage(pid: u32) -> anyhow::Result<(f64, f64, f64)> {
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

/// The sandbox the measured agents probe, on a free loopback port: every sync job takes a
/// fixed 200 ms, so the figures do not depend on latency draws.
pub async fn start_sandbox() -> anyhow::Result<Sandbox> {
    let config = SandboxConfig::default().with_fixed_latency(Duration::from_millis(200));
    Ok(Sandbox::start("127.0.0.1:0".parse()?, config).await?)
}

/// A started agent: the child, its stdout line count, its stderr (kept for errors).
pub type Spawned = (Child, Arc<AtomicU64>, tokio::task::JoinHandle<String>);

/// Starts `rooftop run` on `config` against the sandbox; stdout lines are counted, stderr
/// kept for errors.
pub fn spawn_agent(
    sb: &Sandbox,
    config: &Path,
    state: &Path,
    listen: &str,
) -> anyhow::Result<Spawned> {
    spawn_agent_with(sb.env(), config, state, listen)
}

/// Starts `rooftop run` on `config` with `env` added to its environment.
pub fn spawn_agent_with(
    env: Vec<(String, String)>,
    config: &Path,
    state: &Path,
    listen: &str,
) -> anyhow::Result<Spawned> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rooftop"));
    // The agent goes with the bench, even when the bench is SIGKILLed.
    super::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(["run", "--listen", listen, "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .envs(env)
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
    let spawned = spawn_agent(sb, &config, &state, setup.listen)?;
    measure_spawned(spawned, &state, setup.warmup, setup.measure).await
}

/// Measures an agent just spawned on the state dir `state`: waits for its first run, then
/// `warmup`, then one window of `measure`; stops it with SIGTERM.
pub async fn measure_spawned(
    spawned: Spawned,
    state: &Path,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<AgentWindow> {
    let started = Instant::now();
    let (mut child, lines, err) = spawned;
    let pid = child.id().context("agent pid")?;
    if let Err(e) = wait_first_run(&lines, &mut child, Duration::from_secs(300)).await {
        let _ = child.start_kill();
        let err = err.await.unwrap_or_default();
        bail!("{e}\n{err}");
    }
    let load_time = started.elapsed();
    tokio::time::sleep(warmup).await;
    let (cpu0, _, _) = proc_usage(pid)?;
    let t0 = Utc::now();
    tokio::time::sleep(measure).await;
    let t1 = Utc::now();
    let (cpu1, rss_end, peak) = proc_usage(pid)?;
    sigterm(&mut child).await?;
    let (lag, outcomes, runs, store_mb) = read_window(state, t0, t1)?;
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

/// A check (see `common::SmokeCheck`): 20 probes written as a bench writes them, with
/// `extra_yaml` in `rooftop.yaml`, load and validate as the agent would load them.
pub fn validate_written_config(extra_yaml: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    write_config(dir.path(), 20, Duration::from_secs(60), 10, 16, extra_yaml)
        .expect("the config is written");
    let config = rooftop::config::load(dir.path())
        .unwrap_or_else(|errors| panic!("the written config is invalid:\n{}", errors.render()));
    assert_eq!(config.probes.len(), 20);
    assert_eq!(config.agent.rooftop_id, "bench");
}

/// An OTLP/HTTP endpoint on 127.0.0.1 that accepts everything (an empty body is a valid
/// protobuf Export*ServiceResponse) and counts it: (bytes, requests).
pub async fn start_otlp_sink() -> anyhow::Result<(String, Arc<(AtomicU64, AtomicU64)>)> {
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let c = counts.clone();
    let handler = move |body: axum::body::Bytes| {
        let c = c.clone();
        async move {
            c.0.fetch_add(body.len() as u64, Ordering::Relaxed);
            c.1.fetch_add(1, Ordering::Relaxed);
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }
    };
    let app = axum::Router::new()
        .route("/v1/metrics", axum::routing::post(handler.clone()))
        .route("/v1/traces", axum::routing::post(handler.clone()))
        .route("/v1/logs", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), counts))
}
