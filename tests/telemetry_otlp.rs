//! `rooftop run` exports metrics, traces and logs over OTLP to a receiver built on the
//! official OpenTelemetry protos (tests/tools/otlp_receiver.py), over HTTP/protobuf and
//! over gRPC, and serves the same metrics as Prometheus text on `/metrics`. Span ids
//! match the `traceparent` headers the sandbox received.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use rooftop::sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use tokio::process::Command;
use tools::{OtlpReceiver, otlp_log_records, otlp_metrics, otlp_spans};

/// The bundled lead probe on a 2 s schedule with fast polls, and a rooftop.yaml that
/// exports to `endpoint` with `protocol`.
fn write_config(dir: &std::path::Path, endpoint: &str, protocol: &str) {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    let probe = std::fs::read_to_string("probes/lead-to-bdc-call-list.yaml")
        .unwrap()
        .replace("schedule: {every: 30m}", "schedule: {every: 2s}")
        .replace("runbook: runbooks/lead-not-on-bdc-list.md\n", "")
        .replace("    runbook: runbooks/connector-down.md\n", "")
        .replace(
            "poll: {interval: 1s, backoff: 1.5, max_interval: 30s, within: 15m}",
            "poll: {interval: 100ms, backoff: 1, within: 10s}",
        );
    std::fs::write(dir.join("probes/lead.yaml"), probe).unwrap();
    std::fs::write(
        dir.join("rooftop.yaml"),
        format!(
            "rooftop: {{id: test-rooftop, name: Test Motors, dealer_group: test-group}}\n\
             telemetry:\n  interval: 1s\n  otlp: {{endpoint: \"{endpoint}\", protocol: {protocol}, headers: {{x-rooftop-test: \"{{{{ env.TEST_HEADER }}}}\"}}}}\n"
        ),
    )
    .unwrap();
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn attr_str(attrs: &Value, key: &str) -> Option<String> {
    attr(attrs, key).and_then(|v| v["string_value"].as_str().map(str::to_string))
}

/// Runs the agent for a few seconds against the sandbox with export to `receiver`, then
/// checks what arrived. Returns the agent's stderr.
async fn run_and_check(protocol: &str) {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    let receiver = OtlpReceiver::start(0);
    let endpoint = if protocol == "grpc" {
        receiver.grpc_endpoint()
    } else {
        receiver.http_endpoint()
    };
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write_config(dir.path(), &endpoint, protocol);
    let port = tools::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rooftop"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .envs(sb.env())
        .env("TEST_HEADER", "header-from-env")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(6500)).await;

    // The scrape endpoint, while the agent runs.
    let (status, body) = tools::http_request("GET", port, "/metrics", b"").unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{text}");
    for needle in [
        "# TYPE rooftop_probe_runs_total counter",
        "rooftop_probe_runs_total{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",outcome=\"success\",probe=\"lead-to-bdc-call-list\",rooftop=\"test-rooftop\"}",
        "# TYPE rooftop_sync_latency_seconds histogram",
        "rooftop_sync_latency_seconds_bucket{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",probe=\"lead-to-bdc-call-list\",rooftop=\"test-rooftop\",step=\"on-bdc-call-list\",le=\"3600\"}",
        "rooftop_step_runs_total{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",http_response_status_code=\"201\"",
        "rooftop_agent_info{rooftop=\"test-rooftop\",version=",
        "rooftop_scheduler_lag_seconds_count{rooftop=\"test-rooftop\"}",
        "rooftop_probe_failing{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",probe=\"lead-to-bdc-call-list\",rooftop=\"test-rooftop\"} 0",
        "target_info{",
        "rooftop_exporter_queue{rooftop=\"test-rooftop\",signal=\"traces\"}",
        "rooftop_exporter_dropped_total{rooftop=\"test-rooftop\",signal=\"traces\"} 0",
        // Counters start at 0 so rate() sees the first failure.
        "rooftop_cleanup_runs_total{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",outcome=\"failed\",probe=\"lead-to-bdc-call-list\",rooftop=\"test-rooftop\"} 0",
        "rooftop_scheduler_skipped_runs_total{probe=\"lead-to-bdc-call-list\",reason=\"overlap\",rooftop=\"test-rooftop\"} 0",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }

    let (out, err) = agent::sigterm(child, Duration::from_secs(40)).await;
    let runs = out.lines().filter(|l| l.contains(" success ")).count();
    assert!(runs >= 2, "{out}\n{err}");
    assert!(
        !err.contains("failing"),
        "no export failures expected: {err}"
    );

    let requests = receiver.requests();
    let transports: BTreeSet<&str> = requests
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    let expected = if protocol == "grpc" { "grpc" } else { "http" };
    assert_eq!(transports, BTreeSet::from([expected]), "{protocol}");

    // Metrics: the last export holds the cumulative totals.
    let metric_requests: Vec<&Value> = requests
        .iter()
        .filter(|r| r["signal"] == "metrics")
        .map(|r| &r["request"])
        .collect();
    let last = metric_requests.last().expect("metrics arrived");
    let resource = &last["resource_metrics"][0]["resource"]["attributes"];
    assert_eq!(
        attr_str(resource, "service.name").as_deref(),
        Some("rooftop")
    );
    assert_eq!(
        attr_str(resource, "rooftop.id").as_deref(),
        Some("test-rooftop")
    );
    assert_eq!(
        attr_str(resource, "rooftop.dealer_group").as_deref(),
        Some("test-group")
    );
    assert!(attr_str(resource, "service.instance.id").is_some());
    assert!(attr_str(resource, "host.name").is_some());
    let metrics = otlp_metrics(last);
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {metrics:#?}"))
    };
    let runs_metric = find("rooftop.probe.runs");
    assert_eq!(runs_metric["unit"], "{run}");
    assert_eq!(
        runs_metric["sum"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(runs_metric["sum"]["is_monotonic"], true);
    let exported_runs: u64 = runs_metric["sum"]["data_points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| attr_str(&p["attributes"], "outcome").as_deref() == Some("success"))
        .map(|p| p["as_int"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        exported_runs >= 1 && exported_runs <= runs as u64,
        "{exported_runs} vs {runs}"
    );
    let sync = find("rooftop.sync.latency");
    assert_eq!(sync["unit"], "s");
    let point = &sync["histogram"]["data_points"][0];
    assert_eq!(
        attr_str(&point["attributes"], "step").as_deref(),
        Some("on-bdc-call-list")
    );
    assert!(point["count"].as_str().unwrap().parse::<u64>().unwrap() >= 1);
    let bounds: Vec<f64> = point["explicit_bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert!(
        bounds.contains(&0.5) && bounds.contains(&14400.0),
        "{bounds:?}"
    );
    for (name, unit) in [
        ("rooftop.probe.duration", "s"),
        ("rooftop.step.duration", "s"),
        ("rooftop.sync.interval_width", "s"),
        ("rooftop.sync.polls", "{poll}"),
        ("rooftop.cleanup.runs", "{cleanup}"),
        ("rooftop.scheduler.lag", "s"),
        ("rooftop.probe.failing", "{probe}"),
        ("rooftop.store.size", "By"),
        ("rooftop.agent.info", ""),
    ] {
        assert_eq!(find(name)["unit"].as_str().unwrap_or(""), unit, "{name}");
    }

    // Traces: one root per run, a span per step, a client span per request whose span id
    // is the parent id in the traceparent the sandbox saw.
    let spans: Vec<Value> = requests
        .iter()
        .filter(|r| r["signal"] == "traces")
        .flat_map(|r| otlp_spans(&r["request"]))
        .collect();
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "probe lead-to-bdc-call-list")
        .collect();
    assert!(roots.len() >= 2, "{} roots", roots.len());
    let seen: BTreeSet<(String, String)> = sb
        .traceparents()
        .iter()
        .filter_map(|tp| {
            let parts: Vec<&str> = tp.split('-').collect();
            (parts.len() == 4).then(|| (parts[1].to_string(), parts[2].to_string()))
        })
        .collect();
    let client: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_CLIENT")
        .collect();
    assert!(!client.is_empty());
    for c in &client {
        let key = (
            c["trace_id"].as_str().unwrap().to_string(),
            c["span_id"].as_str().unwrap().to_string(),
        );
        assert!(
            seen.contains(&key),
            "client span {key:?} was not a traceparent the sandbox saw"
        );
        assert!(attr(&c["attributes"], "http.request.method").is_some());
        assert!(attr(&c["attributes"], "url.full").is_some());
    }
    let root = roots[0];
    let trace = root["trace_id"].as_str().unwrap();
    let steps: Vec<&Value> = spans
        .iter()
        .filter(|s| s["trace_id"] == trace && s["parent_span_id"] == root["span_id"])
        .collect();
    let step_names: BTreeSet<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(step_names.contains("step submit-lead"), "{step_names:?}");
    assert!(
        step_names.contains("step on-bdc-call-list"),
        "{step_names:?}"
    );
    let poll_step = steps
        .iter()
        .find(|s| s["name"] == "step on-bdc-call-list")
        .unwrap();
    let polls = spans
        .iter()
        .filter(|s| s["parent_span_id"] == poll_step["span_id"])
        .count();
    assert!(polls >= 1, "one client span per poll");

    // Logs: a structured event per finished run, tied to the run's trace.
    let logs: Vec<Value> = requests
        .iter()
        .filter(|r| r["signal"] == "logs")
        .flat_map(|r| otlp_log_records(&r["request"]))
        .collect();
    let finished: Vec<&Value> = logs
        .iter()
        .filter(|l| l["event_name"] == "rooftop.run.finished")
        .collect();
    assert!(finished.len() >= 2, "{logs:#?}");
    assert!(finished.iter().any(|l| l["trace_id"] == trace));
    assert_eq!(
        attr_str(&finished[0]["attributes"], "outcome").as_deref(),
        Some("success")
    );
    assert_eq!(finished[0]["severity_text"], "INFO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_carries_metrics_traces_and_logs() {
    run_and_check("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_carries_metrics_traces_and_logs() {
    run_and_check("grpc").await;
}

/// A collector that refuses the first exports, then one that is not there at all:
/// probing goes on, each failing signal is reported once (not once per batch), and its
/// recovery once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_outage_is_reported_once_and_never_stops_probing() {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig::default().with_fixed_latency(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    // The HTTP exporter retries a refused export 3 times: 16 refusals make at least
    // four exports fail outright before the collector "comes back".
    let refusing = OtlpReceiver::start(16);
    let nobody = format!("http://127.0.0.1:{}", tools::free_port());
    for (endpoint, recovers) in [(refusing.http_endpoint(), true), (nobody, false)] {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write_config(dir.path(), &endpoint, "http/protobuf");
        let child = Command::new(env!("CARGO_BIN_EXE_rooftop"))
            .args(["run", "--listen", "off", "--config"])
            .arg(dir.path())
            .arg("--state-dir")
            .arg(state.path())
            .envs(sb.env())
            .env("TEST_HEADER", "x")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10_000)).await;
        // Stops even with the collector down.
        let (out, err) = agent::sigterm(child, Duration::from_secs(40)).await;
        let runs = out.lines().filter(|l| l.contains(" success ")).count();
        assert!(
            runs >= 3,
            "probing goes on while export fails:\n{out}\n{err}"
        );
        for signal in ["metrics", "traces", "logs"] {
            let failing = err
                .lines()
                .filter(|l| l.contains(&format!("OTLP {signal} export")) && l.contains("failing"))
                .count();
            assert!(failing <= 1, "{signal} reported {failing} times:\n{err}");
        }
        let failing_total = err.lines().filter(|l| l.contains("failing")).count();
        assert!(failing_total >= 1, "the outage is reported:\n{err}");
        if recovers {
            assert!(err.contains("recovered after"), "{err}");
        }
    }
}
