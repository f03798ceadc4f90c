//! PagerDuty through the Events API v2: trigger, acknowledge and resolve one PagerDuty
//! incident per rooftop incident, tied together by `dedup_key` = the incident id (a flap
//! re-triggers the same key, which PagerDuty folds in). One attempt per `send`; the
//! routing key travels only in the request body, never in a reason or `Debug`.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{self, DEFAULT_TIMEOUT, Redactor, failure_outcome, quote, retry_after};
use super::{Channel, Delivery, Notice, NoticeKind, SendFuture};
use crate::model::{Contact, Severity};

/// The Events API v2 endpoint.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limit on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;

/// How long to wait after a 429 that names no time.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Most of PagerDuty's answer quoted in a reason.
const MAX_QUOTED_CHARS: usize = 300;

/// Which PagerDuty service to page.
#[derive(Clone)]
pub struct PagerDutySettings {
    /// Secret: the service's Events API v2 integration key. Redacted from `Debug`.
    pub routing_key: String,
    /// Events endpoint, default [`DEFAULT_EVENTS_URL`].
    pub url: String,
    /// Limit for one request, connecting through reading the answer.
    pub timeout: Duration,
}

impl PagerDutySettings {
    /// Settings against the real Events API with a 10 s timeout.
    pub fn new(routing_key: impl Into<String>) -> Self {
        PagerDutySettings {
            routing_key: routing_key.into(),
            url: DEFAULT_EVENTS_URL.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for PagerDutySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDutySettings")
            .field("routing_key", &"[redacted]")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends incident events to one PagerDuty service.
#[derive(Debug)]
pub struct PagerDutyChannel {
    settings: PagerDutySettings,
    client: reqwest::Client,
}

impl PagerDutyChannel {
    pub fn new(settings: PagerDutySettings, client: reqwest::Client) -> Self {
        PagerDutyChannel { settings, client }
    }

    async fn post(&self, notice: &Notice) -> Delivery {
        let s = &self.settings;
        let event = event_body(notice, &s.routing_key);
        let request = self.client.post(&s.url).json(&event).timeout(s.timeout);
        // The dedup key is ours: it identifies the event even without PagerDuty's answer.
        let id = notice.incident_id.clone();
        let redactor = Redactor::secret(&s.routing_key);
        http::send(
            request,
            "PagerDuty",
            s.timeout,
            Some(id),
            &redactor,
            |st, h, b| response_outcome(st, h, b, &notice.incident_id),
        )
        .await
    }
}

impl Channel for PagerDutyChannel {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn send<'a>(&'a self, notice: &'a Notice, _contact: Option<&'a Contact>) -> SendFuture<'a> {
        Box::pin(self.post(notice))
    }
}

/// PagerDuty's severity for a rooftop severity: P1 critical, P2 error, P3 warning, P4
/// info. Anything else is a bug upstream; it pages as critical rather than hide.
pub fn pagerduty_severity(severity: &str) -> &'static str {
    match Severity::parse(severity.trim()) {
        Some(Severity::P1) | None => "critical",
        Some(Severity::P2) => "error",
        Some(Severity::P3) => "warning",
        Some(Severity::P4) => "info",
    }
}

/// `[P2] Toronto North Honda: appointment-to-ro-to-survey failing — 2 failed runs in a
/// row`, at most [`MAX_SUMMARY_CHARS`] characters.
pub fn summary(notice: &Notice) -> String {
    let state = match notice.kind {
        NoticeKind::Flapping => "flapping",
        NoticeKind::Trigger | NoticeKind::Acknowledge => "failing",
        NoticeKind::Resolve => "recovered",
    };
    let mut text = format!(
        "[{}] {}: {} {state}",
        notice.severity.trim(),
        notice.rooftop_label(),
        notice.probe
    );
    if !notice.also_affected.is_empty() {
        let _ = write!(
            text,
            " (+{} more on {})",
            notice.also_affected.len(),
            notice.connector
        );
    }
    if !notice.reason.trim().is_empty() {
        let _ = write!(text, " — {}", notice.reason.trim());
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_SUMMARY_CHARS - 1) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The Events API v2 body for `notice`. Acknowledge and resolve carry only the routing
/// key, action and dedup key; trigger and flapping (a trigger on the same key) carry the
/// payload and links.
pub fn event_body(notice: &Notice, routing_key: &str) -> Value {
    let action = match notice.kind {
        NoticeKind::Trigger | NoticeKind::Flapping => "trigger",
        NoticeKind::Acknowledge => "acknowledge",
        NoticeKind::Resolve => "resolve",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": notice.incident_id,
    });
    if action != "trigger" {
        return event;
    }
    let mut payload = Map::new();
    payload.insert("summary".into(), summary(notice).into());
    payload.insert("source".into(), notice.rooftop_id.clone().into());
    payload.insert(
        "severity".into(),
        pagerduty_severity(&notice.severity).into(),
    );
    payload.insert("timestamp".into(), notice.opened_at.to_rfc3339().into());
    payload.insert("component".into(), notice.connector.clone().into());
    payload.insert("group".into(), notice.flow.clone().into());
    if let Some(class) = &notice.error_class {
        payload.insert("class".into(), class.clone().into());
    }
    payload.insert("custom_details".into(), custom_details(notice));
    event["payload"] = Value::Object(payload);
    event["client"] = "rooftop".into();
    let mut links = Vec::new();
    if let Some(url) = notice.runbook_url.as_deref().filter(|u| !u.is_empty()) {
        links.push(json!({"href": url, "text": "Runbook"}));
    }
    if let Some(url) = notice.ack_url.as_deref().filter(|u| !u.is_empty()) {
        links.push(json!({"href": url, "text": "Acknowledge in rooftop"}));
    }
    if !links.is_empty() {
        event["links"] = Value::Array(links);
    }
    event
}

/// What the responder sees under "Custom details"; absent values left out.
fn custom_details(notice: &Notice) -> Value {
    let mut details = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            details.insert(key.into(), v.into());
        }
    };
    put("rooftop", Some(notice.rooftop_label()));
    put("probe", Some(&notice.probe));
    put("reason", Some(&notice.reason));
    put("error_class", notice.error_class.as_deref());
    put("failed_step", notice.failed_step.as_deref());
    put("last_message", notice.last_message.as_deref());
    put("impact", notice.runbook_impact.as_deref());
    put("mitigations", notice.runbook_mitigations.as_deref());
    put("incident_id", Some(&notice.incident_id));
    if !notice.sync.is_empty() {
        let sync: Vec<Value> = notice
            .sync
            .iter()
            .map(|f| {
                json!({
                    "step": f.step,
                    "estimate_ms": f.estimate_ms,
                    "lower_ms": f.lower_ms,
                    "upper_ms": f.upper_ms,
                    "slo_ms": f.slo_ms,
                })
            })
            .collect();
        details.insert("sync".into(), Value::Array(sync));
    }
    if !notice.also_affected.is_empty() {
        details.insert("also_affected".into(), json!(notice.also_affected));
    }
    if !notice.dependents.is_empty() {
        details.insert("dependents".into(), json!(notice.dependents));
    }
    if !notice.notes.is_empty() {
        details.insert("notes".into(), json!(notice.notes));
    }
    Value::Object(details)
}

/// PagerDuty's answer body, success or error.
#[derive(Deserialize, Default)]
struct EventsResponse {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// How a delivery went, from PagerDuty's answer.
fn response_outcome(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    dedup_key: &str,
) -> Delivery {
    let parsed: Option<EventsResponse> = serde_json::from_slice(body).ok();
    if status.is_success() {
        let provider_id = parsed
            .and_then(|r| r.dedup_key)
            .unwrap_or_else(|| dedup_key.to_string());
        return Delivery::Accepted {
            provider_id: Some(provider_id),
        };
    }
    let details = match parsed {
        Some(r) => {
            let mut text = r.message.unwrap_or_default();
            if !r.errors.is_empty() {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&r.errors.join("; "));
            }
            quote(MAX_QUOTED_CHARS, &text)
        }
        None => quote(MAX_QUOTED_CHARS, &String::from_utf8_lossy(body)),
    };
    let reason = if details.is_empty() {
        format!("PagerDuty answered {}", status.as_u16())
    } else {
        format!("PagerDuty answered {}: {details}", status.as_u16())
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Delivery::Retry {
            reason,
            after: Some(retry_after(headers).unwrap_or(DEFAULT_RATE_LIMIT_WAIT)),
        };
    }
    failure_outcome(status, headers, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::http::headers_with_retry_after as headers;
    use crate::notify::sample_notice;

    #[test]
    fn severities_map_to_pagerduty_levels() {
        assert_eq!(pagerduty_severity("P1"), "critical");
        assert_eq!(pagerduty_severity("P2"), "error");
        assert_eq!(pagerduty_severity("P3"), "warning");
        assert_eq!(pagerduty_severity("P4"), "info");
        assert_eq!(pagerduty_severity("P9"), "critical");
    }

    #[test]
    fn trigger_carries_the_full_payload() {
        let event = event_body(&sample_notice(NoticeKind::Trigger), "rk-123");
        assert_eq!(
            event,
            json!({
                "routing_key": "rk-123",
                "event_action": "trigger",
                "dedup_key": "inc-appointment-to-ro-to-survey-1790000000000",
                "payload": {
                    "summary": "[P2] Toronto North Honda: appointment-to-ro-to-survey failing — 2 failed runs in a row",
                    "source": "toronto-north",
                    "severity": "error",
                    "timestamp": "2026-09-21T14:13:20+00:00",
                    "component": "crm-to-dms",
                    "group": "service-appointment",
                    "class": "sync_timeout",
                    "custom_details": {
                        "rooftop": "Toronto North Honda",
                        "probe": "appointment-to-ro-to-survey",
                        "reason": "2 failed runs in a row",
                        "error_class": "sync_timeout",
                        "failed_step": "ro-in-dms",
                        "last_message": "no RO after 15 polls over 15m",
                        "impact": "Service advisors cannot see today's appointments as ROs.",
                        "mitigations": "1. Check the DMS sync job.\n2. Restart the connector.",
                        "incident_id": "inc-appointment-to-ro-to-survey-1790000000000",
                        "sync": [{
                            "step": "ro-in-dms",
                            "estimate_ms": 900000.0,
                            "lower_ms": 890000.0,
                            "upper_ms": 910000.0,
                            "slo_ms": 300000.0,
                        }],
                    },
                },
                "client": "rooftop",
                "links": [
                    {"href": "https://runbooks.example/runbooks/ro-not-created.md", "text": "Runbook"},
                    {"href": "http://127.0.0.1:9464/ack/inc-1?sig=abc", "text": "Acknowledge in rooftop"},
                ],
            })
        );
    }

    #[test]
    fn flapping_retriggers_the_same_key_and_says_so() {
        let event = event_body(&sample_notice(NoticeKind::Flapping), "rk");
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(
            event["dedup_key"],
            "inc-appointment-to-ro-to-survey-1790000000000"
        );
        assert_eq!(
            event["payload"]["summary"],
            "[P2] Toronto North Honda: appointment-to-ro-to-survey flapping — 2 failed runs in a row"
        );
    }

    #[test]
    fn acknowledge_and_resolve_carry_only_the_key() {
        for (kind, action) in [
            (NoticeKind::Acknowledge, "acknowledge"),
            (NoticeKind::Resolve, "resolve"),
        ] {
            assert_eq!(
                event_body(&sample_notice(kind), "rk"),
                json!({
                    "routing_key": "rk",
                    "event_action": action,
                    "dedup_key": "inc-appointment-to-ro-to-survey-1790000000000",
                })
            );
        }
    }

    #[test]
    fn summary_is_cut_to_1024_characters() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.reason = "é".repeat(3000);
        n.also_affected = vec!["a".into(), "b".into()];
        let s = summary(&n);
        assert_eq!(s.chars().count(), MAX_SUMMARY_CHARS);
        assert!(s.starts_with("[P2] Toronto North Honda: appointment-to-ro-to-survey failing (+2 more on crm-to-dms) — éé"));
        assert!(s.ends_with("é…"));
        n.rooftop_name = None;
        n.reason = String::new();
        assert_eq!(
            summary(&n),
            "[P2] toronto-north: appointment-to-ro-to-survey failing (+2 more on crm-to-dms)"
        );
    }

    #[test]
    fn optional_fields_are_left_out() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.error_class = None;
        n.runbook_url = None;
        n.ack_url = None;
        n.sync.clear();
        let event = event_body(&n, "rk");
        assert!(event["payload"].get("class").is_none());
        assert!(event.get("links").is_none());
        assert!(event["payload"]["custom_details"].get("sync").is_none());
        assert!(
            event["payload"]["custom_details"]
                .get("error_class")
                .is_none()
        );
    }

    #[test]
    fn responses_map_to_deliveries() {
        let ok = br#"{"status":"success","message":"Event processed","dedup_key":"inc-1"}"#;
        assert_eq!(
            response_outcome(StatusCode::ACCEPTED, &headers(None), ok, "inc-1"),
            Delivery::Accepted {
                provider_id: Some("inc-1".into())
            }
        );
        assert_eq!(
            response_outcome(StatusCode::ACCEPTED, &headers(None), b"", "inc-2"),
            Delivery::Accepted {
                provider_id: Some("inc-2".into())
            }
        );
        assert_eq!(
            response_outcome(StatusCode::TOO_MANY_REQUESTS, &headers(None), b"", "k"),
            Delivery::Retry {
                reason: "PagerDuty answered 429".into(),
                after: Some(Duration::from_secs(30)),
            }
        );
        assert!(matches!(
            response_outcome(StatusCode::TOO_MANY_REQUESTS, &headers(Some("7")), b"", "k"),
            Delivery::Retry { after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            response_outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                &headers(None),
                b"oops",
                "k"
            ),
            Delivery::Retry { after: None, .. }
        ));
        let invalid = br#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid"]}"#;
        assert_eq!(
            response_outcome(StatusCode::BAD_REQUEST, &headers(None), invalid, "k"),
            Delivery::Rejected {
                reason:
                    "PagerDuty answered 400: Event object is invalid: 'payload.severity' is invalid"
                        .into()
            }
        );
    }

    #[test]
    fn debug_never_shows_the_routing_key() {
        let settings = PagerDutySettings::new("R0UTINGKEY");
        let ch = PagerDutyChannel::new(settings.clone(), reqwest::Client::new());
        for text in [format!("{settings:?}"), format!("{ch:?}")] {
            assert!(!text.contains("R0UTINGKEY"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
        assert!(
            Redactor::secret("R0UTINGKEY").delivery(Delivery::Rejected {
                reason: "key R0UTINGKEY unknown".into()
            }) == Delivery::Rejected {
                reason: "key [redacted] unknown".into()
            }
        );
    }
}
