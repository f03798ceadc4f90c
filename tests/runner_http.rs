//! The runner against a small HTTP server of its own on 127.0.0.1: transport failures get
//! the right bounded error class, the body cap holds, `traceparent` carries the run's
//! trace id, polling treats 404/5xx as "not yet" but 401 as final, and where two
//! deadlines meet (request and probe, cleanup and its budget) the earlier one holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use rooftop::clock::{ManualClock, SystemClock};
use rooftop::config::{Defaults, load_probe_text};
use rooftop::runner::cleanup::{CLEANUP_FLOOR, resweep_delay};
use rooftop::runner::http::{HttpClient, HttpSettings};
use rooftop::runner::{CleanupOutcome, ErrorClass, Outcome, ProbeRun, Runner};
use rooftop::secrets::SecretStore;
use rooftop::store::Ledger;

#[derive(Clone, Default)]
struct Seen {
    traceparents: Arc<Mutex<Vec<String>>>,
    polls: Arc<Mutex<u32>>,
    /// `DELETE /records/{id}` never answers while this is false.
    deletes_answer: Arc<AtomicBool>,
    /// `DELETE /records/{id}` requests received.
    deletes: Arc<Mutex<u32>>,
    /// The ids `GET /surveys` lists (a sync job's downstream records).
    surveys: Arc<Mutex<Vec<String>>>,
}

async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "x".repeat(64 * 1024) }))
        .route(
            "/echo",
            get(|State(s): State<Seen>, h: HeaderMap| async move {
                let tp = h
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                s.traceparents.lock().unwrap().push(tp.clone());
                axum::Json(serde_json::json!({"traceparent": tp}))
            }),
        )
        // 404, then 503, then the record.
        .route(
            "/eventually",
            get(|State(s): State<Seen>| async move {
                let mut n = s.polls.lock().unwrap();
                *n += 1;
                match *n {
                    1 => (StatusCode::NOT_FOUND, "{}".to_string()),
                    2 => (StatusCode::SERVICE_UNAVAILABLE, "busy".to_string()),
                    _ => (StatusCode::OK, r#"{"items":[{"id":"X1"}]}"#.to_string()),
                }
            }),
        )
        .route(
            "/denied",
            get(|| async { (StatusCode::UNAUTHORIZED, "{}") }),
        )
        // A proxy's error page: 503 with HTML, never JSON.
        .route(
            "/busy-html",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/html")],
                    "<html><body>Service Unavailable</body></html>",
                )
            }),
        )
        .route(
            "/ok-html",
            get(|| async { ([("content-type", "text/html")], "<html>ok</html>") }),
        )
        .route(
            "/records",
            post(|| async { (StatusCode::CREATED, r#"{"id":"R1"}"#) }),
        )
        .route(
            "/records/{id}",
            axum::routing::delete(|State(s): State<Seen>| async move {
                *s.deletes.lock().unwrap() += 1;
                if !s.deletes_answer.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/ro/close",
            post(|| async { axum::Json(serde_json::json!({"status": "closed"})) }),
        )
        .route("/surveys", get(list_surveys))
        .route("/surveys/{id}", axum::routing::delete(delete_survey))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{}", addr.port()), seen)
}

async fn list_surveys(State(s): State<Seen>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"items": s.surveys.lock().unwrap().clone()}))
}

async fn delete_survey(State(s): State<Seen>, UrlPath(id): UrlPath<String>) -> StatusCode {
    s.surveys.lock().unwrap().retain(|x| *x != id);
    StatusCode::NO_CONTENT
}

/// Resolves every name to an error, like a dealership whose DNS server is down.
struct FailingResolver;

impl reqwest::dns::Resolve for FailingResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err::<reqwest::dns::Addrs, _>("no such host (test resolver)".into()) })
    }
}

fn runner(state: &Path, max_body: u64, resolver: Option<Arc<dyn reqwest::dns::Resolve>>) -> Runner {
    Runner {
        http: HttpClient::with_resolver(
            &HttpSettings {
                max_body_bytes: max_body,
                verify_tls: true,
            },
            resolver,
        )
        .unwrap(),
        env: Arc::new(BTreeMap::new()),
        secrets: Arc::new(SecretStore::default()),
        ledger: Ledger::open_in(state).unwrap(),
        clock: Arc::new(SystemClock),
    }
}

/// Runs a probe given as YAML text.
async fn run_text(r: &Runner, text: &str) -> ProbeRun {
    let probe = load_probe_text(
        Path::new("t.yaml"),
        text,
        &Defaults::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    r.run(&probe, None).await
}

/// Runs a one-step probe against `url`; `extra` adds lines to the step.
async fn run_one(r: &Runner, url: &str, extra: &str) -> ProbeRun {
    let text = format!(
        "name: t\nsteps:\n  - name: s\n    request: {{url: \"{url}\", timeout: 300ms}}\n{extra}"
    );
    run_text(r, &text).await
}

fn class(run: &ProbeRun) -> (Outcome, Option<ErrorClass>) {
    (run.outcome, run.error_class)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_get_their_error_class() {
    let (addr, _) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 16 * 1024, None);
    assert_eq!(
        class(&run_one(&r, &format!("http://{addr}/slow"), "").await),
        (Outcome::Error, Some(ErrorClass::Timeout))
    );
    assert_eq!(
        class(&run_one(&r, &format!("http://{addr}/big"), "").await),
        (Outcome::Error, Some(ErrorClass::BodyTooLarge))
    );
    // TLS spoken to a plaintext port: the handshake fails.
    assert_eq!(
        class(&run_one(&r, &format!("https://{addr}/echo"), "").await),
        (Outcome::Error, Some(ErrorClass::Tls))
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        class(&run_one(&r, &format!("http://127.0.0.1:{port}/"), "").await),
        (Outcome::Error, Some(ErrorClass::Connect))
    );
    assert_eq!(
        class(&run_one(&r, &format!("http://{addr}/denied"), "").await),
        (Outcome::Error, Some(ErrorClass::Auth))
    );

    let dns = runner(state.path(), 16 * 1024, Some(Arc::new(FailingResolver)));
    let run = run_one(&dns, "http://crm.dealer.test/api", "").await;
    assert_eq!(
        class(&run),
        (Outcome::Error, Some(ErrorClass::Dns)),
        "{:?}",
        run.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_carries_the_runs_trace_id() {
    let (addr, seen) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let run = run_one(
        &r,
        &format!("http://{addr}/echo"),
        "    capture: {tp: \"$.traceparent\"}\n",
    )
    .await;
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.message);
    let tp = seen.traceparents.lock().unwrap()[0].clone();
    let span = &run.steps[0].request.as_ref().unwrap().span_id;
    assert_eq!(tp, format!("00-{}-{}-01", run.trace_id, span));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_rides_out_404_and_503_but_stops_on_401() {
    let (addr, _) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let poll = "    until: {json: {\"$.items[0].id\": {exists: true}}}\n    poll: {interval: 50ms, backoff: 1, within: 5s}\n";
    let run = run_one(&r, &format!("http://{addr}/eventually"), poll).await;
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.message);
    assert_eq!(run.steps[0].attempts, 3);
    let run = run_one(&r, &format!("http://{addr}/denied"), poll).await;
    assert_eq!(class(&run), (Outcome::Error, Some(ErrorClass::Auth)));
    assert_eq!(run.steps[0].attempts, 1);
}

/// Regression: the first run after a connector went down reused a pooled keep-alive
/// connection that the peer closed only when the next request arrived, and was reported
/// as `protocol` instead of `connect` (the page for the outage named the wrong cause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_after_the_connector_goes_down_reports_connect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A raw HTTP/1.1 peer: answers the first request on a connection, then stops
    // listening and closes the connection when the next request comes in.
    let peer = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut buf = vec![0u8; 4096];
        let _ = sock.read(&mut buf).await.unwrap();
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        let _ = sock.read(&mut buf).await;
        drop(sock);
    });
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let url = format!("http://{addr}/ok");
    assert_eq!(run_one(&r, &url, "").await.outcome, Outcome::Success);
    let run = run_one(&r, &url, "").await;
    assert_eq!(
        class(&run),
        (Outcome::Error, Some(ErrorClass::Connect)),
        "{:?}",
        run.message
    );
    peer.await.unwrap();
}

/// Regression: a poll whose `within` outlasted what remained of the probe's timeout was
/// cut off as `probe_timeout`, losing its poll count and last answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_cut_by_the_probe_timeout_reports_sync_timeout_with_its_polls() {
    let (addr, _) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let text = format!(
        "name: t\ntimeout: 2s\nsteps:\n  - name: s\n    request: {{url: \"http://{addr}/never\", timeout: 300ms}}\n    until: {{json: {{\"$.id\": {{exists: true}}}}}}\n    poll: {{interval: 100ms, backoff: 1, within: 2s}}\n"
    );
    let run = run_text(&r, &text).await;
    assert_eq!(
        class(&run),
        (Outcome::SyncTimeout, Some(ErrorClass::SyncTimeout)),
        "{:?}",
        run.message
    );
    assert!(run.steps[0].attempts > 5, "{}", run.steps[0].attempts);
    assert!(
        run.message
            .as_deref()
            .unwrap_or_default()
            .contains("before the probe timeout"),
        "{:?}",
        run.message
    );
}

/// Regression: a poll that rode out 503s with an HTML error page until its window ended
/// was reported as `invalid_json` (its `until` could not parse the page) instead of
/// `http_5xx`. Only a 2xx whose body does not parse is `invalid_json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_riding_out_503_html_ends_http_5xx_not_invalid_json() {
    let (addr, _) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let poll = "    until: {json: {\"$.id\": {exists: true}}}\n    poll: {interval: 100ms, backoff: 1, within: 1s}\n";
    let run = run_one(&r, &format!("http://{addr}/busy-html"), poll).await;
    assert_eq!(
        class(&run),
        (Outcome::Error, Some(ErrorClass::Http5xx)),
        "{:?}",
        run.message
    );
    let message = run.message.clone().unwrap_or_default();
    assert!(message.starts_with("HTTP 503"), "{message}");
    assert!(message.contains("Service Unavailable"), "{message}");
    assert!(run.steps[0].attempts > 1, "{}", run.steps[0].attempts);
    let run = run_one(&r, &format!("http://{addr}/ok-html"), poll).await;
    assert_eq!(
        class(&run),
        (Outcome::Error, Some(ErrorClass::InvalidJson)),
        "{:?}",
        run.message
    );
}

/// Regression: a step sent once with a request timeout longer than the probe's was cut
/// off by the run's own timer, losing its request record. Its request is now cut to what
/// is left of the probe: `probe_timeout`, at the probe's deadline, request kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outlasting_the_probe_is_cut_to_it_and_keeps_its_record() {
    let (addr, _) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let text = format!(
        "name: t\ntimeout: 1s\nsteps:\n  - name: s\n    request: {{url: \"http://{addr}/slow\", timeout: 30s}}\n"
    );
    let started = Instant::now();
    let run = run_text(&r, &text).await;
    assert_eq!(
        class(&run),
        (Outcome::Error, Some(ErrorClass::ProbeTimeout)),
        "{:?}",
        run.message
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    let request = run.steps[0].request.as_ref().expect("the request is kept");
    assert_eq!(request.status, None);
    assert_eq!(
        run.message.as_deref(),
        Some("probe timeout of 1s reached during this request")
    );
}

/// Cleanup deletes that hang: each cleanup gets an equal share of the run's cleanup
/// budget (`CLEANUP_FLOOR` for this 2 s probe), every attempt's request is cut to what is
/// left of its share, and no backoff sleeps past it. The run ends within its bound, the
/// records stay in the ledger, and a later replay deletes them once the API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanups_that_hang_end_within_their_budget_and_stay_in_the_ledger() {
    let (addr, seen) = server().await;
    let state = tempfile::tempdir().unwrap();
    let r = runner(state.path(), 1 << 20, None);
    let text = format!(
        "name: t\ntimeout: 2s\nsteps:\n  - name: create\n    request: {{method: POST, url: \"http://{addr}/records\", timeout: 1s}}\n    capture: {{id: \"$.id\"}}\n    creates: {{cleanup: [delete-a, delete-b]}}\n\
         cleanup:\n  - name: delete-a\n    request: {{method: DELETE, url: \"http://{addr}/records/{{{{ id }}}}?a\", timeout: 3s}}\n\
         \x20 - name: delete-b\n    request: {{method: DELETE, url: \"http://{addr}/records/{{{{ id }}}}?b\", timeout: 3s}}\n"
    );
    let probe = load_probe_text(
        Path::new("t.yaml"),
        &text,
        &Defaults::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    let started = Instant::now();
    let run = r.run(&probe, None).await;
    let took = started.elapsed();
    assert_eq!(run.outcome, Outcome::Success, "{:?}", run.message);
    assert_eq!(
        run.cleanup.outcome,
        CleanupOutcome::Failed,
        "{:#?}",
        run.cleanup
    );
    // The steps took milliseconds; the cleanup its budget, and not one retry more.
    assert!(
        took < CLEANUP_FLOOR + Duration::from_secs(3),
        "the run took {took:?}"
    );
    for item in &run.cleanup.items {
        // A share of 5 s: a 3 s attempt, 1 s of backoff, a last attempt cut to the
        // second left; the next backoff (2 s) would pass the share's end.
        assert_eq!(item.attempts, 2, "{item:#?}");
        assert!(!item.success);
        let error = item.error.as_deref().unwrap_or_default();
        assert!(error.contains("ran out"), "{error}");
        assert!(error.contains("stays in the cleanup ledger"), "{error}");
    }
    assert_eq!(run.cleanup.items.len(), 2);
    assert_eq!(*seen.deletes.lock().unwrap(), 4);
    let left = r.ledger.pending(None).await.unwrap();
    assert_eq!(left.len(), 2, "{left:#?}");
    assert!(left.iter().all(|e| e.attempts == 2), "{left:#?}");

    // The API is back: a replay deletes both and empties the ledger.
    seen.deletes_answer.store(true, Ordering::SeqCst);
    let replayed = r.replay_ledger(&[probe], None).await.unwrap();
    assert_eq!(replayed.len(), 2);
    assert!(
        replayed
            .iter()
            .all(|e| e.result.as_ref().is_ok_and(|c| c.success)),
        "{replayed:#?}"
    );
    assert!(r.ledger.pending(None).await.unwrap().is_empty());
}

/// Regression (the soak's survey left behind): a run that fails after closing the RO
/// sweeps for the survey before the sync job has created it. The empty sweep is not the
/// end: the entry waits (not a leftover), and the re-sweep, once due, deletes the survey
/// that appeared in the meantime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survey_created_after_the_sweep_of_a_failed_run_is_deleted_by_the_resweep() {
    let (addr, seen) = server().await;
    let state = tempfile::tempdir().unwrap();
    let clock = ManualClock::new("2026-06-01T12:00:00Z".parse().unwrap());
    let mut r = runner(state.path(), 1 << 20, None);
    r.clock = Arc::new(clock.clone());
    let text = format!(
        "name: t\ntimeout: 5s\nsteps:\n  - name: close-ro\n    request: {{method: POST, url: \"http://{addr}/ro/close\"}}\n    creates: {{cleanup: delete-surveys}}\n\
         \x20 - name: survey-triggered\n    request: {{url: \"http://{addr}/denied\"}}\n\
         cleanup:\n  - name: delete-surveys\n    find:\n      request: {{url: \"http://{addr}/surveys\"}}\n      each: \"$.items[*]\"\n      as: survey\n    request: {{method: DELETE, url: \"http://{addr}/surveys/{{{{ survey }}}}\"}}\n"
    );
    let probe = load_probe_text(
        Path::new("t.yaml"),
        &text,
        &Defaults::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    let run = r.run(&probe, None).await;
    assert_ne!(run.outcome, Outcome::Success, "{:?}", run.message);
    // The sweep did what it could now: the run's cleanup succeeded.
    assert_eq!(
        run.cleanup.outcome,
        CleanupOutcome::Success,
        "{:#?}",
        run.cleanup
    );
    let waiting = r.ledger.pending(None).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    assert!(waiting[0].awaiting_resweep(), "{waiting:#?}");

    // The sync job creates the survey after the sweep.
    seen.surveys.lock().unwrap().push("CSI-1".into());
    // Not due yet: neither a start's replay nor the agent's retry sweeps again.
    assert!(
        r.replay_ledger(std::slice::from_ref(&probe), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(r.replay_due(&[&probe]).await.unwrap().is_empty());
    assert_eq!(seen.surveys.lock().unwrap().len(), 1);

    clock.advance(chrono::Duration::from_std(resweep_delay(&probe)).unwrap());
    let replays = r.replay_due(&[&probe]).await.unwrap();
    assert_eq!(replays.len(), 1);
    assert!(
        replays[0].result.as_ref().is_ok_and(|c| c.success),
        "{replays:#?}"
    );
    assert!(
        seen.surveys.lock().unwrap().is_empty(),
        "the survey is swept"
    );
    assert!(r.ledger.pending(None).await.unwrap().is_empty());
}
