//! The Twilio Messages API: one send per call, delivery receipts by status polling (the
//! agent has no public callback URL) and Twilio's error codes turned into a `Delivery`.
//! Owns no retries: the outbox decides from `Delivery`. The auth token never reaches a
//! reason, an error or `Debug`.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::sms_text_with;
use crate::model::{Contact, encode_uri_component, is_e164};
use crate::notify::http::{
    self, DEFAULT_TIMEOUT, Redactor, describe_transport, failure_outcome, quote,
};
use crate::notify::{Channel, ConfirmFuture, Confirmation, Delivery, Notice, SendFuture};

/// Where Twilio's API lives (tests point `base_url` at a local server instead).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Most of a provider's error message quoted in a reason.
const MAX_QUOTED_CHARS: usize = 200;

/// Twilio account and sender.
#[derive(Clone)]
pub struct SmsSettings {
    /// `AC…`: the account the messages are sent from (also the basic-auth user).
    pub account_sid: String,
    /// Secret: the basic-auth password. Redacted from `Debug`.
    pub auth_token: String,
    /// Sender: an E.164 number (`+14165550100`) or a Messaging Service SID (`MG…`).
    pub from: String,
    /// API root, default [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// Limit for one request, connecting through reading the answer.
    pub timeout: Duration,
    /// Whether trigger and flapping texts ask for a reply (`Reply ACK 4821.`): only while
    /// the agent reads replies (`alerting.sms.replies`). Default true.
    pub reply_code: bool,
}

impl SmsSettings {
    /// Settings against the real Twilio API with a 10 s timeout.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        SmsSettings {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from: from.into(),
            base_url: DEFAULT_BASE_URL.to_string(),
            timeout: DEFAULT_TIMEOUT,
            reply_code: true,
        }
    }

    pub(super) fn account_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}",
            self.base_url.trim_end_matches('/'),
            encode_uri_component(&self.account_sid)
        )
    }
}

impl fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("reply_code", &self.reply_code)
            .finish()
    }
}

/// Pages by text message.
#[derive(Debug)]
pub struct SmsChannel {
    settings: SmsSettings,
    client: reqwest::Client,
}

/// Where a sent message is, as Twilio reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// `accepted`, `scheduled` or `queued`: not yet handed to a carrier.
    Queued,
    /// `sending`: being handed to the carrier.
    Sending,
    /// `sent`: the carrier took it; no delivery receipt yet.
    Sent,
    /// `delivered` (or `read`): the handset has it.
    Delivered,
    /// `undelivered`: the carrier could not deliver it (Twilio's error code says why).
    Undelivered { error_code: Option<u32> },
    /// `failed` (or `canceled`): it never left Twilio.
    Failed { error_code: Option<u32> },
    /// A status this code does not know yet, kept verbatim.
    Unknown(String),
}

impl DeliveryStatus {
    /// From Twilio's `status` and `error_code` fields.
    pub fn from_twilio(status: &str, error_code: Option<u32>) -> Self {
        match status {
            "accepted" | "scheduled" | "queued" => DeliveryStatus::Queued,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "delivered" | "read" => DeliveryStatus::Delivered,
            "undelivered" => DeliveryStatus::Undelivered { error_code },
            "failed" | "canceled" => DeliveryStatus::Failed { error_code },
            other => DeliveryStatus::Unknown(other.to_string()),
        }
    }

    /// Whether the status can still change (keep polling) or is where it ends.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered
                | DeliveryStatus::Undelivered { .. }
                | DeliveryStatus::Failed { .. }
        )
    }
}

/// Why a status poll gave no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("Twilio status request failed: {0}")]
    Transport(String),
    #[error("Twilio answered {status} to the status request: {reason}")]
    Status { status: u16, reason: String },
    #[error("Twilio status response unreadable: {0}")]
    Body(String),
}

impl SmsChannel {
    pub fn new(settings: SmsSettings, client: reqwest::Client) -> Self {
        SmsChannel { settings, client }
    }

    /// Sends `body` to `to` (E.164) once.
    pub async fn send_text(&self, to: &str, body: &str) -> Delivery {
        let s = &self.settings;
        let form = form_encode(&message_form(to, &s.from, body));
        let request = self
            .client
            .post(format!("{}/Messages.json", s.account_url()))
            .basic_auth(&s.account_sid, Some(&s.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .timeout(s.timeout);
        let redactor = Redactor::credentials(&s.account_sid, &s.auth_token);
        http::send(request, "Twilio", s.timeout, None, &redactor, send_outcome).await
    }

    /// Where message `provider_id` (`SM…`, from `Delivery::Accepted`) is now.
    pub async fn poll_status(&self, provider_id: &str) -> Result<DeliveryStatus, PollError> {
        let s = &self.settings;
        let url = format!(
            "{}/Messages/{}.json",
            s.account_url(),
            encode_uri_component(provider_id)
        );
        let body = twilio_get(&self.client, s, url)
            .await
            .map_err(|e| match e {
                GetError::Transport(t) => PollError::Transport(t),
                GetError::Status { status, reason } => PollError::Status { status, reason },
            })?;
        #[derive(Deserialize)]
        struct Message {
            status: String,
            #[serde(default)]
            error_code: Option<serde_json::Value>,
        }
        let message: Message =
            serde_json::from_slice(&body).map_err(|e| PollError::Body(e.to_string()))?;
        let error_code = message.error_code.as_ref().and_then(|c| match c {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        Ok(DeliveryStatus::from_twilio(&message.status, error_code))
    }
}

impl Channel for SmsChannel {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn reaches(&self, contact: Option<&Contact>) -> bool {
        contact
            .and_then(|c| c.phone.as_deref())
            .is_some_and(is_e164)
    }

    fn send<'a>(&'a self, notice: &'a Notice, contact: Option<&'a Contact>) -> SendFuture<'a> {
        Box::pin(async move {
            let Some(phone) = contact
                .and_then(|c| c.phone.as_deref())
                .filter(|p| is_e164(p))
            else {
                return Delivery::Rejected {
                    reason: "no E.164 phone number for this contact".into(),
                };
            };
            let text = sms_text_with(notice, self.settings.reply_code);
            self.send_text(phone, &text).await
        })
    }

    /// rooftop has no public callback URL: delivery receipts are polled.
    fn confirms(&self) -> bool {
        true
    }

    fn confirm<'a>(&'a self, provider_id: &'a str) -> ConfirmFuture<'a> {
        Box::pin(async move {
            match self.poll_status(provider_id).await {
                Ok(status) => confirmation(&status),
                Err(e) => Confirmation::Pending {
                    status: e.to_string(),
                },
            }
        })
    }
}

/// A Twilio status as the outbox sees it.
pub fn confirmation(status: &DeliveryStatus) -> Confirmation {
    let code = |c: &Option<u32>| {
        c.map(|c| match carrier_code(c) {
            Some(m) => format!(" (error {c}: {m})"),
            None => format!(" (error {c})"),
        })
        .unwrap_or_default()
    };
    match status {
        DeliveryStatus::Delivered => Confirmation::Delivered,
        DeliveryStatus::Undelivered { error_code } => Confirmation::Undelivered {
            reason: format!("the carrier could not deliver it{}", code(error_code)),
        },
        DeliveryStatus::Failed { error_code } => Confirmation::Undelivered {
            reason: format!("Twilio could not send it{}", code(error_code)),
        },
        DeliveryStatus::Queued => Confirmation::Pending {
            status: "queued".into(),
        },
        DeliveryStatus::Sending => Confirmation::Pending {
            status: "sending".into(),
        },
        DeliveryStatus::Sent => Confirmation::Pending {
            status: "sent to the carrier".into(),
        },
        DeliveryStatus::Unknown(s) => Confirmation::Pending { status: s.clone() },
    }
}

/// What the common delivery error codes mean.
fn carrier_code(code: u32) -> Option<&'static str> {
    Some(match code {
        30003 => "handset unreachable (off or out of coverage)",
        30004 => "message blocked by the recipient or carrier",
        30005 => "unknown or inactive number",
        30006 => "landline or unreachable carrier",
        30007 => "filtered by the carrier as spam",
        30008 => "unknown carrier error",
        _ => return known_code(code),
    })
}

/// The form Twilio expects; a Messaging Service SID goes in its own field.
fn message_form<'a>(to: &'a str, from: &'a str, body: &'a str) -> [(&'static str, &'a str); 3] {
    let from_field = if from.starts_with("MG") {
        "MessagingServiceSid"
    } else {
        "From"
    };
    [("To", to), (from_field, from), ("Body", body)]
}

#[derive(Deserialize, Default)]
struct TwilioError {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
}

/// What a Twilio error code means, for the codes that decide "do not retry".
fn known_code(code: u32) -> Option<&'static str> {
    Some(match code {
        21610 => "recipient unsubscribed (replied STOP)",
        21211 => "invalid 'To' phone number",
        21614 => "'To' number is not a mobile number",
        21408 => "sending to this region is not enabled on the account",
        20003 => "authentication failed: check the account SID and auth token",
        _ => return None,
    })
}

/// Why an authenticated GET to the Twilio API gave no body, in words with the auth
/// token redacted.
pub(super) enum GetError {
    Transport(String),
    Status { status: u16, reason: String },
}

/// GETs `url` with the account's credentials and returns the body of a 2xx answer.
pub(super) async fn twilio_get(
    client: &reqwest::Client,
    s: &SmsSettings,
    url: String,
) -> Result<Vec<u8>, GetError> {
    let redactor = Redactor::credentials(&s.account_sid, &s.auth_token);
    let redact = |t: String| redactor.text(t);
    let response = client
        .get(url)
        .basic_auth(&s.account_sid, Some(&s.auth_token))
        .timeout(s.timeout)
        .send()
        .await
        .map_err(|e| GetError::Transport(redact(describe_transport(e, s.timeout))))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| GetError::Transport(redact(describe_transport(e, s.timeout))))?;
    if !status.is_success() {
        return Err(GetError::Status {
            status: status.as_u16(),
            // Redacted before it is quoted: a cut must not keep half a secret.
            reason: twilio_error_text(&redactor.body(&body)),
        });
    }
    Ok(body.to_vec())
}

/// `error 21211 (invalid 'To' phone number): <Twilio's message>`, or a quote of the body.
pub(super) fn twilio_error_text(body: &[u8]) -> String {
    let (error, message) = match serde_json::from_slice::<TwilioError>(body) {
        Ok(error) => {
            let message = error
                .message
                .as_deref()
                .map(|m| quote(MAX_QUOTED_CHARS, m))
                .unwrap_or_default();
            (error, message)
        }
        Err(_) => (
            TwilioError::default(),
            quote(MAX_QUOTED_CHARS, &String::from_utf8_lossy(body)),
        ),
    };
    match error.code {
        Some(code) => {
            let meaning = known_code(code)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            if message.is_empty() {
                format!("error {code}{meaning}")
            } else {
                format!("error {code}{meaning}: {message}")
            }
        }
        None if message.is_empty() => "no error details".to_string(),
        None => message,
    }
}

/// How a send went, from Twilio's answer.
fn send_outcome(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Delivery {
    if status.is_success() {
        #[derive(Deserialize)]
        struct Created {
            sid: Option<String>,
        }
        let provider_id = serde_json::from_slice::<Created>(body)
            .ok()
            .and_then(|c| c.sid);
        return Delivery::Accepted { provider_id };
    }
    let code = status.as_u16();
    let details = twilio_error_text(body);
    failure_outcome(
        status,
        headers,
        format!("Twilio answered {code}: {details}"),
    )
}

/// `application/x-www-form-urlencoded`, as Twilio reads it (space as `+`).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::http::headers_with_retry_after as headers;

    #[test]
    fn e164_numbers_are_reachable_others_not() {
        let ch = SmsChannel::new(
            SmsSettings::new("AC1", "tok", "+15550001111"),
            reqwest::Client::new(),
        );
        let contact = |phone: Option<&str>| Contact {
            name: "Dana".into(),
            email: None,
            phone: phone.map(str::to_string),
        };
        assert!(ch.reaches(Some(&contact(Some("+14165550123")))));
        assert!(!ch.reaches(Some(&contact(Some("416-555-0123")))));
        assert!(!ch.reaches(Some(&contact(Some("+0123")))));
        assert!(!ch.reaches(Some(&contact(None))));
        assert!(!ch.reaches(None));
    }

    #[test]
    fn debug_never_shows_the_auth_token() {
        let settings = SmsSettings::new("AC123", "s3cr3t-token", "+15550001111");
        let ch = SmsChannel::new(settings.clone(), reqwest::Client::new());
        for text in [format!("{settings:?}"), format!("{ch:?}")] {
            assert!(!text.contains("s3cr3t-token"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn form_fields_are_encoded_and_a_messaging_service_has_its_own_field() {
        assert_eq!(
            form_encode(&message_form("+14165550123", "+15550001111", "a b&c=d…é")),
            "To=%2B14165550123&From=%2B15550001111&Body=a+b%26c%3Dd%E2%80%A6%C3%A9"
        );
        assert_eq!(
            message_form("+1", "MG0123", "x")[1].0,
            "MessagingServiceSid"
        );
        assert_eq!(encode_uri_component("SM a/b~"), "SM%20a%2Fb~");
    }

    #[test]
    fn responses_map_to_deliveries() {
        let created = br#"{"sid":"SM0123","status":"queued"}"#;
        assert_eq!(
            send_outcome(StatusCode::CREATED, &headers(None), created),
            Delivery::Accepted {
                provider_id: Some("SM0123".into())
            }
        );
        assert_eq!(
            send_outcome(StatusCode::CREATED, &headers(None), b"not json"),
            Delivery::Accepted { provider_id: None }
        );
        assert_eq!(
            send_outcome(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("7")),
                br#"{"code":20429}"#
            ),
            Delivery::Retry {
                reason: "Twilio answered 429: error 20429".into(),
                after: Some(Duration::from_secs(7)),
            }
        );
        assert!(matches!(
            send_outcome(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
                b""
            ),
            Delivery::Retry { after: None, .. }
        ));
        assert!(matches!(
            send_outcome(
                StatusCode::BAD_GATEWAY,
                &headers(None),
                b"<html>bad gateway</html>"
            ),
            Delivery::Retry { after: None, .. }
        ));
        for (code, words) in [
            (21610, "replied STOP"),
            (21211, "invalid 'To'"),
            (21614, "not a mobile number"),
            (21408, "region"),
        ] {
            let body = format!(r#"{{"code":{code},"message":"nope","status":400}}"#);
            match send_outcome(StatusCode::BAD_REQUEST, &headers(None), body.as_bytes()) {
                Delivery::Rejected { reason } => {
                    assert!(
                        reason.contains(&code.to_string()) && reason.contains(words),
                        "{reason}"
                    )
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(
            send_outcome(
                StatusCode::UNAUTHORIZED,
                &headers(None),
                br#"{"code":20003,"message":"Authenticate"}"#
            ),
            Delivery::Rejected {
                reason:
                    "Twilio answered 401: error 20003 (authentication failed: check the account \
                         SID and auth token): Authenticate"
                        .into()
            }
        );
    }

    #[test]
    fn reasons_are_redacted() {
        let d = Delivery::Rejected {
            reason: "echo s3cr3t back".into(),
        };
        assert_eq!(
            Redactor::credentials("AC1", "s3cr3t").delivery(d),
            Delivery::Rejected {
                reason: "echo [redacted] back".into()
            }
        );
    }

    /// Found by the secret canaries (tests/secret_canary.rs): a 401 whose message quoted
    /// the request's `Authorization: Basic base64(sid:token)` kept the token readable in
    /// the outbox, `rooftop incidents` and the sms-replies warning.
    #[test]
    fn an_answer_quoting_the_basic_credentials_is_redacted() {
        // base64("AC0123456789:s3cr3t-token"), twice: the second copy is past the quote's
        // cut, which must not keep its first characters.
        let basic = "Basic QUMwMTIzNDU2Nzg5OnMzY3IzdC10b2tlbg==";
        let body = format!(
            r#"{{"code": 20003, "message": "Authenticate: {basic} {} {basic}", "status": 401}}"#,
            "x".repeat(MAX_QUOTED_CHARS - 80)
        );
        let r = Redactor::credentials("AC0123456789", "s3cr3t-token");
        let d = r.delivery(send_outcome(
            StatusCode::UNAUTHORIZED,
            &headers(None),
            &r.body(body.as_bytes()),
        ));
        let Delivery::Rejected { reason } = d else {
            panic!("{d:?}")
        };
        assert!(!reason.contains("QUMwMTIzNDU2Nzg5O"), "{reason}");
        assert!(reason.contains("Basic [redacted]"), "{reason}");
    }

    #[test]
    fn twilio_statuses_map_to_delivery_statuses() {
        use DeliveryStatus::*;
        assert_eq!(DeliveryStatus::from_twilio("queued", None), Queued);
        assert_eq!(DeliveryStatus::from_twilio("accepted", None), Queued);
        assert_eq!(DeliveryStatus::from_twilio("sending", None), Sending);
        assert_eq!(DeliveryStatus::from_twilio("sent", None), Sent);
        assert_eq!(DeliveryStatus::from_twilio("delivered", None), Delivered);
        assert_eq!(
            DeliveryStatus::from_twilio("undelivered", Some(30003)),
            Undelivered {
                error_code: Some(30003)
            }
        );
        assert_eq!(
            DeliveryStatus::from_twilio("failed", Some(30008)),
            Failed {
                error_code: Some(30008)
            }
        );
        assert_eq!(
            DeliveryStatus::from_twilio("warp", None),
            Unknown("warp".into())
        );
        assert!(Delivered.is_final() && Failed { error_code: None }.is_final());
        assert!(!Sent.is_final() && !Queued.is_final());
    }
}
