//! The agent's one shutdown path, as systemd drives it: SIGTERM interrupts a run stuck in
//! a long poll and still cleans up what it created; pages queued before the stop get the
//! last delivery pass; when the stop deadline is hit, the last line names what did not
//! finish and the exit code says so (4), with the record kept in the cleanup ledger.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[path = "common/agent.rs"]
mod agent;

use rooftop::sandbox::{DownMode, Fault, FaultKind, JobName, Sandbox, SandboxConfig, System};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

async fn sandbox() -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(20)),
    )
    .await
    .unwrap()
}

/// The bundled lead probe as `name`, every `every`, polling every 100 ms for up to 10
/// minutes (a long poll), runbooks dropped.
fn long_poll_lead_probe(name: &str, every: &str) -> String {
    agent::lead_probe(name, every, "{interval: 100ms, backoff: 1, within: 10m}")
}

fn write_config(dir: &Path, probes: &[(&str, String)], rooftop_yaml: &str) {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    for (name, text) in probes {
        std::fs::write(dir.join(format!("probes/{name}.yaml")), text).unwrap();
    }
    std::fs::write(dir.join("rooftop.yaml"), rooftop_yaml).unwrap();
}

fn spawn_agent(sb: &Sandbox, dir: &Path, state: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["run", "--listen", "off", "--config"])
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .envs(sb.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until the sandbox holds a synthetic record (a run has created its lead).
async fn until_a_record_exists(sb: &Sandbox) {
    for _ in 0..200 {
        if !sb.leftovers().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no run created a record within 10 s");
}

fn try_count(state: &Path, sql: &str) -> rusqlite::Result<i64> {
    let db = rusqlite::Connection::open(state.join("rooftop.db"))?;
    db.query_row(sql, [], |r| r.get(0))
}

fn count(state: &Path, sql: &str) -> i64 {
    try_count(state, sql).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_poll_interrupts_it_cleans_up_and_exits_0() {
    let sb = sandbox().await;
    // The lead never reaches the BDC call list: the run polls for up to 10 minutes.
    sb.set_faults(vec![Fault::new(FaultKind::JobStalled {
        job: JobName::LeadToBdc,
    })]);
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_config(
        dir.path(),
        &[("lead-stuck", long_poll_lead_probe("lead-stuck", "2s"))],
        "{}\n",
    );
    let child = spawn_agent(&sb, dir.path(), state.path(), &[]);
    until_a_record_exists(&sb).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Far under the 75 s deadline: the poll is cut at once, only the cleanup remains.
    let (out, err) = agent::sigterm(child, Duration::from_secs(30)).await;
    assert!(
        out.contains("[interrupted at on-bdc-call-list]")
            && out.contains("interrupted by the stop"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("stopped in "), "last line: {last}\n{err}");
    assert!(last.contains("every run cleaned up"), "{last}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
    assert_eq!(
        // A sweep that found nothing waits for its re-sweep: not a leftover.
        count(
            state.path(),
            "SELECT count(*) FROM cleanup_ledger WHERE resweep_after_ms IS NULL OR last_error IS NOT NULL"
        ),
        0,
        "nothing left for the next start"
    );
    // An interrupted run says nothing of the dealer's systems: not stored, not judged.
    assert_eq!(count(state.path(), "SELECT count(*) FROM runs"), 0);
    assert_eq!(count(state.path(), "SELECT count(*) FROM incidents"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_queued_before_a_stop_are_delivered_before_the_agent_exits() {
    let sb = sandbox().await;
    sb.set_faults(vec![Fault::new(FaultKind::ConnectorDown {
        system: System::Crm,
        mode: DownMode::Http503,
    })]);
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_config(
        dir.path(),
        &[("lead-down", long_poll_lead_probe("lead-down", "1s"))],
        "alerting:\n\
         \x20 contacts: [{name: Maria Lopez, email: maria@dealer.example}]\n\
         \x20 routes: {P2: [Maria Lopez]}\n\
         \x20 email: {from: rooftop@dealer.example, folder: pages}\n",
    );
    let child = spawn_agent(&sb, dir.path(), state.path(), &[]);
    // Stop as soon as the incident is stored: its page is queued in the same step.
    let mut opened = false;
    for _ in 0..200 {
        // Until the agent has created its tables, the query fails: not yet.
        if try_count(state.path(), "SELECT count(*) FROM incidents").is_ok_and(|n| n > 0) {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "no incident opened within 10 s");
    let (out, err) = agent::sigterm(child, Duration::from_secs(30)).await;
    assert!(
        count(
            state.path(),
            "SELECT count(*) FROM outbox WHERE state = 'delivered'"
        ) >= 1,
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(
        count(
            state.path(),
            "SELECT count(*) FROM outbox WHERE state = 'pending'"
        ),
        0,
        "stdout:\n{out}\nstderr:\n{err}"
    );
    let pages: Vec<_> = std::fs::read_dir(dir.path().join("pages"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(pages.len(), 1, "one page, delivered:\n{out}");
}

/// Accepts connections on 127.0.0.1 and never answers: a cleanup target that hangs.
async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_deadline_hit_names_what_did_not_finish_and_keeps_the_record_in_the_ledger() {
    let sb = sandbox().await;
    sb.set_faults(vec![Fault::new(FaultKind::JobStalled {
        job: JobName::LeadToBdc,
    })]);
    let port = silent_server().await;
    // The lead's cleanup goes to a server that never answers (request timeout 30 s).
    let probe = long_poll_lead_probe("lead-hung-cleanup", "2s").replace(
        "url: \"{{ env.CRM_URL }}/api/leads?email={{ email | urlencode }}\"",
        &format!("url: \"http://127.0.0.1:{port}/api/leads?email={{{{ email | urlencode }}}}\""),
    );
    assert!(probe.contains(&format!("127.0.0.1:{port}")));
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_config(dir.path(), &[("lead-hung-cleanup", probe)], "{}\n");
    let mut child = spawn_agent(&sb, dir.path(), state.path(), &["--stop-deadline", "2s"]);
    until_a_record_exists(&sb).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the agent stops at its deadline")
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stopped at the 2s deadline; not finished: 1 run(s) still cleaning up (lead-hung-cleanup)"),
        "last line: {last}\n{err}"
    );
    assert!(last.contains("cleanup ledger"), "{last}");
    // The record is not forgotten: the next start (or `rooftop cleanup`) retries it.
    assert_eq!(
        count(state.path(), "SELECT count(*) FROM cleanup_ledger"),
        1,
        "{err}"
    );
}
