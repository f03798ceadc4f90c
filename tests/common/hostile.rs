//! Hostile targets for `tests/hostile_targets.rs`: raw TCP servers on 127.0.0.1 that
//! misbehave on purpose (endless bodies, slowloris, silence, redirect games), a DNS server
//! on 127.0.0.1 that never answers, a TLS server (python3 `ssl`) with certificates made by
//! the `openssl` CLI, and `rooftop once` run as a child whose peak RSS (`VmHWM`) is
//! sampled from /proc until it exits.
//!
//! Include it with `#[path = "common/hostile.rs"] mod hostile;`.
#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const BIN: &str = env!("CARGO_BIN_EXE_rooftop");

/// Environment variables that would send the agent's requests to a proxy.
pub const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

// ---- raw TCP targets ------------------------------------------------------------------------

/// A local server; every request head it read is kept, in order.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Request heads seen so far, lower-cased.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Serves every connection with `handler(stream, request head)`; the head (request line and
/// headers) has been read off the stream already.
pub async fn serve<F, Fut>(handler: F) -> Target
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, handler) = (seen.clone(), handler.clone());
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                seen.lock().unwrap().push(head.to_ascii_lowercase());
                handler(stream, head).await;
            });
        }
    });
    Target { port, heads }
}

/// Reads a request head (up to the blank line, at most 64 KiB).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while buf.len() < 64 * 1024 && !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A complete response with a `Content-Length`.
pub async fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    // One response per connection, said so: a keep-alive client must not reuse it.
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.flush().await;
}

/// Holds a connection open without a word until the peer goes away.
pub async fn hold_silently(mut stream: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

/// A port on 127.0.0.1 with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---- DNS ------------------------------------------------------------------------------------

/// A DNS server on 127.0.0.1 (UDP) that reads every query and never answers: a
/// dealership's resolver gone silent. Counts the queries it swallowed.
pub struct SilentDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicU32>,
}

impl SilentDns {
    pub async fn start() -> SilentDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicU32::new(0));
        let seen = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while socket.recv_from(&mut buf).await.is_ok() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        SilentDns { addr, queries }
    }

    /// Queries received so far.
    pub fn queries(&self) -> u32 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// A stub resolver asking one DNS server over UDP (an `A` query), as the system's does
/// its `nameserver`; a test cannot point the system's at 127.0.0.1 without root, so the
/// runner gets this one. It only waits: any answer is an error (no test server answers).
pub struct UdpResolver {
    pub server: SocketAddr,
}

impl reqwest::dns::Resolve for UdpResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let server = self.server;
        Box::pin(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.send_to(&dns_query(name.as_str()), server).await?;
            let mut buf = [0u8; 512];
            socket.recv_from(&mut buf).await?;
            Err::<reqwest::dns::Addrs, _>("an answer the test resolver does not read".into())
        })
    }
}

/// A recursive `A IN` query for `name` (RFC 1035 §4.1).
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x52, 0x54, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

// ---- configuration --------------------------------------------------------------------------

/// A config directory: `rooftop.yaml` and one file per probe under `probes/`.
pub fn write_config(dir: &Path, rooftop_yaml: &str, probes: &[(&str, String)]) {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    std::fs::write(dir.join("rooftop.yaml"), rooftop_yaml).unwrap();
    for (name, text) in probes {
        std::fs::write(dir.join(format!("probes/{name}.yaml")), text).unwrap();
    }
}

/// A one-step GET probe: `timeout` for the probe, `request_timeout` for the request,
/// `step_extra` appended to the step (indented four spaces, e.g. `expect: …`).
pub fn probe(
    name: &str,
    timeout: &str,
    url: &str,
    request_timeout: &str,
    step_extra: &str,
) -> String {
    let mut text = format!(
        "name: {name}\ntimeout: {timeout}\nsteps:\n  - name: get\n    request: {{url: \"{url}\", timeout: {request_timeout}}}\n"
    );
    for line in step_extra.lines() {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

// ---- `rooftop once` -------------------------------------------------------------------------

/// What one `rooftop once PROBE --json` child did.
#[derive(Debug)]
pub struct Once {
    /// The `ProbeRun` it printed.
    pub run: Value,
    pub code: Option<i32>,
    pub stderr: String,
    /// Peak resident set size of the child (`VmHWM`), in KiB.
    pub max_rss_kib: i64,
    /// Wall time from spawn to exit (reported, never compared tightly).
    pub elapsed: Duration,
}

impl Once {
    pub fn class(&self) -> &str {
        self.run["error_class"].as_str().unwrap_or("none")
    }

    pub fn outcome(&self) -> &str {
        self.run["outcome"].as_str().unwrap_or("?")
    }

    /// The first step's request record.
    pub fn request(&self) -> &Value {
        &self.run["steps"][0]["request"]
    }
}

/// Runs `rooftop once PROBE --config CONFIG --json` with `env` added, in a blocking task
/// (the test's servers keep running on the runtime), with its peak RSS.
pub async fn once(config: &Path, probe: &str, env: &[(&str, String)]) -> Once {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["once", probe, "--json", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("ROOFTOP_CONFIG")
        .env_remove("ROOFTOP_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || run_reaped(cmd))
        .await
        .unwrap();
    drop(state);
    let run = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`rooftop once {probe}` printed no ProbeRun ({e}); exit {:?}\nstderr:\n{}",
            out.code, out.stderr
        )
    });
    Once {
        run,
        code: out.code,
        stderr: out.stderr,
        max_rss_kib: out.max_rss_kib,
        elapsed: out.elapsed,
    }
}

struct Reaped {
    stdout: Vec<u8>,
    stderr: String,
    code: Option<i32>,
    max_rss_kib: i64,
    elapsed: Duration,
}

/// Spawns `cmd`, drains its pipes on threads, samples its `VmHWM` until it exits, and
/// reaps it. (`wait4`'s `ru_maxrss` would not do: it counts the RSS of the test process
/// the child was spawned from.)
fn run_reaped(mut cmd: Command) -> Reaped {
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        so.read_to_end(&mut b).unwrap();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        se.read_to_end(&mut b).unwrap();
        String::from_utf8_lossy(&b).into_owned()
    });
    let peak = std::thread::spawn(move || peak_rss_kib(pid));
    // Joined before the child is reaped: the sampler stops at the zombie, never at a
    // reused pid.
    let max_rss_kib = peak.join().unwrap();
    let status = child.wait().unwrap();
    Reaped {
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        code: status.code(),
        max_rss_kib,
        elapsed: started.elapsed(),
    }
}

/// The last `VmHWM` of `pid`, sampled every 2 ms until it has exited (a zombie has none).
/// `VmHWM` only grows, so the last sample is the peak up to a few ms before exit.
pub fn peak_rss_kib(pid: u32) -> i64 {
    let mut peak = 0;
    while let Some(kib) = vm_hwm_kib(pid) {
        peak = kib;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(peak > 0, "no VmHWM sample of pid {pid}");
    peak
}

/// `VmHWM` (peak RSS) of a running process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---- TLS ------------------------------------------------------------------------------------

/// Certificates for 127.0.0.1 made with the `openssl` CLI: a self-signed one, and a test CA
/// that signed one expired and one valid leaf (the agent trusts the CA via
/// `SSL_CERT_FILE`, so the expired leaf fails on its dates alone).
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// The key of both CA-signed leaves.
    pub key: PathBuf,
    pub self_signed: PathBuf,
    pub self_signed_key: PathBuf,
    pub expired: PathBuf,
    pub valid: PathBuf,
}

const CA_CONF: &str = "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n\
serial = serial\nprivate_key = ca.key\ncertificate = ca.pem\ndefault_md = sha256\npolicy = p\n\
unique_subject = no\n[p]\ncommonName = supplied\n\
[leaf]\nsubjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.cnf"), CA_CONF).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let req = |extra: &[&str]| {
            let mut a = vec!["req"];
            a.extend(extra);
            a.extend(ec);
            openssl(d, &a);
        };
        req(&[
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
        ]);
        req(&[
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=rooftop-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        req(&[
            "-new",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ]);
        let sign = |out: &str, start: &str, end: &str| {
            openssl(
                d,
                &[
                    "ca",
                    "-batch",
                    "-notext",
                    "-config",
                    "ca.cnf",
                    "-extensions",
                    "leaf",
                    "-in",
                    "leaf.csr",
                    "-out",
                    out,
                    "-startdate",
                    start,
                    "-enddate",
                    end,
                ],
            )
        };
        sign("expired.pem", "20200101000000Z", "20200201000000Z");
        sign("valid.pem", "20200101000000Z", "20991231235959Z");
        Certs {
            ca: d.join("ca.pem"),
            key: d.join("leaf.key"),
            self_signed: d.join("self.pem"),
            self_signed_key: d.join("self.key"),
            expired: d.join("expired.pem"),
            valid: d.join("valid.pem"),
            _dir: dir,
        }
    }
}

const TLS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// An HTTPS server on 127.0.0.1 answering `{"ok": true}`; killed when dropped.
pub struct TlsServer {
    _child: tokio::process::Child,
    pub port: u16,
}

impl TlsServer {
    pub async fn start(cert: &Path, key: &Path) -> TlsServer {
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(TLS_SERVER)
            .arg(cert)
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the TLS server prints its port")
            .unwrap()
            .expect("the TLS server started");
        TlsServer {
            _child: child,
            port: line.trim().parse().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/ok", self.port)
    }
}
