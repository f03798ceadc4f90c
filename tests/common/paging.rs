//! What the paging tests share: a config directory with the bundled lead probe made fast,
//! the agent started on it, `rooftop incidents` read back, and received e-mails parsed by
//! Python's `email` package. Needs `#[path = "common/tools.rs"] mod tools;` beside it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;

use rooftop::sandbox::{DownMode, Fault, FaultKind, Sandbox, SandboxConfig, System};
use tokio::process::{Child, Command};

use crate::tools;

/// Subject line, then the plain-text part, of a received message.
pub fn subject_and_text(eml: &str) -> String {
    let out = std::process::Command::new(tools::python())
        .arg("-c")
        .arg(
            "import email, email.policy, sys\n\
             m = email.message_from_string(sys.stdin.read(), policy=email.policy.default)\n\
             print(m['subject'])\n\
             print(m.get_body(('plain',)).get_content())",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(eml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The `Acknowledge: <link>` of a received page.
pub fn ack_link(eml: &str) -> String {
    subject_and_text(eml)
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge: "))
        .expect("an ack link in the page")
        .to_string()
}

/// Submits the confirm page's form behind an ack link, as a person would.
pub async fn ack_by(http: &reqwest::Client, link: &str, by: &str) -> reqwest::Response {
    http.post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("by={}", by.replace(' ', "+")))
        .send()
        .await
        .unwrap()
}

/// The sandbox dealership with every system answering in 50 ms.
pub async fn sandbox() -> Sandbox {
    Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(std::time::Duration::from_millis(50)),
    )
    .await
    .unwrap()
}

/// Serves a provider stand-in (Twilio, a webhook receiver) on 127.0.0.1; its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The CRM answers 503 to everything.
pub fn crm_down() -> Vec<Fault> {
    vec![Fault::new(FaultKind::ConnectorDown {
        system: System::Crm,
        mode: DownMode::Http503,
    })]
}

/// The bundled lead probe, every second, with fast polls; with `runbooks` false its
/// runbook references are dropped (the config dir then needs no runbooks/).
pub fn lead_probe(name: &str, runbooks: bool) -> String {
    let bundled = std::fs::read_to_string("probes/lead-to-bdc-call-list.yaml").unwrap();
    let mut probe = bundled
        .replace("schedule: {every: 30m}", "schedule: {every: 1s}")
        .replace(
            "poll: {interval: 1s, backoff: 1.5, max_interval: 30s, within: 15m}",
            "poll: {interval: 50ms, backoff: 1, within: 5s}",
        )
        .replace("name: lead-to-bdc-call-list", &format!("name: {name}"));
    if !runbooks {
        probe = probe
            .replace("runbook: runbooks/lead-not-on-bdc-list.md\n", "")
            .replace("    runbook: runbooks/connector-down.md\n", "");
    }
    assert!(probe.contains("every: 1s") && probe.contains(&format!("name: {name}")));
    probe
}

/// A config directory: `probes/<name>.yaml` per probe text and `rooftop.yaml`.
pub fn write_config(dir: &Path, probes: &[(&str, String)], rooftop_yaml: &str) {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    for (name, text) in probes {
        std::fs::write(dir.join(format!("probes/{name}.yaml")), text).unwrap();
    }
    std::fs::write(dir.join("rooftop.yaml"), rooftop_yaml).unwrap();
}

/// `rooftop run` on `dir` against the sandbox, output piped.
pub fn spawn_agent(
    sb: &Sandbox,
    dir: &Path,
    state: &Path,
    listen: &str,
    env: &[(&str, &str)],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["run", "--listen", listen, "--config"])
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .envs(sb.env())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A failing test must not leave an agent running.
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `rooftop incidents [args]` on `dir`: its stdout.
pub fn incidents(dir: &Path, state: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .arg("incidents")
        .args(args)
        .arg("--config")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rooftop incidents: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `rooftop incidents --json`, parsed.
pub fn incidents_json(dir: &Path, state: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&incidents(dir, state, &["--json"]))
        .unwrap_or_default()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A PagerDuty Events API v2 stand-in on 127.0.0.1:`port`: every event it accepted.
pub async fn serve_pagerduty(
    port: u16,
) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    use axum::routing::post;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let recorded = events.clone();
    let app = axum::Router::new().route(
        "/v2/enqueue",
        post(move |body: String| {
            let recorded = recorded.clone();
            async move {
                let event = serde_json::from_str(&body).expect("an event is JSON");
                recorded.lock().unwrap().push(event);
                (
                    axum::http::StatusCode::ACCEPTED,
                    r#"{"status":"success","message":"Event processed"}"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    events
}
