//! `rooftop run` under a service manager, as systemd drives it: the notification socket
//! hears `READY=1` (with a status line), watchdog pings only while the scheduler loop
//! turns, `RELOADING=1` … `READY=1` around a SIGHUP, `STOPPING=1` at SIGTERM. A reload
//! with a broken configuration keeps the old one running and prints every error with
//! its position; a valid one applies an added and a changed probe without touching the
//! others. `/readyz` follows the store's writability.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "common/agent.rs"]
mod agent;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A local HTTP server answering 200 to anything: a probe's healthy target.
async fn healthy_target() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A local heartbeat receiver (healthchecks.io stand-in): records `METHOD path body`.
async fn heartbeat_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, body: String| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push(format!("{method} {} {body}", uri.path()).trim().to_string());
                "OK"
            }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/ping/3f1c"), got)
}

async fn until_ping(got: &Arc<Mutex<Vec<String>>>, prefix: &str, within: Duration) -> Vec<String> {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        let g = got.lock().unwrap().clone();
        if g.iter().any(|p| p.starts_with(prefix)) {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no heartbeat {prefix:?} within {within:?}: {:?}",
        got.lock().unwrap()
    );
}

/// A one-step probe: GET `url`, expect 200.
fn probe(name: &str, every: &str, url: &str) -> String {
    format!(
        "name: {name}\nschedule: {{every: {every}}}\ntimeout: 5s\nsteps:\n  - name: get\n    request: {{url: \"{url}/health\", timeout: 2s}}\n    expect: {{status: 200}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// What the agent wrote to stderr so far, collected as it comes.
#[derive(Clone, Default)]
struct Stderr(Arc<Mutex<String>>);

impl Stderr {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    async fn until(&self, what: &str, within: Duration) -> String {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            let t = self.text();
            if t.contains(what) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "stderr never said {what:?} within {within:?}:\n{}",
            self.text()
        );
    }
}

/// The systemd side of `$NOTIFY_SOCKET`: collects every datagram with its arrival time.
struct NotifySocket {
    path: PathBuf,
    got: Arc<Mutex<Vec<(tokio::time::Instant, String)>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got: Arc<Mutex<Vec<(tokio::time::Instant, String)>>> = Arc::default();
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => g.lock().unwrap().push((
                        tokio::time::Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
                if std::sync::Arc::strong_count(&g) == 1 {
                    return;
                }
            }
        });
        NotifySocket {
            path,
            got,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    async fn until(&self, prefix: &str, nth: usize, within: Duration) -> Vec<String> {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            let m = self.messages();
            if m.iter().filter(|m| m.starts_with(prefix)).count() >= nth {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no {nth}× {prefix:?} within {within:?}: {:?}",
            self.messages()
        );
    }

    /// Watchdog pings that arrived in [from, to] after `t0`.
    fn pings_between(&self, t0: tokio::time::Instant, from: Duration, to: Duration) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, m)| m == "WATCHDOG=1" && *at >= t0 + from && *at <= t0 + to)
            .count()
    }
}

fn spawn_agent(
    dir: &Path,
    state: &Path,
    notify: &NotifySocket,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (Child, Stderr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["run", "--config"])
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .env("NOTIFY_SOCKET", &notify.path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let err = Stderr::default();
    let (e, pipe) = (err.clone(), child.stderr.take().unwrap());
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut t = e.0.lock().unwrap();
            t.push_str(&l);
            t.push('\n');
        }
    });
    (child, err)
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn count(state: &Path, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(state.join("rooftop.db")).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn until_count(state: &Path, sql: &str, at_least: i64, within: Duration) {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        let db = rusqlite::Connection::open(state.join("rooftop.db"));
        let n = db
            .and_then(|db| db.query_row(sql, [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0);
        if n >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{sql}` never reached {at_least} within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_while_the_scheduler_turns_and_starves_when_it_stalls() {
    let target = healthy_target().await;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(dir.path(), "rooftop.yaml", "{}\n");
    write(dir.path(), "probes/ok.yaml", &probe("ok", "1s", &target));
    let notify = NotifySocket::bind();
    let t0 = tokio::time::Instant::now();
    // WatchdogSec=4s: a ping every second while the loop's heartbeat is under 2 s old.
    // The debug-build hook wedges the loop 4 s after start.
    let (_child, _err) = spawn_agent(
        dir.path(),
        state.path(),
        &notify,
        &[
            ("WATCHDOG_USEC", "4000000"),
            ("ROOFTOP_TEST_STALL_SCHEDULER", "4s"),
        ],
        &["--listen", "off"],
    );
    let m = notify.until("READY=1", 1, Duration::from_secs(20)).await;
    let ready = m.iter().find(|m| m.starts_with("READY=1")).unwrap();
    assert!(
        ready.contains("STATUS=1 probe, 0 failing, 0 open incidents"),
        "{m:?}"
    );
    // Wait past the stall and the 2 s freshness window, then watch for pings.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let ready_at = notify
        .got
        .lock()
        .unwrap()
        .iter()
        .find(|(_, m)| m.starts_with("READY=1"))
        .map(|(t, _)| *t - t0)
        .unwrap();
    let before = notify.pings_between(t0, ready_at, ready_at + Duration::from_secs(3));
    let after = notify.pings_between(
        t0,
        ready_at + Duration::from_secs(8),
        Duration::from_secs(3600),
    );
    assert!(
        before >= 2,
        "fed while the loop turns: {before} pings; {:?}",
        notify.messages()
    );
    assert_eq!(
        after,
        0,
        "no ping once the loop is wedged: {:?}",
        notify.messages()
    );
    // The process is wedged by design: kill_on_drop ends it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_old_config_on_errors_then_applies_only_what_changed() {
    let target = healthy_target().await;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(dir.path(), "rooftop.yaml", "{}\n");
    // `down` fails every run (nothing listens on port 1): it opens an incident.
    write(
        dir.path(),
        "probes/down.yaml",
        &probe("down", "1s", "http://127.0.0.1:1"),
    );
    write(
        dir.path(),
        "probes/steady.yaml",
        &probe("steady", "1s", &target),
    );
    write(
        dir.path(),
        "probes/changing.yaml",
        &probe("changing", "1s", &target),
    );
    let notify = NotifySocket::bind();
    let (child, err) = spawn_agent(dir.path(), state.path(), &notify, &[], &["--listen", "off"]);
    notify.until("READY=1", 1, Duration::from_secs(20)).await;
    until_count(
        state.path(),
        "SELECT count(*) FROM incidents WHERE probe = 'down' AND resolved_ms IS NULL",
        1,
        Duration::from_secs(20),
    )
    .await;
    let incident: String = {
        let db = rusqlite::Connection::open(state.path().join("rooftop.db")).unwrap();
        db.query_row("SELECT id FROM incidents WHERE probe = 'down'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };

    // A broken edit: the agent says where, and goes on with what it runs.
    write(
        dir.path(),
        "probes/changing.yaml",
        "name: changing\nschedule: {every: 1s\nsteps: []\n",
    );
    signal(&child, "-HUP");
    let text = err.until("reload rejected", Duration::from_secs(20)).await;
    assert!(
        text.contains("changing.yaml:"),
        "the file and position:\n{text}"
    );
    assert!(text.contains("still running the previous one"), "{text}");
    notify.until("RELOADING=1", 1, Duration::from_secs(5)).await;
    let m = notify.until("READY=1", 2, Duration::from_secs(5)).await;
    assert!(
        m.iter()
            .any(|m| m.starts_with("READY=1") && m.contains("last reload rejected")),
        "{m:?}"
    );
    let steady_before = count(
        state.path(),
        "SELECT count(*) FROM runs WHERE probe = 'changing'",
    );
    until_count(
        state.path(),
        "SELECT count(*) FROM runs WHERE probe = 'changing'",
        steady_before + 2,
        Duration::from_secs(20),
    )
    .await;

    // A valid edit: `changing` gets a new schedule, `added` appears; the others go on.
    write(
        dir.path(),
        "probes/changing.yaml",
        &probe("changing", "2s", &target),
    );
    write(
        dir.path(),
        "probes/added.yaml",
        &probe("added", "1s", &target),
    );
    let runs_of = |p: &str| {
        count(
            state.path(),
            &format!("SELECT count(*) FROM runs WHERE probe = '{p}'"),
        )
    };
    let steady_before = runs_of("steady");
    signal(&child, "-HUP");
    let text = err.until("reloaded: ", Duration::from_secs(20)).await;
    assert!(
        text.contains("reloaded: 1 added (added), 1 changed (changing), 0 removed, 2 unchanged"),
        "{text}"
    );
    until_count(
        state.path(),
        "SELECT count(*) FROM runs WHERE probe = 'added'",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert!(runs_of("steady") > steady_before, "steady kept running");
    // The unchanged failing probe kept its incident: still one, still open, same id.
    assert_eq!(count(state.path(), "SELECT count(*) FROM incidents"), 1);
    let still: String = {
        let db = rusqlite::Connection::open(state.path().join("rooftop.db")).unwrap();
        db.query_row(
            "SELECT id FROM incidents WHERE resolved_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(still, incident);
    let m = notify.until("READY=1", 3, Duration::from_secs(5)).await;
    let ready = m.iter().rfind(|m| m.starts_with("READY=1")).unwrap();
    assert!(
        !ready.contains("rejected"),
        "a reload that works clears the note: {ready}"
    );
    assert!(
        m.iter()
            .rfind(|m| m.starts_with("READY=1"))
            .unwrap()
            .contains("4 probes"),
        "{m:?}"
    );

    agent::sigterm(child, Duration::from_secs(60)).await;
    let m = notify.until("STOPPING=1", 1, Duration::from_secs(5)).await;
    assert!(m.last().unwrap().starts_with("STOPPING=1"), "{m:?}");
    let log = err.text();
    assert!(log.contains("stopped in "), "{log}");
}

/// Makes a file immutable (root: the one way to refuse writes to it whatever the
/// permissions) until dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: Vec<PathBuf>) -> Immutable {
        for p in &paths {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(p)
                .status()
                .expect("chattr (e2fsprogs) is installed");
            assert!(ok.success(), "chattr +i {}", p.display());
        }
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(p)
                .status();
        }
    }
}

async fn readyz(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn until_readyz(url: &str, code: u16, within: Duration) -> String {
    let end = tokio::time::Instant::now() + within;
    let mut last = (0, String::new());
    while tokio::time::Instant::now() < end {
        last = readyz(url).await;
        if last.0 == code {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("/readyz never answered {code} within {within:?}; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_the_heartbeat_follow_the_store_refusing_writes_and_taking_them_again() {
    let target = healthy_target().await;
    let (hb_url, pings) = heartbeat_receiver().await;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(
        dir.path(),
        "rooftop.yaml",
        &format!("self_monitoring:\n  heartbeat: {{url: \"{hb_url}\", every: 10m}}\n"),
    );
    write(dir.path(), "probes/ok.yaml", &probe("ok", "1s", &target));
    let notify = NotifySocket::bind();
    let (child, err) = spawn_agent(
        dir.path(),
        state.path(),
        &notify,
        &[],
        &["--listen", "127.0.0.1:0"],
    );
    let text = err.until("/readyz)", Duration::from_secs(20)).await;
    let url = text
        .lines()
        .find_map(|l| l.split("readiness: ").nth(1))
        .map(|u| u.trim_end_matches(')').to_string())
        .unwrap();
    assert_eq!(
        until_readyz(&url, 200, Duration::from_secs(10)).await,
        "ready\n"
    );
    let p = until_ping(&pings, "GET /ping/3f1c", Duration::from_secs(10)).await;
    assert_eq!(p[..2], ["GET /ping/3f1c/start", "GET /ping/3f1c"], "{p:?}");
    let db = state.path().join("rooftop.db");
    let wal = state.path().join("rooftop.db-wal");
    assert!(wal.exists(), "the store runs in WAL mode");
    {
        let _frozen = Immutable::set(vec![db, wal]);
        let body = until_readyz(&url, 503, Duration::from_secs(20)).await;
        assert!(body.contains("store: not writable"), "{body}");
        err.until(
            "warning: the store does not take writes",
            Duration::from_secs(5),
        )
        .await;
        // Not a period (10 minutes) later: at once.
        let p = until_ping(&pings, "POST /ping/3f1c/fail", Duration::from_secs(5)).await;
        let fail = p.iter().find(|p| p.starts_with("POST")).unwrap();
        assert!(fail.contains("store: not writable"), "{p:?}");
    }
    until_readyz(&url, 200, Duration::from_secs(20)).await;
    err.until("the store takes writes again", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = pings.lock().unwrap().clone();
    assert_eq!(
        p.last().map(String::as_str),
        Some("GET /ping/3f1c"),
        "ready again: {p:?}"
    );
    assert!(
        !err.text().contains("/ping/3f1c"),
        "the ping URL is never logged whole"
    );
    agent::sigterm(child, Duration::from_secs(60)).await;
}
