//! Acknowledging by SMS reply, end to end: the sandbox fails a P1 probe → its escalation
//! pages the primary by SMS through a Twilio stand-in on 127.0.0.1, with `Reply ACK
//! <code>.` in the text → an `ACK <code>` from an unknown number acknowledges nothing →
//! the primary's `ack <code>` (listed by the stand-in, which the agent polls: it has no
//! public URL) acknowledges it as "Maria Lopez (SMS)" → the secondary is never paged.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use paging::{crm_down, incidents_json, lead_probe, spawn_agent};

const MARIA: &str = "+14165550123";
const DEV: &str = "+14165550124";
const STRANGER: &str = "+15550000199";
const SENDER: &str = "+14165550100";
const TOKEN: &str = "tw-token-canary";
/// Each escalation step's deadline: well past two reply polls (5 s apart) and the tick.
const ACK_WITHIN: Duration = Duration::from_secs(30);

/// One list request: its query, its `Authorization` and the SIDs it was given.
struct ListRequest {
    query: HashMap<String, String>,
    auth: String,
    sids: Vec<String>,
}

/// What the Twilio stand-in saw and lists.
#[derive(Default)]
struct Twilio {
    /// (To, Body) of every message sent.
    sent: Mutex<Vec<(String, String)>>,
    /// What the list answers with (newest first, as Twilio lists).
    inbound: Mutex<Vec<serde_json::Value>>,
    lists: Mutex<Vec<ListRequest>>,
}

impl Twilio {
    fn sent_to(&self, to: &str) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(t, _)| t == to)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// `body` from `from`, sent now.
    fn reply(&self, sid: &str, from: &str, body: &str) {
        let now = rooftop::clock::Clock::now(&rooftop::clock::SystemClock);
        self.inbound.lock().unwrap().insert(
            0,
            serde_json::json!({
                "sid": sid, "account_sid": "AC123", "from": from, "to": SENDER, "body": body,
                "direction": "inbound", "status": "received", "num_segments": "1",
                "date_created": now.to_rfc2822(), "date_sent": now.to_rfc2822(),
            }),
        );
    }

    /// The number of list requests once one was given `sid` and another came after it
    /// (the agent handles a list before it asks again).
    fn handled(&self, sid: &str) -> Option<usize> {
        let lists = self.lists.lock().unwrap();
        let served = lists.iter().position(|l| l.sids.iter().any(|s| s == sid))?;
        (lists.len() > served + 1).then_some(lists.len())
    }
}

async fn send(
    State(t): State<Arc<Twilio>>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, String) {
    let mut sent = t.sent.lock().unwrap();
    sent.push((form["To"].clone(), form["Body"].clone()));
    let sid = format!("SMout{}", sent.len());
    (
        axum::http::StatusCode::CREATED,
        serde_json::json!({"sid": sid, "status": "queued"}).to_string(),
    )
}

async fn list(
    State(t): State<Arc<Twilio>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> String {
    let messages = t.inbound.lock().unwrap().clone();
    let sids = messages
        .iter()
        .map(|m| m["sid"].as_str().unwrap_or_default().to_string())
        .collect();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    t.lists
        .lock()
        .unwrap()
        .push(ListRequest { query, auth, sids });
    serde_json::json!({"messages": messages, "next_page_uri": null, "page": 0, "page_size": 50})
        .to_string()
}

async fn twilio() -> (Arc<Twilio>, String) {
    let state = Arc::new(Twilio::default());
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            get(list).post(send),
        )
        .route(
            "/2010-04-01/Accounts/{sid}/Messages/{msg}",
            get(|| async { r#"{"status": "delivered"}"# }),
        )
        .with_state(state.clone());
    (state, paging::serve(app).await)
}

/// Maria (primary today) and Dev (secondary) in the rotation `desk`, by SMS only; P1
/// escalates from the primary to the secondary after `ACK_WITHIN`.
fn rooftop_yaml(base: &str) -> String {
    let today = rooftop::clock::Clock::now(&rooftop::clock::SystemClock).date_naive();
    format!(
        "secrets: {{twilio: {{env: TWILIO_TOKEN}}}}\n\
         oncall:\n\
         \x20 rotations:\n\
         \x20   desk: {{timezone: UTC, members: [Maria Lopez, Dev Patel], handoff: {{every: day, at: \"00:00\"}}, start: {today}}}\n\
         alerting:\n\
         \x20 contacts:\n\
         \x20   - {{name: Maria Lopez, phone: '{MARIA}'}}\n\
         \x20   - {{name: Dev Patel, phone: '{DEV}'}}\n\
         \x20 severities: {{P1: {{ack_within: {}s}}}}\n\
         \x20 escalation:\n\
         \x20   service: {{steps: [{{notify: [{{rotation: desk}}]}}, {{notify: [{{rotation: desk, offset: 1}}]}}]}}\n\
         \x20 routes: {{P1: {{escalation: service}}}}\n\
         \x20 sms: {{account_sid: AC123, auth_token: '{{{{ secret.twilio }}}}', from: '{SENDER}', base_url: '{base}', replies: {{poll: 5s}}}}\n",
        ACK_WITHIN.as_secs()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_reply_from_the_primary_acknowledges_the_p1_and_stops_the_escalation() {
    let sb = paging::sandbox().await;
    let (twilio, base) = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let p1 = lead_probe("lead-to-bdc-call-list", false).replace("severity: P2", "severity: P1");
    assert!(p1.contains("severity: P1"));
    paging::write_config(dir.path(), &[("lead", p1)], &rooftop_yaml(&base));
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        "off",
        &[("TWILIO_TOKEN", TOKEN)],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    sb.set_faults(crm_down());

    // The primary's page, with the incident's code.
    let page = tools::eventually(
        Duration::from_secs(30),
        || format!("an SMS page to Maria: {:#?}", twilio.sent.lock().unwrap()),
        || twilio.sent_to(MARIA).into_iter().next(),
    )
    .await;
    let paged_at = Instant::now();
    assert!(page.starts_with("[P1] TRIGGER "), "{page}");
    let code = page
        .split_once("Reply ACK ")
        .map(|(_, rest)| rest[..4].to_string())
        .unwrap_or_else(|| panic!("a reply code in the page: {page}"));
    let open = incidents_json(dir.path(), state.path());
    let incident = open[0]["id"].as_str().unwrap().to_string();
    assert_eq!(code, rooftop::alerting::ack::ack_code(&incident), "{page}");
    assert!(twilio.sent_to(DEV).is_empty(), "the secondary waits");

    // The right code from a number that is no contact's: nothing happens.
    twilio.reply("SMstranger", STRANGER, &format!("ACK {code}"));
    tools::eventually(
        Duration::from_secs(15),
        || "the agent to read the stranger's reply".into(),
        || twilio.handled("SMstranger"),
    )
    .await;
    let open = incidents_json(dir.path(), state.path());
    assert!(open[0]["acked_by"].is_null(), "{:#}", open[0]);

    // Maria replies: acknowledged by her, by SMS, before the deadline.
    twilio.reply("SMmaria", MARIA, &format!(" ack  {code}. "));
    let acked = tools::eventually(
        Duration::from_secs(15),
        || "the incident acknowledged by SMS".into(),
        || {
            let open = incidents_json(dir.path(), state.path());
            let row = open.into_iter().find(|r| r["id"] == incident.as_str())?;
            (!row["acked_by"].is_null()).then_some(row)
        },
    )
    .await;
    assert_eq!(acked["acked_by"], "Maria Lopez (SMS)", "{acked:#}");
    assert!(acked["resolved_at"].is_null(), "{acked:#}");
    assert!(paged_at.elapsed() < ACK_WITHIN, "acknowledged in time");

    // Well past the deadline: the secondary is never paged.
    let past = ACK_WITHIN + Duration::from_secs(5);
    tokio::time::sleep(past.saturating_sub(paged_at.elapsed())).await;
    assert!(
        twilio.sent_to(DEV).is_empty(),
        "{:#?}",
        twilio.sent.lock().unwrap()
    );
    assert_eq!(twilio.sent_to(MARIA).len(), 1, "paged once");

    // The list request: replies to the sender number, since today, with basic auth.
    {
        let lists = twilio.lists.lock().unwrap();
        let ListRequest { query, auth, .. } = &lists[0];
        assert_eq!(
            query.get("To").map(String::as_str),
            Some(SENDER),
            "{query:?}"
        );
        let today = rooftop::clock::Clock::now(&rooftop::clock::SystemClock)
            .date_naive()
            .to_string();
        assert_eq!(query.get("DateSent>"), Some(&today), "{query:?}");
        assert_eq!(query.get("PageSize").map(String::as_str), Some("50"));
        assert!(auth.starts_with("Basic "), "{auth}");
    }

    let (out, err) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert!(
        out.contains(&format!(
            "sms reply `ACK {code}` from Maria Lopez: {incident} acknowledged"
        )),
        "{out}"
    );
    assert!(
        err.contains("warning: an `ACK` from an unknown number (…0199) acknowledged nothing"),
        "{err}"
    );
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    assert!(!err.contains(STRANGER), "{err}");
    let listing = paging::incidents(dir.path(), state.path(), &[]);
    assert!(
        listing.contains("acknowledged by Maria Lopez (SMS)"),
        "{listing}"
    );
}
