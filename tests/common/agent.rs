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
