//! The external test tools that `tests/tools/install` fetches into `.cache/tools/`, started
//! from integration tests on 127.0.0.1: an OTLP receiver, an SMTP server, Prometheus, and
//! promtool. Include it with
//!
//! ```ignore
//! #[path = "common/tools.rs"]
//! mod tools;
//! ```
//!
//! A missing tool is a test failure (a panic saying to run the install script), never a
//! skip. Every server is killed when its handle is dropped; `stop()` instead sends SIGTERM
//! and returns the exit status. Each server's stderr goes to a log file in its temporary
//! directory, shown by `log()` and in the panic message when it fails to start.
//!
//! Waiting: `wait_for*` are async (they sleep with tokio, so servers running inside the
//! test's own runtime keep going); the `*_blocking` twins are for plain `#[test]`s.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a tool may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Environment variables that would send a tool's traffic to a proxy instead of 127.0.0.1.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "grpc_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "GRPC_PROXY",
];

const INSTALL_HINT: &str = "run tests/tools/install first (tests/run does it)";

// ---- where things are ----------------------------------------------------------------------

/// The repository (`CARGO_MANIFEST_DIR`).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.cache/tools` in the repository.
pub fn tools_dir() -> PathBuf {
    repo_dir().join(".cache/tools")
}

/// An installed tool's binary: prometheus, promtool, alertmanager, amtool,
/// prometheus-blackbox-exporter. Panics when it is not installed.
pub fn bin(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// The Python of the tools' venv. Panics when it is not installed.
pub fn python() -> PathBuf {
    let path = tools_dir().join("venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// A script in `tests/tools/`.
pub fn script(name: &str) -> PathBuf {
    let path = repo_dir().join("tests/tools").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A command for a tool, with no proxy variables and stdin closed.
fn tool_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `tests/tools/<script>` with the venv's Python to completion.
pub fn run_script<I, S>(script_name: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    tool_command(python())
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script_name}: {e}"))
}

/// Runs promtool to completion.
pub fn promtool<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    tool_command(bin("promtool"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"))
}

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- waiting -------------------------------------------------------------------------------

/// Calls `probe` every 50 ms until it returns `Some`, for at most `timeout`; then panics
/// with `what()` in the message.
pub async fn eventually<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?}: {}", what());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`] for code outside an async runtime.
pub fn eventually_blocking<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?}: {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The complete lines of a JSON lines file (a last line still being written is left out);
/// no file yet is no lines.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return Vec::new(),
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

// ---- child processes -----------------------------------------------------------------------

/// A started tool: killed on drop.
pub struct ToolProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ToolProcess {
    /// Starts `cmd` with stderr (and stdout unless `ready_line`) to `log`. With
    /// `ready_line`, waits for the first stdout line and returns it (it must start with
    /// "READY"); stdout is drained after that.
    fn spawn(name: &str, mut cmd: Command, log: PathBuf, ready_line: bool) -> (Self, String) {
        let log_file = std::fs::File::create(&log).unwrap();
        cmd.stderr(log_file.try_clone().unwrap());
        if ready_line {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log_file);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} ({INSTALL_HINT}?)"));
        let mut process = ToolProcess {
            name: name.to_string(),
            child: None,
            log,
        };
        if !ready_line {
            process.child = Some(child);
            return (process, String::new());
        }
        let stdout = child.stdout.take().unwrap();
        process.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {} // drain until the tool exits
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) if line.starts_with("READY") => (process, line),
            other => panic!(
                "{name} did not print READY within {START_TIMEOUT:?} (got {other:?}); its log:\n{}",
                process.log()
            ),
        }
    }

    /// What the tool wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `Some(status)` when the tool has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// SIGTERM, then waits up to 10 s for the exit (SIGKILL and a panic after that).
    pub fn stop(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {} failed", self.name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within 10 s of SIGTERM; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `key=<u16>` from a READY line.
fn ready_port(line: &str, key: &str) -> u16 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=PORT in {line:?}"))
}

// ---- OTLP receiver -------------------------------------------------------------------------

/// `tests/tools/otlp_receiver.py`: OTLP over gRPC and HTTP/protobuf on 127.0.0.1, every
/// export request recorded as a JSON line
/// `{"transport", "signal", "accepted", "request"}` (request as protobuf's JSON mapping with
/// the proto field names, e.g. `resource_metrics`).
pub struct OtlpReceiver {
    pub grpc_port: u16,
    pub http_port: u16,
    /// The JSON lines file.
    pub out: PathBuf,
    process: ToolProcess,
    dir: tempfile::TempDir,
}

impl OtlpReceiver {
    /// Starts the receiver; the first `fail_first` requests of each transport are refused
    /// (gRPC UNAVAILABLE, HTTP 503).
    pub fn start(fail_first: u32) -> OtlpReceiver {
        OtlpReceiver::start_on(0, 0, fail_first)
    }

    /// `http://127.0.0.1:<grpc port>`, the form OTLP/gRPC exporters take.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:<http port>` (exporters append `/v1/metrics` etc.).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Every request received so far, refused ones (`"accepted": false`) included.
    pub fn all_requests(&self) -> Vec<Value> {
        read_jsonl(&self.out)
    }

    /// The requests received and answered OK so far.
    pub fn requests(&self) -> Vec<Value> {
        self.all_requests()
            .into_iter()
            .filter(|r| r["accepted"] == Value::Bool(true))
            .collect()
    }

    /// The names of all metrics in accepted requests, in arrival order.
    pub fn metric_names(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r["signal"] == "metrics")
            .flat_map(|r| otlp_metrics(&r["request"]))
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits for an accepted request for which `pred` holds and returns it.
    pub async fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        eventually(
            timeout,
            || self.describe("an OTLP request matching the predicate"),
            || self.requests().into_iter().find(|r| pred(r)),
        )
        .await
    }

    /// [`OtlpReceiver::wait_for`] outside an async runtime.
    pub fn wait_for_blocking(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        eventually_blocking(
            timeout,
            || self.describe("an OTLP request matching the predicate"),
            || self.requests().into_iter().find(|r| pred(r)),
        )
    }

    fn describe(&self, what: &str) -> String {
        let seen: Vec<String> = self
            .all_requests()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
                format!(
                    "{} {} accepted={}",
                    s("transport"),
                    s("signal"),
                    r["accepted"]
                )
            })
            .collect();
        format!(
            "waiting for {what}; received {seen:?}; metric names {:?}; receiver log:\n{}",
            self.metric_names(),
            self.log()
        )
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM; the exit status.
    pub fn stop(self) -> ExitStatus {
        self.process.stop()
    }
}

/// All metric objects of one ExportMetricsServiceRequest (as recorded).
pub fn otlp_metrics(request: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for rm in request["resource_metrics"].as_array().into_iter().flatten() {
        for sm in rm["scope_metrics"].as_array().into_iter().flatten() {
            out.extend(sm["metrics"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

/// All span objects of one ExportTraceServiceRequest (as recorded).
pub fn otlp_spans(request: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for rs in request["resource_spans"].as_array().into_iter().flatten() {
        for ss in rs["scope_spans"].as_array().into_iter().flatten() {
            out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

/// All log record objects of one ExportLogsServiceRequest (as recorded).
pub fn otlp_log_records(request: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for rl in request["resource_logs"].as_array().into_iter().flatten() {
        for sl in rl["scope_logs"].as_array().into_iter().flatten() {
            out.extend(sl["log_records"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

// ---- TLS certificates ----------------------------------------------------------------------

/// A throwaway CA and a server certificate it signed, for `localhost` and `127.0.0.1`.
/// Trust `ca` in the client; give `cert` and `key` to the server. (A separate CA because
/// rustls/webpki refuses a self-signed CA certificate used as the server's own.)
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes [`TlsFiles`] in `dir` with the openssl command line (valid for 2 days, EC P-256).
pub fn make_tls_files(dir: &Path) -> TlsFiles {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e} (apt-get install openssl)"));
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        &[
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-subj", "/CN=rooftop test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-nodes"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
            &["-subj", "/CN=localhost"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

// ---- SMTP server ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP.
    #[default]
    None,
    /// STARTTLS offered.
    StartTls,
    /// STARTTLS required before anything else.
    RequireStartTls,
    /// SMTPS: TLS from the first byte.
    Implicit,
}

#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// Require AUTH (PLAIN or LOGIN) with these credentials.
    pub auth: Option<(String, String)>,
    /// Offer AUTH without TLS too (otherwise it is only offered over TLS).
    pub allow_plain_auth: bool,
    pub tls: SmtpTls,
    /// Answer 451 at the end of DATA to the first N messages.
    pub reject_first: u32,
    /// Listen on this port (0: any free port).
    pub port: u16,
}

/// `tests/tools/smtp_server.py` on 127.0.0.1: each accepted message saved as
/// `maildir/NNNNNN.eml`, indexed in `maildir/index.jsonl`.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    /// The certificates when TLS is on (trust `ca` in the client).
    pub tls: Option<TlsFiles>,
    process: ToolProcess,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start(opts: SmtpOptions) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let mut cmd = tool_command(python());
        cmd.arg(script("smtp_server.py"))
            .args(["--port", &opts.port.to_string(), "--maildir"])
            .arg(&maildir)
            .args(["--reject-first", &opts.reject_first.to_string()]);
        if let Some((user, pass)) = &opts.auth {
            cmd.arg("--auth").arg(format!("{user}:{pass}"));
        }
        if opts.allow_plain_auth {
            cmd.arg("--allow-plain-auth");
        }
        let tls = (opts.tls != SmtpTls::None).then(|| {
            let tls_dir = dir.path().join("tls");
            std::fs::create_dir(&tls_dir).unwrap();
            make_tls_files(&tls_dir)
        });
        if let Some(t) = &tls {
            let flag = match opts.tls {
                SmtpTls::Implicit => "--implicit-tls",
                _ => "--starttls",
            };
            cmd.arg(flag).arg(&t.cert).arg(&t.key);
            if opts.tls == SmtpTls::RequireStartTls {
                cmd.arg("--require-starttls");
            }
        }
        let (process, line) =
            ToolProcess::spawn("smtp_server", cmd, dir.path().join("smtp.log"), true);
        SmtpServer {
            port: ready_port(&line, "port"),
            maildir,
            tls,
            process,
            dir,
        }
    }

    /// `maildir/index.jsonl`: `{"seq", "file", "mail_from", "rcpt_tos", "tls", "auth_user",
    /// "received_ms"}`
    /// per saved message.
    pub fn index(&self) -> Vec<Value> {
        read_jsonl(&self.maildir.join("index.jsonl"))
    }

    /// The messages refused by `reject_first` (same fields, no file).
    pub fn rejected(&self) -> Vec<Value> {
        read_jsonl(&self.maildir.join("rejected.jsonl"))
    }

    /// The paths of the saved messages, in arrival order.
    pub fn message_paths(&self) -> Vec<PathBuf> {
        self.index()
            .iter()
            .map(|e| self.maildir.join(e["file"].as_str().unwrap()))
            .collect()
    }

    /// The raw saved messages (headers and body as received), in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.message_paths()
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }

    /// Waits until at least `n` messages are saved; returns them all.
    pub async fn wait_for_count(&self, n: usize, timeout: Duration) -> Vec<String> {
        eventually(
            timeout,
            || self.describe(n),
            || (self.index().len() >= n).then(|| self.messages()),
        )
        .await
    }

    /// [`SmtpServer::wait_for_count`] outside an async runtime.
    pub fn wait_for_count_blocking(&self, n: usize, timeout: Duration) -> Vec<String> {
        eventually_blocking(
            timeout,
            || self.describe(n),
            || (self.index().len() >= n).then(|| self.messages()),
        )
    }

    fn describe(&self, n: usize) -> String {
        format!(
            "waiting for {n} message(s); saved {}, rejected {}; server log:\n{}",
            self.index().len(),
            self.rejected().len(),
            self.log()
        )
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM; the exit status.
    pub fn stop(self) -> ExitStatus {
        self.process.stop()
    }
}

// ---- Prometheus ----------------------------------------------------------------------------

/// Prometheus on 127.0.0.1 with its config, rule files and TSDB in a temporary directory.
/// Started with `--web.enable-lifecycle`, so [`Prometheus::reload`] works.
pub struct Prometheus {
    pub port: u16,
    /// Holds `prometheus.yml`, the files given to `start_with_files`, and `data/`.
    pub dir: PathBuf,
    process: ToolProcess,
    tmp: tempfile::TempDir,
}

/// In the config and the files given to [`Prometheus::start_with_files`], replaced by the
/// port Prometheus listens on (so it can scrape itself).
pub const PROMETHEUS_PORT: &str = "{{PROMETHEUS_PORT}}";

impl Prometheus {
    /// Starts Prometheus with `config_yaml` and waits for `/-/ready`.
    pub fn start(config_yaml: &str) -> Prometheus {
        Self::start_with_files(config_yaml, &[])
    }

    /// Like [`Prometheus::start`], with more files (rule files, say) written beside the
    /// config first: `(relative path, content)`. The config's `rule_files` may name them
    /// relative to itself.
    pub fn start_with_files(config_yaml: &str, files: &[(&str, &str)]) -> Prometheus {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // The port is picked before Prometheus binds it; another process may take it in
        // between, so a start that fails on the address is retried with a new port.
        for attempt in 1..=3 {
            let port = free_port();
            let fill = |text: &str| text.replace(PROMETHEUS_PORT, &port.to_string());
            for (name, content) in files {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, fill(content)).unwrap();
            }
            let config = dir.join("prometheus.yml");
            std::fs::write(&config, fill(config_yaml)).unwrap();
            let mut cmd = tool_command(bin("prometheus"));
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-lifecycle")
                .current_dir(&dir);
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let (mut process, _) = ToolProcess::spawn("prometheus", cmd, log, false);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = process.try_wait() {
                    let log = process.log();
                    if attempt < 3 && log.contains("address already in use") {
                        break;
                    }
                    panic!("prometheus exited with {status} while starting; its log:\n{log}");
                }
                if matches!(http_request("GET", port, "/-/ready", b""), Ok((200, _))) {
                    return Prometheus {
                        port,
                        dir,
                        process,
                        tmp,
                    };
                }
                if Instant::now() >= deadline {
                    panic!(
                        "prometheus not ready within {START_TIMEOUT:?}; its log:\n{}",
                        process.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        unreachable!("the third attempt returns or panics")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET path` (with its query string, already encoded) on the HTTP API: status and body.
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        let (status, body) = http_request("GET", self.port, path_and_query, b"")
            .unwrap_or_else(|e| panic!("GET {path_and_query} on prometheus: {e}"));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// An instant query: the whole API answer, e.g.
    /// `{"status": "success", "data": {"resultType": "vector", "result": [...]}}`
    /// (or `{"status": "error", "error": ...}`).
    pub fn query(&self, expr: &str) -> Value {
        let (_, body) = self.get(&format!("/api/v1/query?query={}", url_encode(expr)));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered non-JSON to {expr:?}: {e}: {body}"))
    }

    /// An instant query whose result must be a vector: `(labels, value)` per series.
    pub fn query_vector(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self.query(expr);
        assert_eq!(
            answer["status"], "success",
            "query {expr:?} failed: {answer}"
        );
        assert_eq!(
            answer["data"]["resultType"], "vector",
            "query {expr:?} is no vector: {answer}"
        );
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// Waits until `pred` holds for the vector `expr` returns; returns that vector.
    pub async fn wait_for_query(
        &self,
        expr: &str,
        pred: impl Fn(&[(Value, f64)]) -> bool,
        timeout: Duration,
    ) -> Vec<(Value, f64)> {
        eventually(
            timeout,
            || self.describe(expr),
            || {
                let v = self.query_vector(expr);
                pred(&v).then_some(v)
            },
        )
        .await
    }

    /// [`Prometheus::wait_for_query`] outside an async runtime.
    pub fn wait_for_query_blocking(
        &self,
        expr: &str,
        pred: impl Fn(&[(Value, f64)]) -> bool,
        timeout: Duration,
    ) -> Vec<(Value, f64)> {
        eventually_blocking(
            timeout,
            || self.describe(expr),
            || {
                let v = self.query_vector(expr);
                pred(&v).then_some(v)
            },
        )
    }

    fn describe(&self, expr: &str) -> String {
        format!(
            "waiting on query {expr:?}, last answer {}; targets {}; prometheus log:\n{}",
            self.query(expr),
            self.get("/api/v1/targets").1,
            self.log()
        )
    }

    /// Rereads the config and rule files (`POST /-/reload`).
    pub fn reload(&self) {
        let (status, body) = http_request("POST", self.port, "/-/reload", b"")
            .unwrap_or_else(|e| panic!("POST /-/reload on prometheus: {e}"));
        assert_eq!(
            status,
            200,
            "reload failed: {}",
            String::from_utf8_lossy(&body)
        );
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM; the exit status.
    pub fn stop(self) -> ExitStatus {
        self.process.stop()
    }
}

// ---- plain HTTP/1.0 client -----------------------------------------------------------------

/// One HTTP/1.0 request to 127.0.0.1:`port`: status and body. Synchronous and
/// dependency-free, for the tools' APIs.
pub fn http_request(
    method: &str,
    port: u16,
    path_and_query: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- a collector that comes back -----------------------------------------------------------

impl OtlpReceiver {
    /// [`OtlpReceiver::start`] on the given ports (0: any free one): a collector that comes
    /// back where the agent has been trying to export all along.
    pub fn start_on(grpc_port: u16, http_port: u16, fail_first: u32) -> OtlpReceiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("requests.jsonl");
        let mut cmd = tool_command(python());
        cmd.arg(script("otlp_receiver.py"))
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--http-port", &http_port.to_string(), "--out"])
            .arg(&out)
            .args(["--fail-first", &fail_first.to_string()]);
        let (process, line) =
            ToolProcess::spawn("otlp_receiver", cmd, dir.path().join("receiver.log"), true);
        OtlpReceiver {
            grpc_port: ready_port(&line, "grpc"),
            http_port: ready_port(&line, "http"),
            out,
            process,
            dir,
        }
    }
}
