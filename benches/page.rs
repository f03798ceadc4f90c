//! `cargo bench --bench page`: time from an outage to the page, rooftop against the
//! classic stack (blackbox exporter + Prometheus + Alertmanager) configured alike, side by
//! side. In each trial both watch the same sandbox CRM, which goes down (HTTP 503) at a
//! random phase of their schedules; both page by e-mail to one aiosmtpd, which stamps
//! arrivals. Figures, no verdict. Every process it starts is stopped with it: on an error,
//! Ctrl-C or SIGTERM all of them; on SIGKILL all of them at once (PDEATHSIG). Under
//! `cargo test` it runs only the checks at the bottom (configs, parsing, the report).
// Benches time the agent from outside, on the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rooftop::runner::Outcome;
use rooftop::sandbox::{DownMode, Fault, FaultKind, Sandbox, SandboxConfig, System};
use rooftop::store::{IncidentStore, RunStore};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use common::agent::{sigterm, spawn_agent, wait_first_run};
use common::{SmokeCheck, die_with_parent, tempfile_dir};

/// The probe's name in rooftop, and the alert's in Prometheus.
const PROBE: &str = "crm-up";
const ALERT: &str = "CrmDown";
/// What both stacks request, under the sandbox CRM's base URL: an authenticated lookup.
const CHECK_PATH: &str = "/api/leads?email=bench%40dealer.example";
/// Longest request timeout (the scrape timeout cannot exceed the scrape interval).
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variables that would send a tool's HTTP to a proxy instead of loopback.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];
const INSTALL_HINT: &str = "run tests/tools/install from the repository root (it fetches them into .cache/tools, where `cargo bench` looks), or set ROOFTOP_TOOLS to that tools directory";
/// Debian builds Alertmanager to read its default notification templates from this
/// directory, compiled in (no flag); a package unpacked into .cache/tools lacks it.
const DEBIAN_TEMPLATE_DIR: &str = "/usr/share/prometheus/alertmanager";

/// Time from a CRM outage to the e-mail page: rooftop against blackbox exporter +
/// Prometheus + Alertmanager configured alike, both watching the same sandbox, side by
/// side. Needs the tools of tests/tools/install.
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench page --")]
pub struct PageOptions {
    /// Trials per period (the default run takes about 13 minutes, most of it at 30s).
    #[arg(long, default_value_t = 6)]
    pub trials: usize,
    /// Probe periods (= scrape and evaluation intervals), whole seconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["5s", "30s"], value_parser = humantime::parse_duration)]
    pub periods: Vec<Duration>,
    /// Seed of the random fault phases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Under `cargo test`: the pure parts (configs, parsing, figures, the report), no tools.
const CHECKS: &[SmokeCheck] = common::checks![
    checks:
    the_default_options_are_valid,
    the_rooftop_configs_validate_with_the_period_and_two_failures_in_a_row,
    the_classic_configs_scrape_evaluate_and_hold_for_one_period,
    every_listener_is_bound_to_loopback_and_gossip_is_off,
    the_printed_configs_show_placeholders_not_ports,
    index_lines_give_each_recipient_its_first_arrival,
    ready_line_gives_the_port,
    a_range_query_answer_becomes_samples_in_ms,
    the_floor_is_the_end_of_the_second_failure_after_the_fault,
    scrapes_end_at_their_start_plus_their_duration,
    spread_gives_median_and_range,
    the_alertmanager_template_path_is_replaced_in_place,
    versions_are_read_from_the_first_line,
    the_pooled_ratio_takes_one_floor_for_both_stacks,
    periods_must_be_whole_seconds,
    a_period_table_shows_figures_and_missing_pages,
];

fn main() -> ExitCode {
    match common::options_or_smoke::<PageOptions>("page", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// What one stack did in one trial: wall-clock instants, Unix epoch milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackTrial {
    /// The page reached the SMTP server.
    pub page_ms: Option<i64>,
    /// The second failing check that ended after the fault ended: the floor.
    pub floor_ms: Option<i64>,
    /// rooftop: the incident opened; classic: the rule evaluation at which the alert fired.
    pub alert_ms: Option<i64>,
}

/// One outage seen by both stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The CRM went down.
    pub fault_ms: i64,
    /// Wait between both stacks' first healthy check and the fault (the random phase).
    pub delay: Duration,
    pub rooftop: StackTrial,
    pub classic: StackTrial,
    /// rooftop queued the page in its outbox (between the incident and the page).
    pub rooftop_queued_ms: Option<i64>,
}

/// The trials of one period.
#[derive(Debug, Clone)]
pub struct PeriodResult {
    pub period: Duration,
    pub trials: Vec<Trial>,
}

/// Everything `render` prints.
#[derive(Debug, Clone)]
pub struct PageReport {
    pub opts: PageOptions,
    pub periods: Vec<PeriodResult>,
    /// `name version` of each external tool.
    pub versions: Vec<String>,
    /// The configs and command lines, with placeholders for ports and directories.
    pub configs: String,
    pub elapsed: Duration,
}

// ---- configs (pure) -------------------------------------------------------------------

/// Where the parts of one trial listen, as they appear in the configs.
#[derive(Debug, Clone)]
struct Endpoints {
    /// The sandbox CRM's base URL, e.g. `http://127.0.0.1:41234/crm`.
    crm_url: String,
    crm_token: String,
    smtp_port: String,
    /// `host:port`.
    alertmanager: String,
    blackbox: String,
    prometheus: String,
}

impl Endpoints {
    /// For printing: the same configs with every port and the token as a placeholder.
    fn placeholders() -> Endpoints {
        Endpoints {
            crm_url: "http://127.0.0.1:<crm-port>/crm".into(),
            crm_token: "<crm-token>".into(),
            smtp_port: "<smtp-port>".into(),
            alertmanager: "127.0.0.1:<alertmanager-port>".into(),
            blackbox: "127.0.0.1:<blackbox-port>".into(),
            prometheus: "127.0.0.1:<prometheus-port>".into(),
        }
    }
}

/// `5s`: the form rooftop, Prometheus and Alertmanager all read.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The timeout of one check, the same in every stack.
fn check_timeout(period: Duration) -> Duration {
    period.min(MAX_CHECK_TIMEOUT)
}

fn rooftop_agent_yaml(ep: &Endpoints, rcpt: &str) -> String {
    format!(
        r#"rooftop: {{id: bench, name: Bench Motors}}
secrets:
  crm_token: {{env: ROOFTOP_SECRET_CRM_TOKEN}}
alerting:
  contacts: [{{name: On Call, email: "{rcpt}"}}]
  routes: {{P2: [On Call]}}
  email:
    from: "rooftop <rooftop@dealer.example>"
    smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 10s}}
"#,
        port = ep.smtp_port
    )
}

fn rooftop_probe_yaml(period: Duration) -> String {
    format!(
        r#"name: {PROBE}
description: The CRM answers an authenticated lead lookup.
schedule: {{every: {every}}}
severity: P2
labels: {{flow: bench, connector: crm}}
alert: {{fire_after: 2}}
steps:
  - name: lookup-lead
    request:
      url: "{{{{ env.CRM_URL }}}}{CHECK_PATH}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
      timeout: {timeout}
    expect: {{status: 2xx}}
"#,
        every = secs(period),
        timeout = secs(check_timeout(period))
    )
}

fn blackbox_yaml(ep: &Endpoints) -> String {
    format!(
        r#"modules:
  crm_2xx:
    prober: http
    timeout: {timeout}
    http:
      method: GET
      preferred_ip_protocol: ip4
      headers:
        Authorization: "Bearer {token}"
"#,
        timeout = secs(MAX_CHECK_TIMEOUT),
        token = ep.crm_token
    )
}

fn prometheus_yaml(period: Duration, ep: &Endpoints) -> String {
    format!(
        r#"global:
  scrape_interval: {every}
  scrape_timeout: {timeout}
  evaluation_interval: {every}
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["{am}"]}}]
scrape_configs:
  - job_name: crm
    metrics_path: /probe
    params:
      module: [crm_2xx]
      target: ["{crm}{CHECK_PATH}"]
    static_configs: [{{targets: ["{blackbox}"]}}]
"#,
        every = secs(period),
        timeout = secs(check_timeout(period)),
        am = ep.alertmanager,
        crm = ep.crm_url,
        blackbox = ep.blackbox
    )
}

/// `for:` one period: the alert fires at the evaluation after the one that first saw a
/// failed probe, i.e. on the second failing scrape (Prometheus' "2 in a row").
fn rules_yaml(period: Duration) -> String {
    format!(
        r#"groups:
  - name: bench
    rules:
      - alert: {ALERT}
        expr: probe_success{{job="crm"}} == 0
        for: {every}
        labels: {{severity: page}}
        annotations: {{summary: "The CRM lead lookup fails"}}
"#,
        every = secs(period)
    )
}

fn alertmanager_yaml(ep: &Endpoints, rcpt: &str) -> String {
    format!(
        r#"route:
  receiver: on-call
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: on-call
    email_configs:
      - to: "{rcpt}"
        from: "alertmanager@dealer.example"
        smarthost: "127.0.0.1:{port}"
        require_tls: false
        send_resolved: false
"#,
        port = ep.smtp_port
    )
}

/// The files of one trial, relative to its directory (the blackbox exporter's is shared).
fn trial_files(
    period: Duration,
    ep: &Endpoints,
    rooftop_rcpt: &str,
    classic_rcpt: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("rooftop/rooftop.yaml", rooftop_agent_yaml(ep, rooftop_rcpt)),
        ("rooftop/probes/crm-up.yaml", rooftop_probe_yaml(period)),
        ("prometheus.yml", prometheus_yaml(period, ep)),
        ("rules.yml", rules_yaml(period)),
        ("alertmanager.yml", alertmanager_yaml(ep, classic_rcpt)),
    ]
}

fn blackbox_args(dir: &Path, addr: &str) -> Vec<String> {
    vec![
        format!("--config.file={}", dir.join("blackbox.yml").display()),
        format!("--web.listen-address={addr}"),
    ]
}

fn prometheus_args(dir: &Path, addr: &str) -> Vec<String> {
    vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ),
        format!("--web.listen-address={addr}"),
        format!("--web.external-url=http://{addr}/"),
    ]
}

/// An empty `--cluster.listen-address` turns gossip (which listens on 0.0.0.0) off.
fn alertmanager_args(dir: &Path, addr: &str) -> Vec<String> {
    vec![
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("alertmanager-data").display()),
        format!("--web.listen-address={addr}"),
        format!("--web.external-url=http://{addr}/"),
        "--cluster.listen-address=".into(),
    ]
}

/// Every config and command line of a trial at `period`, with placeholders.
fn render_configs(period: Duration) -> String {
    let ep = Endpoints::placeholders();
    let dir = Path::new("$TRIAL");
    let mut files = trial_files(
        period,
        &ep,
        "rooftop-<trial>@dealer.example",
        "classic-<trial>@dealer.example",
    );
    files.push(("blackbox.yml (shared by the trials)", blackbox_yaml(&ep)));
    let mut s = String::new();
    for (name, text) in files {
        s.push_str(&format!("  --- {name}\n"));
        for line in text.lines() {
            s.push_str(&format!("  {line}\n"));
        }
    }
    s.push_str("  --- command lines\n");
    let commands = [
        (
            "prometheus-blackbox-exporter",
            blackbox_args(Path::new("$BENCH"), &ep.blackbox),
        ),
        ("prometheus", prometheus_args(dir, &ep.prometheus)),
        ("alertmanager", alertmanager_args(dir, &ep.alertmanager)),
        (
            "rooftop run",
            vec!["--listen off --config $TRIAL/rooftop --state-dir $TRIAL/state".to_string()],
        ),
    ];
    for (program, args) in commands {
        s.push_str(&format!("  {program} {}\n", args.join(" ")));
    }
    s
}

// ---- the external tools ---------------------------------------------------------------

/// Paths of the programs `tests/tools/install` fetches, and of our SMTP server.
#[derive(Debug, Clone)]
struct Tools {
    prometheus: PathBuf,
    alertmanager: PathBuf,
    blackbox: PathBuf,
    python: PathBuf,
    smtp_server: PathBuf,
    /// Alertmanager's default templates in the unpacked Debian package.
    templates: PathBuf,
}

impl Tools {
    /// From `ROOFTOP_TOOLS`, else `.cache/tools` under the current directory.
    fn find() -> anyhow::Result<Tools> {
        let dir = std::env::var_os("ROOFTOP_TOOLS")
            .map_or_else(|| PathBuf::from(".cache/tools"), PathBuf::from);
        let tools = Tools {
            prometheus: dir.join("bin/prometheus"),
            alertmanager: dir.join("bin/alertmanager"),
            blackbox: dir.join("bin/prometheus-blackbox-exporter"),
            python: dir.join("venv/bin/python"),
            smtp_server: PathBuf::from("tests/tools/smtp_server.py"),
            templates: dir.join("deb/usr/share/prometheus/alertmanager"),
        };
        let missing: Vec<String> = [
            &tools.prometheus,
            &tools.alertmanager,
            &tools.blackbox,
            &tools.python,
            &tools.smtp_server,
        ]
        .into_iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
        if !missing.is_empty() {
            bail!("missing {}: {INSTALL_HINT}", missing.join(", "));
        }
        Ok(tools)
    }

    /// `name version` per tool, from their `--version`.
    async fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, path) in [
            ("prometheus", &self.prometheus),
            ("alertmanager", &self.alertmanager),
            ("blackbox-exporter", &self.blackbox),
            ("python", &self.python),
        ] {
            let version = match loopback_command(path).arg("--version").output().await {
                Ok(o) => version_of(&format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(_) => None,
            };
            out.push(format!("{name} {}", version.unwrap_or("?".into())));
        }
        out
    }
}

/// `prometheus, version 2.42.0+ds (branch: …)` → `2.42.0+ds`; `Python 3.11.7` → `3.11.7`.
fn version_of(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let after = match line.split_once("version ") {
        Some((_, rest)) => rest,
        None => line.split_once(' ')?.1,
    };
    after.split_whitespace().next().map(str::to_string)
}

/// A command for an external tool: no proxy variables, stdin closed, killed when its
/// handle is dropped and when the bench dies.
fn loopback_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

/// A running external tool, its stdout and stderr in a log file.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = loopback_command(program)
            .args(args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Proc { name, child, log })
    }

    /// The end of its log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Our aiosmtpd (`tests/tools/smtp_server.py`): both stacks page to it.
struct SmtpSink {
    proc: Proc,
    port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    async fn start(tools: &Tools, dir: &Path) -> anyhow::Result<SmtpSink> {
        std::fs::create_dir_all(dir)?;
        let (log, maildir) = (dir.join("smtp_server.log"), dir.join("maildir"));
        let mut child = loopback_command(&tools.python)
            .arg(&tools.smtp_server)
            .args(["--port", "0", "--maildir"])
            .arg(&maildir)
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", tools.smtp_server.display()))?;
        let stdout = child.stdout.take().context("smtp_server.py's stdout")?;
        let mut proc = Proc {
            name: "smtp_server.py",
            child,
            log,
        };
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let port = match first {
            Ok(Ok(Some(line))) => parse_ready(&line),
            _ => None,
        };
        let Some(port) = port else {
            proc.ensure_running()?;
            bail!(
                "smtp_server.py did not print READY within 30 s:\n{}",
                proc.log_tail()
            );
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SmtpSink {
            proc,
            port,
            maildir,
        })
    }

    fn index(&self) -> anyhow::Result<Vec<IndexLine>> {
        match std::fs::read_to_string(self.maildir.join("index.jsonl")) {
            Ok(text) => parse_index(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `READY port=2525` → 2525.
fn parse_ready(line: &str) -> Option<u16> {
    line.trim().strip_prefix("READY port=")?.parse().ok()
}

/// One line of the SMTP server's `index.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct IndexLine {
    mail_from: String,
    rcpt_tos: Vec<String>,
    /// Arrival (end of DATA), Unix epoch ms.
    received_ms: Option<i64>,
}

fn parse_index(text: &str) -> anyhow::Result<Vec<IndexLine>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad index.jsonl line: {l}")))
        .collect()
}

/// When the first message to `rcpt` arrived.
fn arrival(index: &[IndexLine], rcpt: &str) -> Option<i64> {
    index
        .iter()
        .find(|l| l.rcpt_tos.iter().any(|r| r == rcpt))
        .and_then(|l| l.received_ms)
}

/// Debian's Alertmanager made to find its templates: a copy of the binary in which
/// [`DEBIAN_TEMPLATE_DIR`] is replaced by a symlink path of the same length (Go strings
/// carry their length, so bytes may change but not the size) pointing to the unpacked
/// templates. Nothing else changes. A build without that path (upstream, templates
/// embedded) runs as it is. The symlink goes when this is dropped.
struct AlertmanagerBinary {
    path: PathBuf,
    link: Option<PathBuf>,
}

impl AlertmanagerBinary {
    fn prepare(tools: &Tools, work: &Path) -> anyhow::Result<AlertmanagerBinary> {
        let bytes = std::fs::read(&tools.alertmanager)
            .with_context(|| format!("cannot read {}", tools.alertmanager.display()))?;
        let link = template_link(std::process::id());
        let (patched, n) = replace_same_length(&bytes, DEBIAN_TEMPLATE_DIR, &link)?;
        if n == 0 {
            return Ok(AlertmanagerBinary {
                path: tools.alertmanager.clone(),
                link: None,
            });
        }
        let templates = tools.templates.canonicalize().with_context(|| {
            format!(
                "Alertmanager's templates are not at {}: {INSTALL_HINT}",
                tools.templates.display()
            )
        })?;
        let link = PathBuf::from(link);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&templates, &link)
            .with_context(|| format!("cannot create the symlink {}", link.display()))?;
        let guard = AlertmanagerBinary {
            path: work.join("alertmanager"),
            link: Some(link),
        };
        std::fs::write(&guard.path, patched)?;
        std::fs::set_permissions(
            &guard.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(guard)
    }
}

impl Drop for AlertmanagerBinary {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// `/tmp/rooftop-am-000…<pid>`, exactly as long as [`DEBIAN_TEMPLATE_DIR`].
fn template_link(pid: u32) -> String {
    let prefix = "/tmp/rooftop-am-";
    let width = DEBIAN_TEMPLATE_DIR.len() - prefix.len();
    format!("{prefix}{pid:0>width$}")
}

/// `haystack` with every `from` replaced by `to` (same length), and how many there were.
fn replace_same_length(haystack: &[u8], from: &str, to: &str) -> anyhow::Result<(Vec<u8>, usize)> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    if from.len() != to.len() || from.is_empty() {
        bail!("replacement of a different length");
    }
    let mut out = haystack.to_vec();
    let (mut count, mut i) = (0, 0);
    while let Some(at) = out[i..].windows(from.len()).position(|w| w == from) {
        out[i + at..i + at + to.len()].copy_from_slice(to);
        count += 1;
        i += at + to.len();
    }
    Ok((out, count))
}

// ---- what each stack saw (pure) --------------------------------------------------------

/// One check: a rooftop run, or a Prometheus scrape of the blackbox exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Check {
    end_ms: i64,
    success: bool,
}

/// The end of the second failing check among those that ended at or after the fault:
/// the earliest instant at which "2 failed checks in a row" can be known.
fn second_failure_end(checks: &[Check], fault_ms: i64) -> Option<i64> {
    let mut ends: Vec<i64> = checks
        .iter()
        .filter(|c| !c.success && c.end_ms >= fault_ms)
        .map(|c| c.end_ms)
        .collect();
    ends.sort_unstable();
    ends.get(1).copied()
}

/// A sample of a Prometheus series.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    ms: i64,
    value: f64,
}

/// Prometheus' answer to a range query (`/api/v1/query?query=x[1h]`): the first series'
/// samples (none if no series matched).
fn parse_matrix(body: &Value) -> anyhow::Result<Vec<Sample>> {
    if body["status"] != "success" {
        bail!("Prometheus answered: {body}");
    }
    let Some(series) = body["data"]["result"]
        .as_array()
        .context("no data.result in Prometheus' answer")?
        .first()
    else {
        return Ok(Vec::new());
    };
    let values = series["values"]
        .as_array()
        .context("not a range vector (no values)")?;
    values
        .iter()
        .map(|pair| {
            let ts = pair[0].as_f64().context("a sample without a timestamp")?;
            let value = pair[1]
                .as_str()
                .context("a sample without a value")?
                .parse::<f64>()?;
            Ok(Sample {
                ms: (ts * 1000.0).round() as i64,
                value,
            })
        })
        .collect()
}

/// Scrapes from `probe_success` and `scrape_duration_seconds` (same timestamps: the scrape
/// start); a scrape ends at its start plus its duration.
fn classic_checks(success: &[Sample], durations: &[Sample]) -> Vec<Check> {
    success
        .iter()
        .map(|s| {
            let took = durations
                .iter()
                .find(|d| d.ms == s.ms)
                .map_or(0, |d| (d.value * 1000.0).round() as i64);
            Check {
                end_ms: s.ms + took,
                success: s.value == 1.0,
            }
        })
        .collect()
}

// ---- statistics (pure) -----------------------------------------------------------------

/// Median and range of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    n: usize,
    median: f64,
    min: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// Seconds from `from` to `to`, if both happened.
fn gap_s(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    Some((to? - from?) as f64 / 1000.0)
}

/// A figure of one stack in one trial, in seconds.
type Measure = fn(&StackTrial, i64) -> Option<f64>;

/// The rows of a period's table: name, decimals, figure.
fn measures() -> [(&'static str, usize, Measure); 5] {
    [
        ("time to page", 2, |s, f| gap_s(Some(f), s.page_ms)),
        ("floor", 2, |s, f| gap_s(Some(f), s.floor_ms)),
        ("page − floor", 3, |s, _| gap_s(s.floor_ms, s.page_ms)),
        ("  floor → incident | firing", 3, |s, _| {
            gap_s(s.floor_ms, s.alert_ms)
        }),
        ("  incident | firing → page", 3, |s, _| {
            gap_s(s.alert_ms, s.page_ms)
        }),
    ]
}

fn spread_of(trials: &[Trial], stack: fn(&Trial) -> &StackTrial, m: Measure) -> Option<Spread> {
    let values: Vec<f64> = trials
        .iter()
        .filter_map(|t| m(stack(t), t.fault_ms))
        .collect();
    spread(&values)
}

/// Classic over rooftop time to page, with the floor taken from both stacks' floors
/// together. Where the fault falls in each stack's schedule is uniform for both, so their
/// floors share one distribution; with a few trials their medians still differ by
/// seconds, which the plain ratio of medians carries, while what the stacks themselves
/// add is page − floor.
fn pooled_floor_ratio(trials: &[Trial], floor: Measure, beyond: Measure) -> Option<f64> {
    let floors: Vec<f64> = trials
        .iter()
        .flat_map(|t| [floor(&t.rooftop, t.fault_ms), floor(&t.classic, t.fault_ms)])
        .flatten()
        .collect();
    let f = spread(&floors)?.median;
    let r = spread_of(trials, |t| &t.rooftop, beyond)?.median;
    let c = spread_of(trials, |t| &t.classic, beyond)?.median;
    Some((f + c) / (f + r))
}

// ---- one trial -------------------------------------------------------------------------

/// The CRM outage; cleared when dropped, also on an error path.
struct Outage<'a> {
    sb: &'a Sandbox,
    started_ms: i64,
}

impl<'a> Outage<'a> {
    fn start(sb: &'a Sandbox) -> Outage<'a> {
        let started_ms = Utc::now().timestamp_millis();
        sb.set_faults(vec![Fault::new(FaultKind::ConnectorDown {
            system: System::Crm,
            mode: DownMode::Http503,
        })]);
        Outage { sb, started_ms }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        self.sb.set_faults(vec![]);
    }
}

/// What lives for the whole bench.
struct Bench {
    tools: Tools,
    alertmanager: AlertmanagerBinary,
    sb: Sandbox,
    smtp: SmtpSink,
    blackbox: Proc,
    blackbox_addr: String,
    http: reqwest::Client,
    work: PathBuf,
}

/// Polls `ready` every 100 ms until it holds; fails with "`what` within `limit`" once
/// `limit` has passed, or at once when `proc` has exited.
async fn wait_until<F: Future<Output = bool>>(
    proc: &mut Proc,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> F,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ready().await {
        proc.ensure_running()?;
        if start.elapsed() > limit {
            bail!("{what} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Polls `url` until it answers 2xx.
async fn wait_http_ok(
    http: &reqwest::Client,
    url: &str,
    proc: &mut Proc,
    limit: Duration,
) -> anyhow::Result<()> {
    let what = format!("{} did not answer {url}", proc.name);
    wait_until(proc, limit, &what, || async {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

/// A range query's first series.
async fn prom_series(
    http: &reqwest::Client,
    prometheus: &str,
    query: &str,
) -> anyhow::Result<Vec<Sample>> {
    let mut url = reqwest::Url::parse(&format!("http://{prometheus}/api/v1/query"))?;
    url.query_pairs_mut().append_pair("query", query);
    let body: Value = http.get(url).send().await?.json().await?;
    parse_matrix(&body).with_context(|| format!("query {query}"))
}

/// Waits until Prometheus holds a successful probe of the CRM.
async fn wait_classic_healthy(
    http: &reqwest::Client,
    prometheus: &str,
    proc: &mut Proc,
    limit: Duration,
) -> anyhow::Result<()> {
    let what = "Prometheus recorded no successful probe of the CRM";
    wait_until(proc, limit, what, || async {
        prom_series(http, prometheus, r#"probe_success{job="crm"}[1h]"#)
            .await
            .is_ok_and(|samples| samples.iter().any(|s| s.value == 1.0))
    })
    .await
}

/// The classic stack's scrapes and the evaluation at which its alert fired.
async fn read_prometheus(
    http: &reqwest::Client,
    prometheus: &str,
    fault_ms: i64,
) -> anyhow::Result<(Vec<Check>, Option<i64>)> {
    let success = prom_series(http, prometheus, r#"probe_success{job="crm"}[1h]"#).await?;
    let took = prom_series(
        http,
        prometheus,
        r#"scrape_duration_seconds{job="crm"}[1h]"#,
    )
    .await?;
    let firing = prom_series(
        http,
        prometheus,
        &format!(r#"ALERTS{{alertname="{ALERT}",alertstate="firing"}}[1h]"#),
    )
    .await?;
    let fired = firing.iter().map(|s| s.ms).filter(|&t| t >= fault_ms).min();
    Ok((classic_checks(&success, &took), fired))
}

/// What rooftop stored: its runs, when its incident opened, when it queued the page.
struct RooftopSeen {
    checks: Vec<Check>,
    opened_ms: Option<i64>,
    queued_ms: Option<i64>,
}

/// Read from the agent's state directory once it has stopped.
async fn read_rooftop(state: &Path, fault_ms: i64) -> anyhow::Result<RooftopSeen> {
    let since = DateTime::<Utc>::from_timestamp_millis(fault_ms - 3_600_000)
        .context("fault instant out of range")?;
    let runs = RunStore::open_in(state)?
        .recent_runs(PROBE.to_string(), since, 0)
        .await?;
    let checks = runs
        .iter()
        .map(|r| Check {
            end_ms: r.finished_at.timestamp_millis(),
            success: r.outcome == Outcome::Success,
        })
        .collect();
    let opened = IncidentStore::open_in(state)?
        .list(false)
        .await?
        .iter()
        .filter(|i| i.probe == PROBE)
        .map(|i| i.opened_at.timestamp_millis())
        .filter(|&t| t >= fault_ms)
        .min();
    // The outbox's rows do not carry their creation instant; the table does.
    let db = rusqlite::Connection::open(state.join("rooftop.db"))?;
    let queued_ms = db.query_row(
        "SELECT MIN(created_ms) FROM outbox WHERE kind = 'trigger' AND created_ms >= ?1",
        [fault_ms],
        |r| r.get::<_, Option<i64>>(0),
    )?;
    Ok(RooftopSeen {
        checks,
        opened_ms: opened,
        queued_ms,
    })
}

/// Kills the agent and adds what it printed on stderr to `e`.
async fn with_agent_stderr(
    mut agent: Child,
    stderr: JoinHandle<String>,
    e: anyhow::Error,
) -> anyhow::Error {
    let _ = agent.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
    let tail = match tokio::time::timeout(Duration::from_secs(5), stderr).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    anyhow::anyhow!("{e:#}\nrooftop run's stderr:\n{tail}")
}

/// One trial: fresh rooftop, Prometheus and Alertmanager; both stacks healthy; the CRM
/// goes down `delay` later; both pages (or `4 × period + 30 s`); then everything stops.
async fn run_trial(
    b: &mut Bench,
    period: Duration,
    n: usize,
    delay: Duration,
) -> anyhow::Result<Trial> {
    let tag = format!("{}-{n}", secs(period));
    let dir = b.work.join(&tag);
    let (rooftop_rcpt, classic_rcpt) = (
        format!("rooftop-{tag}@dealer.example"),
        format!("classic-{tag}@dealer.example"),
    );
    let ep = Endpoints {
        crm_url: b.sb.urls().crm.clone(),
        crm_token: crm_token(&b.sb)?,
        smtp_port: b.smtp.port.to_string(),
        alertmanager: format!("127.0.0.1:{}", common::free_port()?),
        blackbox: b.blackbox_addr.clone(),
        prometheus: format!("127.0.0.1:{}", common::free_port()?),
    };
    for (name, text) in trial_files(period, &ep, &rooftop_rcpt, &classic_rcpt) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().context("a file has a parent")?)?;
        std::fs::write(&path, text)?;
    }
    let mut am = Proc::spawn(
        "alertmanager",
        &b.alertmanager.path,
        &alertmanager_args(&dir, &ep.alertmanager),
        dir.join("alertmanager.log"),
    )?;
    let mut prom = Proc::spawn(
        "prometheus",
        &b.tools.prometheus,
        &prometheus_args(&dir, &ep.prometheus),
        dir.join("prometheus.log"),
    )?;
    let state = dir.join("state");
    let (mut agent, lines, agent_stderr) = spawn_agent(&b.sb, &dir.join("rooftop"), &state, "off")?;

    let limit = period * 2 + Duration::from_secs(30);
    let ready = async {
        wait_http_ok(
            &b.http,
            &format!("http://{}/-/ready", ep.alertmanager),
            &mut am,
            Duration::from_secs(30),
        )
        .await?;
        tokio::try_join!(
            async {
                wait_first_run(&lines, &mut agent, limit)
                    .await
                    .context("waiting for rooftop's first run")
            },
            wait_classic_healthy(&b.http, &ep.prometheus, &mut prom, limit),
        )
    };
    if let Err(e) = ready.await {
        return Err(with_agent_stderr(agent, agent_stderr, e).await);
    }

    tokio::time::sleep(delay).await;
    let outage = Outage::start(&b.sb);
    let fault_ms = outage.started_ms;
    let deadline = Instant::now() + period * 4 + Duration::from_secs(30);
    let (rooftop_page, classic_page) = loop {
        let index = b.smtp.index()?;
        let pages = (
            arrival(&index, &rooftop_rcpt),
            arrival(&index, &classic_rcpt),
        );
        if (pages.0.is_some() && pages.1.is_some()) || Instant::now() > deadline {
            break pages;
        }
        for p in [&mut am, &mut prom, &mut b.blackbox, &mut b.smtp.proc] {
            p.ensure_running()?;
        }
        if let Some(status) = agent.try_wait()? {
            return Err(with_agent_stderr(
                agent,
                agent_stderr,
                anyhow::anyhow!("rooftop run exited during the trial ({status})"),
            )
            .await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (classic_checks, fired) = read_prometheus(&b.http, &ep.prometheus, fault_ms).await?;
    sigterm(&mut agent).await?;
    prom.stop().await;
    am.stop().await;
    drop(outage);
    let rooftop = read_rooftop(&state, fault_ms).await?;

    for (stack, checks) in [("rooftop", &rooftop.checks), ("classic", &classic_checks)] {
        if !checks.iter().any(|c| c.success && c.end_ms < fault_ms) {
            bail!(
                "the {stack} stack saw no healthy check before the fault (trial {tag}, files in {})",
                dir.display()
            );
        }
    }
    Ok(Trial {
        fault_ms,
        delay,
        rooftop: StackTrial {
            page_ms: rooftop_page,
            floor_ms: second_failure_end(&rooftop.checks, fault_ms),
            alert_ms: rooftop.opened_ms,
        },
        classic: StackTrial {
            page_ms: classic_page,
            floor_ms: second_failure_end(&classic_checks, fault_ms),
            alert_ms: fired,
        },
        rooftop_queued_ms: rooftop.queued_ms,
    })
}

fn crm_token(sb: &Sandbox) -> anyhow::Result<String> {
    sb.env()
        .into_iter()
        .find(|(k, _)| k == "ROOFTOP_SECRET_CRM_TOKEN")
        .map(|(_, v)| v)
        .context("the sandbox exports no CRM token")
}

/// A directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_options(opts: &PageOptions) -> anyhow::Result<()> {
    if opts.trials == 0 {
        bail!("--trials must be at least 1");
    }
    if opts.periods.is_empty() {
        bail!("--periods needs at least one period, e.g. 5s,30s");
    }
    for p in &opts.periods {
        if p.subsec_nanos() != 0 || p.as_secs() == 0 {
            bail!(
                "period {} is not a whole number of seconds (e.g. 5s, 30s)",
                humantime::format_duration(*p)
            );
        }
    }
    Ok(())
}

pub async fn run(opts: &PageOptions) -> anyhow::Result<PageReport> {
    check_options(opts)?;
    let started = Instant::now();
    let tools = Tools::find()?;
    let versions = tools.versions().await;
    let scratch = Scratch(tempfile_dir("rooftop-bench-page")?);
    let work = scratch.0.clone();
    let alertmanager = AlertmanagerBinary::prepare(&tools, &work)?;
    let sb = Sandbox::start("127.0.0.1:0".parse()?, SandboxConfig::default()).await?;
    let smtp = SmtpSink::start(&tools, &work.join("smtp")).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let blackbox_addr = format!("127.0.0.1:{}", common::free_port()?);
    let ep = Endpoints {
        crm_token: crm_token(&sb)?,
        ..Endpoints::placeholders()
    };
    std::fs::write(work.join("blackbox.yml"), blackbox_yaml(&ep))?;
    let mut blackbox = Proc::spawn(
        "prometheus-blackbox-exporter",
        &tools.blackbox,
        &blackbox_args(&work, &blackbox_addr),
        work.join("blackbox.log"),
    )?;
    wait_http_ok(
        &http,
        &format!("http://{blackbox_addr}/-/healthy"),
        &mut blackbox,
        Duration::from_secs(30),
    )
    .await?;
    let mut bench = Bench {
        tools,
        alertmanager,
        sb,
        smtp,
        blackbox,
        blackbox_addr,
        http,
        work,
    };

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut periods = Vec::new();
    for &period in &opts.periods {
        let mut trials = Vec::new();
        for n in 1..=opts.trials {
            let delay = Duration::from_millis(rng.random_range(0..period.as_millis() as u64));
            let t = run_trial(&mut bench, period, n, delay).await?;
            let s = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.2} s"));
            eprintln!(
                "bench: period {} trial {n}/{}: rooftop paged after {}, classic after {}",
                secs(period),
                opts.trials,
                s(gap_s(Some(t.fault_ms), t.rooftop.page_ms)),
                s(gap_s(Some(t.fault_ms), t.classic.page_ms)),
            );
            trials.push(t);
        }
        periods.push(PeriodResult { period, trials });
    }
    bench.blackbox.stop().await;
    bench.smtp.proc.stop().await;
    Ok(PageReport {
        opts: opts.clone(),
        periods,
        versions,
        configs: render_configs(opts.periods[0]),
        elapsed: started.elapsed(),
    })
}

// ---- report ----------------------------------------------------------------------------

fn cell(s: Option<Spread>, decimals: usize) -> String {
    s.map_or("-".into(), |s| {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            s.median,
            s.min,
            s.max,
            d = decimals
        )
    })
}

fn render_period(p: &PeriodResult) -> String {
    let rooftop: fn(&Trial) -> &StackTrial = |t| &t.rooftop;
    let classic: fn(&Trial) -> &StackTrial = |t| &t.classic;
    let n = p.trials.len();
    let mut s = format!(
        "{:<33}{:<27}classic\n",
        format!("period {} ({n} trials)", secs(p.period)),
        "rooftop"
    );
    let received = |stack: fn(&Trial) -> &StackTrial| {
        let got = p
            .trials
            .iter()
            .filter(|t| stack(t).page_ms.is_some())
            .count();
        format!("{got} of {n}")
    };
    s.push_str(&format!(
        "  {:<30} {:<26} {}\n",
        "pages received",
        received(rooftop),
        received(classic)
    ));
    for (name, decimals, m) in measures() {
        s.push_str(&format!(
            "  {name:<30} {:<26} {}\n",
            cell(spread_of(&p.trials, rooftop, m), decimals),
            cell(spread_of(&p.trials, classic, m), decimals)
        ));
    }
    let [(_, _, ttp), (_, _, floor), (_, _, beyond), ..] = measures();
    if let (Some(r), Some(c)) = (
        spread_of(&p.trials, rooftop, ttp),
        spread_of(&p.trials, classic, ttp),
    ) {
        s.push_str(&format!(
            "  time to page, classic / rooftop (medians): {:.2}×\n",
            c.median / r.median
        ));
    }
    if let Some(ratio) = pooled_floor_ratio(&p.trials, floor, beyond) {
        s.push_str(&format!(
            "  the same with one floor for both (median of all floors + each median page − floor): {ratio:.2}×\n"
        ));
    }
    if let Some(b) = spread_of(&p.trials, rooftop, beyond) {
        s.push_str(&format!(
            "  rooftop beyond the floor (goal: within 1 s): median {:.3} s, at most {:.3} s\n",
            b.median, b.max
        ));
    }
    let ms = |from: fn(&Trial) -> Option<i64>, to: fn(&Trial) -> Option<i64>| {
        let v: Vec<f64> = p
            .trials
            .iter()
            .filter_map(|t| gap_s(from(t), to(t)))
            .collect();
        spread(&v).map_or("-".into(), |s| format!("{:.0} ms", s.median * 1000.0))
    };
    s.push_str(&format!(
        "  rooftop's path, medians: run finished → incident opened {} → page queued {} → page received {}\n",
        ms(|t| t.rooftop.floor_ms, |t| t.rooftop.alert_ms),
        ms(|t| t.rooftop.alert_ms, |t| t.rooftop_queued_ms),
        ms(|t| t.rooftop_queued_ms, |t| t.rooftop.page_ms),
    ));
    s.push_str("  per trial, seconds after the fault (delay: both healthy → fault):\n");
    s.push_str(&format!(
        "  {:>5} {:>6} {:>13} {:>7} {:>9} {:>13} {:>7} {:>7}\n",
        "trial", "delay", "rooftop page", "floor", "incident", "classic page", "floor", "firing"
    ));
    let at = |from: i64, to: Option<i64>| {
        gap_s(Some(from), to).map_or("-".into(), |v| format!("{v:.2}"))
    };
    for (i, t) in p.trials.iter().enumerate() {
        s.push_str(&format!(
            "  {:>5} {:>6.2} {:>13} {:>7} {:>9} {:>13} {:>7} {:>7}\n",
            i + 1,
            t.delay.as_secs_f64(),
            at(t.fault_ms, t.rooftop.page_ms),
            at(t.fault_ms, t.rooftop.floor_ms),
            at(t.fault_ms, t.rooftop.alert_ms),
            at(t.fault_ms, t.classic.page_ms),
            at(t.fault_ms, t.classic.floor_ms),
            at(t.fault_ms, t.classic.alert_ms),
        ));
    }
    s
}

pub fn render(r: &PageReport) -> String {
    let o = &r.opts;
    let mut s = format!(
        "bench page: the sandbox CRM goes down (HTTP 503) → the e-mail page reaches aiosmtpd\n\
         {} trials per period, seed {}; run took {}\n\n",
        o.trials,
        o.seed,
        humantime::format_duration(Duration::from_secs(r.elapsed.as_secs()))
    );
    s.push_str(
        "each trial: a fresh rooftop agent and a fresh Prometheus + Alertmanager (one blackbox\n\
         exporter and one aiosmtpd throughout) watch the same CRM lookup every period; once both\n\
         have a healthy check the CRM goes down after a uniformly random delay in [0, period).\n\
         rooftop pages after 2 failed runs in a row; Prometheus fires `probe_success == 0` held\n\
         `for` one period (= the 2nd failing scrape), Alertmanager sends at once (group_wait 0s).\n\
         floor = fault → end of the 2nd failing check (rooftop: run finished; classic: scrape\n\
         start + scrape_duration_seconds). Seconds: median (min–max). \"incident | firing\":\n\
         rooftop's incident opened / the Prometheus evaluation at which the alert fired.\n\
         Prometheus places evaluations at a phase hashed from the rule file's path (each trial\n\
         has its own), so the scrape → evaluation lag, fixed within one deployment, varies\n\
         across trials as it would across deployments. The two stacks check at different\n\
         phases, so in one trial either floor may be the shorter: compare page − floor.\n\n",
    );
    for p in &r.periods {
        s.push_str(&render_period(p));
        s.push('\n');
    }
    s.push_str(&format!("tools: {}\n", r.versions.join(", ")));
    s.push_str(
        "Alertmanager is Debian's build, run from a copy whose compiled-in template directory\n\
         (/usr/share/prometheus/alertmanager) points at the unpacked package; nothing else differs.\n\n",
    );
    s.push_str(&format!(
        "configs (period {}; other periods change only the durations derived from it):\n",
        secs(o.periods[0])
    ));
    s.push_str(&r.configs);
    s
}

/// The checks `cargo test` runs (see `CHECKS`): this bench's unit tests. A harness-less
/// bench runs no `#[test]`, so each is a plain function listed in `CHECKS`.
mod checks {
    use clap::Parser;
    use rooftop::alerting::FireRule;
    use rooftop::config::{load_agent_text, load_probe_text, yaml};
    use rooftop::model::Schedule;

    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            crm_url: "http://127.0.0.1:4001/crm".into(),
            crm_token: "crm-sandbox-token".into(),
            smtp_port: "2525".into(),
            alertmanager: "127.0.0.1:9093".into(),
            blackbox: "127.0.0.1:9115".into(),
            prometheus: "127.0.0.1:9090".into(),
        }
    }

    fn yaml_of(text: &str) -> Value {
        yaml::parse(text).expect("valid YAML").value
    }

    pub fn the_rooftop_configs_validate_with_the_period_and_two_failures_in_a_row() {
        let files = trial_files(
            Duration::from_secs(30),
            &endpoints(),
            "rooftop-30s-1@dealer.example",
            "classic-30s-1@dealer.example",
        );
        let text = |name: &str| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .expect("rendered")
        };
        let (agent, defaults) =
            load_agent_text(Path::new("rooftop.yaml"), &text("rooftop/rooftop.yaml"))
                .expect("rooftop.yaml validates");
        assert_eq!(agent.rooftop_id, "bench");
        let probe = load_probe_text(
            Path::new("probes/crm-up.yaml"),
            &text("rooftop/probes/crm-up.yaml"),
            &defaults,
            &Default::default(),
        )
        .expect("the probe validates");
        assert_eq!(probe.name, PROBE);
        assert!(matches!(probe.schedule, Schedule::Every(d) if d == Duration::from_secs(30)));
        assert_eq!(probe.alert.fire, FireRule::Consecutive(2));
        let agent_yaml = yaml_of(&text("rooftop/rooftop.yaml"));
        assert_eq!(agent_yaml["alerting"]["email"]["smtp"]["port"], 2525);
        assert_eq!(agent_yaml["alerting"]["email"]["smtp"]["security"], "none");
        assert_eq!(
            agent_yaml["alerting"]["contacts"][0]["email"],
            "rooftop-30s-1@dealer.example"
        );
    }

    pub fn the_classic_configs_scrape_evaluate_and_hold_for_one_period() {
        let ep = endpoints();
        let prom = yaml_of(&prometheus_yaml(Duration::from_secs(5), &ep));
        assert_eq!(prom["global"]["scrape_interval"], "5s");
        assert_eq!(prom["global"]["evaluation_interval"], "5s");
        assert_eq!(prom["global"]["scrape_timeout"], "5s");
        let job = &prom["scrape_configs"][0];
        assert_eq!(job["metrics_path"], "/probe");
        assert_eq!(
            job["params"]["target"][0],
            "http://127.0.0.1:4001/crm/api/leads?email=bench%40dealer.example"
        );
        assert_eq!(job["static_configs"][0]["targets"][0], "127.0.0.1:9115");
        assert_eq!(
            prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:9093"
        );
        // A 30 s period keeps the scrape timeout at 10 s (the blackbox module's).
        let prom30 = yaml_of(&prometheus_yaml(Duration::from_secs(30), &ep));
        assert_eq!(prom30["global"]["scrape_timeout"], "10s");

        let rule = &yaml_of(&rules_yaml(Duration::from_secs(30)))["groups"][0]["rules"][0];
        assert_eq!(rule["alert"], ALERT);
        assert_eq!(rule["expr"], r#"probe_success{job="crm"} == 0"#);
        assert_eq!(rule["for"], "30s");

        let am = yaml_of(&alertmanager_yaml(&ep, "classic-5s-2@dealer.example"));
        assert_eq!(am["route"]["group_wait"], "0s");
        let email = &am["receivers"][0]["email_configs"][0];
        assert_eq!(email["smarthost"], "127.0.0.1:2525");
        assert_eq!(email["require_tls"], false);
        assert_eq!(email["to"], "classic-5s-2@dealer.example");

        let bb = yaml_of(&blackbox_yaml(&ep));
        assert_eq!(bb["modules"]["crm_2xx"]["prober"], "http");
        assert_eq!(
            bb["modules"]["crm_2xx"]["http"]["headers"]["Authorization"],
            "Bearer crm-sandbox-token"
        );
    }

    pub fn every_listener_is_bound_to_loopback_and_gossip_is_off() {
        let dir = Path::new("/t");
        let am = alertmanager_args(dir, "127.0.0.1:9093");
        assert!(am.contains(&"--cluster.listen-address=".to_string()));
        assert!(am.contains(&"--web.listen-address=127.0.0.1:9093".to_string()));
        let prom = prometheus_args(dir, "127.0.0.1:9090");
        assert!(prom.contains(&"--web.listen-address=127.0.0.1:9090".to_string()));
        let bb = blackbox_args(dir, "127.0.0.1:9115");
        assert!(bb.contains(&"--web.listen-address=127.0.0.1:9115".to_string()));
    }

    pub fn the_printed_configs_show_placeholders_not_ports() {
        let text = render_configs(Duration::from_secs(5));
        assert!(text.contains("<smtp-port>"), "{text}");
        assert!(text.contains("group_wait: 0s"), "{text}");
        assert!(text.contains("fire_after: 2"), "{text}");
        assert!(text.contains("--cluster.listen-address="), "{text}");
        // One blackbox exporter serves every trial: its config is the bench's, not a trial's.
        assert!(text.contains("--config.file=$BENCH/blackbox.yml"), "{text}");
    }

    pub fn index_lines_give_each_recipient_its_first_arrival() {
        let text = r#"{"seq": 1, "file": "000001.eml", "mail_from": "rooftop@dealer.example", "rcpt_tos": ["rooftop-5s-1@dealer.example"], "tls": false, "auth_user": null, "received_ms": 1000}
{"seq": 2, "file": "000002.eml", "mail_from": "alertmanager@dealer.example", "rcpt_tos": ["classic-5s-1@dealer.example"], "tls": false, "auth_user": null, "received_ms": 2500}
{"seq": 3, "file": "000003.eml", "mail_from": "rooftop@dealer.example", "rcpt_tos": ["rooftop-5s-1@dealer.example"], "tls": false, "auth_user": null, "received_ms": 9000}

"#;
        let index = parse_index(text).expect("parses");
        assert_eq!(index.len(), 3);
        assert_eq!(index[1].mail_from, "alertmanager@dealer.example");
        assert_eq!(arrival(&index, "rooftop-5s-1@dealer.example"), Some(1000));
        assert_eq!(arrival(&index, "classic-5s-1@dealer.example"), Some(2500));
        assert_eq!(arrival(&index, "classic-5s-2@dealer.example"), None);
        // A line from before received_ms existed parses, without an arrival.
        let old = parse_index(r#"{"seq": 1, "file": "1.eml", "mail_from": "a@b", "rcpt_tos": ["x@y"], "tls": false, "auth_user": null}"#)
            .expect("parses");
        assert_eq!(arrival(&old, "x@y"), None);
        assert!(parse_index("{not json").is_err());
    }

    pub fn ready_line_gives_the_port() {
        assert_eq!(parse_ready("READY port=2525\n"), Some(2525));
        assert_eq!(parse_ready("listening"), None);
    }

    pub fn a_range_query_answer_becomes_samples_in_ms() {
        let body = serde_json::json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": [{
                "metric": {"__name__": "probe_success", "job": "crm"},
                "values": [[1700000000.123, "1"], [1700000005.123, "0"], [1700000010, "NaN"]]
            }]}
        });
        let samples = parse_matrix(&body).expect("parses");
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[0],
            Sample {
                ms: 1_700_000_000_123,
                value: 1.0
            }
        );
        assert_eq!(samples[1].value, 0.0);
        assert!(samples[2].value.is_nan());
        let empty = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert_eq!(parse_matrix(&empty).expect("parses"), vec![]);
        let error = serde_json::json!({"status": "error", "error": "parse error"});
        assert!(parse_matrix(&error).is_err());
    }

    pub fn the_floor_is_the_end_of_the_second_failure_after_the_fault() {
        let c = |end_ms, success| Check { end_ms, success };
        let fault = 10_000;
        // Healthy runs, one that ended after the fault but succeeded (served before it),
        // then failures.
        let checks = [
            c(5_000, true),
            c(10_050, true),
            c(15_020, false),
            c(20_030, false),
            c(25_010, false),
        ];
        assert_eq!(second_failure_end(&checks, fault), Some(20_030));
        // A check that started before the fault and failed counts.
        let straddling = [c(9_000, true), c(10_200, false), c(15_200, false)];
        assert_eq!(second_failure_end(&straddling, fault), Some(15_200));
        assert_eq!(second_failure_end(&[c(15_000, false)], fault), None);
    }

    pub fn scrapes_end_at_their_start_plus_their_duration() {
        let s = |ms, value| Sample { ms, value };
        let checks = classic_checks(
            &[s(1_000, 1.0), s(6_000, 0.0), s(11_000, 0.0)],
            &[s(1_000, 0.004), s(6_000, 0.0125)],
        );
        assert_eq!(
            checks,
            vec![
                Check {
                    end_ms: 1_004,
                    success: true
                },
                Check {
                    end_ms: 6_013,
                    success: false
                },
                Check {
                    end_ms: 11_000,
                    success: false
                },
            ]
        );
    }

    pub fn spread_gives_median_and_range() {
        assert_eq!(spread(&[]), None);
        let odd = spread(&[3.0, 1.0, 2.0]).expect("values");
        assert_eq!((odd.n, odd.median, odd.min, odd.max), (3, 2.0, 1.0, 3.0));
        let even = spread(&[4.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert_eq!(spread(&[f64::NAN, 1.0]).expect("values").n, 1);
    }

    pub fn the_alertmanager_template_path_is_replaced_in_place() {
        let link = template_link(4_194_304);
        assert_eq!(link.len(), DEBIAN_TEMPLATE_DIR.len());
        assert!(link.starts_with("/tmp/rooftop-am-"), "{link}");
        assert!(link.ends_with("4194304"), "{link}");
        let binary = format!("ab{DEBIAN_TEMPLATE_DIR}/default.tmpl\0xx{DEBIAN_TEMPLATE_DIR}/ui/");
        let (out, n) = replace_same_length(binary.as_bytes(), DEBIAN_TEMPLATE_DIR, &link)
            .expect("same length");
        assert_eq!(n, 2);
        assert_eq!(out.len(), binary.len());
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            format!("ab{link}/default.tmpl\0xx{link}/ui/")
        );
        assert!(replace_same_length(b"x", "ab", "abc").is_err());
    }

    pub fn versions_are_read_from_the_first_line() {
        assert_eq!(
            version_of("prometheus, version 2.42.0+ds (branch: debian/sid)\n  build user: x"),
            Some("2.42.0+ds".into())
        );
        assert_eq!(version_of("Python 3.11.7\n"), Some("3.11.7".into()));
        assert_eq!(version_of(""), None);
    }

    pub fn the_pooled_ratio_takes_one_floor_for_both_stacks() {
        let stack = |floor_ms, page_ms| StackTrial {
            page_ms: Some(page_ms),
            floor_ms: Some(floor_ms),
            alert_ms: None,
        };
        let trial = |rooftop, classic| Trial {
            fault_ms: 0,
            delay: Duration::ZERO,
            rooftop,
            classic,
            rooftop_queued_ms: None,
        };
        // rooftop adds 50 ms to its floor, classic 1 s; the floors are 5, 9 and 11 s.
        let trials = [
            trial(stack(5_000, 5_050), stack(11_000, 12_000)),
            trial(stack(11_000, 11_050), stack(9_000, 10_000)),
            trial(stack(9_000, 9_050), stack(5_000, 6_000)),
        ];
        let [_, (_, _, floor), (_, _, beyond), ..] = measures();
        let ratio = pooled_floor_ratio(&trials, floor, beyond).expect("figures");
        assert!((ratio - 10.0 / 9.05).abs() < 1e-9, "{ratio}");
        assert_eq!(pooled_floor_ratio(&[], floor, beyond), None);
    }

    pub fn the_default_options_are_valid() {
        let defaults = PageOptions::parse_from(["page"]);
        assert_eq!(
            defaults.periods,
            [Duration::from_secs(5), Duration::from_secs(30)]
        );
        assert!(check_options(&defaults).is_ok());
    }

    pub fn periods_must_be_whole_seconds() {
        let opts = |periods: Vec<Duration>, trials| PageOptions {
            trials,
            periods,
            seed: 1,
        };
        assert!(check_options(&opts(vec![Duration::from_secs(5)], 3)).is_ok());
        assert!(check_options(&opts(vec![Duration::from_millis(1500)], 3)).is_err());
        assert!(check_options(&opts(vec![], 3)).is_err());
        assert!(check_options(&opts(vec![Duration::from_secs(5)], 0)).is_err());
    }

    pub fn a_period_table_shows_figures_and_missing_pages() {
        let trial = |page: Option<i64>| Trial {
            fault_ms: 1_000_000,
            delay: Duration::from_millis(1200),
            rooftop: StackTrial {
                page_ms: Some(1_010_050),
                floor_ms: Some(1_010_000),
                alert_ms: Some(1_010_010),
            },
            classic: StackTrial {
                page_ms: page,
                floor_ms: Some(1_010_000),
                alert_ms: Some(1_012_000),
            },
            rooftop_queued_ms: Some(1_010_020),
        };
        let p = PeriodResult {
            period: Duration::from_secs(5),
            trials: vec![trial(Some(1_012_500)), trial(None)],
        };
        let text = render_period(&p);
        assert!(text.contains("2 of 2"), "{text}");
        assert!(text.contains("1 of 2"), "{text}");
        assert!(text.contains("10.05 (10.05–10.05)"), "{text}");
        assert!(text.contains("0.050 (0.050–0.050)"), "{text}");
        assert!(text.contains("1.24×"), "{text}");
        // Floors 10.0 s for both; classic adds 2.5 s, rooftop 0.05 s.
        assert!(text.contains("page − floor): 1.24×"), "{text}");
        assert!(
            text.contains("incident opened 10 ms → page queued 10 ms → page received 30 ms"),
            "{text}"
        );
    }
}
