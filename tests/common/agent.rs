//! Stopping a `rooftop run` child the way systemd does, for the tests that run the agent.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Child;

/// SIGTERM, wait at most `within` for the agent to drain and exit, then its stdout and
/// stderr (empty when not piped). The exit status must be 0.
pub async fn sigterm(mut child: Child, within: Duration) -> (String, String) {
    let pid = child.id().expect("the agent is running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the agent did not stop within {within:?}"))
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).await.unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).await.unwrap();
    }
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

/// The bundled lead probe renamed `name`, on `{every: EVERY}`, with `poll` as its poll
/// settings (e.g. `{interval: 100ms, backoff: 1, within: 10s}`) and its runbook
/// references dropped (test configs have no runbooks/).
pub fn lead_probe(name: &str, every: &str, poll: &str) -> String {
    let probe = std::fs::read_to_string("probes/lead-to-bdc-call-list.yaml")
        .unwrap()
        .replace("name: lead-to-bdc-call-list", &format!("name: {name}"))
        .replace(
            "schedule: {every: 30m}",
            &format!("schedule: {{every: {every}}}"),
        )
        .replace("runbook: runbooks/lead-not-on-bdc-list.md\n", "")
        .replace("    runbook: runbooks/connector-down.md\n", "")
        .replace(
            "poll: {interval: 1s, backoff: 1.5, max_interval: 30s, within: 15m}",
            &format!("poll: {poll}"),
        );
    assert!(probe.contains(&format!("name: {name}")) && probe.contains(poll));
    probe
}
