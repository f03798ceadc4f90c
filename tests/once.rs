//! `rooftop once` as a user runs it: the real binary against the sandbox dealership on
//! 127.0.0.1. Latency intervals must contain the sandbox's ground truth, a canary secret
//! must never appear in any output or in the state directory, and a run killed with
//! SIGKILL must leave nothing behind once rooftop starts again.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rooftop::sandbox::{Fault, FaultKind, JobName, Sandbox, SandboxConfig};
use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rooftop");

async fn sandbox(latency_ms: u64, config: SandboxConfig) -> Sandbox {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Sandbox::start(
        addr,
        config.with_fixed_latency(Duration::from_millis(latency_ms)),
    )
    .await
    .unwrap()
}

fn rooftop(sb: &Sandbox, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("ROOFTOP_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in sb.env() {
        c.env(k, v);
    }
    c
}

/// `rooftop once PROBE --config CONFIG --json`, which must exit 0 with a successful run.
async fn once_json_success(sb: &Sandbox, state: &Path, probe: &str, config: &str) -> Value {
    let out = rooftop(sb, state, &["once", probe, "--config", config, "--json"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["outcome"], "success", "{run:#}");
    run
}

fn truth_latency_ms(sb: &Sandbox, kind: &str, source_id: &str) -> f64 {
    let t = serde_json::to_value(sb.truth()).unwrap();
    t.as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["source_id"] == source_id)
        .unwrap_or_else(|| panic!("no {kind} truth for {source_id}: {t:#}"))["latency_ms"]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_reports_latency_intervals_containing_the_true_delay() {
    let sb = sandbox(700, SandboxConfig::default()).await;
    let state = tempfile::tempdir().unwrap();
    let run = once_json_success(&sb, state.path(), "appointment-to-ro-to-survey", ".").await;
    assert_eq!(run["cleanup"]["outcome"], "success");
    assert_eq!(run["trace_id"].as_str().unwrap().len(), 32);

    let steps = run["steps"].as_array().unwrap();
    let step = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap().clone();
    let appointment = step("book-appointment")["captures"]["appointment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ro = step("ro-in-dms")["captures"]["ro_number"]
        .as_str()
        .unwrap()
        .to_string();

    for (step_name, kind, source) in [
        ("ro-in-dms", "repair_order", &appointment),
        ("survey-triggered", "survey", &ro),
    ] {
        let sync = &step(step_name)["sync"];
        let (lo, hi) = (
            sync["lower_ms"].as_f64().unwrap(),
            sync["upper_ms"].as_f64().unwrap(),
        );
        let truth = truth_latency_ms(&sb, kind, source);
        assert!(
            lo <= truth + 1.0 && truth <= hi + 1.0,
            "{step_name}: truth {truth} ms not in [{lo}, {hi}]"
        );
        assert!(sync["polls"].as_u64().unwrap() >= 1);
        assert!((lo..=hi).contains(&sync["estimate_ms"].as_f64().unwrap()));
    }
    // The downstream RO carries its own timestamp: that measurement is reported too.
    assert!(step("ro-in-dms")["sync"]["downstream_ms"].is_number());
    assert!(sb.leftovers().is_empty(), "leftovers: {:?}", sb.leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_table_and_exit_code_on_a_failed_run() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    sb.set_faults(vec![Fault::new(FaultKind::AuthRejected {
        system: rooftop::sandbox::System::Crm,
    })]);
    let state = tempfile::tempdir().unwrap();
    let out = rooftop(
        &sb,
        state.path(),
        &["once", "lead-to-bdc-call-list", "--config", "."],
    )
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("result: error at step submit-lead [auth]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runbook: runbooks/connector-down.md"),
        "{stdout}"
    );
    let bad = rooftop(
        &sb,
        state.path(),
        &["once", "lead-to-bdc-cal-list", "--config", "."],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean `lead-to-bdc-call-list`?"));
}

const CANARY: &str = "canary-4f1d9e7b2a-do-not-print";

/// A config directory with the bundled runbooks and a probe that uses the secret in a
/// header, a URL and a body, including against a port that refuses connections.
fn canary_config(refused_port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    let probe = format!(
        r#"
name: canary
steps:
  - name: book
    request:
      method: POST
      url: "{{{{ env.CRM_URL }}}}/api/appointments?token={{{{ secret.crm_token }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}", X-Echo: "{{{{ secret.crm_token }}}}"}}
      json: {{customer: "{{{{ synthetic.customer() }}}} {{{{ secret.crm_token }}}}", vin: "{{{{ synthetic.vin() }}}}", phone: "x", email: "y", service: oil}}
    expect: {{status: 201}}
    capture: {{appointment_id: "$.id"}}
    creates: {{cleanup: delete}}
  - name: read-back
    request:
      url: "{{{{ env.CRM_URL }}}}/api/appointments/{{{{ appointment_id }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
    expect: {{status: 200, json: {{"$.customer": {{contains: "{{{{ secret.crm_token }}}}"}}}}}}
    capture: {{token_echo: {{regex: "(canary-[a-z0-9-]+)"}}}}
  - name: refused
    request:
      url: "http://127.0.0.1:{refused_port}/x?token={{{{ secret.crm_token }}}}"
cleanup:
  - name: delete
    request:
      method: DELETE
      url: "{{{{ env.CRM_URL }}}}/api/appointments/{{{{ appointment_id }}}}?token={{{{ secret.crm_token }}}}"
      headers: {{Authorization: "Bearer {{{{ secret.crm_token }}}}"}}
"#
    );
    std::fs::write(dir.path().join("probes/canary.yaml"), probe).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_never_appears_in_any_output_or_state() {
    let mut config = SandboxConfig::default();
    config.tokens.crm = CANARY.to_string();
    let sb = sandbox(100, config).await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = refused.local_addr().unwrap().port();
    drop(refused);
    let cfg = canary_config(refused_port);
    let state = tempfile::tempdir().unwrap();
    let cfg_path = cfg.path().to_str().unwrap();
    let mut outputs = Vec::new();
    for args in [
        vec!["once", "canary", "--config", cfg_path, "--json"],
        vec!["once", "canary", "--config", cfg_path],
        vec!["check", "--config", cfg_path],
        vec!["cleanup", "--config", cfg_path],
    ] {
        let out = rooftop(&sb, state.path(), &args).output().await.unwrap();
        outputs.push((args.join(" "), out));
    }
    // The run really used the secret (the sandbox accepted it) and failed at the refused port.
    let run: Value = serde_json::from_slice(&outputs[0].1.stdout).unwrap();
    assert_eq!(run["failed_step"], "refused", "{run:#}");
    assert_eq!(run["error_class"], "connect", "{run:#}");
    assert_eq!(run["steps"][1]["captures"]["token_echo"], "***", "{run:#}");
    for (what, out) in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(CANARY),
                "`{what}` printed the secret:\n{text}"
            );
        }
    }
    assert!(String::from_utf8_lossy(&outputs[0].1.stdout).contains("***"));
    for entry in std::fs::read_dir(state.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "the state directory holds the secret"
        );
    }
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
}

async fn wait_for_leftovers(sb: &Sandbox) {
    for _ in 0..200 {
        if !sb.leftovers().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the probe never created its appointment");
}

/// Starts a run that will sit polling (the RO job is stalled), kills it with SIGKILL once
/// the appointment exists, and returns the state directory holding its ledger.
async fn killed_run(sb: &Sandbox) -> tempfile::TempDir {
    sb.set_faults(vec![Fault::new(FaultKind::JobStalled {
        job: JobName::AppointmentToRo,
    })]);
    let state = tempfile::tempdir().unwrap();
    let mut child = rooftop(sb, state.path(), &["once", "vin-identity", "--config", "."])
        .spawn()
        .unwrap();
    wait_for_leftovers(sb).await;
    // The ledger commit happens before the next step starts polling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert!(!sb.leftovers().is_empty());
    sb.set_faults(Vec::new());
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_cleaned_up_by_rooftop_cleanup() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    let state = killed_run(&sb).await;
    let out = rooftop(&sb, state.path(), &["cleanup", "--config", "."])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("deleted  vin-identity / delete-appointments"),
        "{stdout}"
    );
    // The stalled job's backlog was released when the fault cleared; a deleted source
    // must not propagate, and the sweeps found whatever did.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
    let again = rooftop(&sb, state.path(), &["cleanup", "--config", "."])
        .output()
        .await
        .unwrap();
    // Nothing left to delete; a sweep that found nothing after the kill waits for its
    // re-sweep (docs/cleanup.md), listed as `later`, not retried early.
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again
            .lines()
            .all(|l| l.starts_with("later ") || l.contains("ledger is empty")),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_cleaned_up_on_the_next_start() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    let state = killed_run(&sb).await;
    let out = rooftop(
        &sb,
        state.path(),
        &["once", "vin-identity", "--config", "."],
    )
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("cleaned up a leftover"), "{stderr}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
}

/// Slows the CRM, starts `rooftop once PROBE` and kills it with SIGKILL while its create
/// request is in flight.
async fn kill_during_a_slow_create(sb: &Sandbox, state: &Path, probe: &str, config: &str) {
    sb.set_faults(vec![Fault::new(FaultKind::Slow {
        system: rooftop::sandbox::System::Crm,
        delay: Duration::from_secs(2),
    })]);
    let mut child = rooftop(sb, state, &["once", probe, "--config", config])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// Regression: a run killed while its create request was in flight left no ledger entry,
/// so nobody would ever look for that record. The entry is now written (pending) before
/// the request is sent. The bundled probe sweeps by its synthetic e-mail, so the lead is
/// deleted even though its id never came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_create_request_is_cleaned_up_by_its_sweep() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    let state = tempfile::tempdir().unwrap();
    kill_during_a_slow_create(&sb, state.path(), "lead-to-bdc-call-list", ".").await;
    // The slowed create still lands after rooftop died (the sandbox makes what it received
    // before it answers late): wait until the lead exists. This test used to pass without
    // the lead ever existing (the sweep found nothing and said "deleted").
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sb.leftovers().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!sb.leftovers().is_empty(), "the slowed create never landed");
    sb.set_faults(Vec::new());
    let out = rooftop(&sb, state.path(), &["cleanup", "--config", "."])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("deleted  lead-to-bdc-call-list / delete-leads"),
        "{stdout}"
    );
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
}

/// The same kill with a cleanup that needs the id: rooftop cannot delete what it cannot
/// name, so `rooftop cleanup` says exactly that (once) instead of pretending or retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknowable_id_is_reported_once_by_cleanup() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    let cfg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cfg.path().join("probes")).unwrap();
    std::fs::write(
        cfg.path().join("probes/by-id.yaml"),
        r#"
name: by-id
steps:
  - name: submit-lead
    request:
      method: POST
      url: "{{ env.CRM_URL }}/api/leads"
      headers: {Authorization: "Bearer {{ secret.crm_token }}"}
      json: {name: "{{ synthetic.customer() }}", email: "{{ synthetic.email() }}", phone: "x", source: web}
    capture: {lead_id: "$.id"}
    creates: {cleanup: delete-lead}
cleanup:
  - name: delete-lead
    request:
      method: DELETE
      url: "{{ env.CRM_URL }}/api/leads/{{ lead_id }}"
      headers: {Authorization: "Bearer {{ secret.crm_token }}"}
"#,
    )
    .unwrap();
    let cfg_path = cfg.path().to_str().unwrap();
    let state = tempfile::tempdir().unwrap();
    kill_during_a_slow_create(&sb, state.path(), "by-id", cfg_path).await;
    sb.set_faults(Vec::new());
    let out = rooftop(&sb, state.path(), &["cleanup", "--config", cfg_path])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("by-id / delete-lead") && stdout.contains("`lead_id` was never captured"),
        "{stdout}"
    );
    let again = rooftop(&sb, state.path(), &["cleanup", "--config", cfg_path])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("ledger is empty"));
}

/// Regression: replaying the ledger while another rooftop process was mid-run deleted
/// that run's records under it (an overlapping timer, a demo). Entries of a live run are
/// now left alone; once its process is gone they are fair game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_leaves_a_live_runs_records_alone() {
    let sb = sandbox(100, SandboxConfig::default()).await;
    sb.set_faults(vec![Fault::new(FaultKind::JobStalled {
        job: JobName::AppointmentToRo,
    })]);
    let state = tempfile::tempdir().unwrap();
    let mut child = rooftop(
        &sb,
        state.path(),
        &["once", "vin-identity", "--config", "."],
    )
    .spawn()
    .unwrap();
    wait_for_leftovers(&sb).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = rooftop(&sb, state.path(), &["cleanup", "--config", "."])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("belong to a run still in progress"),
        "{stdout}"
    );
    assert!(
        !sb.leftovers().is_empty(),
        "the live run's appointment was deleted under it"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    sb.set_faults(Vec::new());
    let out = rooftop(&sb, state.path(), &["cleanup", "--config", "."])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sb.leftovers().is_empty(), "{:?}", sb.leftovers());
}

/// Regression: with `timeout: 20s`, `poll: {interval: 200ms, within: 15s}` and the
/// default 30 s request timeout, the poll's cap (probe deadline − request timeout) lay in
/// the past and every run ended after one poll as `sync_timeout … before the probe
/// timeout (1 polls)`. The cap now keeps a reserve of at most a quarter of the time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_probe_timeout_under_the_request_timeout_still_polls_and_measures_its_sync() {
    let sb = sandbox(1500, SandboxConfig::default()).await;
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir_all(dir.path().join("probes")).unwrap();
    let probe = std::fs::read_to_string("probes/lead-to-bdc-call-list.yaml")
        .unwrap()
        .replace("timeout: 20m", "timeout: 20s")
        .replace(
            "poll: {interval: 1s, backoff: 1.5, max_interval: 30s, within: 15m}",
            "poll: {interval: 200ms, within: 15s}",
        )
        .replace("runbook: runbooks/lead-not-on-bdc-list.md\n", "")
        .replace("    runbook: runbooks/connector-down.md\n", "");
    assert!(probe.contains("timeout: 20s") && probe.contains("within: 15s"));
    std::fs::write(dir.path().join("probes/lead.yaml"), probe).unwrap();
    let config = dir.path().to_str().unwrap();
    let run = once_json_success(&sb, state.path(), "lead-to-bdc-call-list", config).await;
    let step = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "on-bdc-call-list")
        .unwrap();
    // A 1.5 s sync polled every 200 ms: several polls, and the true delay in the interval.
    assert!(step["sync"]["polls"].as_u64().unwrap() >= 3, "{step:#}");
    let lead = run["steps"][0]["captures"]["lead_id"].as_str().unwrap();
    let truth = truth_latency_ms(&sb, "bdc_entry", lead);
    let (lo, hi) = (
        step["sync"]["lower_ms"].as_f64().unwrap(),
        step["sync"]["upper_ms"].as_f64().unwrap(),
    );
    assert!(
        lo <= truth + 1.0 && truth <= hi + 1.0,
        "truth {truth} ms not in [{lo}, {hi}]"
    );
}
