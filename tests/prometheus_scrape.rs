//! A real Prometheus (Debian's, fetched by tests/tools/install) scrapes a running
//! `rooftop run` against the sandbox through an outage and its recovery; then every
//! PromQL expression of every dashboard panel (variables substituted) is executed through
//! the Prometheus HTTP API, and each must return data. The alert rules are loaded into
//! the same Prometheus and evaluated on the agent's real series.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/dashboards.rs"]
mod dashboards;
#[path = "common/tools.rs"]
mod tools;

use std::process::Stdio;
use std::time::Duration;

use rooftop::sandbox::{DownMode, Fault, FaultKind, Sandbox, SandboxConfig, System};
use tokio::process::Command;
use tools::Prometheus;

/// Panels that show only trouble this test cannot produce in a minute; each says why it
/// is empty here. Everything else must return data.
const EMPTY_HERE: &[(&str, &str)] = &[(
    "Agents silent",
    "a rooftop that reported in the last 24 h but not in the last 10 min: needs 10 minutes of silence",
)];

/// The bundled lead probe under another name and schedule; `expect_status` replaces the
/// first step's expected status (a wrong one makes a probe that always fails).
fn write_probe(dir: &std::path::Path, name: &str, every: &str, expect_status: u16) {
    let probe = agent::lead_probe(name, every, "{interval: 100ms, backoff: 1, within: 5s}")
        .replace(
            "expect: {status: 201,",
            &format!("expect: {{status: {expect_status},"),
        );
    std::fs::write(dir.join(format!("probes/{name}.yaml")), probe).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_scraped_agent() {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    write_probe(dir.path(), "lead-to-bdc-call-list", "2s", 201);
    write_probe(dir.path(), "lead-second", "3s", 201);
    // Failing throughout: the "failing now" panels have something to show at the end.
    write_probe(dir.path(), "lead-always-failing", "3s", 299);
    // Pages go to .eml files: the incident and notification panels have data.
    std::fs::write(
        dir.path().join("rooftop.yaml"),
        "rooftop: {id: scrape-test}\ntelemetry: {interval: 1s}\n\
         alerting:\n  contacts: [{name: Maria Lopez, email: maria@dealer.example}]\n\
         \x20 routes: {P2: [Maria Lopez]}\n  email: {from: rooftop@dealer.example, folder: pages}\n",
    )
    .unwrap();
    let port = tools::free_port();
    let agent = Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .envs(sb.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rules = std::fs::read_to_string("alerts/rooftop.rules.yaml").unwrap();
    let prom = Prometheus::start_with_files(
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s, external_labels: {{runbook_base_url: 'https://runbooks.example'}}}}\n\
             rule_files: [rooftop.rules.yaml]\n\
             scrape_configs:\n  - job_name: rooftop\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
        &[("rooftop.rules.yaml", &rules)],
    );

    // Healthy, then the CRM down (failures, HTTP 503, an outage), then healthy again
    // (recovery: MTTR).
    tokio::time::sleep(Duration::from_secs(12)).await;
    sb.set_faults(vec![Fault::new(FaultKind::ConnectorDown {
        system: System::Crm,
        mode: DownMode::Http503,
    })]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Acknowledge what opened (MTTA), then let it recover (MTTR).
    let open = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["incidents", "--open", "--json", "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    let ids: Vec<String> = open
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["probe"] != "lead-always-failing")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty(), "the outage opened incidents: {open:#}");
    for id in &ids {
        let ok = std::process::Command::new(env!("CARGO_BIN_EXE_rooftop"))
            .args(["ack", id, "--by", "test", "--config"])
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sb.set_faults(vec![]);
    tokio::time::sleep(Duration::from_secs(14)).await;

    let up = prom.query_vector("up{job=\"rooftop\"}");
    assert_eq!(up.len(), 1, "{}", prom.log());
    assert_eq!(up[0].1, 1.0, "the agent's /metrics is scraped");

    let mut empty = Vec::new();
    let mut checked = 0;
    for (file, title, expr) in dashboards::panel_queries() {
        if expr.is_empty() {
            continue;
        }
        let answer = prom.query(&expr);
        assert_eq!(
            answer["status"], "success",
            "{file} / {title}: {expr}\n{answer:#}"
        );
        checked += 1;
        let result = &answer["data"]["result"];
        let has_data = match result {
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Null => false,
            _ => true,
        };
        if !has_data && !EMPTY_HERE.iter().any(|(t, _)| *t == title) {
            empty.push(format!("{file} / {title}: {expr}"));
        }
    }
    assert!(checked >= 30, "only {checked} queries");
    assert!(
        empty.is_empty(),
        "panels without data:\n{}\n\n/metrics:\n{}",
        empty.join("\n"),
        String::from_utf8_lossy(&tools::http_request("GET", port, "/metrics", b"").unwrap().1)
    );

    // The rules load and evaluate on the real series; after the outage and recovery no
    // probe is failing.
    let (status, body) = prom.get("/api/v1/rules");
    assert_eq!(status, 200);
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    // Groups evaluate on their own interval: a rule may not have run yet ("unknown"),
    // but none may have failed.
    let rules_seen: Vec<&serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .collect();
    assert!(rules_seen.len() >= 9, "{rules:#}");
    assert!(rules_seen.iter().all(|r| r["health"] != "err"), "{rules:#}");
    let failing = prom.query_vector("rooftop_probe_failing{probe=\"lead-to-bdc-call-list\"}");
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].1, 0.0, "recovered");
    let recovered =
        prom.query_vector("rooftop_probe_recovery_seconds_count{probe=\"lead-to-bdc-call-list\"}");
    assert!(
        recovered.first().is_some_and(|(_, v)| *v >= 1.0),
        "{recovered:?}"
    );

    agent::sigterm(agent, Duration::from_secs(40)).await;
}
