//! The SMS, webhook and PagerDuty channels against small axum servers on 127.0.0.1 standing
//! in for Twilio, a webhook receiver and PagerDuty: the exact requests they send (paths,
//! form fields, auth, headers, signatures, JSON) and how each provider failure maps to
//! `Delivery` (5xx and silence retry, 429 honours Retry-After, bad input is rejected) with
//! no secret in any reason.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use rooftop::clock::ManualClock;
use rooftop::model::Contact;
use rooftop::notify::pagerduty::{PagerDutyChannel, PagerDutySettings};
use rooftop::notify::sms::{DeliveryStatus, SmsChannel, SmsSettings, sms_text};
use rooftop::notify::webhook::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, WebhookSettings, verify_signature,
};
use rooftop::notify::{Channel, Delivery, Notice, NoticeKind, sample_notice};
use serde_json::{Value, json};

const SID: &str = "AC0123456789";
const AUTH_TOKEN: &str = "tw-auth-t0ken-s3cr3t";
/// base64("AC0123456789:tw-auth-t0ken-s3cr3t")
const BASIC_AUTH: &str = "Basic QUMwMTIzNDU2Nzg5OnR3LWF1dGgtdDBrZW4tczNjcjN0";
const FROM: &str = "+15005550006";
const TO: &str = "+14165550123";
const HMAC_SECRET: &str = "whsec-shared-between-us";
const ROUTING_KEY: &str = "R0UTING0KEY0fedcba9876543210abcd";
/// The channels' timeout in the "never answers" tests.
const SHORT_TIMEOUT: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------------------
// A provider stand-in: records every request, answers from a script.

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    /// Wait this long before answering (longer than the channel's timeout: "never answers").
    delay: Duration,
}

fn answer(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json")],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

impl Answer {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// The form fields, decoded, in order.
    fn form(&self) -> Vec<(String, String)> {
        let body = std::str::from_utf8(&self.body).expect("form is UTF-8");
        reqwest::Url::parse(&format!("http://x/?{body}"))
            .expect("form parses")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

#[derive(Clone)]
struct Script {
    answers: Arc<Vec<Answer>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The n-th request gets the n-th answer; the last answer repeats.
async fn respond(State(script): State<Script>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let n = {
        let mut seen = script.seen.lock().unwrap();
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
        });
        seen.len() - 1
    };
    let a = script.answers[n.min(script.answers.len() - 1)].clone();
    tokio::time::sleep(a.delay).await;
    let mut response = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (name, value) in a.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

struct Provider {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Provider {
    async fn start(answers: Vec<Answer>) -> Provider {
        let script = Script {
            answers: Arc::new(answers),
            seen: Arc::default(),
        };
        let app = Router::new().fallback(respond).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider {
            url: format!("http://{addr}"),
            seen: script.seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn only_request(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:?}");
        seen.into_iter().next().unwrap()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn dana() -> Contact {
    Contact {
        name: "Dana Service-Manager".into(),
        email: Some("dana@toronto-north.example".into()),
        phone: Some(TO.into()),
    }
}

fn after(d: &Delivery) -> Option<Duration> {
    match d {
        Delivery::Retry { after, .. } => *after,
        other => panic!("expected Retry, got {other:?}"),
    }
}

fn rejected_reason(d: Delivery) -> String {
    match d {
        Delivery::Rejected { reason } => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

/// A port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------
// Twilio.

fn sms(url: &str, timeout: Duration) -> SmsChannel {
    let mut settings = SmsSettings::new(SID, AUTH_TOKEN, FROM);
    settings.base_url = format!("{url}/");
    settings.timeout = timeout;
    SmsChannel::new(settings, client())
}

async fn sms_once(answer: Answer) -> (Delivery, Provider) {
    let twilio = Provider::start(vec![answer]).await;
    let delivery = sms(&twilio.url, Duration::from_secs(5))
        .send(&sample_notice(NoticeKind::Trigger), Some(&dana()))
        .await;
    (delivery, twilio)
}

#[tokio::test]
async fn twilio_gets_the_messages_form_with_basic_auth() {
    let (delivery, twilio) = sms_once(answer(
        201,
        r#"{"sid":"SM9f0e1d2c3b4a","status":"queued","to":"+14165550123"}"#,
    ))
    .await;
    assert_eq!(
        delivery,
        Delivery::Accepted {
            provider_id: Some("SM9f0e1d2c3b4a".into())
        }
    );
    let request = twilio.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/AC0123456789/Messages.json"
    );
    assert_eq!(request.header("authorization"), BASIC_AUTH);
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let notice = sample_notice(NoticeKind::Trigger);
    let text = sms_text(&notice);
    assert_eq!(
        request.form(),
        [
            ("To".to_string(), TO.to_string()),
            ("From".to_string(), FROM.to_string()),
            ("Body".to_string(), text.clone()),
        ]
    );
    assert!(text.ends_with(notice.runbook_url.as_deref().unwrap()));
}

#[tokio::test]
async fn twilio_status_polling_reads_the_message_resource() {
    let twilio = Provider::start(vec![
        answer(200, r#"{"sid":"SM1","status":"sent","error_code":null}"#),
        answer(
            200,
            r#"{"sid":"SM1","status":"undelivered","error_code":30003}"#,
        ),
        answer(
            404,
            r#"{"code":20404,"message":"The requested resource was not found"}"#,
        ),
    ])
    .await;
    let channel = sms(&twilio.url, Duration::from_secs(5));
    let first = channel.poll_status("SM1").await.unwrap();
    assert_eq!(first, DeliveryStatus::Sent);
    assert!(!first.is_final());
    let second = channel.poll_status("SM1").await.unwrap();
    assert_eq!(
        second,
        DeliveryStatus::Undelivered {
            error_code: Some(30003)
        }
    );
    assert!(second.is_final());
    let missing = channel.poll_status("SM1").await.unwrap_err();
    assert!(
        missing.to_string().contains("404") && missing.to_string().contains("20404"),
        "{missing}"
    );
    for request in twilio.seen() {
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.path,
            "/2010-04-01/Accounts/AC0123456789/Messages/SM1.json"
        );
        assert_eq!(request.header("authorization"), BASIC_AUTH);
    }
}

#[tokio::test]
async fn twilio_invalid_number_is_rejected_not_retried() {
    let (delivery, _) = sms_once(answer(
        400,
        r#"{"code":21211,"message":"The 'To' number +14165550123 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
    ))
    .await;
    let reason = rejected_reason(delivery);
    assert!(
        reason.contains("21211") && reason.contains("not a valid phone number"),
        "{reason}"
    );
}

#[tokio::test]
async fn twilio_stop_reply_is_rejected_not_retried() {
    let (delivery, _) = sms_once(answer(
        400,
        r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
    ))
    .await;
    let reason = rejected_reason(delivery);
    assert!(
        reason.contains("21610") && reason.contains("STOP"),
        "{reason}"
    );
}

#[tokio::test]
async fn twilio_bad_credentials_are_rejected_and_the_token_never_shows() {
    // A misbehaving proxy could even echo the credentials back: still redacted.
    let body = format!(
        r#"{{"code":20003,"message":"Authenticate: {SID}:{AUTH_TOKEN} not accepted","status":401}}"#
    );
    let (delivery, twilio) = sms_once(answer(401, body)).await;
    let reason = rejected_reason(delivery.clone());
    assert!(
        reason.contains("401") && reason.contains("20003"),
        "{reason}"
    );
    assert!(!reason.contains(AUTH_TOKEN), "{reason}");
    assert!(!format!("{delivery:?}").contains(AUTH_TOKEN));
    assert!(!format!("{:?}", sms(&twilio.url, SHORT_TIMEOUT)).contains(AUTH_TOKEN));
}

#[tokio::test]
async fn twilio_rate_limit_retries_after_the_header() {
    let (delivery, _) = sms_once(
        answer(429, r#"{"code":20429,"message":"Too Many Requests"}"#).header("retry-after", "7"),
    )
    .await;
    assert_eq!(after(&delivery), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn twilio_server_error_is_retried() {
    let (delivery, _) = sms_once(answer(500, "internal error")).await;
    assert_eq!(after(&delivery), None);
}

#[tokio::test]
async fn twilio_that_never_answers_is_retried_within_the_timeout() {
    let twilio = Provider::start(vec![answer(201, "{}").after(Duration::from_secs(30))]).await;
    let started = Instant::now();
    let delivery = sms(&twilio.url, SHORT_TIMEOUT)
        .send(&sample_notice(NoticeKind::Trigger), Some(&dana()))
        .await;
    let took = started.elapsed();
    assert!(matches!(delivery, Delivery::Retry { .. }), "{delivery:?}");
    assert!(
        took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT * 5,
        "took {took:?}"
    );
}

#[tokio::test]
async fn twilio_unreachable_is_retried() {
    let url = closed_port_url().await;
    let delivery = sms(&url, Duration::from_secs(5))
        .send(&sample_notice(NoticeKind::Trigger), Some(&dana()))
        .await;
    assert!(matches!(delivery, Delivery::Retry { .. }), "{delivery:?}");
}

#[tokio::test]
async fn sms_without_a_phone_is_rejected_without_calling_twilio() {
    let twilio = Provider::start(vec![answer(201, "{}")]).await;
    let channel = sms(&twilio.url, SHORT_TIMEOUT);
    let mut contact = dana();
    contact.phone = None;
    assert!(!channel.reaches(Some(&contact)));
    let delivery = channel
        .send(&sample_notice(NoticeKind::Trigger), Some(&contact))
        .await;
    assert!(
        matches!(delivery, Delivery::Rejected { .. }),
        "{delivery:?}"
    );
    assert!(twilio.seen().is_empty());
}

// ---------------------------------------------------------------------------------------
// Webhook.

const NOW: i64 = 1_790_000_100;

fn webhook(url: &str, timeout: Duration) -> WebhookChannel {
    let mut settings = WebhookSettings::new(format!("{url}/hooks/rooftop"), HMAC_SECRET);
    settings.timeout = timeout;
    let clock = ManualClock::new(DateTime::from_timestamp(NOW, 0).unwrap());
    WebhookChannel::new(settings, client()).with_clock(Arc::new(clock))
}

async fn webhook_once(answer: Answer, notice: &Notice) -> (Delivery, Provider) {
    let receiver = Provider::start(vec![answer]).await;
    let delivery = webhook(&receiver.url, Duration::from_secs(5))
        .send(notice, None)
        .await;
    (delivery, receiver)
}

#[tokio::test]
async fn webhook_request_is_signed_and_the_signature_verifies() {
    let notice = sample_notice(NoticeKind::Trigger);
    let (delivery, receiver) = webhook_once(answer(204, ""), &notice).await;
    assert_eq!(delivery, Delivery::Accepted { provider_id: None });
    let request = receiver.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/rooftop");
    assert_eq!(request.header("content-type"), "application/json");
    let timestamp = request.header(TIMESTAMP_HEADER).to_string();
    let signature = request.header(SIGNATURE_HEADER).to_string();
    assert_eq!(timestamp, NOW.to_string());
    assert!(
        signature.starts_with("sha256=") && signature.len() == 7 + 64,
        "{signature}"
    );

    let body = request.json();
    assert_eq!(body["event"], "trigger");
    assert_eq!(body["incident_id"], notice.incident_id);
    assert_eq!(body["severity"], "P2");
    assert_eq!(body["rooftop_name"], "Toronto North Honda");
    assert_eq!(body["runbook_url"], notice.runbook_url.clone().unwrap());
    assert_eq!(body["sync"][0]["step"], "ro-in-dms");
    let round_trip: Notice = serde_json::from_value(body).expect("body holds the whole notice");
    assert_eq!(round_trip, notice);

    // The receiver's side: accepts the real request ...
    let now = DateTime::from_timestamp(NOW + 5, 0).unwrap();
    let tolerance = Duration::from_secs(300);
    assert!(verify_signature(
        HMAC_SECRET,
        &timestamp,
        &request.body,
        &signature,
        now,
        tolerance
    ));
    // ... refuses a tampered body, a swapped timestamp, the wrong secret ...
    let tampered = String::from_utf8(request.body.to_vec())
        .unwrap()
        .replace("\"P2\"", "\"P4\"");
    assert_ne!(tampered.as_bytes(), &request.body[..]);
    assert!(!verify_signature(
        HMAC_SECRET,
        &timestamp,
        tampered.as_bytes(),
        &signature,
        now,
        tolerance
    ));
    let later = (NOW + 60).to_string();
    assert!(!verify_signature(
        HMAC_SECRET,
        &later,
        &request.body,
        &signature,
        now,
        tolerance
    ));
    assert!(!verify_signature(
        "guess",
        &timestamp,
        &request.body,
        &signature,
        now,
        tolerance
    ));
    // ... and the same request replayed ten minutes later.
    let replayed_at = DateTime::from_timestamp(NOW + 600, 0).unwrap();
    assert!(!verify_signature(
        HMAC_SECRET,
        &timestamp,
        &request.body,
        &signature,
        replayed_at,
        tolerance
    ));
}

#[tokio::test]
async fn webhook_resolve_names_its_event() {
    let (delivery, receiver) =
        webhook_once(answer(200, "ok"), &sample_notice(NoticeKind::Resolve)).await;
    assert_eq!(delivery, Delivery::Accepted { provider_id: None });
    assert_eq!(receiver.only_request().json()["event"], "resolve");
}

#[tokio::test]
async fn webhook_failures_map_to_retry_or_rejected() {
    let notice = sample_notice(NoticeKind::Trigger);
    let (d, _) = webhook_once(answer(500, "boom"), &notice).await;
    assert_eq!(after(&d), None);
    let (d, _) = webhook_once(answer(503, "").header("retry-after", "3"), &notice).await;
    assert_eq!(after(&d), Some(Duration::from_secs(3)));
    let (d, _) = webhook_once(answer(429, "").header("retry-after", "7"), &notice).await;
    assert_eq!(after(&d), Some(Duration::from_secs(7)));
    let (d, _) = webhook_once(answer(410, r#"{"error":"hook deleted"}"#), &notice).await;
    let reason = rejected_reason(d);
    assert!(
        reason.contains("410") && reason.contains("hook deleted"),
        "{reason}"
    );
    // A receiver that echoes what it got (with the secret, say) still leaks nothing.
    let (d, _) = webhook_once(
        answer(401, format!("bad signature for key {HMAC_SECRET}")),
        &notice,
    )
    .await;
    let reason = rejected_reason(d);
    assert!(!reason.contains(HMAC_SECRET), "{reason}");
}

#[tokio::test]
async fn webhook_that_never_answers_is_retried_within_the_timeout() {
    let receiver = Provider::start(vec![answer(200, "").after(Duration::from_secs(30))]).await;
    let started = Instant::now();
    let delivery = webhook(&receiver.url, SHORT_TIMEOUT)
        .send(&sample_notice(NoticeKind::Trigger), None)
        .await;
    let took = started.elapsed();
    assert!(matches!(delivery, Delivery::Retry { .. }), "{delivery:?}");
    assert!(
        took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT * 5,
        "took {took:?}"
    );
}

#[tokio::test]
async fn webhook_unreachable_is_retried_and_the_url_stays_out_of_the_reason() {
    let url = closed_port_url().await;
    let mut settings = WebhookSettings::new(format!("{url}/services/T0/B0/url-t0ken"), HMAC_SECRET);
    settings.timeout = Duration::from_secs(5);
    let delivery = WebhookChannel::new(settings, client())
        .send(&sample_notice(NoticeKind::Trigger), None)
        .await;
    match delivery {
        Delivery::Retry { reason, .. } => assert!(!reason.contains("url-t0ken"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// PagerDuty.

fn pagerduty(url: &str, timeout: Duration) -> PagerDutyChannel {
    let mut settings = PagerDutySettings::new(ROUTING_KEY);
    settings.url = format!("{url}/v2/enqueue");
    settings.timeout = timeout;
    PagerDutyChannel::new(settings, client())
}

const PD_ACCEPTED: &str = r#"{"status":"success","message":"Event processed","dedup_key":"inc-appointment-to-ro-to-survey-1790000000000"}"#;

#[tokio::test]
async fn pagerduty_trigger_flap_acknowledge_resolve_share_one_dedup_key() {
    let pd = Provider::start(vec![answer(202, PD_ACCEPTED)]).await;
    let channel = pagerduty(&pd.url, Duration::from_secs(5));
    assert!(channel.reaches(None));
    for kind in [
        NoticeKind::Trigger,
        NoticeKind::Flapping,
        NoticeKind::Acknowledge,
        NoticeKind::Resolve,
    ] {
        let delivery = channel.send(&sample_notice(kind), None).await;
        assert_eq!(
            delivery,
            Delivery::Accepted {
                provider_id: Some("inc-appointment-to-ro-to-survey-1790000000000".into())
            },
            "{kind:?}"
        );
    }
    let seen = pd.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v2/enqueue");
        assert!(
            request
                .header("content-type")
                .starts_with("application/json")
        );
        assert_eq!(request.json()["routing_key"], ROUTING_KEY);
        assert_eq!(
            request.json()["dedup_key"],
            "inc-appointment-to-ro-to-survey-1790000000000"
        );
    }

    let trigger = seen[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "[P2] Toronto North Honda: appointment-to-ro-to-survey failing — 2 failed runs in a row"
    );
    assert_eq!(payload["source"], "toronto-north");
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["timestamp"], "2026-09-21T14:13:20+00:00");
    assert_eq!(payload["component"], "crm-to-dms");
    assert_eq!(payload["group"], "service-appointment");
    assert_eq!(payload["class"], "sync_timeout");
    let details = &payload["custom_details"];
    assert_eq!(details["reason"], "2 failed runs in a row");
    assert_eq!(details["failed_step"], "ro-in-dms");
    assert_eq!(details["last_message"], "no RO after 15 polls over 15m");
    assert_eq!(details["sync"][0]["estimate_ms"], 900_000.0);
    assert_eq!(details["sync"][0]["slo_ms"], 300_000.0);
    let links = trigger["links"].as_array().unwrap();
    assert!(
        links.contains(&json!({
            "href": "https://runbooks.example/runbooks/ro-not-created.md",
            "text": "Runbook"
        })),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l["href"] == "http://127.0.0.1:9464/ack/inc-1?sig=abc")
    );

    let flapping = seen[1].json();
    assert_eq!(flapping["event_action"], "trigger");
    assert!(
        flapping["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("flapping")
    );

    for (request, action) in [(&seen[2], "acknowledge"), (&seen[3], "resolve")] {
        assert_eq!(
            request.json(),
            json!({
                "routing_key": ROUTING_KEY,
                "event_action": action,
                "dedup_key": "inc-appointment-to-ro-to-survey-1790000000000",
            })
        );
    }
}

async fn pagerduty_once(answer: Answer) -> Delivery {
    let pd = Provider::start(vec![answer]).await;
    pagerduty(&pd.url, Duration::from_secs(5))
        .send(&sample_notice(NoticeKind::Trigger), None)
        .await
}

#[tokio::test]
async fn pagerduty_failures_map_to_retry_or_rejected() {
    let d = pagerduty_once(
        answer(429, r#"{"status":"throttle event","message":"Requests for this service are arriving too quickly."}"#)
            .header("retry-after", "7"),
    )
    .await;
    assert_eq!(after(&d), Some(Duration::from_secs(7)));
    let d = pagerduty_once(answer(429, "")).await;
    assert_eq!(after(&d), Some(Duration::from_secs(30)));
    let d = pagerduty_once(answer(500, "")).await;
    assert_eq!(after(&d), None);
    let d = pagerduty_once(answer(
        400,
        format!(r#"{{"status":"invalid event","message":"Event object is invalid","errors":["routing_key {ROUTING_KEY} is unknown"]}}"#),
    ))
    .await;
    let reason = rejected_reason(d);
    assert!(
        reason.contains("400") && reason.contains("Event object is invalid"),
        "{reason}"
    );
    assert!(!reason.contains(ROUTING_KEY), "{reason}");
}

#[tokio::test]
async fn pagerduty_that_never_answers_is_retried_within_the_timeout() {
    let pd = Provider::start(vec![
        answer(202, PD_ACCEPTED).after(Duration::from_secs(30)),
    ])
    .await;
    let channel = pagerduty(&pd.url, SHORT_TIMEOUT);
    assert!(!format!("{channel:?}").contains(ROUTING_KEY));
    let started = Instant::now();
    let delivery = channel
        .send(&sample_notice(NoticeKind::Trigger), None)
        .await;
    let took = started.elapsed();
    assert!(matches!(delivery, Delivery::Retry { .. }), "{delivery:?}");
    assert!(
        took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT * 5,
        "took {took:?}"
    );
}
