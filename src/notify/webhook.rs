//! A generic JSON webhook: the notice POSTed as JSON, signed Stripe-style with HMAC-SHA256
//! over `<timestamp>.<body>` so receivers can check who sent it and refuse replays.
//! [`verify_signature`] is the receiver's half. One attempt per `send`; the HMAC secret
//! never reaches a reason or `Debug`, and neither does the URL (it often holds a token).

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use sha2::Sha256;

use super::http::{self, DEFAULT_TIMEOUT, Redactor, failure_outcome, quote};
use super::{Channel, Delivery, Notice, SendFuture};
use crate::clock::{Clock, SystemClock};
use crate::model::Contact;

/// Unix seconds at signing, as sent and as signed.
pub const TIMESTAMP_HEADER: &str = "X-Rooftop-Timestamp";
/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Rooftop-Signature";

/// Most of a receiver's answer quoted in a reason.
const MAX_QUOTED_CHARS: usize = 200;

type HmacSha256 = Hmac<Sha256>;

/// Where to POST and how to sign.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The receiver. Only its scheme and host show in `Debug`.
    pub url: String,
    /// Secret: the HMAC-SHA256 key the receiver shares. Redacted from `Debug`.
    pub secret: String,
    /// Limit for one request, connecting through reading the answer.
    pub timeout: Duration,
}

impl WebhookSettings {
    /// Settings with a 10 s timeout.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookSettings {
            url: url.into(),
            secret: secret.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = reqwest::Url::parse(&self.url)
            .map(|u| format!("{}://{}/[redacted]", u.scheme(), u.authority()))
            .unwrap_or_else(|_| "[redacted]".into());
        f.debug_struct("WebhookSettings")
            .field("url", &origin)
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Posts notices to one URL.
#[derive(Debug)]
pub struct WebhookChannel {
    settings: WebhookSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings, client: reqwest::Client) -> Self {
        WebhookChannel {
            settings,
            client,
            clock: Arc::new(SystemClock),
        }
    }

    /// Signs with timestamps from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn post(&self, notice: &Notice) -> Delivery {
        let s = &self.settings;
        let body = match webhook_body(notice) {
            Ok(body) => body,
            Err(e) => {
                return Delivery::Rejected {
                    reason: format!("webhook: cannot encode the notice as JSON: {e}"),
                };
            }
        };
        let timestamp = self.clock.now().timestamp();
        let request = self
            .client
            .post(&s.url)
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(&s.secret, timestamp, &body))
            .body(body)
            .timeout(s.timeout);
        let redactor = Redactor::secret(&s.secret);
        http::send(
            request,
            "webhook",
            s.timeout,
            None,
            &redactor,
            response_outcome,
        )
        .await
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, notice: &'a Notice, _contact: Option<&'a Contact>) -> SendFuture<'a> {
        Box::pin(self.post(notice))
    }
}

/// The JSON body: `event` first, then every field of the notice. Field names are stable
/// (a test pins them); receivers should ignore fields they do not know.
///
/// - `event`: `trigger` | `flapping` | `acknowledge` | `resolve` (also in `kind`)
/// - `kind`: same as `event`
/// - `incident_id`: stable per incident; use it to deduplicate
/// - `severity`: `P1` (most urgent) … `P4`
/// - `rooftop_id`, `rooftop_name` (may be null): the dealership
/// - `probe`, `flow`, `connector`: what failed
/// - `opened_at`, `resolved_at` (null until resolved): RFC 3339, UTC
/// - `reason`: why it opened, in words
/// - `error_class`, `failed_step`, `last_message`: the failure (each may be null)
/// - `sync`: `[{step, estimate_ms, lower_ms, upper_ms, slo_ms}]` sync latency per step
/// - `runbook_url`, `runbook_impact`, `runbook_mitigations`: the runbook (each may be null)
/// - `ack_url`: signed, expiring acknowledge link (may be null)
/// - `also_affected`: other probes on the same connector grouped into this page
/// - `dependents`: probes failing because this one is (they `depend_on` it)
/// - `notes`: lines about this page (escalated, reminder, inside a change window)
pub fn webhook_body(notice: &Notice) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = serde_json::Map::new();
    body.insert("event".into(), notice.kind.as_str().into());
    if let serde_json::Value::Object(fields) = serde_json::to_value(notice)? {
        body.extend(fields);
    }
    serde_json::to_vec(&serde_json::Value::Object(body))
}

/// The `X-Rooftop-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = signing_mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    let mut header = String::with_capacity(7 + 64);
    header.push_str("sha256=");
    for b in tag {
        let _ = write!(header, "{b:02x}");
    }
    header
}

/// Whether `header` (`X-Rooftop-Signature`; several comma-separated `sha256=` values are
/// allowed, for rotating secrets) signs `body` sent at `timestamp` (`X-Rooftop-Timestamp`,
/// exactly as received) with `secret`, and the timestamp is within `tolerance` of `now`
/// either way: an old request replayed is refused even with a good signature.
/// Compares in constant time.
pub fn verify_signature(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> bool {
    let Ok(sent) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let age = now.timestamp().abs_diff(sent);
    if age > tolerance.as_secs() {
        return false;
    }
    header.split(',').any(|candidate| {
        let Some(tag) = candidate
            .trim()
            .strip_prefix("sha256=")
            .and_then(decode_hex)
        else {
            return false;
        };
        signing_mac(secret, timestamp, body)
            .verify_slice(&tag)
            .is_ok()
    })
}

fn signing_mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How a delivery went, from the receiver's answer.
fn response_outcome(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Delivery {
    if status.is_success() {
        return Delivery::Accepted { provider_id: None };
    }
    let quoted = quote(MAX_QUOTED_CHARS, &String::from_utf8_lossy(body));
    let reason = if quoted.is_empty() {
        format!("webhook receiver answered {}", status.as_u16())
    } else {
        format!("webhook receiver answered {}: {quoted}", status.as_u16())
    };
    failure_outcome(status, headers, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::http::headers_with_retry_after as headers;
    use crate::notify::{NoticeKind, sample_notice};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid timestamp")
    }

    /// A JSON object's keys, in order.
    fn keys(value: &serde_json::Value) -> Vec<&str> {
        value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn body_is_the_notice_with_event_first_and_pinned_field_names() {
        let body = webhook_body(&sample_notice(NoticeKind::Flapping)).expect("encodes");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        // Receivers depend on these names: renaming a Notice field breaks them.
        assert_eq!(
            keys(&json),
            [
                "event",
                "kind",
                "incident_id",
                "severity",
                "rooftop_id",
                "rooftop_name",
                "probe",
                "flow",
                "connector",
                "opened_at",
                "resolved_at",
                "reason",
                "error_class",
                "failed_step",
                "last_message",
                "sync",
                "runbook_url",
                "runbook_impact",
                "runbook_mitigations",
                "ack_url",
                "also_affected",
                "dependents",
                "notes",
            ]
        );
        assert_eq!(
            keys(&json["sync"][0]),
            ["step", "estimate_ms", "lower_ms", "upper_ms", "slo_ms"]
        );
        assert_eq!(json["event"], "flapping");
        assert_eq!(json["kind"], "flapping");
        assert_eq!(json["opened_at"], "2026-09-21T14:13:20Z");
        assert_eq!(json["resolved_at"], serde_json::Value::Null);
    }

    #[test]
    fn signature_round_trips_and_matches_a_known_vector() {
        let body = br#"{"event":"trigger"}"#;
        let header = sign("whsec", 1_790_000_000, body);
        // HMAC-SHA256("whsec", "1790000000.{\"event\":\"trigger\"}"), from `openssl dgst`.
        assert_eq!(
            header,
            "sha256=62cb9f41788f3893dbe63913a8ceb349d9f7ae62e8a6952e0d6b2545cb982cc9"
        );
        let now = at(1_790_000_030);
        let tolerance = Duration::from_secs(300);
        let accepts = |secret: &str, timestamp: &str, body: &[u8], header: &str| {
            verify_signature(secret, timestamp, body, header, now, tolerance)
        };
        assert!(accepts("whsec", "1790000000", body, &header));
        assert!(!accepts("other", "1790000000", body, &header));
        assert!(!accepts("whsec", "1790000001", body, &header));
        assert!(!accepts("whsec", "1790000000", b"{}", &header));
        assert!(!accepts("whsec", "1790000000", body, "sha256=zz"));
        assert!(!accepts("whsec", "1790000000", body, &header[7..]));
        assert!(!accepts("whsec", "soon", body, &header));
    }

    #[test]
    fn old_and_far_future_timestamps_are_refused() {
        let body = b"{}";
        let header = sign("k", 1_000, body);
        let tolerance = Duration::from_secs(300);
        let accepts_at = |now| verify_signature("k", "1000", body, &header, now, tolerance);
        assert!(accepts_at(at(1_300)));
        assert!(!accepts_at(at(1_301)));
        assert!(accepts_at(at(700)));
        assert!(!accepts_at(at(699)));
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let body = b"{}";
        let good = sign("new", 1_000, body);
        let old = sign("old", 1_000, body);
        let header = format!("{old}, {good}");
        assert!(verify_signature(
            "new",
            "1000",
            body,
            &header,
            at(1_000),
            Duration::from_secs(1)
        ));
    }

    #[test]
    fn responses_map_to_deliveries() {
        assert_eq!(
            response_outcome(StatusCode::NO_CONTENT, &headers(None), b""),
            Delivery::Accepted { provider_id: None }
        );
        assert_eq!(
            response_outcome(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("7")),
                b"slow down"
            ),
            Delivery::Retry {
                reason: "webhook receiver answered 429: slow down".into(),
                after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(
            response_outcome(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("2")), b""),
            Delivery::Retry {
                reason: "webhook receiver answered 503".into(),
                after: Some(Duration::from_secs(2)),
            }
        );
        assert_eq!(
            response_outcome(StatusCode::FORBIDDEN, &headers(None), b"bad\nsignature"),
            Delivery::Rejected {
                reason: "webhook receiver answered 403: bad signature".into()
            }
        );
        let long = "x".repeat(5000);
        match response_outcome(StatusCode::BAD_REQUEST, &headers(None), long.as_bytes()) {
            Delivery::Rejected { reason } => assert!(reason.len() < 300, "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_shows_neither_secret_nor_path() {
        let settings = WebhookSettings::new(
            "https://hooks.example/services/T0/B0/tok3n?x=1",
            "whsec-123",
        );
        let ch = WebhookChannel::new(settings.clone(), reqwest::Client::new());
        for text in [format!("{settings:?}"), format!("{ch:?}")] {
            assert!(!text.contains("whsec-123"), "{text}");
            assert!(!text.contains("tok3n"), "{text}");
            assert!(text.contains("https://hooks.example/[redacted]"), "{text}");
        }
    }

    #[test]
    fn reaches_the_team_not_a_person() {
        let ch = WebhookChannel::new(
            WebhookSettings::new("http://127.0.0.1:1/", "k"),
            reqwest::Client::new(),
        );
        assert!(ch.reaches(None));
        let dana = Contact {
            name: "Dana".into(),
            email: Some("dana@example.com".into()),
            phone: None,
        };
        assert!(!ch.reaches(Some(&dana)));
        assert_eq!(ch.name(), "webhook");
    }
}
