//! `rooftop run`, the agent, as systemd runs it: against the sandbox on 127.0.0.1, probes
//! fire on schedule, SIGTERM stops it cleanly with in-flight runs finished and cleaned up.

use std::process::Stdio;
use std::time::Duration;

#[path = "common/agent.rs"]
mod agent;

use rooftop::sandbox::{Sandbox, SandboxConfig};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The bundled lead probe under another name, on a short schedule with fast polls, in
/// `dir/probes/NAME.yaml` (runbooks dropped: the test config has none).
fn write_lead_probe(dir: &std::path::Path, name: &str, every: &str, poll_interval: &str) {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    let poll = format!("{{interval: {poll_interval}, backoff: 1, within: 10s}}");
    let probe = agent::lead_probe(name, every, &poll);
    std::fs::write(dir.join(format!("probes/{name}.yaml")), probe).unwrap();
}

/// `rooftop run` on `config` against the sandbox, stdout piped.
fn spawn_agent(
    sb: &Sandbox,
    config: &std::path::Path,
    state: &std::path::Path,
    stderr: Stdio,
) -> tokio::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rooftop"));
    cmd.args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state);
    cmd.stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null());
    cmd.envs(sb.env());
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_probes_on_schedule_and_stops_cleanly_on_sigterm() {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    // The bundled lead probe, on a 2-second schedule with short polls.
    let dir = tempfile::tempdir().unwrap();
    write_lead_probe(dir.path(), "lead-to-bdc-call-list", "2s", "100ms");
    let state = tempfile::tempdir().unwrap();
    let child = spawn_agent(&sb, dir.path(), state.path(), Stdio::piped());
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let (out, err) = agent::sigterm(child, Duration::from_secs(30)).await;
    let runs = out
        .lines()
        .filter(|l| l.contains("lead-to-bdc-call-list") && l.contains(" success "))
        .count();
    assert!(
        runs >= 2,
        "expected a run every 2 s:\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        err.contains("next 20"),
        "prints each probe's next fire time: {err}"
    );
    assert!(err.contains("stopping"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());

    // The history the agent wrote, read back by `status` and `history`.
    let read = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
            .args(args)
            .arg("--config")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let status = read(&["status", "--json"]);
    let p = &status["probes"][0];
    assert_eq!(p["probe"], "lead-to-bdc-call-list");
    assert_eq!(p["last"]["outcome"], "success", "{status:#}");
    let w24 = &p["windows"][1];
    assert_eq!(w24["window"], "24h");
    assert_eq!(w24["runs"].as_u64(), Some(runs as u64), "{status:#}");
    assert_eq!(w24["ratio"].as_f64(), Some(1.0));
    assert_eq!(p["sync"][0]["step"], "on-bdc-call-list");
    // Midpoint estimates of a 100 ms sync polled every 100 ms: inside (0, 300] ms.
    let p50 = p["sync"][0]["p50_ms"].as_u64().unwrap();
    assert!((1..=300).contains(&p50), "{status:#}");
    assert_eq!(p["sync"][0]["measurements"].as_u64(), Some(runs as u64));
    assert!(p["next_run"].is_string());
    // Per-step durations, run durations and start lag, one value per run.
    assert_eq!(p["duration_24h"]["count"].as_u64(), Some(runs as u64));
    assert_eq!(p["lag_24h"]["count"].as_u64(), Some(runs as u64));
    let steps: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps[0], "submit-lead", "{status:#}");
    assert!(steps.contains(&"on-bdc-call-list"), "{status:#}");
    assert!(p["sync"][0]["polls_mean"].as_f64().unwrap() >= 1.0);
    assert_eq!(p["recovery"]["outages_7d"].as_u64(), Some(0));
    let history = read(&["history", "lead-to-bdc-call-list", "--json"]);
    assert_eq!(history.as_array().unwrap().len(), runs, "{history:#}");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] == "schedule" && r["lag_ms"].is_number()),
        "{history:#}"
    );
}

/// A run that outlasts its period makes the next fire skip, and the skip is in the
/// history. After a restart with `missed_runs: run-once`, a probe that missed fires
/// while the agent was down runs once right away, marked as a catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlaps_are_recorded_and_run_once_catches_up_after_downtime() {
    // Sync takes 2.5 s; the probe fires every 2 s.
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(2500)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_lead_probe(dir.path(), "slow-lead", "2s", "100ms");
    let state = tempfile::tempdir().unwrap();
    let child = spawn_agent(&sb, dir.path(), state.path(), Stdio::piped());
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let (out, _) = agent::sigterm(child, Duration::from_secs(30)).await;
    assert!(out.contains("skipped: overlap"), "{out}");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(
        dir.path().join("rooftop.yaml"),
        "scheduler: {missed_runs: run-once}\n",
    )
    .unwrap();
    let child = spawn_agent(&sb, dir.path(), state.path(), Stdio::piped());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (out, err) = agent::sigterm(child, Duration::from_secs(30)).await;
    assert!(
        err.contains("missed while down; one catch-up run now"),
        "{err}"
    );
    assert!(out.contains("(catch-up)"), "{out}");

    let history = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["history", "slow-lead", "--json", "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let triggers: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert!(triggers.contains(&"overlap"), "{history:#}");
    assert_eq!(
        triggers.iter().filter(|t| **t == "catch_up").count(),
        1,
        "one catch-up run, not a burst: {history:#}"
    );
    let skipped = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger"] == "overlap")
        .unwrap();
    assert_eq!(skipped["outcome"], "skipped");
}

/// The agent killed with SIGKILL at arbitrary moments, five times over: the store opens
/// cleanly every time, passes SQLite's integrity check, and every run the agent reported
/// as finished is in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_loses_no_completed_run() {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    for (i, every) in ["1s", "1s", "2s"].iter().enumerate() {
        write_lead_probe(dir.path(), &format!("lead-{i}"), every, "50ms");
    }
    let state = tempfile::tempdir().unwrap();
    let mut reported = std::collections::BTreeSet::new();
    for round in 0..5u64 {
        let mut child = spawn_agent(&sb, dir.path(), state.path(), Stdio::null());
        // Different moments in the run cycle each round.
        tokio::time::sleep(Duration::from_millis(1700 + 370 * round)).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        reported.extend(out.lines().filter_map(|l| {
            l.split_whitespace()
                .last()
                .filter(|w| w.starts_with("run-"))
                .map(str::to_string)
        }));

        let db = rusqlite::Connection::open(state.path().join("rooftop.db")).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let stored: std::collections::BTreeSet<String> = db
            .prepare("SELECT run_id FROM runs")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let lost: Vec<_> = reported.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: reported but not stored: {lost:?}"
        );
    }
    assert!(
        reported.len() >= 5,
        "the agent should have completed runs: {reported:?}"
    );
    // The next start cleans up whatever the kills left behind.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["cleanup", "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .envs(sb.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
}

/// A connector outage opens one incident (after two failed runs), `rooftop ack` is
/// picked up by the running agent, and recovery resolves it; `rooftop incidents` shows
/// it all from another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_an_incident_that_is_acknowledged_and_resolves() {
    use rooftop::sandbox::{DownMode, Fault, FaultKind, System};
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_lead_probe(dir.path(), "lead-to-bdc-call-list", "1s", "50ms");
    let state = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
            .args(args)
            .arg("--config")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let child = spawn_agent(&sb, dir.path(), state.path(), Stdio::piped());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sb.set_faults(vec![Fault::new(FaultKind::ConnectorDown {
        system: System::Crm,
        mode: DownMode::Http503,
    })]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, out, err) = cli(&["incidents", "--open", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let open: serde_json::Value = serde_json::from_str(&out).unwrap();
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "{out}");
    assert_eq!(open[0]["state"], "open");
    assert_eq!(open[0]["error_class"], "http_5xx");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let (code, out, err) = cli(&["ack", &id, "--by", "maria"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = cli(&["ack", &id, "--by", "joe"]);
    assert_eq!(code, Some(1), "a second ack is refused: {err}");
    assert!(err.contains("already acknowledged"), "{err}");
    sb.set_faults(vec![]);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (out, _) = agent::sigterm(child, Duration::from_secs(30)).await;
    assert!(out.matches("INCIDENT").count() >= 2, "{out}");
    assert_eq!(
        out.matches(" opened: ").count(),
        1,
        "one incident, one page:\n{out}"
    );
    assert!(out.contains("acknowledged by maria"), "{out}");
    assert!(out.contains("resolved (recovered)"), "{out}");
    let (_, out, _) = cli(&["incidents", "--json"]);
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let inc = &all.as_array().unwrap()[0];
    assert_eq!(inc["state"], "resolved", "{out}");
    assert_eq!(inc["resolved_by"], "recovery");
    assert_eq!(inc["acked_by"], "maria");
    assert!(inc["runs"].as_array().unwrap().len() >= 2);
    let (_, table, _) = cli(&["incidents"]);
    assert!(
        table.contains(&id) && table.contains("acknowledged by maria"),
        "{table}"
    );
}

/// With `ROOFTOP_LOG_FORMAT=json` (what the journal gets under systemd) every log line
/// is one JSON object on stdout: a run carries its fields, the agent's notes and the
/// stop are events too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_each_runs_fields_one_object_per_line() {
    let sb = Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_lead_probe(dir.path(), "lead-to-bdc-call-list", "1s", "100ms");
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rooftop"));
    cmd.args(["run", "--listen", "off", "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .envs(sb.env())
        .env("ROOFTOP_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    // A broken edit and a reload: each problem is an event with its place.
    std::fs::write(
        dir.path().join("probes/broken.yaml"),
        "name: broken\nschedule: {every: 1s}\nsteps:\n  - name: x\n    request: {method: GET, url: 'http://127.0.0.1:1/'}\n    expec: {status: 200}\n",
    )
    .unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (out, err) = agent::sigterm(child, Duration::from_secs(30)).await;
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let run = events
        .iter()
        .find(|e| e["run_id"].is_string() && e["outcome"] == "success")
        .unwrap_or_else(|| panic!("no successful run event:\n{out}\n{err}"));
    assert_eq!(run["probe"], "lead-to-bdc-call-list");
    assert_eq!(run["outcome"], "success");
    assert_eq!(run["level"], "INFO");
    assert!(run["duration_ms"].as_f64().is_some(), "{run}");
    assert!(
        run["message"]
            .as_str()
            .is_some_and(|m| m.contains("lead-to-bdc-call-list") && m.contains("success")),
        "the terminal's line is the message: {run}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stopped in "))),
        "the stop is an event too:\n{out}"
    );
    assert!(
        !err.lines().any(|l| l.contains("stopped in")),
        "notes are not on stderr in JSON mode:\n{err}"
    );
    let problem = events
        .iter()
        .find(|e| {
            e["level"] == "ERROR"
                && e["line"] == 6
                && e["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("broken.yaml"))
        })
        .unwrap_or_else(|| panic!("no event for the broken file's line 6:\n{out}\n{err}"));
    assert!(problem["col"].as_u64().is_some(), "{problem}");
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("broken.yaml:6:")),
        "{problem}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("reload rejected"))),
        "the agent says it keeps the old configuration:\n{out}"
    );
    assert!(
        !err.contains("error:"),
        "no rustc-style text on stderr in JSON mode:\n{err}"
    );
}
