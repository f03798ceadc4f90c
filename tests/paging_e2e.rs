//! The main path end to end: a sandbox fault → the probe fails → an incident opens → an
//! e-mail page arrives in a real SMTP server (aiosmtpd) → the fault clears → a resolve
//! e-mail follows. One incident, one page, one resolve notice.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::time::Duration;

use paging::{crm_down, incidents, lead_probe, spawn_agent, subject_and_text as subject_of};
use tools::{SmtpOptions, SmtpServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_pages_by_email_once_and_the_recovery_sends_a_resolve() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    for rb in std::fs::read_dir("runbooks").unwrap() {
        let rb = rb.unwrap().path();
        std::fs::copy(
            &rb,
            dir.path().join("runbooks").join(rb.file_name().unwrap()),
        )
        .unwrap();
    }
    let metrics_port = tools::free_port();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", true))],
        &format!(
            "rooftop: {{id: toronto-north, name: Toronto North Honda}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P1: [Maria Lopez], P2: [Maria Lopez], P3: [Maria Lopez], P4: [Maria Lopez]}}\n\
             \x20 runbook_base_url: https://wiki.dealer.example/rooftop\n\
             \x20 ack_base_url: http://127.0.0.1:{metrics_port}\n\
             \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let listen = format!("127.0.0.1:{metrics_port}");
    let agent = spawn_agent(&sb, dir.path(), state.path(), &listen, &[]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sb.set_faults(crm_down());
    let page = smtp.wait_for_count(1, Duration::from_secs(15)).await;
    let first = subject_of(&page[0]);
    assert!(
        first.starts_with(
            "[P2] Toronto North Honda · lead-ingestion: lead-to-bdc-call-list failing"
        ),
        "{first}"
    );
    assert!(
        // The fault may hit the create or the poll (and then cleanup too): either way a
        // step failed with the CRM's 503.
        first.contains("What failed: step ") && first.contains("(http_5xx)"),
        "{first}"
    );
    assert!(first.contains("Impact assessment"), "{first}");
    assert!(
        first.contains("Full runbook: https://wiki.dealer.example/rooftop/runbooks/"),
        "{first}"
    );
    // The page's acknowledge link: GET shows a confirmation (changes nothing), a
    // tampered link is refused, the form's POST acknowledges.
    let link = first
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge: "))
        .expect("an ack link in the page")
        .to_string();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{metrics_port}/ack/inc-")),
        "{link}"
    );
    let http = reqwest::Client::new();
    let form = http.get(&link).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("<form method=\"post\""));
    let tampered = link.replace("sig=", "sig=00");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let acked = paging::ack_by(&http, &link, "Maria Lopez").await;
    assert_eq!(acked.status(), 200);
    assert!(acked.text().await.unwrap().contains("is acknowledged"));
    // Let a run pick the acknowledgement up (MTTA), then recover.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sb.set_faults(vec![]);
    let both = smtp.wait_for_count(2, Duration::from_secs(15)).await;
    let second = subject_of(&both[1]);
    assert!(
        second.starts_with(
            "[P2] RESOLVED Toronto North Honda · lead-ingestion: lead-to-bdc-call-list resolved"
        ),
        "{second}"
    );
    // A few more healthy runs: no further mail.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(smtp.messages().len(), 2);
    // Incidents and pages in the metrics (MTTR, open count, deliveries per channel).
    let (_, body) = tools::http_request("GET", metrics_port, "/metrics", b"").unwrap();
    let metrics = String::from_utf8(body).unwrap();
    for needle in [
        "rooftop_incidents_opened_total{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",probe=\"lead-to-bdc-call-list\",rooftop=\"toronto-north\",severity=\"P2\"} 1",
        "rooftop_incident_time_to_resolve_seconds_count{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",probe=\"lead-to-bdc-call-list\",rooftop=\"toronto-north\",severity=\"P2\"} 1",
        "rooftop_incidents_open{rooftop=\"toronto-north\",severity=\"P2\"} 0",
        "rooftop_incident_time_to_acknowledge_seconds_count{connector=\"crm-to-bdc\",flow=\"lead-ingestion\",probe=\"lead-to-bdc-call-list\",rooftop=\"toronto-north\",severity=\"P2\"} 1",
        "rooftop_notifications_total{channel=\"email\",kind=\"trigger\",result=\"delivered\",rooftop=\"toronto-north\"} 1",
        "rooftop_notifications_total{channel=\"email\",kind=\"resolve\",result=\"delivered\",rooftop=\"toronto-north\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle}\n{metrics}");
    }

    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert_eq!(out.matches(" opened: ").count(), 1, "{out}");
    assert!(
        out.contains("page delivered: inc-lead-to-bdc-call-list-"),
        "{out}"
    );

    // `rooftop incidents` shows where each notice went.
    let incidents: serde_json::Value =
        serde_json::from_str(&incidents(dir.path(), state.path(), &["--json"])).unwrap();
    let notes: Vec<(String, String, String)> = incidents[0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["channel"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = |k: &str| (k.to_string(), "email".to_string(), "delivered".to_string());
    assert_eq!(
        notes,
        vec![expected("trigger"), expected("resolve")],
        "{incidents:#}"
    );
}

/// The SMTP server is down when the incident opens, the agent is killed with SIGKILL
/// while the page is pending, restarted, and the server comes back: the page arrives
/// exactly once (the kill fell before any send could succeed, so no duplicate is
/// possible here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_is_lost_across_a_kill_9_and_an_smtp_outage() {
    let sb = paging::sandbox().await;
    // The CRM is down from the start: the probe fails, an incident opens.
    sb.set_faults(crm_down());
    // The SMTP port is held by a listener that accepts and never answers (the attempt
    // times out: a stalled relay) until the real server takes it over; no other test's
    // server can get the port meanwhile.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp_port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", false))],
        &format!(
            "alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 2s}}}}\n"
        ),
    );
    let spawn = || spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    let pending = || {
        paging::incidents_json(dir.path(), state.path())
            .first()
            .map(|i| i["notifications"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    let mut agent = spawn();
    // Wait until the page is queued and has failed at least once.
    let queued = tools::eventually(
        Duration::from_secs(20),
        || format!("a pending page with a failed attempt: {:?}", pending()),
        || {
            let n = pending();
            n.iter()
                .any(|p| p["state"] == "pending" && p["attempts"].as_u64() >= Some(1))
                .then_some(n)
        },
    )
    .await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    agent.start_kill().unwrap();
    let _ = agent.wait().await;

    drop(silent);
    let smtp = SmtpServer::start(SmtpOptions {
        port: smtp_port,
        ..SmtpOptions::default()
    });
    let mut agent = spawn();
    let msgs = smtp.wait_for_count(1, Duration::from_secs(30)).await;
    // Runs keep failing (same incident): no second page arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "exactly once");
    assert!(subject_of(&msgs[0]).contains("lead-to-bdc-call-list failing"));
    let n = pending();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["state"], "delivered");
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
}

/// SMS first: the number replied STOP (Twilio 21610), so the page falls back to e-mail;
/// the webhook gets every page too. `rooftop incidents` shows each route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_sms_falls_back_to_email_and_the_webhook_gets_the_page() {
    use axum::routing::post;
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    // Stand-ins for Twilio (always 21610) and a webhook receiver (records bodies).
    let hooks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = hooks.clone();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            post(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient"}"#,
                )
            }),
        )
        .route(
            "/hook",
            post(move |body: String| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
    let base = paging::serve(app).await;

    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", false))],
        &format!(
            "secrets: {{twilio: {{env: TWILIO_TOKEN}}, hook: {{env: HOOK_SECRET}}}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example, phone: '+14165550123'}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 sms: {{account_sid: AC123, auth_token: '{{{{ secret.twilio }}}}', from: '+14165550100', base_url: '{base}'}}\n\
             \x20 webhook: {{url: '{base}/hook', secret: '{{{{ secret.hook }}}}'}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let mut agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        "off",
        &[
            ("TWILIO_TOKEN", "tw-token-canary"),
            ("HOOK_SECRET", "hook-secret"),
        ],
    );
    let mail = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    assert!(subject_of(&mail[0]).contains("lead-to-bdc-call-list failing"));
    tools::eventually(
        Duration::from_secs(10),
        || "the webhook got the page".into(),
        || (!hooks.lock().unwrap().is_empty()).then_some(()),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&hooks.lock().unwrap()[0]).unwrap();
    assert_eq!(body["event"], "trigger");

    let table = incidents(dir.path(), state.path(), &[]);
    assert!(
        table.contains("trigger sms → Maria Lopez: FAILED"),
        "{table}"
    );
    assert!(
        table.contains("trigger email → Maria Lopez (fallback): delivered"),
        "{table}"
    );
    assert!(table.contains("trigger webhook: delivered"), "{table}");
    assert!(!table.contains("tw-token-canary"), "{table}");
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
}

/// Twilio accepts the SMS, but its delivery receipt (polled: rooftop has no public
/// callback URL) says the carrier could not deliver it (30003): the page falls back to
/// e-mail, and `rooftop incidents` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_the_carrier_could_not_deliver_falls_back_to_email() {
    use axum::routing::{get, post};
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            post(|| async {
                (
                    axum::http::StatusCode::CREATED,
                    r#"{"sid": "SM42", "status": "queued"}"#,
                )
            }),
        )
        .route(
            "/2010-04-01/Accounts/{sid}/Messages/{msg}",
            get(
                move |axum::extract::Path((_, msg)): axum::extract::Path<(String, String)>| {
                    let counted = counted.clone();
                    async move {
                        assert_eq!(msg, "SM42.json");
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        r#"{"sid": "SM42", "status": "undelivered", "error_code": 30003}"#
                    }
                },
            ),
        );
    let base = paging::serve(app).await;

    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", false))],
        &format!(
            "alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example, phone: '+14165550123'}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 sms: {{account_sid: AC123, auth_token: not-a-secret-here, from: '+14165550100', base_url: '{base}'}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let agent = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    // The first receipt poll is 10 s after Twilio accepted the SMS.
    let mail = smtp.wait_for_count(1, Duration::from_secs(40)).await;
    assert!(subject_of(&mail[0]).contains("lead-to-bdc-call-list failing"));
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let table = incidents(dir.path(), state.path(), &[]);
    assert!(
        table.contains(
            "trigger sms → Maria Lopez: FAILED: the carrier could not deliver it (error 30003: handset unreachable"
        ),
        "{table}"
    );
    assert!(
        table.contains("trigger email → Maria Lopez (fallback): delivered"),
        "{table}"
    );
    let (out, err) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert!(
        err.contains("warning: page not delivered by the carrier: inc-lead-to-bdc-call-list-"),
        "{out}\n{err}"
    );
}

/// The dealership's WAN is down: the LAN's SMTP relay answers, PagerDuty (a cloud
/// service) does not. The e-mail page goes out at once; the PagerDuty event waits in
/// the outbox and arrives exactly once when the link returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wan_down_email_pages_at_once_and_pagerduty_gets_its_event_once_it_is_back() {
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    // PagerDuty's port, refused until the stand-in takes it over.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", false))],
        &format!(
            "alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 pagerduty: {{routing_key: R0123456789abcdef0123456789abcdef, url: 'http://127.0.0.1:{port}/v2/enqueue'}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let mut agent = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    let mail = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    assert!(subject_of(&mail[0]).contains("lead-to-bdc-call-list failing"));
    let pd_row = || {
        paging::incidents_json(dir.path(), state.path())
            .first()
            .and_then(|i| {
                i["notifications"]
                    .as_array()?
                    .iter()
                    .find(|n| n["channel"] == "pagerduty")
                    .cloned()
            })
            .unwrap_or_default()
    };
    let waiting = tools::eventually(
        Duration::from_secs(20),
        || format!("the PagerDuty event failed and waits: {:?}", pd_row()),
        || {
            let r = pd_row();
            (r["state"] == "pending" && r["attempts"].as_u64() >= Some(1)).then_some(r)
        },
    )
    .await;
    assert!(waiting["last_error"].as_str().is_some(), "{waiting}");

    // The link returns.
    let events = paging::serve_pagerduty(port).await;
    tools::eventually(
        Duration::from_secs(60),
        || format!("the PagerDuty event arrived: {:?}", pd_row()),
        || (pd_row()["state"] == "delivered").then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "exactly once: {got:?}");
    assert_eq!(got[0]["event_action"], "trigger");
    assert_eq!(smtp.messages().len(), 1, "one e-mail page, not repeated");
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
}

/// Runs the agent with the lead probe, `head` (self-monitoring and telemetry settings)
/// and e-mail to Maria for P2, until `rooftop-agent` has paged: the page's subject and
/// text, the open incidents, and the lead probe's stored runs.
async fn until_the_agent_pages_about_itself(head: &str) -> (String, Vec<serde_json::Value>, i64) {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe("lead-to-bdc-call-list", false))],
        &format!(
            "{head}\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let mut agent = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    let mail = smtp.wait_for_count(1, Duration::from_secs(60)).await;
    let open = paging::incidents_json(dir.path(), state.path());
    let db = rusqlite::Connection::open(state.path().join("rooftop.db")).unwrap();
    let runs: i64 = db
        .query_row(
            "SELECT count(*) FROM runs WHERE probe = 'lead-to-bdc-call-list'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
    (subject_of(&mail[0]), open, runs)
}

/// The agent's own probe pages like any other: with a free-disk floor no disk meets,
/// `rooftop-agent` fails its self-check, opens an incident and e-mails the P2 route;
/// `rooftop incidents` lists it with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pages_about_itself_when_its_disk_is_nearly_full() {
    let (text, open, _) = until_the_agent_pages_about_itself(
        "self_monitoring: {check_every: 1s, min_free_disk: 1000000GB}\n",
    )
    .await;
    assert!(text.contains("rooftop-agent failing"), "{text}");
    assert!(text.contains("disk:"), "the reason is in the page: {text}");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["probe"], "rooftop-agent");
    assert_eq!(open[0]["error_class"], "agent");
}

/// The WAN (or the collector) down for longer than `export_failing_after`:
/// `rooftop-agent` opens an incident naming the failing OTLP signals and e-mails it
/// through the local relay, while the dealer's probes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pages_about_itself_when_otlp_export_fails_for_too_long() {
    let nobody = format!("http://127.0.0.1:{}", tools::free_port());
    let (text, open, runs) = until_the_agent_pages_about_itself(&format!(
        "self_monitoring: {{check_every: 1s, export_failing_after: 3s}}\n\
         telemetry:\n  interval: 1s\n  otlp: {{endpoint: \"{nobody}\", protocol: http/protobuf, timeout: 1s}}\n"
    ))
    .await;
    assert!(text.contains("rooftop-agent failing"), "{text}");
    assert!(text.contains("OTLP export failing"), "the reason: {text}");
    assert!(text.contains("metrics for"), "the signal is named: {text}");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["probe"], "rooftop-agent");
    assert!(runs >= 1, "the dealer's probe kept running: {runs} runs");
}
