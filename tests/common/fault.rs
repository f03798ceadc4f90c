//! Fault injection on the real agent, shared by `tests/fault_injection.rs` (a few
//! iterations) and `benches/soak.rs` (many, for minutes): the sandbox dealership, a real
//! SMTP server (aiosmtpd) behind a gate that can take it "down", the real `rooftop run`
//! killed with SIGKILL at random points, a state directory on a small tmpfs that can be
//! filled, and the checks: `PRAGMA integrity_check`, pages per incident at the SMTP
//! server, synthetic leftovers in the sandbox. Needs `#[path = "common/tools.rs"] mod
//! tools;` beside it (`../tests/common/tools.rs` from a bench).
#![allow(dead_code)]
// Faults are timed from outside the agent, on the real clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rooftop::sandbox::{DownMode, Fault, FaultKind, Sandbox, SandboxConfig, System};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::tools::{self, SmtpOptions, SmtpServer};

/// The bundled probes that create synthetic records (and clean them up), made fast: on
/// `every`, polls every 100 ms for at most 8 s, a 30 s probe timeout, runbooks dropped.
pub fn fast_probe(file: &str, every: &str) -> String {
    let text = std::fs::read_to_string(tools::repo_dir().join("probes").join(file))
        .unwrap_or_else(|e| panic!("probes/{file}: {e}"));
    let schedule = regex::Regex::new(r"(?m)^schedule: .*$").expect("a valid regex");
    let timeout = regex::Regex::new(r"(?m)^timeout: .*$").expect("a valid regex");
    let poll = regex::Regex::new(r"poll: \{[^}]*\}").expect("a valid regex");
    let runbook = regex::Regex::new(r"(?m)^\s*runbook: .*\n").expect("a valid regex");
    let text = schedule.replace(&text, format!("schedule: {{every: {every}}}"));
    let text = timeout.replace(&text, "timeout: 30s");
    let text = poll.replace_all(&text, "poll: {interval: 100ms, backoff: 1, within: 8s}");
    runbook.replace_all(&text, "").into_owned()
}

/// The probes every fault-injection agent runs: the lead flow (CRM) every second and the
/// appointment → RO → survey flow (DMS, survey) every two.
pub fn probes() -> Vec<(&'static str, String)> {
    vec![
        ("lead", fast_probe("lead-to-bdc-call-list.yaml", "1s")),
        (
            "appointment",
            fast_probe("appointment-to-ro-to-survey.yaml", "2s"),
        ),
    ]
}

/// A config directory: the probes and `rooftop.yaml` paging one contact by e-mail through
/// SMTP on `smtp_port`, every incident paged on its own (no grouping), each page carrying
/// its incident's id in its acknowledge link; the self-check every second, failing under
/// 6 MiB free; `extra_yaml` appended (a `telemetry:` section).
pub fn write_config(dir: &Path, smtp_port: u16, extra_yaml: &str) {
    std::fs::create_dir_all(dir.join("probes")).expect("a config dir");
    for (name, text) in probes() {
        std::fs::write(dir.join(format!("probes/{name}.yaml")), text).expect("a probe file");
    }
    std::fs::write(
        dir.join("rooftop.yaml"),
        format!(
            "rooftop: {{id: soak, name: Soak Motors}}\n\
             self_monitoring: {{check_every: 1s, min_free_disk: 6MiB}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P1: [Maria Lopez], P2: [Maria Lopez], P3: [Maria Lopez], P4: [Maria Lopez]}}\n\
             \x20 group: {{window: 0s}}\n\
             \x20 ack_base_url: http://127.0.0.1:9\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 2s}}}}\n\
             {extra_yaml}"
        ),
    )
    .expect("rooftop.yaml");
}

/// The sandbox dealership, every sync job taking 300 ms: runs hold records long enough
/// for a kill to land between the create and the cleanup.
pub async fn sandbox() -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().expect("an address"),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(300)),
    )
    .await
    .expect("the sandbox starts")
}

/// A TCP gate in front of the SMTP server: while it is down, every connection is closed
/// at once (the relay is down as the agent sees it); the server keeps what it received.
pub struct SmtpGate {
    pub port: u16,
    up: Arc<AtomicBool>,
}

impl SmtpGate {
    pub async fn start(target: u16) -> SmtpGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let up = Arc::new(AtomicBool::new(true));
        let open = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        SmtpGate { port, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

/// A running `rooftop run`: its stdout run lines counted, its stderr kept.
pub struct Agent {
    child: Child,
    /// Finished or skipped runs printed (`HH:MM:SS probe outcome …`).
    pub run_lines: Arc<AtomicU64>,
    /// Every stderr line (the last 5,000).
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub pid: u32,
}

impl Agent {
    /// Starts the agent Cargo built on `config` and `state`, `/metrics` and `/readyz` on
    /// `listen`, `env` added (the sandbox's URLs and tokens). It dies with this process.
    pub fn spawn(env: Vec<(String, String)>, config: &Path, state: &Path, listen: &str) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rooftop"));
        cmd.args(["run", "--listen", listen, "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: runs in the child between fork and exec; prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("`rooftop run` starts");
        let pid = child.id().expect("a pid");
        let run_lines = Arc::new(AtomicU64::new(0));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        let counter = run_lines.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if l.split_whitespace()
                    .next()
                    .is_some_and(|t| t.len() == 8 && t.contains(':'))
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let kept = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut k = kept.lock().expect("not poisoned");
                if k.len() >= 5000 {
                    k.remove(0);
                }
                k.push(l);
            }
        });
        Agent {
            child,
            run_lines,
            stderr,
            pid,
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits at most `within`; the exit code (`None`: killed at the limit).
    pub async fn sigterm(mut self, within: Duration) -> Option<i32> {
        // SAFETY: kill(2) on the agent's own pid, which this handle still owns.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                None
            }
        }
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("not poisoned").join("\n")
    }

    pub fn stderr_has(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|l| l.contains(needle))
    }
}

/// `PRAGMA integrity_check` of the state directory's store: `ok`, or what is wrong.
pub fn integrity(state: &Path) -> String {
    match rusqlite::Connection::open(state.join("rooftop.db")).and_then(|c| {
        let mut stmt = c.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows.join("; "))
    }) {
        Ok(s) => s,
        Err(e) => format!("cannot check: {e}"),
    }
}

/// One number from the store (0 when the table is not there yet).
pub fn count(state: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(state.join("rooftop.db"))
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

/// `/readyz` on `listen`: 200 and `ready`.
pub async fn ready(listen: &str) -> bool {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a client");
    match client.get(format!("http://{listen}/readyz")).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

/// Waits at most `limit` for `/readyz` on `listen` to say ready; whether it did.
pub async fn wait_ready(listen: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready(listen).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Polls `check` every 100 ms for at most `limit`: whether it held.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A received e-mail: its subject and the incident its acknowledge link names.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub incident: Option<String>,
}

/// Every message the SMTP server saved, parsed by Python's `email` package in one go.
pub fn read_mail(smtp: &SmtpServer) -> Vec<Mail> {
    let paths = smtp.message_paths();
    if paths.is_empty() {
        return Vec::new();
    }
    let out = std::process::Command::new(tools::python())
        .arg("-c")
        .arg(
            "import email, email.policy, re, sys, json\n\
             for p in sys.argv[1:]:\n\
             \x20   m = email.message_from_binary_file(open(p, 'rb'), policy=email.policy.default)\n\
             \x20   text = m.get_body(('plain',)).get_content()\n\
             \x20   inc = re.search(r'/ack/(inc-[^?\\s]+)', text)\n\
             \x20   print(json.dumps({'subject': str(m['subject']), 'incident': inc.group(1) if inc else None}))",
        )
        .args(&paths)
        .output()
        .expect("python runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Mail {
            subject: v["subject"].as_str().unwrap_or_default().to_string(),
            incident: v["incident"].as_str().map(str::to_string),
        })
        .collect()
}

/// Pages per incident, from the store (what opened) and the SMTP server (what arrived).
#[derive(Debug, Clone, Default)]
pub struct PageTally {
    /// Incidents the store holds.
    pub incidents: usize,
    /// Trigger pages owed: one per incident and one per reopening.
    pub expected: usize,
    /// Incidents with at least one trigger page received.
    pub delivered: usize,
    /// Incidents with no trigger page received, by id.
    pub lost: Vec<String>,
    /// The most trigger pages one incident got beyond those owed.
    pub max_duplicates: usize,
    /// Resolve notices received.
    pub resolves: usize,
    pub mails: usize,
}

/// Compares the store's incidents with the pages the SMTP server received.
pub fn tally_pages(state: &Path, mail: &[Mail]) -> PageTally {
    let incidents: Vec<(String, i64)> = rusqlite::Connection::open(state.join("rooftop.db"))
        .and_then(|c| {
            let mut stmt = c.prepare("SELECT id, reopens FROM incidents ORDER BY opened_ms")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .unwrap_or_default();
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for m in mail.iter().filter(|m| !m.subject.contains("RESOLVED")) {
        if let Some(id) = &m.incident {
            *got.entry(id.as_str()).or_default() += 1;
        }
    }
    let mut t = PageTally {
        incidents: incidents.len(),
        resolves: mail
            .iter()
            .filter(|m| m.subject.contains("RESOLVED"))
            .count(),
        mails: mail.len(),
        ..PageTally::default()
    };
    for (id, reopens) in &incidents {
        let owed = 1 + usize::try_from(*reopens).unwrap_or(0);
        t.expected += owed;
        let n = got.get(id.as_str()).copied().unwrap_or(0);
        if n == 0 {
            t.lost.push(id.clone());
        } else {
            t.delivered += 1;
        }
        t.max_duplicates = t.max_duplicates.max(n.saturating_sub(owed));
    }
    t
}

/// A tmpfs mounted on a directory for as long as this lives (unmounted on drop, also
/// when a test fails).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE`; an error says why it could not be mounted.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs on {} failed (the disk-full checks need root or CAP_SYS_ADMIN): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a filler file until the filesystem is full; its size.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let path = self.dir.join("filler");
        let Ok(mut f) = std::fs::File::create(&path) else {
            return 0;
        };
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Removes the filler file: the space returns.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file on it (an agent being killed): detach it.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

/// The sandbox fault an iteration sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxFault {
    None,
    CrmDown,
    DmsDown,
}

impl SandboxFault {
    pub fn apply(self, sb: &Sandbox) {
        let down = |system| {
            vec![Fault::new(FaultKind::ConnectorDown {
                system,
                mode: DownMode::Http503,
            })]
        };
        sb.set_faults(match self {
            SandboxFault::None => Vec::new(),
            SandboxFault::CrmDown => down(System::Crm),
            SandboxFault::DmsDown => down(System::Dms),
        });
    }
}

/// One SIGKILL iteration: the faults in force while the agent runs, and when it dies.
#[derive(Debug, Clone, Copy)]
pub struct Iteration {
    pub fault: SandboxFault,
    pub smtp_up: bool,
    /// Kill this long after a synthetic record exists (between create and cleanup);
    /// `None`: kill at `after` from the start, wherever the agent is.
    pub after_record: Option<Duration>,
    pub after: Duration,
}

impl Iteration {
    /// A random iteration: mostly the faults as they were, sometimes a change.
    pub fn random(rng: &mut impl Rng, prev: &Iteration) -> Iteration {
        let fault = if rng.random_bool(0.35) {
            match rng.random_range(0..4) {
                0 | 1 => SandboxFault::None,
                2 => SandboxFault::CrmDown,
                _ => SandboxFault::DmsDown,
            }
        } else {
            prev.fault
        };
        let smtp_up = if prev.smtp_up {
            !rng.random_bool(0.3)
        } else {
            rng.random_bool(0.6)
        };
        Iteration {
            fault,
            smtp_up,
            after_record: rng
                .random_bool(0.5)
                .then(|| Duration::from_millis(rng.random_range(0..400))),
            after: Duration::from_millis(rng.random_range(300..5000)),
        }
    }
}

/// What the kills found, over every iteration.
#[derive(Debug, Clone, Default)]
pub struct KillStats {
    pub iterations: usize,
    /// Iterations whose store failed `PRAGMA integrity_check` after the kill.
    pub corruptions: Vec<String>,
    /// Kills that fell with a synthetic record in the sandbox (a cleanup in flight).
    pub with_records: usize,
    /// Kills that fell with a page pending in the outbox.
    pub with_pages_pending: usize,
    /// The highest VmHWM of an agent just before its kill, in MB.
    pub peak_rss_mb: f64,
    /// Each synthetic record seen at a kill: the first iteration it was seen at, and
    /// the cleanup-ledger entries then (to trace a leftover back to its kill).
    pub records_seen: BTreeMap<String, (usize, i64)>,
}

/// A process's peak resident set (VmHWM) in MB; 0 when it cannot be read.
pub fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The world the agent is killed in: the sandbox, SMTP behind its gate, the config and
/// state directories, the `/readyz` address.
pub struct Rig {
    pub sb: Sandbox,
    pub smtp: SmtpServer,
    pub gate: SmtpGate,
    pub config: PathBuf,
    pub state: PathBuf,
    pub listen: String,
    pub stats: KillStats,
}

impl Rig {
    /// Everything started; the config written under `work` (`extra_yaml` appended to
    /// `rooftop.yaml`), the state in `state`.
    pub async fn start(work: &Path, state: &Path, extra_yaml: &str) -> Rig {
        let sb = sandbox().await;
        let smtp = SmtpServer::start(SmtpOptions::default());
        let gate = SmtpGate::start(smtp.port).await;
        let config = work.join("config");
        write_config(&config, gate.port, extra_yaml);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Rig {
            sb,
            smtp,
            gate,
            config,
            state: state.to_path_buf(),
            listen: format!("127.0.0.1:{port}"),
            stats: KillStats::default(),
        }
    }

    pub fn spawn(&self) -> Agent {
        Agent::spawn(self.sb.env(), &self.config, &self.state, &self.listen)
    }

    /// Runs the agent under `it`'s faults, kills it with SIGKILL, checks the store.
    pub async fn kill_iteration(&mut self, it: &Iteration) {
        it.fault.apply(&self.sb);
        self.gate.set_up(it.smtp_up);
        let agent = self.spawn();
        match it.after_record {
            Some(d) => {
                let sb = &self.sb;
                wait_until(Duration::from_secs(6), || !sb.leftovers().is_empty()).await;
                tokio::time::sleep(d).await;
            }
            None => tokio::time::sleep(it.after).await,
        }
        self.kill_and_check(agent).await;
    }

    /// SIGKILL to `agent`, then the store checked and the kill counted.
    pub async fn kill_and_check(&mut self, agent: Agent) {
        let at_kill = self.sb.leftovers();
        let records = !at_kill.is_empty();
        self.stats.peak_rss_mb = self.stats.peak_rss_mb.max(peak_rss_mb(agent.pid));
        agent.kill9().await;
        self.stats.iterations += 1;
        self.stats.with_records += usize::from(records);
        let ledger = count(&self.state, "SELECT count(*) FROM cleanup_ledger");
        for r in at_kill {
            self.stats
                .records_seen
                .entry(format!("{} {}", r.kind, r.id))
                .or_insert((self.stats.iterations, ledger));
        }
        if count(
            &self.state,
            "SELECT count(*) FROM outbox WHERE state = 'pending'",
        ) > 0
        {
            self.stats.with_pages_pending += 1;
        }
        let check = integrity(&self.state);
        if check != "ok" {
            self.stats
                .corruptions
                .push(format!("iteration {}: {check}", self.stats.iterations));
        }
    }

    /// The last start: faults cleared and SMTP up, the agent runs until its outbox is
    /// empty, every incident resolved and its cleanup ledger empty (at most `limit`),
    /// then stops with SIGTERM. Its exit code.
    pub async fn settle(&mut self, limit: Duration) -> Option<i32> {
        SandboxFault::None.apply(&self.sb);
        self.gate.set_up(true);
        let started_ms = chrono::Utc::now().timestamp_millis();
        let agent = self.spawn();
        // Its signal handler is in place once it serves /readyz.
        wait_ready(&self.listen, Duration::from_secs(30)).await;
        let state = self.state.clone();
        let fresh = format!("SELECT count(*) FROM runs WHERE finished_ms > {started_ms}");
        wait_until(limit, || {
            count(
                &state,
                "SELECT count(*) FROM outbox WHERE state = 'pending'",
            ) == 0
                && count(
                    &state,
                    "SELECT count(*) FROM incidents WHERE resolved_ms IS NULL",
                ) == 0
                && count(&state, "SELECT count(*) FROM cleanup_ledger") == 0
                && count(&state, &fresh) > 0
        })
        .await;
        agent.sigterm(Duration::from_secs(80)).await
    }

    /// Pages per incident so far.
    pub fn pages(&self) -> PageTally {
        tally_pages(&self.state, &read_mail(&self.smtp))
    }
}

/// What one disk-full episode showed.
#[derive(Debug, Clone, Default)]
pub struct DiskFull {
    /// The agent said so on stderr, naming the disk or the store.
    pub detected: bool,
    /// Runs went on while the disk was full (stdout run lines kept coming).
    pub kept_probing: bool,
    /// A `rooftop-agent failing` page reached the SMTP server.
    pub paged: bool,
    /// After the filler was removed: `/readyz` ready, the self-check's incident resolved,
    /// a run stored, the reserve made again.
    pub recovered: bool,
    /// What did not happen, for a failure message.
    pub missing: Vec<String>,
}

const RESERVE: &str = "rooftop.reserve";

/// Trigger pages of the self-check received so far.
fn self_pages(smtp: &SmtpServer) -> usize {
    read_mail(smtp)
        .iter()
        .filter(|m| m.subject.contains("rooftop-agent failing"))
        .count()
}

/// Fills the tmpfs under `agent`'s state directory, sees whether it says so, keeps
/// probing and pages about it; frees it and sees whether it recovers. Each wait is at
/// most `limit`. SMTP must be up.
pub async fn disk_full_episode(
    rig: &Rig,
    agent: &Agent,
    disk: &Tmpfs,
    limit: Duration,
) -> DiskFull {
    let mut out = DiskFull::default();
    let state = rig.state.clone();
    if !wait_until(limit, || state.join(RESERVE).exists()).await {
        out.missing
            .push("no reserve file was made before the fill".into());
    }
    let pages_before = self_pages(&rig.smtp);
    let lines_before = agent.stderr.lock().expect("not poisoned").len();
    disk.fill();
    let said = |a: &Agent| {
        let lines = a.stderr.lock().expect("not poisoned");
        lines[lines_before.min(lines.len())..]
            .iter()
            .any(|l| l.contains("disk is full"))
    };
    out.detected = wait_until(limit, || said(agent)).await;
    if !out.detected {
        out.missing
            .push("no stderr line saying the disk is full".into());
    }
    let runs = agent.run_lines.load(Ordering::Relaxed);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !out.kept_probing && agent.run_lines.load(Ordering::Relaxed) >= runs + 3 {
            out.kept_probing = true;
        }
        if !out.paged && self_pages(&rig.smtp) > pages_before {
            out.paged = true;
        }
        if out.kept_probing && out.paged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !out.kept_probing {
        out.missing
            .push("fewer than 3 runs printed while the disk was full".into());
    }
    if !out.paged {
        out.missing
            .push("no `rooftop-agent failing` page while the disk was full".into());
    }
    disk.free();
    let freed_ms = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + limit;
    let mut ok = (false, false, false, false);
    while Instant::now() < deadline {
        ok = (
            ready(&rig.listen).await,
            count(
                &state,
                "SELECT count(*) FROM incidents WHERE probe = 'rooftop-agent' AND resolved_ms IS NULL",
            ) == 0,
            count(
                &state,
                &format!("SELECT count(*) FROM runs WHERE finished_ms > {freed_ms}"),
            ) > 0,
            state.join(RESERVE).exists(),
        );
        if ok == (true, true, true, true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    out.recovered = ok == (true, true, true, true);
    for (held, what) in [
        (ok.0, "/readyz not ready again"),
        (ok.1, "the self-check's incident not resolved"),
        (ok.2, "no run stored after the space returned"),
        (ok.3, "the reserve not made again"),
    ] {
        if !held {
            out.missing.push(what.into());
        }
    }
    out
}
