//! What the HTTP channels (sms, webhook, pagerduty) share: reading `Retry-After`,
//! quoting a provider's answer into a reason, which failed answers are worth retrying,
//! describing a request that got no answer, and keeping a secret out of every reason.

use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::Delivery;

/// How long one request may take when a channel's settings don't say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `Retry-After` in seconds (an HTTP-date is ignored: the caller's default or the
/// outbox's backoff applies).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A provider's failed answer: worth retrying (after its `Retry-After`) when the
/// provider is busy or broken (429, 408, 5xx); otherwise the request itself is wrong
/// and sending it again cannot help.
pub(crate) fn failure_outcome(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    reason: String,
) -> Delivery {
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Delivery::Retry {
            reason,
            after: retry_after(headers),
        }
    } else {
        Delivery::Rejected { reason }
    }
}

/// At most `max_chars` of `text`, on one line.
pub(crate) fn quote(max_chars: usize, text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// Sends `request` and maps the answer with `outcome` (status, headers, body). An
/// answer whose body cannot be read counts as accepted (`accepted_id`) when its status
/// is a success — the provider took it, and sending again would deliver twice — and as
/// a transport failure otherwise. `provider` prefixes reasons ("Twilio", "webhook").
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    provider: &str,
    timeout: Duration,
    accepted_id: Option<String>,
    outcome: impl FnOnce(reqwest::StatusCode, &HeaderMap, &[u8]) -> Delivery,
) -> Delivery {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            match response.bytes().await {
                Ok(body) => outcome(status, &headers, &body),
                Err(_) if status.is_success() => Delivery::Accepted {
                    provider_id: accepted_id,
                },
                Err(e) => transport_outcome(provider, e, timeout),
            }
        }
        Err(e) => transport_outcome(provider, e, timeout),
    }
}

/// The error and its causes, without the URL (it may carry a token).
pub(crate) fn describe_transport(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// A request that got no answer: worth retrying, unless it could never be built (a bad
/// URL). `provider` prefixes the reason ("Twilio", "webhook", "PagerDuty").
pub(crate) fn transport_outcome(
    provider: &str,
    error: reqwest::Error,
    timeout: Duration,
) -> Delivery {
    let builder = error.is_builder();
    let reason = format!("{provider}: {}", describe_transport(error, timeout));
    if builder {
        Delivery::Rejected { reason }
    } else {
        Delivery::Retry {
            reason,
            after: None,
        }
    }
}

/// `text` with every occurrence of `secret` replaced.
pub(crate) fn redact(text: String, secret: &str) -> String {
    if secret.is_empty() {
        text
    } else {
        text.replace(secret, "[redacted]")
    }
}

/// A delivery whose reason never shows `secret`, even when a provider echoed it.
pub(crate) fn redact_delivery(delivery: Delivery, secret: &str) -> Delivery {
    match delivery {
        Delivery::Retry { reason, after } => Delivery::Retry {
            reason: redact(reason, secret),
            after,
        },
        Delivery::Rejected { reason } => Delivery::Rejected {
            reason: redact(reason, secret),
        },
        accepted => accepted,
    }
}

/// An answer's headers, with `Retry-After: <retry_after>` when given: for the channels'
/// tests of how an answer maps to a `Delivery`.
#[cfg(test)]
pub(crate) fn headers_with_retry_after(retry_after: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = retry_after {
        let v = reqwest::header::HeaderValue::from_str(v).expect("test header value");
        h.insert(RETRY_AFTER, v);
    }
    h
}
