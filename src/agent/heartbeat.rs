//! The agent's dead-man's switch (`self_monitoring.heartbeat`), healthchecks.io style:
//! `GET URL/start` once at start, then `GET URL` every period while the agent is ready
//! and `POST URL/fail` (the reasons in the body) while it is not. A change of readiness
//! is pinged at once, not a period later. If the agent dies, the pings stop and whoever
//! watches the URL is told: the one failure the agent cannot page about itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::health::Readiness;
use super::report::{Report, Reporter};

/// How often readiness is looked at between pings.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A rendered heartbeat target (the URL may hold a secret: it is never printed whole).
#[derive(Clone)]
pub(super) struct Pinger {
    url: String,
    every: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger").field("to", &self.shown()).finish()
    }
}

impl Pinger {
    pub(super) fn new(url: String, every: Duration, timeout: Duration) -> Result<Pinger, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("self_monitoring.heartbeat: {e}"))?;
        Ok(Pinger { url, every, client })
    }

    /// Scheme and host only: the path of a ping URL is its secret.
    pub(super) fn shown(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "(invalid URL)".into(),
        }
    }

    async fn ping(&self, suffix: &str, body: Option<String>) -> Result<(), String> {
        let url = format!("{}{suffix}", self.url);
        let req = match body {
            Some(b) => self.client.post(&url).body(b),
            None => self.client.get(&url),
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("answered {}", r.status())),
            // Without the URL: reqwest's error text would print it.
            Err(e) => Err(if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "cannot connect".into()
            } else {
                "request failed".into()
            }),
        }
    }

    pub(super) fn spawn(
        self,
        ready: Arc<Readiness>,
        reporter: Arc<dyn Reporter>,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut failing = false;
            let mut report = |r: Result<(), String>, what: &str| match (r, failing) {
                (Err(e), false) => {
                    failing = true;
                    let w = format!("heartbeat {what} to {} failed: {e}", self.shown());
                    reporter.report(Report::Warning(&w));
                }
                (Ok(()), true) => {
                    failing = false;
                    tracing::info!(target: crate::model::NOTE, "heartbeat to {} works again", self.shown());
                }
                _ => {}
            };
            report(self.ping("/start", None).await, "/start");
            // (ready at the last ping, when)
            let mut last: Option<(bool, tokio::time::Instant)> = None;
            loop {
                let problems = ready.problems();
                let due = match &last {
                    None => true,
                    Some((was, at)) => *was != problems.is_empty() || at.elapsed() >= self.every,
                };
                if due {
                    let r = if problems.is_empty() {
                        self.ping("", None).await
                    } else {
                        self.ping("/fail", Some(problems.join("\n"))).await
                    };
                    report(r, if problems.is_empty() { "ping" } else { "/fail" });
                    last = Some((problems.is_empty(), tokio::time::Instant::now()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    }
}
