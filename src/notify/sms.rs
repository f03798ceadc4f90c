//! SMS through Twilio's Messages API: the page squeezed into plain GSM-7 text that always
//! ends with the runbook link, one delivery attempt per `send`, and status polling (the
//! agent has no public callback URL). Owns no retries: the outbox decides from `Delivery`.
//! The auth token never reaches a reason, an error or `Debug`.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::http::{self, describe_transport, quote, redact, redact_delivery, retry_after};
use super::{Channel, ConfirmFuture, Confirmation, Delivery, Notice, NoticeKind, SendFuture};
use crate::model::Contact;

/// Where Twilio's API lives (tests point `base_url` at a local server instead).
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Longest text sent, in GSM-7 septets (an extension-table character counts 2). Twilio
/// splits anything over 160 into concatenated segments of 153, so this is 3 segments.
pub const SMS_MAX_SEPTETS: usize = 320;

/// The description is cut to at least this many septets before the ack link is dropped:
/// knowing what broke matters more than acknowledging from the text.
const MIN_DESCRIPTION_SEPTETS: usize = 120;

/// How long one request may take when the settings don't say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
        }
    }

    fn account_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}",
            self.base_url.trim_end_matches('/'),
            encode_path_segment(&self.account_sid)
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
        let delivery = http::send(request, "Twilio", s.timeout, None, send_outcome).await;
        redact_delivery(delivery, &s.auth_token)
    }

    /// Where message `provider_id` (`SM…`, from `Delivery::Accepted`) is now.
    pub async fn poll_status(&self, provider_id: &str) -> Result<DeliveryStatus, PollError> {
        let s = &self.settings;
        let url = format!(
            "{}/Messages/{}.json",
            s.account_url(),
            encode_path_segment(provider_id)
        );
        let redact = |t: String| redact(t, &s.auth_token);
        let response = self
            .client
            .get(url)
            .basic_auth(&s.account_sid, Some(&s.auth_token))
            .timeout(s.timeout)
            .send()
            .await
            .map_err(|e| PollError::Transport(redact(describe_transport(e, s.timeout))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| PollError::Transport(redact(describe_transport(e, s.timeout))))?;
        if !status.is_success() {
            return Err(PollError::Status {
                status: status.as_u16(),
                reason: redact(twilio_error_text(&body)),
            });
        }
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
            self.send_text(phone, &sms_text(notice)).await
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

/// `+` then up to 15 digits, the first not 0.
fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
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

// ---------------------------------------------------------------------------------------
// The text.

/// GSM 03.38 basic character set (the escape code left out).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table (each sent as escape + character: 2 septets). Form feed left
/// out: it has no place in a page.
const GSM7_EXTENSION: &str = "^{}\\[~]|€";

/// Septets `c` takes in GSM-7, `None` when it has no GSM-7 form.
fn char_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Length of `s` in GSM-7 septets, `None` when some character has no GSM-7 form.
pub fn gsm7_septets(s: &str) -> Option<usize> {
    s.chars().map(char_septets).sum()
}

/// `s` in GSM-7: typographic punctuation to its ASCII form, accented letters without a
/// GSM-7 form to their base letter, anything else to `?`. Whitespace runs (newlines too)
/// become one space.
pub fn to_gsm7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for c in word.chars() {
            if char_septets(c).is_some() {
                out.push(c);
            } else {
                out.push_str(transliterate(c));
            }
        }
    }
    out
}

/// The GSM-7 stand-in for a character outside GSM-7.
fn transliterate(c: char) -> &'static str {
    match c {
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => "\"",
        '‘' | '’' | '‚' | '‛' | '′' | '`' | '´' => "'",
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => "-",
        '…' => "...",
        '•' | '·' => "*",
        '×' => "x",
        '÷' | '⁄' => "/",
        '→' => "->",
        '←' => "<-",
        '©' => "(c)",
        '®' => "(R)",
        '™' => "TM",
        'á' | 'â' | 'ã' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ā' | 'Ă' | 'Ą' => "A",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ď' | 'đ' | 'ð' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'Ê' | 'Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ł' => "L",
        'ń' | 'ņ' | 'ň' => "n",
        'Ń' | 'Ņ' | 'Ň' => "N",
        'ó' | 'ô' | 'õ' | 'ō' | 'ŏ' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'œ' => "oe",
        'Œ' => "OE",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' | 'Ș' => "S",
        'ţ' | 'ť' | 'ț' => "t",
        'Ţ' | 'Ť' | 'Ț' => "T",
        'ú' | 'û' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'þ' => "th",
        'Þ' => "Th",
        _ => "?",
    }
}

/// A link in GSM-7 that still works: characters without a GSM-7 form (non-ASCII, the
/// backtick, spaces) percent-encoded as UTF-8, as browsers would.
fn gsm7_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.trim().chars() {
        if c.is_ascii_graphic() && char_septets(c).is_some() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The text message for `notice`: at most [`SMS_MAX_SEPTETS`] GSM-7 septets, ending with
/// the runbook link, whole. The description (severity, kind, rooftop, probe, connector,
/// since when, why, error class and step) is cut with `...` to make room; the ack link
/// comes before the runbook link only while the description keeps at least 120 septets.
/// A runbook link longer than the whole budget is still sent whole (Twilio takes up to
/// 1600 characters): an unusable link would be worse than a fourth segment.
pub fn sms_text(notice: &Notice) -> String {
    let runbook = notice
        .runbook_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("Runbook: {}", gsm7_url(u)));
    let ack = match notice.kind {
        NoticeKind::Trigger | NoticeKind::Flapping => notice
            .ack_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| format!("Ack: {}", gsm7_url(u))),
        NoticeKind::Acknowledge | NoticeKind::Resolve => None,
    };
    compose(&describe(notice), ack.as_deref(), runbook.as_deref())
}

/// What happened, in GSM-7, untruncated.
fn describe(notice: &Notice) -> String {
    let kind = match notice.kind {
        NoticeKind::Trigger => "TRIGGER",
        NoticeKind::Flapping => "FLAPPING",
        NoticeKind::Acknowledge => "ACKED",
        NoticeKind::Resolve => "RESOLVED",
    };
    let mut s = format!(
        "[{}] {kind} {}: {} on {}",
        notice.severity,
        notice.rooftop_label(),
        notice.probe,
        notice.connector
    );
    if !notice.also_affected.is_empty() {
        let _ = write!(s, " (+{} more)", notice.also_affected.len());
    }
    let _ = write!(s, " since {} UTC", notice.opened_at.format("%H:%M"));
    if let (NoticeKind::Resolve, Some(at)) = (notice.kind, notice.resolved_at) {
        let _ = write!(s, ", resolved {} UTC", at.format("%H:%M"));
    }
    if !notice.reason.trim().is_empty() {
        let _ = write!(s, " - {}.", notice.reason.trim().trim_end_matches('.'));
    } else {
        s.push('.');
    }
    match (notice.error_class.as_deref(), notice.failed_step.as_deref()) {
        (Some(class), Some(step)) => {
            let _ = write!(s, " {class} at {step}.");
        }
        (Some(class), None) => {
            let _ = write!(s, " {class}.");
        }
        (None, Some(step)) => {
            let _ = write!(s, " Failed at {step}.");
        }
        (None, None) => {}
    }
    to_gsm7(&s)
}

/// `description [ack] [runbook]` within the budget (see [`sms_text`]).
fn compose(description: &str, ack: Option<&str>, runbook: Option<&str>) -> String {
    let len = |s: &str| gsm7_septets(s).unwrap_or(s.chars().count());
    let mut budget = SMS_MAX_SEPTETS.saturating_sub(runbook.map_or(0, |r| len(r) + 1));
    let wanted = len(description).min(MIN_DESCRIPTION_SEPTETS);
    let ack = ack.filter(|a| budget.saturating_sub(len(a) + 1) >= wanted);
    budget = budget.saturating_sub(ack.map_or(0, |a| len(a) + 1));
    let description = truncate_septets(description, budget);
    [Some(description.as_str()), ack, runbook]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` (GSM-7) cut to at most `max` septets, marked with `...` when cut.
fn truncate_septets(s: &str, max: usize) -> String {
    if gsm7_septets(s).is_some_and(|n| n <= max) {
        return s.to_string();
    }
    if max < 4 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let n = char_septets(c).unwrap_or(1);
        if used + n > max - 3 {
            break;
        }
        used += n;
        out.push(c);
    }
    let mut out = out.trim_end().to_string();
    out.push_str("...");
    out
}

// ---------------------------------------------------------------------------------------
// Talking to Twilio.

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

/// `error 21211 (invalid 'To' phone number): <Twilio's message>`, or a quote of the body.
fn twilio_error_text(body: &[u8]) -> String {
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
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return Delivery::Retry {
            reason: format!("Twilio answered {code}: {details}"),
            after: retry_after(headers),
        };
    }
    Delivery::Rejected {
        reason: format!("Twilio answered {code}: {details}"),
    }
}

/// `application/x-www-form-urlencoded`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k, true), percent_encode(v, true)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_path_segment(s: &str) -> String {
    percent_encode(s, false)
}

/// Percent-encodes all but unreserved bytes; in a form, space is `+`.
fn percent_encode(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => out.push(b as char),
            b'*' if form => out.push('*'),
            b'~' if !form => out.push('~'),
            b' ' if form => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::sample_notice;
    use reqwest::header::HeaderValue;
    use reqwest::header::RETRY_AFTER;

    fn septets(s: &str) -> usize {
        gsm7_septets(s).expect("text is GSM-7")
    }

    #[test]
    fn the_gsm7_tables_have_the_standard_sizes() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 9);
    }

    #[test]
    fn sample_trigger_reads_well_and_ends_with_the_runbook() {
        let text = sms_text(&sample_notice(NoticeKind::Trigger));
        assert_eq!(
            text,
            "[P2] TRIGGER Toronto North Honda: appointment-to-ro-to-survey on crm-to-dms since \
             14:13 UTC - 2 failed runs in a row. sync_timeout at ro-in-dms. \
             Ack: http://127.0.0.1:9464/ack/inc-1?sig=abc \
             Runbook: https://runbooks.example/runbooks/ro-not-created.md"
        );
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
    }

    #[test]
    fn resolve_says_when_and_has_no_ack_link() {
        let mut n = sample_notice(NoticeKind::Resolve);
        n.resolved_at = Some(n.opened_at + chrono::Duration::minutes(27));
        let text = sms_text(&n);
        assert!(
            text.starts_with("[P2] RESOLVED Toronto North Honda:"),
            "{text}"
        );
        assert!(
            text.contains("since 14:13 UTC, resolved 14:40 UTC"),
            "{text}"
        );
        assert!(!text.contains("Ack:"), "{text}");
        assert!(text.ends_with("Runbook: https://runbooks.example/runbooks/ro-not-created.md"));
    }

    #[test]
    fn flapping_is_named() {
        let text = sms_text(&sample_notice(NoticeKind::Flapping));
        assert!(text.starts_with("[P2] FLAPPING "), "{text}");
    }

    #[test]
    fn non_gsm_text_is_transliterated() {
        assert_eq!(to_gsm7("“quoted” — it’s…"), "\"quoted\" - it's...");
        assert_eq!(
            to_gsm7("Brossard Hyundai: Québec, Montréal, Lévis, Château, façade"),
            "Brossard Hyundai: Québec, Montréal, Lévis, Chateau, facade"
        );
        assert_eq!(to_gsm7("Œuvre Łódź ÿ"), "OEuvre Lodz y");
        assert_eq!(to_gsm7("ok 🚗 車"), "ok ? ?");
        assert_eq!(to_gsm7("line\none\t\u{a0}two  three"), "line one two three");
        // GSM-7 letters stay as they are.
        assert_eq!(to_gsm7("Müller Søren Ñandú"), "Müller Søren Ñandu");
    }

    #[test]
    fn long_non_gsm_notice_is_cut_to_320_septets_and_keeps_the_runbook_link_whole() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.rooftop_name = Some("Concession Élégante “Saint‑Jérôme” 🚗 — Toyota".into());
        n.reason = "ligne ‘rendez‑vous’ → RO {timeout} [DMS] … ".repeat(20);
        n.runbook_url = Some("https://runbooks.example/runbooks/ro-not-created.md#étape-2".into());
        let text = sms_text(&n);
        let len = septets(&text);
        assert!(len <= SMS_MAX_SEPTETS, "{len}: {text}");
        assert!(len >= SMS_MAX_SEPTETS - 3, "uses the room it has: {len}");
        assert!(
            text.ends_with(
                " Runbook: https://runbooks.example/runbooks/ro-not-created.md#%C3%A9tape-2"
            ),
            "{text}"
        );
        assert!(
            text.contains("... Runbook:") || text.contains("... Ack:"),
            "{text}"
        );
        assert!(
            text.starts_with("[P2] TRIGGER Concession Élégante \"Saint-Jérome\" ? - Toyota: "),
            "{text}"
        );
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(gsm7_septets("{x}"), Some(5));
        assert_eq!(gsm7_septets("€"), Some(2));
        assert_eq!(gsm7_septets("é"), Some(1));
        assert_eq!(gsm7_septets("ê"), None);
        let s = "[{}]".repeat(100);
        let cut = truncate_septets(&s, 50);
        assert!(septets(&cut) <= 50, "{cut}");
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn the_ack_link_goes_before_the_description_is_cut_short() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.reason = "x ".repeat(300);
        n.ack_url = Some(format!(
            "https://agent.example/ack/{}?sig={}",
            n.incident_id,
            "f".repeat(64)
        ));
        let text = sms_text(&n);
        assert!(!text.contains("Ack:"), "{text}");
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
        // A shorter ack link fits next to 120+ septets of description.
        n.ack_url = Some("https://agent.example/ack/1?sig=ab".into());
        let text = sms_text(&n);
        assert!(
            text.contains("... Ack: https://agent.example/ack/1?sig=ab Runbook: "),
            "{text}"
        );
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
    }

    #[test]
    fn a_link_longer_than_the_budget_is_still_sent_whole() {
        let mut n = sample_notice(NoticeKind::Trigger);
        let url = format!("https://runbooks.example/{}", "a".repeat(400));
        n.runbook_url = Some(url.clone());
        let text = sms_text(&n);
        assert_eq!(text, format!("Runbook: {url}"));
    }

    #[test]
    fn without_a_runbook_the_description_has_the_room() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.runbook_url = None;
        n.ack_url = None;
        n.reason = "slow ".repeat(100);
        let text = sms_text(&n);
        assert_eq!(septets(&text), SMS_MAX_SEPTETS);
        assert!(text.ends_with("..."));
    }

    #[test]
    fn links_are_made_gsm7_without_breaking_them() {
        assert_eq!(
            gsm7_url(" https://x.example/a b/é`q "),
            "https://x.example/a%20b/%C3%A9%60q"
        );
        assert_eq!(
            gsm7_url("https://x.example/p?a=1&b=[2]"),
            "https://x.example/p?a=1&b=[2]"
        );
    }

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
        assert_eq!(encode_path_segment("SM a/b~"), "SM%20a%2Fb~");
    }

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header value"));
        }
        h
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
            redact_delivery(d, "s3cr3t"),
            Delivery::Rejected {
                reason: "echo [redacted] back".into()
            }
        );
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
