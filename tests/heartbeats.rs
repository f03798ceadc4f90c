//! Passive heartbeat checks end to end: a real agent (`rooftop run`) with a check every
//! 2 s (grace 1 s) and an e-mail route to a real SMTP server (aiosmtpd). A job pings it
//! with a real HTTP client; when it stops pinging an incident opens and the on-call gets
//! an e-mail within grace + one evaluation interval; a ping resolves it; a wrong token is
//! refused; `/fail` opens it at once; `/metrics` shows the check's runs and durations.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::path::Path;
use std::time::{Duration, Instant};

use paging::{incidents_json, spawn_agent, subject_and_text};
use tools::{SmtpOptions, SmtpServer};

const TOKEN: &str = "hb-token-5d0c7e1a";

/// A probe that never fails and rarely runs: the config directory needs one.
const QUIET_PROBE: &str = "name: quiet\nschedule: {every: 1h}\nsteps:\n  - name: one\n    request: {url: \"{{ env.CRM_URL }}/api/health\"}\n";

const CHECK: &str = "name: nightly-export\ndescription: The DMS-to-CRM customer export.\nschedule: {every: 2s}\ngrace: 1s\nseverity: P3\nlabels: {flow: customer-sync, connector: dms-export}\ntoken: \"{{ secret.export_ping }}\"\n";

fn write_config(dir: &Path, smtp_port: u16) {
    paging::write_config(
        dir,
        &[("quiet", QUIET_PROBE.to_string())],
        &format!(
            "rooftop: {{id: toronto-north, name: Toronto North Honda}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P1: [Maria Lopez], P2: [Maria Lopez], P3: [Maria Lopez], P4: [Maria Lopez]}}\n\
             \x20 group: {{window: 0s}}\n\
             \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s}}}}\n"
        ),
    );
    std::fs::create_dir_all(dir.join("heartbeats")).unwrap();
    std::fs::write(dir.join("heartbeats/nightly-export.yaml"), CHECK).unwrap();
}

/// A ping: method, path (after the listener's address), bearer token. Status and body.
async fn ping(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("the listener answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The check's incidents (any state), newest last.
fn check_incidents(dir: &Path, state: &Path) -> Vec<serde_json::Value> {
    incidents_json(dir, state)
        .into_iter()
        .filter(|i| i["probe"] == "nightly-export")
        .collect()
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_stops_pinging_pages_and_its_next_ping_resolves() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write_config(dir.path(), smtp.port);
    let port = tools::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &listen,
        &[("ROOFTOP_SECRET_EXPORT_PING", TOKEN)],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Up once the listener answers.
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let started = Instant::now();
    loop {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the agent did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Refused: no token, a wrong token (header and query), an unknown check or action.
    let (s, body) = ping(
        &client,
        &base,
        get.clone(),
        "/ping/nightly-export",
        None,
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (401, "unauthorized\n"));
    let (s, body) = ping(
        &client,
        &base,
        post.clone(),
        "/ping/nightly-export",
        Some("hb-token-wrong"),
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (403, "forbidden\n"));
    let (s, _) = ping(
        &client,
        &base,
        get.clone(),
        "/ping/nightly-export?key=nope",
        None,
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = ping(
        &client,
        &base,
        get.clone(),
        "/ping/no-such-job",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = ping(
        &client,
        &base,
        get.clone(),
        "/ping/nightly-export/256",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // The job runs: /start, then success with its output (the key in the query, as a
    // cron line may write it; HEAD works too).
    let (s, body) = ping(
        &client,
        &base,
        post.clone(),
        "/ping/nightly-export/start",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "OK\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = ping(
        &client,
        &base,
        post.clone(),
        &format!("/ping/nightly-export?key={TOKEN}"),
        None,
        Some(&format!("exported 812 customers; token {TOKEN} used\n")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = ping(
        &client,
        &base,
        reqwest::Method::HEAD,
        "/ping/nightly-export",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(check_incidents(dir.path(), state.path()).is_empty());

    // /metrics: the check's runs, with the /start-to-success duration.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Pre-registered at 0; the two successes counted once the evaluator judged them.
        if metrics.lines().any(|l| {
            l.starts_with("rooftop_probe_runs_total")
                && l.contains("probe=\"nightly-export\"")
                && l.contains("outcome=\"success\"")
                && l.ends_with(" 2")
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("probe=\"nightly-export\"") && l.contains("outcome=\"success\""))
        .collect();
    assert!(
        runs.iter()
            .any(|l| l.starts_with("rooftop_probe_runs_total")),
        "{metrics}"
    );
    // The /start → success duration (300 ms or more) is in the run-duration histogram.
    let count = metrics
        .lines()
        .find(|l| {
            l.starts_with("rooftop_probe_duration_seconds_count")
                && l.contains("probe=\"nightly-export\"")
        })
        .unwrap_or_else(|| panic!("no duration histogram for the check:\n{metrics}"));
    assert!(!count.ends_with(" 0"), "{count}");

    // The job stops pinging: the deadline (2 s) and grace (1 s) pass, an incident opens
    // and the e-mail page follows. Bounded generously: 3 s + one 10 s evaluation + delivery.
    let pages = smtp.wait_for_count(1, Duration::from_secs(25)).await;
    let page = subject_and_text(&pages[0]);
    assert!(page.starts_with("[P3] Toronto North Honda"), "{page}");
    assert!(page.contains("nightly-export"), "{page}");
    assert!(page.contains("no ping by"), "{page}");
    assert!(
        !page.contains(TOKEN),
        "the token is never in a page: {page}"
    );
    let open = check_incidents(dir.path(), state.path());
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["error_class"], "heartbeat_missed", "{open:#?}");
    assert_eq!(open[0]["state"], "open", "{open:#?}");

    // A ping resolves it (one success is enough for a heartbeat check). The job then keeps
    // pinging every 500 ms, so no later deadline can open it again while we look.
    let (s, _) = ping(
        &client,
        &base,
        get.clone(),
        "/ping/nightly-export/0",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (stop_job, mut stopped) = tokio::sync::watch::channel(false);
    let job = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let _ = client
                    .post(format!("{base}/ping/nightly-export"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await;
            }
        })
    };
    wait_for("the incident to resolve", Duration::from_secs(20), || {
        let all = check_incidents(dir.path(), state.path());
        (!all.is_empty() && all.iter().all(|i| i["state"] == "resolved")).then_some(())
    })
    .await;
    let _ = stop_job.send(true);
    job.await.unwrap();

    // `/fail` with the job's last words: open again at once (a new incident, or the same
    // one reopened: the tracker's call), and a page quoting them.
    let (s, _) = ping(
        &client,
        &base,
        post.clone(),
        "/ping/nightly-export/fail",
        Some(TOKEN),
        Some("ERROR: CRM refused the upload (HTTP 503)"),
    )
    .await;
    assert_eq!(s, 200);
    wait_for("an open incident again", Duration::from_secs(20), || {
        let all = check_incidents(dir.path(), state.path());
        all.iter().any(|i| i["state"] == "open").then_some(())
    })
    .await;
    // Three e-mails at least: the missed page, its resolve notice, the failure's page.
    let pages = smtp
        .wait_for_count(3, Duration::from_secs(20))
        .await
        .iter()
        .map(|p| subject_and_text(p))
        .collect::<Vec<_>>();
    assert!(
        pages
            .iter()
            .any(|p| p.contains("CRM refused the upload") && p.contains("reported failure")),
        "{pages:#?}"
    );

    // The job's output is masked wherever it went: the token it quoted is not in a page
    // or an incident.
    assert!(pages.iter().all(|p| !p.contains(TOKEN)), "{pages:#?}");
    let all = serde_json::to_string(&check_incidents(dir.path(), state.path())).unwrap();
    assert!(!all.contains(TOKEN), "{all}");

    // The evaluator stops on the agent's one stop signal, within the drain.
    let (out, _) = agent::sigterm(agent, Duration::from_secs(30)).await;
    assert!(out.contains("nightly-export"), "{out}");
}

/// `kill -HUP` the agent: `systemctl reload`.
fn reload(agent: &tokio::process::Child) {
    let pid = agent.id().expect("the agent is running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_checks() {
    let sb = paging::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("quiet", QUIET_PROBE.to_string())],
        "rooftop: {id: toronto-north}\n",
    );
    let port = tools::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[("ROOFTOP_SECRET_EXPORT_PING", TOKEN)],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let status = |client: reqwest::Client, base: String| async move {
        match client
            .post(format!("{base}/ping/nightly-export"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    };
    let wait_status = |want: u16| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                let got = status(client.clone(), base.clone()).await;
                if got == want {
                    return;
                }
                assert!(Instant::now() < until, "pings answer {got}, not {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Not a check yet.
    wait_status(404).await;
    // Added by a reload: pings are taken at once.
    std::fs::create_dir_all(dir.path().join("heartbeats")).unwrap();
    std::fs::write(
        dir.path().join("heartbeats/nightly-export.yaml"),
        CHECK.replace("every: 2s", "every: 1h"),
    )
    .unwrap();
    reload(&agent);
    wait_status(200).await;
    // Removed by the next: 404 again.
    std::fs::remove_file(dir.path().join("heartbeats/nightly-export.yaml")).unwrap();
    reload(&agent);
    wait_status(404).await;
    let (_, err) = agent::sigterm(agent, Duration::from_secs(30)).await;
    assert!(err.contains("1 added (nightly-export)"), "{err}");
    assert!(err.contains("1 removed (nightly-export)"), "{err}");
}
