//! Every bundled probe (`probes/*.yaml`) run by the real runner against the in-process
//! sandbox dealership (`rooftop::sandbox`), healthy and under each fault the sandbox can
//! inject. For every case we assert what rooftop reports (outcome, error class, failed
//! step), and that rooftop leaves no litter: no synthetic record survives the run
//! (`Sandbox::leftovers`) and nothing stays pending in the cleanup ledger.
//!
//! Per probe (one `#[tokio::test]` each, with its own sandbox and state dir; the cases
//! of one probe run in order, faults cleared in between):
//! 1. healthy: success, cleanup success, and every sync step's `[lower_ms, upper_ms]`
//!    contains the sandbox's ground-truth latency for the record it found;
//! 2. faults on the system of the FIRST step (connector down: refuse / 503, slow beyond
//!    the request timeout, a 100% error burst, auth rejected) fail that step with
//!    connect / http_5xx / timeout / http_5xx / auth;
//! 3. the sync job the probe waits on first, stalled: sync_timeout at that polled step;
//! 4. auth rejected / malformed JSON on the system of the first POLLED step: auth /
//!    invalid_json at that step (when that system is also the first step's, the fault is
//!    armed only once the first step has finished, so it is the polled step that meets it);
//! 5. probe-specific faults: duplicate DMS customer (vin-identity), note and survey jobs
//!    stalled (service-note-to-ro, appointment-to-ro-to-survey).
//!
//! Litter rule. After each run we wait for propagation to settle (and for a slowed
//! request to finish server-side), then, with the fault still active:
//! - `Litter::None` cases: the sandbox must hold no synthetic record created by the case;
//! - `Litter::Blocked` cases (the fault also hits a system the cleanup must delete from,
//!   e.g. DMS rejecting rooftop's token): rooftop cannot delete there, so records may
//!   remain, but then the run must say so (`cleanup.outcome == failed`), and once the
//!   fault clears, replaying the ledger (what `rooftop cleanup` does) must remove them;
//! - `Litter::Unanswered` cases (the create request timed out): whether the record exists
//!   is unknowable, so the run's cleanup must report failure (an id never captured is
//!   named as such) rather than success.
//!
//! In every case the ledger must end up empty and no new leftover may remain.
//!
//! Waits are compressed (`Probe::compress`) and cleanup retries turned off so that the
//! whole file runs in well under a minute.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rooftop::clock::SystemClock;
use rooftop::model::{Compression, Probe};
use rooftop::runner::http::{HttpClient, HttpSettings};
use rooftop::runner::{
    CleanupOutcome, ErrorClass, Outcome, ProbeRun, Progress, ProgressFn, Runner,
};
use rooftop::sandbox::{
    DownMode, Fault, FaultKind, JobName, Leftover, Sandbox, SandboxConfig, System,
};
use tempfile::TempDir;

/// Fixed latency of every sandbox sync job.
const JOB_LATENCY: Duration = Duration::from_millis(150);
/// Time given to in-flight propagation before leftovers are checked.
const SETTLE: Duration = Duration::from_millis(300);
/// Delay of the `slow` fault: well past the compressed 1 s request timeout.
const SLOW: Duration = Duration::from_secs(3);
/// Float rounding allowed when comparing ground truth with the reported interval.
const ROUNDING_MS: f64 = 1.0;

const COMPRESSION: Compression = Compression {
    within: Duration::from_secs(1),
    interval: Duration::from_millis(100),
    request_timeout: Duration::from_secs(1),
    timeout: Duration::from_secs(30),
};

// ---------------------------------------------------------------------------------------
// The case tables
// ---------------------------------------------------------------------------------------

/// One run of a probe under a set of faults.
struct Case {
    name: String,
    faults: Vec<Fault>,
    /// Arm the faults only when this step has finished (default: before the run).
    arm_after: Option<&'static str>,
    expect: Expect,
    litter: Litter,
}

enum Expect {
    /// Success, cleanup success, and each listed sync step checked against ground truth.
    Success(Vec<SyncTruth>),
    Fails {
        outcome: Outcome,
        class: ErrorClass,
        step: &'static str,
    },
}

/// See the module docs.
#[derive(Clone, Copy, PartialEq)]
enum Litter {
    None,
    Blocked,
    /// The create request was sent and never answered (a timeout): rooftop cannot know
    /// whether the record exists, so its cleanup must not claim success.
    Unanswered,
}

/// Which ground-truth record a sync step found.
struct SyncTruth {
    step: &'static str,
    /// `TruthRecord::kind`.
    kind: &'static str,
    key: TruthKey,
}

enum TruthKey {
    /// The record's `source_id` is this capture (of any step).
    SourceId(&'static str),
    /// The record's `id` is this capture.
    Id(&'static str),
    /// The record's `id` is the last path segment of the step's own request URL.
    IdFromUrl,
}

fn fault(kind: FaultKind) -> Fault {
    Fault::new(kind)
}

fn fails(outcome: Outcome, class: ErrorClass, step: &'static str) -> Expect {
    Expect::Fails {
        outcome,
        class,
        step,
    }
}

fn case(name: impl Into<String>, faults: Vec<Fault>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        faults,
        arm_after: None,
        expect,
        litter: Litter::None,
    }
}

impl Case {
    fn armed_after(mut self, step: &'static str) -> Case {
        self.arm_after = Some(step);
        self.name = format!("{} after {step}", self.name);
        self
    }

    fn litter(mut self, litter: Litter) -> Case {
        self.litter = litter;
        self
    }
}

fn healthy(syncs: Vec<SyncTruth>) -> Case {
    case("healthy", vec![], Expect::Success(syncs))
}

/// Case 2: every way the system of the probe's first step can fail that step.
fn first_step_faults(system: System, step: &'static str) -> Vec<Case> {
    let s = system.as_str();
    vec![
        case(
            format!("{s} connector_down refuse"),
            vec![fault(FaultKind::ConnectorDown {
                system,
                mode: DownMode::Refuse,
            })],
            fails(Outcome::Error, ErrorClass::Connect, step),
        ),
        case(
            format!("{s} connector_down http_503"),
            vec![fault(FaultKind::ConnectorDown {
                system,
                mode: DownMode::Http503,
            })],
            fails(Outcome::Error, ErrorClass::Http5xx, step),
        ),
        case(
            format!("{s} slow 3s"),
            vec![fault(FaultKind::Slow {
                system,
                delay: SLOW,
            })],
            fails(Outcome::Error, ErrorClass::Timeout, step),
        )
        .litter(Litter::Unanswered),
        case(
            format!("{s} error_burst 1.0"),
            vec![fault(FaultKind::ErrorBurst {
                system,
                rate: 1.0,
                status: 500,
            })],
            fails(Outcome::Error, ErrorClass::Http5xx, step),
        ),
        case(
            format!("{s} auth_rejected"),
            vec![fault(FaultKind::AuthRejected { system })],
            fails(Outcome::Error, ErrorClass::Auth, step),
        ),
    ]
}

fn stalled(job: JobName, step: &'static str) -> Case {
    case(
        format!("job_stalled {}", job.as_str()),
        vec![fault(FaultKind::JobStalled { job })],
        fails(Outcome::SyncTimeout, ErrorClass::SyncTimeout, step),
    )
}

fn auth_rejected(system: System, step: &'static str) -> Case {
    case(
        format!("{} auth_rejected", system.as_str()),
        vec![fault(FaultKind::AuthRejected { system })],
        fails(Outcome::Error, ErrorClass::Auth, step),
    )
}

fn malformed_json(system: System, step: &'static str) -> Case {
    case(
        format!("{} malformed_json", system.as_str()),
        vec![fault(FaultKind::MalformedJson { system })],
        fails(Outcome::Error, ErrorClass::InvalidJson, step),
    )
}

fn ro_by_appointment() -> SyncTruth {
    SyncTruth {
        step: "ro-in-dms",
        kind: "repair_order",
        key: TruthKey::SourceId("appointment_id"),
    }
}

/// Cases shared by the three probes that start with a CRM appointment and poll the DMS
/// for its RO: DMS faults also block the sweeps of the DMS in cleanup.
fn appointment_cases(syncs: Vec<SyncTruth>) -> Vec<Case> {
    appointment_cases_at("book-appointment", "ro-in-dms", syncs)
}

/// The same, for a probe whose booking and RO steps have other names.
fn appointment_cases_at(book: &'static str, ro: &'static str, syncs: Vec<SyncTruth>) -> Vec<Case> {
    let mut cases = vec![healthy(syncs)];
    cases.extend(first_step_faults(System::Crm, book));
    cases.push(stalled(JobName::AppointmentToRo, ro));
    cases.push(auth_rejected(System::Dms, ro).litter(Litter::Blocked));
    cases.push(malformed_json(System::Dms, ro).litter(Litter::Blocked));
    cases
}

fn appointment_to_ro_to_survey_cases() -> Vec<Case> {
    let mut cases = appointment_cases(vec![
        ro_by_appointment(),
        SyncTruth {
            step: "survey-triggered",
            kind: "survey",
            key: TruthKey::SourceId("ro_number"),
        },
    ]);
    cases.push(stalled(JobName::RoToSurvey, "survey-triggered"));
    cases
}

fn service_note_to_ro_cases() -> Vec<Case> {
    let mut cases = appointment_cases(vec![
        ro_by_appointment(),
        SyncTruth {
            step: "note-on-ro",
            kind: "ro_note",
            key: TruthKey::Id("ro_number"),
        },
    ]);
    cases.push(stalled(JobName::NoteToRo, "note-on-ro"));
    cases
}

fn vin_identity_cases() -> Vec<Case> {
    // Two visits for one VIN: a DMS that splits identities does so on the repeat visit.
    let mut cases = appointment_cases_at(
        "first-visit",
        "first-ro-in-dms",
        vec![
            SyncTruth {
                step: "first-ro-in-dms",
                kind: "repair_order",
                key: TruthKey::SourceId("appointment_id"),
            },
            SyncTruth {
                step: "repeat-ro-in-dms",
                kind: "repair_order",
                key: TruthKey::SourceId("repeat_appointment_id"),
            },
        ],
    );
    cases.push(case(
        "duplicate_customer",
        vec![fault(FaultKind::DuplicateCustomer {})],
        fails(
            Outcome::Failed,
            ErrorClass::Assertion,
            "one-customer-per-vin",
        ),
    ));
    cases
}

fn lead_to_bdc_call_list_cases() -> Vec<Case> {
    let mut cases = vec![healthy(vec![SyncTruth {
        step: "on-bdc-call-list",
        kind: "bdc_entry",
        key: TruthKey::SourceId("lead_id"),
    }])];
    cases.extend(first_step_faults(System::Crm, "submit-lead"));
    cases.push(stalled(JobName::LeadToBdc, "on-bdc-call-list"));
    // The polled step is on the CRM too: arm after the lead exists. A CRM rejecting the
    // token also rejects the cleanup.
    cases.push(
        auth_rejected(System::Crm, "on-bdc-call-list")
            .armed_after("submit-lead")
            .litter(Litter::Blocked),
    );
    // Cleanup sweeps leads by e-mail, which needs the CRM's JSON: a garbling CRM blocks it.
    cases.push(
        malformed_json(System::Crm, "on-bdc-call-list")
            .armed_after("submit-lead")
            .litter(Litter::Blocked),
    );
    cases
}

fn price_file_to_service_menu_cases() -> Vec<Case> {
    let mut cases = vec![healthy(vec![SyncTruth {
        step: "price-on-service-menu",
        kind: "menu_price",
        key: TruthKey::IdFromUrl,
    }])];
    cases.extend(first_step_faults(System::Dms, "import-price-file"));
    cases.push(stalled(JobName::PriceFileToMenu, "price-on-service-menu"));
    // Cleanup deletes the part in the DMS, which the CRM faults leave alone.
    cases.push(auth_rejected(System::Crm, "price-on-service-menu"));
    cases.push(malformed_json(System::Crm, "price-on-service-menu"));
    cases
}

// ---------------------------------------------------------------------------------------
// One test per bundled probe
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appointment_to_ro_to_survey() {
    run_table(
        "appointment-to-ro-to-survey",
        appointment_to_ro_to_survey_cases(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_to_bdc_call_list() {
    run_table("lead-to-bdc-call-list", lead_to_bdc_call_list_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_file_to_service_menu() {
    run_table(
        "price-file-to-service-menu",
        price_file_to_service_menu_cases(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_note_to_ro() {
    run_table("service-note-to-ro", service_note_to_ro_cases()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vin_identity() {
    run_table("vin-identity", vin_identity_cases()).await;
}

/// Every `probes/*.yaml` has a table above.
#[test]
fn every_bundled_probe_is_covered() {
    let config = rooftop::config::load(Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let names: BTreeSet<&str> = config.probes.iter().map(|p| p.name.as_str()).collect();
    let covered = BTreeSet::from([
        "appointment-to-ro-to-survey",
        "lead-to-bdc-call-list",
        "price-file-to-service-menu",
        "service-note-to-ro",
        "vin-identity",
    ]);
    assert_eq!(names, covered);
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

struct Harness {
    http_settings: HttpSettings,
    sandbox: Arc<Sandbox>,
    runner: Runner,
    probe: Probe,
    _state: TempDir,
}

async fn harness(probe_name: &str) -> Harness {
    let config = rooftop::config::load(Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut probe = config
        .probe(probe_name)
        .unwrap_or_else(|| panic!("no bundled probe `{probe_name}`"))
        .clone();
    probe.compress(&COMPRESSION);
    // Cleanup backoff starts at 1 s and doubles: against a local sandbox, retries only
    // add seconds to the cases whose fault blocks cleanup (3 retries: 7 s per step).
    for c in &mut probe.cleanup {
        c.retries = 0;
    }
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sandbox = Sandbox::start(
        listen,
        SandboxConfig::default().with_fixed_latency(JOB_LATENCY),
    )
    .await
    .expect("sandbox starts");
    let state = tempfile::tempdir().unwrap();
    let runner = Runner::from_config(
        &config,
        sandbox.env().into_iter().collect(),
        state.path(),
        Arc::new(SystemClock),
    )
    .expect("runner");
    Harness {
        http_settings: HttpSettings {
            max_body_bytes: config.agent.max_body_bytes,
            verify_tls: config.agent.verify_tls,
        },
        sandbox: Arc::new(sandbox),
        runner,
        probe,
        _state: state,
    }
}

/// Runs every case in order, then fails with a table of the cases that went wrong.
async fn run_table(probe_name: &str, cases: Vec<Case>) {
    let mut h = harness(probe_name).await;
    let mut report = Vec::new();
    let mut failed = 0;
    for case in &cases {
        let started = Instant::now();
        let (problems, note) = run_case(&mut h, case).await;
        let secs = started.elapsed().as_secs_f64();
        if problems.is_empty() {
            report.push(format!("  PASS {:<40} {secs:4.1}s  {note}", case.name));
        } else {
            failed += 1;
            report.push(format!("  FAIL {:<40} {secs:4.1}s  {note}", case.name));
            report.extend(problems.iter().map(|p| format!("         - {p}")));
        }
    }
    let table = report.join("\n");
    eprintln!("{probe_name}:\n{table}");
    assert!(
        failed == 0,
        "{probe_name}: {failed} of {} cases failed:\n{table}",
        cases.len()
    );
}

fn leftover_set(sandbox: &Sandbox) -> BTreeSet<(String, String)> {
    sandbox
        .leftovers()
        .into_iter()
        .map(|Leftover { kind, id }| (kind.to_string(), id))
        .collect()
}

/// A refused system re-binds its port asynchronously once the fault clears.
async fn wait_until_listening(sandbox: &Sandbox, system: System) {
    let urls = sandbox.urls();
    let url = match system {
        System::Crm => &urls.crm,
        System::Dms => &urls.dms,
        System::Survey => &urls.survey,
    };
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not re-open {addr}",
            system.as_str()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn slow_delay(faults: &[Fault]) -> Option<Duration> {
    faults.iter().find_map(|f| match f.kind {
        FaultKind::Slow { delay, .. } => Some(delay),
        _ => None,
    })
}

/// Runs one case; returns what went wrong (empty when it passed) and a one-line note of
/// what rooftop reported and cleaned.
async fn run_case(h: &mut Harness, case: &Case) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let before = leftover_set(&h.sandbox);

    // Faults, now or once `arm_after` has finished.
    let progress: Option<ProgressFn> = match case.arm_after {
        None => {
            h.sandbox.set_faults(case.faults.clone());
            None
        }
        Some(after) => {
            let (sandbox, faults) = (h.sandbox.clone(), case.faults.clone());
            Some(Arc::new(move |p: &Progress| {
                if let Progress::StepFinished { step } = p
                    && step.name == after
                {
                    sandbox.set_faults(faults.clone());
                }
            }))
        }
    };
    let started = Instant::now();
    let run = h.runner.run(&h.probe, progress.as_ref()).await;

    // Let propagation settle; a slowed request may still complete on the server.
    tokio::time::sleep(SETTLE).await;
    if let Some(delay) = slow_delay(&case.faults) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + delay + SETTLE)).await;
    }

    check_report(h, case, &run, &mut problems);

    // Litter, with the fault still active.
    let fresh = |now: BTreeSet<(String, String)>| -> Vec<(String, String)> {
        now.difference(&before).cloned().collect()
    };
    let left = fresh(leftover_set(&h.sandbox));
    let cleanup = run.cleanup.outcome;
    match case.litter {
        Litter::None if !left.is_empty() => problems.push(format!(
            "synthetic leftovers after the run: {left:?} (cleanup reported {cleanup:?}: {})",
            cleanup_summary(&run)
        )),
        Litter::Blocked if !left.is_empty() && cleanup != CleanupOutcome::Failed => {
            problems.push(format!(
                "leftovers {left:?} but cleanup reported {cleanup:?}: {}",
                cleanup_summary(&run)
            ))
        }
        Litter::Unanswered if cleanup != CleanupOutcome::Failed => problems.push(format!(
            "the create request got no answer, yet cleanup reported {cleanup:?}: {}",
            cleanup_summary(&run)
        )),
        _ => {}
    }
    if case.litter == Litter::None && cleanup == CleanupOutcome::Failed {
        problems.push(format!("cleanup failed: {}", cleanup_summary(&run)));
    }

    let mut note = format!(
        "{}/{} cleanup={} left_while_faulted={}",
        run.outcome,
        run.error_class.map_or("-", |c| c.as_str()),
        serde_json::to_value(cleanup)
            .unwrap()
            .as_str()
            .unwrap_or("?"),
        left.len()
    );

    // Recovery: clear the faults, replay whatever the ledger kept, and nothing may remain.
    h.sandbox.set_faults(vec![]);
    for f in &case.faults {
        if let FaultKind::ConnectorDown {
            system,
            mode: DownMode::Refuse,
        } = f.kind
        {
            wait_until_listening(&h.sandbox, system).await;
            // The refused port reset rooftop's keep-alive connections, but its pool only
            // finds out when it next uses one (see the refuse case itself). Start the next
            // case with a fresh client so it does not inherit that.
            h.runner.http = HttpClient::new(&h.http_settings).expect("http client");
        }
    }
    match h
        .runner
        .replay_ledger(std::slice::from_ref(&h.probe), None)
        .await
    {
        Ok(replays) => {
            if !replays.is_empty() {
                note.push_str(&format!(" replayed={}", replays.len()));
            }
            for r in replays
                .iter()
                .filter(|r| !matches!(&r.result, Ok(item) if item.success))
            {
                problems.push(format!(
                    "ledger replay of `{}` failed: {:?}",
                    r.entry.record.cleanup, r.result
                ));
            }
        }
        Err(e) => problems.push(format!("ledger replay: {e}")),
    }
    // A job that was stalled now catches up: it must not create anything for the
    // deleted sources.
    let stall = case
        .faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::JobStalled { .. }));
    if stall {
        tokio::time::sleep(SETTLE).await;
    }
    let left = fresh(leftover_set(&h.sandbox));
    if !left.is_empty() {
        problems.push(format!(
            "leftovers even after the fault cleared and the ledger was replayed: {left:?}"
        ));
    }
    // An empty sweep after a failed run waits for its re-sweep (not a leftover).
    match h.runner.ledger.pending(None).await.map(|p| {
        p.into_iter()
            .filter(|e| !e.awaiting_resweep())
            .collect::<Vec<_>>()
    }) {
        Ok(p) if p.is_empty() => {}
        Ok(p) => problems.push(format!("{} ledger entries still pending", p.len())),
        Err(e) => problems.push(format!("ledger: {e}")),
    }
    (problems, note)
}

fn cleanup_summary(run: &ProbeRun) -> String {
    let items: Vec<String> = run
        .cleanup
        .items
        .iter()
        .map(|i| {
            format!(
                "{}={}{}",
                i.name,
                if i.success { "ok" } else { "FAILED" },
                i.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// What rooftop reported against what the case expects.
fn check_report(h: &Harness, case: &Case, run: &ProbeRun, problems: &mut Vec<String>) {
    let got = format!(
        "{}/{} at {} ({})",
        run.outcome,
        run.error_class.map_or("-", |c| c.as_str()),
        run.failed_step.as_deref().unwrap_or("-"),
        run.message.as_deref().unwrap_or(""),
    );
    match &case.expect {
        Expect::Success(syncs) => {
            if run.outcome != Outcome::Success {
                problems.push(format!("expected success, rooftop reported {got}"));
                return;
            }
            if run.cleanup.outcome != CleanupOutcome::Success {
                problems.push(format!(
                    "expected cleanup success, got {:?}: {}",
                    run.cleanup.outcome,
                    cleanup_summary(run)
                ));
            }
            let sync_steps: Vec<&str> = run
                .steps
                .iter()
                .filter(|s| s.sync.is_some())
                .map(|s| s.name.as_str())
                .collect();
            let expected: Vec<&str> = syncs.iter().map(|s| s.step).collect();
            if sync_steps != expected {
                problems.push(format!("sync steps {sync_steps:?}, expected {expected:?}"));
            }
            for s in syncs {
                check_sync_truth(h, run, s, problems);
            }
        }
        Expect::Fails {
            outcome,
            class,
            step,
        } => {
            if run.outcome != *outcome
                || run.error_class != Some(*class)
                || run.failed_step.as_deref() != Some(*step)
            {
                problems.push(format!(
                    "expected {outcome}/{class} at {step}, rooftop reported {got}"
                ));
                // What the expected step saw, as evidence.
                for a in run
                    .step(step)
                    .map(|s| s.assertions.as_slice())
                    .unwrap_or_default()
                {
                    let actual = a.actual.as_ref().map_or("-".to_string(), |v| v.to_string());
                    problems.push(format!(
                        "`{step}` saw: {} {} {} -> {actual}",
                        a.subject, a.op, a.expected
                    ));
                }
            }
        }
    }
}

fn capture(run: &ProbeRun, name: &str) -> Option<String> {
    run.steps
        .iter()
        .find_map(|s| s.captures.get(name))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

/// The ground-truth latency of the record a sync step found lies in its interval.
fn check_sync_truth(h: &Harness, run: &ProbeRun, spec: &SyncTruth, problems: &mut Vec<String>) {
    let Some(step) = run.step(spec.step) else {
        problems.push(format!("no step `{}` in the run", spec.step));
        return;
    };
    let Some(sync) = &step.sync else {
        problems.push(format!("step `{}` has no sync measurement", spec.step));
        return;
    };
    let (by_source, key) = match &spec.key {
        TruthKey::SourceId(c) => (true, capture(run, c)),
        TruthKey::Id(c) => (false, capture(run, c)),
        TruthKey::IdFromUrl => (
            false,
            step.request
                .as_ref()
                .and_then(|r| r.url.rsplit('/').next().map(str::to_string)),
        ),
    };
    let Some(key) = key else {
        problems.push(format!(
            "step `{}`: cannot tell which {} it found",
            spec.step, spec.kind
        ));
        return;
    };
    let truth = h.sandbox.truth();
    let found: Vec<_> = truth
        .iter()
        .filter(|t| {
            t.kind == spec.kind
                && if by_source {
                    t.source_id == key
                } else {
                    t.id == key
                }
        })
        .collect();
    let [record] = found.as_slice() else {
        problems.push(format!(
            "step `{}`: expected one {} truth record for {key}, found {}",
            spec.step,
            spec.kind,
            found.len()
        ));
        return;
    };
    let t = record.latency_ms;
    if t < sync.lower_ms - ROUNDING_MS || t > sync.upper_ms + ROUNDING_MS {
        problems.push(format!(
            "step `{}`: true latency {t:.3} ms is outside [{:.3}, {:.3}] ms (estimate {:.3} ms, {} polls)",
            spec.step, sync.lower_ms, sync.upper_ms, sync.estimate_ms, sync.polls
        ));
    }
}
