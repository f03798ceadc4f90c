//! Replies to the pages, read from Twilio's Messages list resource
//! (`GET …/Messages.json?To=<sender>&DateSent>=<day>&PageSize=50`): the agent has no
//! public URL for Twilio's incoming-message webhook, so it asks. Only reads, and only
//! inbound messages; what a reply means is `alerting::ack`'s. The auth token never
//! reaches an error or `Debug`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::twilio::{GetError, SmsSettings, twilio_get};
use crate::model::{encode_uri_component, is_e164};
use crate::notify::http::Redactor;

/// Messages asked for per page (Twilio's default page size).
const PAGE_SIZE: u32 = 50;
/// Pages followed per poll: the newest 250 messages to the sender number are plenty
/// for the replies of one poll interval.
const MAX_PAGES: usize = 5;

/// One message someone sent to the sender number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    /// `SM…`: Twilio's id, unique per message.
    pub sid: String,
    /// The sender, E.164 for SMS.
    pub from: String,
    pub body: String,
    /// When Twilio received it (`date_sent`, else `date_created`).
    pub sent_at: DateTime<Utc>,
}

/// Why the list gave no messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("Twilio message list request failed: {0}")]
    Transport(String),
    #[error("Twilio answered {status} to the message list request: {reason}")]
    Status { status: u16, reason: String },
    #[error("Twilio message list unreadable: {0}")]
    Body(String),
}

/// Reads replies from the account the pages are sent from.
pub struct SmsInbox {
    settings: SmsSettings,
    client: reqwest::Client,
}

impl fmt::Debug for SmsInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsInbox")
            .field("settings", &self.settings)
            .finish()
    }
}

impl SmsInbox {
    pub fn new(settings: SmsSettings, client: reqwest::Client) -> Self {
        SmsInbox { settings, client }
    }

    /// The list's first page: messages to the sender number (any number of a Messaging
    /// Service: then no `To` filter) sent on or after `since`'s UTC day.
    fn first_page_url(&self, since: DateTime<Utc>) -> String {
        let day = since.format("%Y-%m-%d").to_string();
        let mut query = form_urlencoded::Serializer::new(String::new());
        if is_e164(&self.settings.from) {
            query.append_pair("To", &self.settings.from);
        }
        query.append_pair("DateSent>", &day);
        query.append_pair("PageSize", &PAGE_SIZE.to_string());
        format!(
            "{}/Messages.json?{}",
            self.settings.account_url(),
            query.finish()
        )
    }

    /// Where `next_page_uri` leads, when it is this account's message list on the same
    /// host (the credentials go with the request: never anywhere else).
    fn next_page_url(&self, uri: &str) -> Option<String> {
        let path = format!(
            "/2010-04-01/Accounts/{}/Messages.json?",
            encode_uri_component(&self.settings.account_sid)
        );
        uri.starts_with(&path)
            .then(|| format!("{}{uri}", self.settings.base_url.trim_end_matches('/')))
    }

    /// Inbound messages sent on or after `since`'s UTC day (Twilio filters by day),
    /// newest first, from at most [`MAX_PAGES`] pages.
    pub async fn list_inbound(&self, since: DateTime<Utc>) -> Result<Vec<InboundSms>, ListError> {
        let mut out = Vec::new();
        let mut url = Some(self.first_page_url(since));
        for _ in 0..MAX_PAGES {
            let Some(u) = url.take() else { break };
            let (messages, next) = self.fetch(u).await?;
            out.extend(messages);
            url = next.as_deref().and_then(|n| self.next_page_url(n));
        }
        Ok(out)
    }

    async fn fetch(&self, url: String) -> Result<(Vec<InboundSms>, Option<String>), ListError> {
        let s = &self.settings;
        let body = twilio_get(&self.client, s, url)
            .await
            .map_err(|e| match e {
                GetError::Transport(t) => ListError::Transport(t),
                GetError::Status { status, reason } => ListError::Status { status, reason },
            })?;
        parse_page(&body).map_err(|e| {
            ListError::Body(Redactor::credentials(&s.account_sid, &s.auth_token).text(e))
        })
    }
}

/// One page of the list: its inbound messages (outbound ones and any without a readable
/// date left out) and `next_page_uri`.
fn parse_page(body: &[u8]) -> Result<(Vec<InboundSms>, Option<String>), String> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        messages: Vec<Message>,
        #[serde(default)]
        next_page_uri: Option<String>,
    }
    #[derive(Deserialize)]
    struct Message {
        sid: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        direction: Option<String>,
        #[serde(default)]
        date_sent: Option<String>,
        #[serde(default)]
        date_created: Option<String>,
    }
    let page: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let date = |d: &Option<String>| {
        d.as_deref()
            .and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let messages = page
        .messages
        .into_iter()
        .filter(|m| m.direction.as_deref() == Some("inbound"))
        .filter_map(|m| {
            Some(InboundSms {
                sent_at: date(&m.date_sent).or_else(|| date(&m.date_created))?,
                sid: m.sid,
                from: m.from?,
                body: m.body.unwrap_or_default(),
            })
        })
        .collect();
    Ok((messages, page.next_page_uri.filter(|u| !u.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(base: &str) -> SmsInbox {
        let mut settings = SmsSettings::new("AC123", "s3cr3t-token", "+14165550100");
        settings.base_url = base.into();
        SmsInbox::new(settings, reqwest::Client::new())
    }

    #[test]
    fn the_first_page_asks_for_replies_to_the_sender_since_a_day() {
        let since: DateTime<Utc> = "2026-11-23T23:59:00Z".parse().unwrap();
        assert_eq!(
            inbox("https://api.twilio.com/").first_page_url(since),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json?To=%2B14165550100&DateSent%3E=2026-11-23&PageSize=50"
        );
        // A Messaging Service has many numbers: no `To` filter.
        let mut mg = inbox("https://api.twilio.com");
        mg.settings.from = "MG0123".into();
        assert_eq!(
            mg.first_page_url(since),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json?DateSent%3E=2026-11-23&PageSize=50"
        );
    }

    #[test]
    fn only_this_accounts_list_on_the_same_host_is_followed() {
        let i = inbox("http://127.0.0.1:9/");
        assert_eq!(
            i.next_page_url(
                "/2010-04-01/Accounts/AC123/Messages.json?PageSize=50&Page=1&PageToken=PA1"
            )
            .as_deref(),
            Some(
                "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json?PageSize=50&Page=1&PageToken=PA1"
            )
        );
        for other in [
            "https://evil.example/2010-04-01/Accounts/AC123/Messages.json?x",
            "//evil.example/2010-04-01/Accounts/AC123/Messages.json?x",
            "/2010-04-01/Accounts/AC999/Messages.json?x",
            "/2010-04-01/Accounts/AC123/Calls.json?x",
        ] {
            assert_eq!(i.next_page_url(other), None, "{other}");
        }
        assert!(!format!("{i:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn a_page_yields_its_inbound_messages_with_their_dates() {
        let body = br#"{
            "messages": [
                {"sid": "SM3", "from": "+14165550123", "to": "+14165550100", "body": "ACK 4821",
                 "direction": "inbound", "status": "received",
                 "date_created": "Mon, 23 Nov 2026 10:00:05 +0000",
                 "date_sent": "Mon, 23 Nov 2026 10:00:04 +0000"},
                {"sid": "SM2", "from": "+14165550100", "to": "+14165550123", "body": "[P1] TRIGGER",
                 "direction": "outbound-api", "date_sent": "Mon, 23 Nov 2026 09:59:00 +0000"},
                {"sid": "SM1", "from": "+14165550199", "body": "ok", "direction": "inbound",
                 "date_sent": null, "date_created": "Mon, 23 Nov 2026 04:00:00 -0500"},
                {"sid": "SM0", "from": "+14165550199", "body": "x", "direction": "inbound",
                 "date_sent": "yesterday"}
            ],
            "next_page_uri": "/2010-04-01/Accounts/AC123/Messages.json?Page=1",
            "page": 0, "page_size": 50
        }"#;
        let (messages, next) = parse_page(body).unwrap();
        assert_eq!(
            messages,
            [
                InboundSms {
                    sid: "SM3".into(),
                    from: "+14165550123".into(),
                    body: "ACK 4821".into(),
                    sent_at: "2026-11-23T10:00:04Z".parse().unwrap(),
                },
                InboundSms {
                    sid: "SM1".into(),
                    from: "+14165550199".into(),
                    body: "ok".into(),
                    sent_at: "2026-11-23T09:00:00Z".parse().unwrap(),
                },
            ]
        );
        assert_eq!(
            next.as_deref(),
            Some("/2010-04-01/Accounts/AC123/Messages.json?Page=1")
        );
        let (none, next) = parse_page(br#"{"messages": [], "next_page_uri": null}"#).unwrap();
        assert!(none.is_empty() && next.is_none());
        assert!(parse_page(b"<html>").is_err());
    }

    #[tokio::test]
    async fn a_refused_list_says_why_without_the_token() {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            get(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    r#"{"code": 20003, "message": "Authenticate s3cr3t-token", "status": 401}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let e = inbox(&base)
            .list_inbound("2026-11-23T10:00:00Z".parse().unwrap())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("Twilio answered 401 to the message list request: error 20003 (authentication failed"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t-token"), "{text}");
    }
}
