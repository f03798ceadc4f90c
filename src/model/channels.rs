//! Channel settings as validated: which SMS account, webhook, PagerDuty service and SMTP
//! security a page goes through, and why a notice is sent (`NoticeKind`, which the
//! outbox stores). Secrets stay templates here; the agent renders them at
//! start, so nothing in the model holds a secret value.

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// An incident opened: page.
    Trigger,
    /// It failed again soon after recovering: reopened and flapping (one notice).
    Flapping,
    /// Someone acknowledged it (PagerDuty `acknowledge`; others may ignore it).
    Acknowledge,
    /// It resolved: sent on every channel that was paged.
    Resolve,
}

super::stored_as_text!(NoticeKind, "notice kind",
    Trigger => "trigger", Flapping => "flapping", Acknowledge => "acknowledge",
    Resolve => "resolve");

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS, required (port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS: only for a relay on the same machine or network.
    None,
}

/// A Twilio-compatible SMS account (`alerting.sms`).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsAccount {
    pub account_sid: String,
    /// A template, e.g. `{{ secret.twilio_token }}`.
    pub auth_token: String,
    /// E.164 sender number or a Messaging Service SID (`MG…`).
    pub from: String,
    /// Without a trailing slash; `None`: Twilio's own API.
    pub base_url: Option<String>,
    /// Reading replies (`ACK 4821`) to acknowledge; `None`: off.
    pub replies: Option<SmsReplies>,
}

/// `alerting.sms.replies` as validated: replies are read every `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsReplies {
    pub poll: std::time::Duration,
}

/// Default `alerting.sms.replies.poll`.
pub const DEFAULT_REPLY_POLL: std::time::Duration = std::time::Duration::from_secs(30);
/// Shortest `alerting.sms.replies.poll`: Twilio rate-limits its list resource.
pub const MIN_REPLY_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// A generic webhook (`alerting.webhook`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    pub url: String,
    /// HMAC-SHA256 key, a template.
    pub secret: String,
}

/// A PagerDuty Events v2 service (`alerting.pagerduty`).
#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyTarget {
    /// Integration key, a template.
    pub routing_key: String,
    /// `None`: PagerDuty's own endpoint.
    pub url: Option<String>,
}

/// `+` and 8 to 15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+14165550100"));
        assert!(!is_e164("14165550100"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+1416"));
        assert!(!is_e164("+1416555010a"));
    }
}
