//! E-mail pages with lettre: SMTP (STARTTLS, implicit TLS, or plain for a local relay;
//! optional auth; timeouts), or `.eml` files in a folder (the demo). Multipart plain
//! text + HTML, written for a phone at 2 a.m.: what failed, since when, why it paged,
//! the sync figures, the runbook's impact and first mitigations inline, the links.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::http::Redactor;
use super::{Channel, Delivery, Notice, NoticeKind, SendFuture};
use crate::model::{Contact, escape_html, fmt_ms};

pub use crate::model::SmtpSecurity;

/// SMTP settings.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
    /// Extra trusted CA certificate (PEM), e.g. the relay's private CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Where e-mail goes.
#[derive(Debug, Clone)]
pub enum EmailTransport {
    Smtp(SmtpSettings),
    /// `.eml` files in a folder (nothing is sent).
    Folder(PathBuf),
}

/// The e-mail channel.
#[derive(Debug, Clone)]
pub struct EmailChannel {
    from: Mailbox,
    transport: EmailTransport,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("`{0}` is not a usable sender address")]
    From(String),
    #[error("SMTP to {host}:{port}: {message}")]
    Smtp {
        host: String,
        port: u16,
        message: String,
    },
}

impl EmailChannel {
    pub fn new(from: &str, transport: EmailTransport) -> Result<EmailChannel, EmailError> {
        let from = from
            .parse::<Mailbox>()
            .map_err(|_| EmailError::From(from.to_string()))?;
        Ok(EmailChannel { from, transport })
    }

    fn smtp(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
        let err = |message: String| EmailError::Smtp {
            host: s.host.clone(),
            port: s.port,
            message,
        };
        let mut params = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca_pem {
            params = params.add_root_certificate(
                Certificate::from_pem(pem).map_err(|e| err(format!("CA certificate: {e}")))?,
            );
        }
        let tls = || params.clone().build().map_err(|e| err(e.to_string()));
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .timeout(Some(s.timeout));
        b = match s.security {
            SmtpSecurity::StartTls => b.tls(Tls::Required(tls()?)),
            SmtpSecurity::Implicit => b.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => b.tls(Tls::None),
        };
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(b.build())
    }

    async fn deliver(&self, notice: &Notice, to: &str) -> Delivery {
        let message = match build_message(&self.from, to, notice) {
            Ok(m) => m,
            Err(e) => return Delivery::Rejected { reason: e },
        };
        match &self.transport {
            EmailTransport::Folder(dir) => {
                if let Err(e) = tokio::fs::create_dir_all(dir).await {
                    return Delivery::Retry {
                        reason: format!("cannot create {}: {e}", dir.display()),
                        after: None,
                    };
                }
                match AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                {
                    Ok(id) => Delivery::Accepted {
                        provider_id: Some(id),
                    },
                    Err(e) => Delivery::Retry {
                        reason: e.to_string(),
                        after: None,
                    },
                }
            }
            EmailTransport::Smtp(s) => {
                let delivery = Self::send_smtp(s, message).await;
                // A server may quote the AUTH line (base64 of the credentials) back.
                match &s.password {
                    Some(p) => Redactor::credentials(s.username.as_deref().unwrap_or_default(), p)
                        .delivery(delivery),
                    None => delivery,
                }
            }
        }
    }

    async fn send_smtp(s: &SmtpSettings, message: Message) -> Delivery {
        let transport = match Self::smtp(s) {
            Ok(t) => t,
            Err(e) => {
                return Delivery::Rejected {
                    reason: e.to_string(),
                };
            }
        };
        // `timeout` bounds each network step; the whole conversation gets three
        // times that (a server that accepts and never greets would otherwise hold
        // the attempt forever).
        let whole = s.timeout.saturating_mul(3);
        let Ok(sent) = tokio::time::timeout(whole, transport.send(message)).await else {
            return Delivery::Retry {
                reason: format!(
                    "SMTP {}:{}: no answer within {}",
                    s.host,
                    s.port,
                    humantime::format_duration(whole)
                ),
                after: None,
            };
        };
        match sent {
            Ok(resp) => Delivery::Accepted {
                provider_id: resp.message().next().map(str::to_string),
            },
            // 5xx: the server refuses this message (bad recipient, auth).
            Err(e) if e.is_permanent() => Delivery::Rejected {
                reason: format!("SMTP {}:{}: {e}", s.host, s.port),
            },
            Err(e) => Delivery::Retry {
                reason: format!("SMTP {}:{}: {e}", s.host, s.port),
                after: None,
            },
        }
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn reaches(&self, contact: Option<&Contact>) -> bool {
        contact.is_some_and(|c| c.email.is_some())
    }

    fn send<'a>(&'a self, notice: &'a Notice, contact: Option<&'a Contact>) -> SendFuture<'a> {
        Box::pin(async move {
            match contact.and_then(|c| c.email.as_deref()) {
                Some(to) => self.deliver(notice, to).await,
                None => Delivery::Rejected {
                    reason: "the contact has no e-mail address".into(),
                },
            }
        })
    }
}

/// `[P2] Toronto North Honda · service-appointment: appointment-to-ro-to-survey failing`
pub fn subject(n: &Notice) -> String {
    let what = match n.kind {
        NoticeKind::Trigger => "failing",
        NoticeKind::Flapping => "flapping",
        NoticeKind::Acknowledge => "acknowledged",
        NoticeKind::Resolve => "resolved",
    };
    let prefix = if n.kind == NoticeKind::Resolve {
        format!("[{}] RESOLVED", n.severity)
    } else {
        format!("[{}]", n.severity)
    };
    let more = match n.also_affected.len() {
        0 => String::new(),
        k => format!(" (+{k} more on {})", n.connector),
    };
    format!(
        "{prefix} {} · {}: {} {what}{more}",
        n.rooftop_label(),
        n.flow,
        n.probe
    )
}

/// "2026-06-01 12:00 UTC (4m12s)": for an open incident, as long as it has failed when
/// the page is rendered for sending (a retried page says the truth at delivery).
// Rendering happens in the channel, which has no clock of its own; the elapsed time in a
// page is the one read of real time outside `Clock`.
#[allow(clippy::disallowed_methods)]
fn since(n: &Notice) -> String {
    let end = n.resolved_at.unwrap_or_else(chrono::Utc::now);
    format!(
        "{} UTC ({})",
        n.opened_at.format("%Y-%m-%d %H:%M"),
        fmt_ms((end - n.opened_at).num_milliseconds().max(0) as f64)
    )
}

/// The plain-text body.
pub fn text_body(n: &Notice) -> String {
    let mut b = String::new();
    let head = match n.kind {
        NoticeKind::Resolve => format!(
            "RESOLVED: {} at {} works again. It had failed since {}.",
            n.probe,
            n.rooftop_label(),
            since(n)
        ),
        NoticeKind::Flapping => format!(
            "{} at {} is failing again soon after recovering: the incident is reopened and marked flapping (no further pages while it flaps). Failing since {}.",
            n.probe,
            n.rooftop_label(),
            since(n)
        ),
        NoticeKind::Acknowledge => format!("Incident {} was acknowledged.", n.incident_id),
        NoticeKind::Trigger => format!(
            "{} at {} is failing since {}.",
            n.probe,
            n.rooftop_label(),
            since(n)
        ),
    };
    b.push_str(&head);
    b.push_str("\n\n");
    for note in &n.notes {
        b.push_str(&format!("{note}\n"));
    }
    if !n.notes.is_empty() {
        b.push('\n');
    }
    if n.kind != NoticeKind::Resolve {
        if let Some(step) = &n.failed_step {
            b.push_str(&format!(
                "What failed: step {step}{}{}\n",
                n.error_class
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                n.last_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
        b.push_str(&format!("Why you were paged: {}\n", n.reason));
    }
    b.push_str(&format!(
        "Connector: {}   Flow: {}   Severity: {}\nIncident: {}\n",
        n.connector, n.flow, n.severity, n.incident_id
    ));
    if !n.also_affected.is_empty() {
        let label = if n.kind == NoticeKind::Resolve {
            "Also affected on this connector (all resolved now)"
        } else {
            "Also failing on this connector (grouped into this page)"
        };
        b.push_str(&format!("{label}: {}\n", n.also_affected.join(", ")));
    }
    if !n.dependents.is_empty() {
        b.push_str(&format!(
            "Also failing because of this (they depend on {}): {}\n",
            n.probe,
            n.dependents.join(", ")
        ));
    }
    if !n.sync.is_empty() {
        b.push_str("\nSync latency (last run):\n");
        for s in &n.sync {
            b.push_str(&format!(
                "  {}: {} (between {} and {}){}\n",
                s.step,
                fmt_ms(s.estimate_ms),
                fmt_ms(s.lower_ms),
                fmt_ms(s.upper_ms),
                s.slo_ms
                    .map(|slo| format!(", SLO {}", fmt_ms(slo)))
                    .unwrap_or_default()
            ));
        }
    }
    if n.kind != NoticeKind::Resolve {
        if let Some(i) = &n.runbook_impact {
            b.push_str(&format!("\nImpact assessment\n{}\n", i.trim()));
        }
        if let Some(m) = &n.runbook_mitigations {
            b.push_str(&format!("\nImmediate mitigations\n{}\n", m.trim()));
        }
    }
    b.push('\n');
    if let Some(u) = &n.runbook_url {
        b.push_str(&format!("Full runbook: {u}\n"));
    }
    if n.kind != NoticeKind::Resolve
        && let Some(a) = &n.ack_url
    {
        b.push_str(&format!("Acknowledge: {a}\n"));
    }
    b.push_str("\n-- rooftop synthetic monitoring\n");
    b
}

/// The HTML body: the same content, with headings and links.
pub fn html_body(n: &Notice) -> String {
    let text = text_body(n);
    let mut h =
        String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:15px\">");
    let mut paragraphs = text.split("\n\n");
    if let Some(first) = paragraphs.next() {
        h.push_str(&format!("<h2>{}</h2>", escape_html(first)));
    }
    for p in paragraphs {
        let mut lines = p.lines();
        match lines.next() {
            Some(title @ ("Impact assessment" | "Immediate mitigations")) => {
                h.push_str(&format!(
                    "<h3>{}</h3><pre style=\"white-space:pre-wrap\">{}</pre>",
                    escape_html(title),
                    escape_html(&lines.collect::<Vec<_>>().join("\n"))
                ));
            }
            Some(first) => {
                let mut block = vec![first];
                block.extend(lines);
                let html: Vec<String> = block
                    .iter()
                    .map(|l| {
                        if let Some(u) = l.strip_prefix("Full runbook: ") {
                            format!("<a href=\"{}\">Full runbook</a>", escape_html(u))
                        } else if let Some(u) = l.strip_prefix("Acknowledge: ") {
                            format!("<a href=\"{}\"><b>Acknowledge</b></a>", escape_html(u))
                        } else {
                            escape_html(l)
                        }
                    })
                    .collect();
                h.push_str(&format!("<p>{}</p>", html.join("<br>")));
            }
            None => {}
        }
    }
    h.push_str("</body></html>");
    h
}

fn build_message(from: &Mailbox, to: &str, n: &Notice) -> Result<Message, String> {
    let to: Mailbox = to
        .parse()
        .map_err(|_| format!("`{to}` is not a usable e-mail address"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject(n))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text_body(n)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html_body(n)),
                ),
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::sample_notice;

    #[test]
    fn subject_and_body_say_what_failed_since_when_and_what_to_do() {
        let n = sample_notice(NoticeKind::Trigger);
        assert_eq!(
            subject(&n),
            "[P2] Toronto North Honda · service-appointment: appointment-to-ro-to-survey failing"
        );
        let t = text_body(&n);
        for needle in [
            "is failing since 2026-09-21",
            "What failed: step ro-in-dms (sync_timeout): no RO after 15 polls over 15m",
            "Why you were paged: 2 failed runs in a row",
            "ro-in-dms: 15m00s (between 14m50s and 15m10s), SLO 5m00s",
            "Impact assessment\nService advisors",
            "Immediate mitigations\n1. Check the DMS sync job.",
            "Full runbook: https://runbooks.example/runbooks/ro-not-created.md",
            "Acknowledge: http://127.0.0.1:9464/ack/inc-1?sig=abc",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        let h = html_body(&n);
        assert!(h.contains("<h3>Impact assessment</h3>"));
        assert!(h.contains("<a href=\"https://runbooks.example/runbooks/ro-not-created.md\">"));
        let mut r = sample_notice(NoticeKind::Resolve);
        r.resolved_at = Some(r.opened_at + chrono::Duration::minutes(42));
        assert!(subject(&r).starts_with("[P2] RESOLVED "));
        let t = text_body(&r);
        assert!(
            t.contains("RESOLVED: appointment-to-ro-to-survey at Toronto North Honda works again"),
            "{t}"
        );
        assert!(t.contains("(42m00s)"), "{t}");
        assert!(!t.contains("Acknowledge:"));
    }

    #[tokio::test]
    async fn the_folder_transport_writes_an_eml_file() {
        let dir = tempfile::tempdir().unwrap();
        let ch = EmailChannel::new(
            "rooftop <rooftop@dealer.example>",
            EmailTransport::Folder(dir.path().to_path_buf()),
        )
        .unwrap();
        let contact = Contact {
            name: "Maria".into(),
            email: Some("maria@dealer.example".into()),
            phone: None,
        };
        let d = ch
            .send(&sample_notice(NoticeKind::Trigger), Some(&contact))
            .await;
        assert!(matches!(d, Delivery::Accepted { .. }), "{d:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(eml.contains("multipart/alternative"), "{eml}");
        assert!(eml.contains("To: maria@dealer.example"), "{eml}");
    }

    /// Found by the secret canaries (tests/secret_canary.rs): an SMTP server that quotes
    /// the `AUTH PLAIN` line in its 535 put base64 of the password into the outbox's
    /// reason, `rooftop incidents` and the log.
    #[tokio::test]
    async fn a_server_quoting_the_auth_line_does_not_reveal_the_password() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"220 hostile ESMTP\r\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = if line.starts_with("EHLO") {
                    "250-hostile\r\n250 AUTH PLAIN\r\n".to_string()
                } else if line.starts_with("AUTH") {
                    format!("535 5.7.8 rejected `{line}`\r\n")
                } else {
                    "221 bye\r\n".to_string()
                };
                if w.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let ch = EmailChannel::new(
            "rooftop@dealer.example",
            EmailTransport::Smtp(SmtpSettings {
                host: "127.0.0.1".into(),
                port,
                security: SmtpSecurity::None,
                username: Some("rooftop".into()),
                password: Some("s3cr3t-smtp-pass".into()),
                timeout: Duration::from_secs(10),
                ca_pem: None,
            }),
        )
        .unwrap();
        let contact = Contact {
            name: "Maria".into(),
            email: Some("maria@dealer.example".into()),
            phone: None,
        };
        let d = ch
            .send(&sample_notice(NoticeKind::Trigger), Some(&contact))
            .await;
        let Delivery::Rejected { reason } = d else {
            panic!("{d:?}")
        };
        assert!(reason.contains("535"), "{reason}");
        // base64("\0rooftop\0s3cr3t-smtp-pass") and the password's own base64.
        assert!(
            !reason.contains("AHJvb2Z0b3AAczNjcjN0LXNtdHAtcGFzcw"),
            "{reason}"
        );
        assert!(!reason.contains("czNjcjN0LXNtdHAtcGFzcw"), "{reason}");
        assert!(reason.contains("AUTH PLAIN [redacted]"), "{reason}");
    }
}
