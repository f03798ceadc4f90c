//! E-mail pages through a real SMTP server (Python's aiosmtpd, tests/tools/smtp_server.py)
//! on 127.0.0.1: plain relay, STARTTLS with AUTH, implicit TLS, a wrong password, a
//! server that is down, and one that defers the first message. The received MIME message
//! is parsed by Python's `email` package: subject, both parts, runbook sections, links.

#[path = "common/tools.rs"]
mod tools;

use std::time::Duration;

use rooftop::model::Contact;
use rooftop::notify::email::{EmailChannel, EmailTransport, SmtpSecurity, SmtpSettings};
use rooftop::notify::{Channel, Delivery, NoticeKind, sample_notice};
use tools::{SmtpOptions, SmtpServer, SmtpTls};

fn maria() -> Contact {
    Contact {
        name: "Maria Lopez".into(),
        email: Some("maria@dealer.example".into()),
        phone: Some("+14165550123".into()),
    }
}

fn settings(port: u16, security: SmtpSecurity) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        security,
        username: None,
        password: None,
        timeout: Duration::from_secs(5),
        ca_pem: None,
    }
}

/// Subject, plain part and HTML part of an .eml, decoded by Python's email package.
fn parse(eml: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.eml");
    std::fs::write(&path, eml).unwrap();
    let out = std::process::Command::new(tools::python())
        .arg("-c")
        .arg(
            "import email, email.policy, json, sys\n\
             m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n\
             print(json.dumps({'subject': str(m['subject']), 'to': str(m['to']), 'type': m.get_content_type(),\n\
               'text': m.get_body(('plain',)).get_content(), 'html': m.get_body(('html',)).get_content()}))",
        )
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_through_a_plain_relay_has_both_parts_the_runbook_and_the_links() {
    let smtp = SmtpServer::start(SmtpOptions::default());
    let ch = EmailChannel::new(
        "rooftop <rooftop@dealer.example>",
        EmailTransport::Smtp(settings(smtp.port, SmtpSecurity::None)),
    )
    .unwrap();
    let d = ch
        .send(&sample_notice(NoticeKind::Trigger), Some(&maria()))
        .await;
    assert!(
        matches!(d, Delivery::Accepted { .. }),
        "{d:?}\n{}",
        smtp.log()
    );
    let msgs = smtp.wait_for_count(1, Duration::from_secs(10)).await;
    let m = parse(&msgs[0]);
    assert_eq!(
        m["subject"],
        "[P2] Toronto North Honda · service-appointment: appointment-to-ro-to-survey failing"
    );
    assert_eq!(m["to"], "maria@dealer.example");
    assert_eq!(m["type"], "multipart/alternative");
    let text = m["text"].as_str().unwrap();
    for needle in [
        "What failed: step ro-in-dms (sync_timeout)",
        "Impact assessment",
        "Immediate mitigations",
        "Full runbook: https://runbooks.example/runbooks/ro-not-created.md",
        "Acknowledge: http://127.0.0.1:9464/ack/",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let html = m["html"].as_str().unwrap();
    assert!(html.contains("<h3>Impact assessment</h3>"), "{html}");
    assert!(html.contains("href=\"https://runbooks.example/runbooks/ro-not-created.md\""));
    let index = smtp.index();
    assert_eq!(index[0]["rcpt_tos"][0], "maria@dealer.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_auth_and_a_wrong_password_is_rejected() {
    for tls in [SmtpTls::RequireStartTls, SmtpTls::Implicit] {
        let smtp = SmtpServer::start(SmtpOptions {
            auth: Some(("rooftop".into(), "s3cret-smtp".into())),
            tls,
            ..SmtpOptions::default()
        });
        let ca = std::fs::read(&smtp.tls.as_ref().unwrap().ca).unwrap();
        let security = if tls == SmtpTls::Implicit {
            SmtpSecurity::Implicit
        } else {
            SmtpSecurity::StartTls
        };
        let mut s = settings(smtp.port, security);
        s.ca_pem = Some(ca);
        s.username = Some("rooftop".into());
        s.password = Some("s3cret-smtp".into());
        let ch =
            EmailChannel::new("rooftop@dealer.example", EmailTransport::Smtp(s.clone())).unwrap();
        let d = ch
            .send(&sample_notice(NoticeKind::Resolve), Some(&maria()))
            .await;
        assert!(
            matches!(d, Delivery::Accepted { .. }),
            "{tls:?}: {d:?}\n{}",
            smtp.log()
        );
        let idx = smtp.index();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx[0]["tls"], true, "{tls:?}");
        assert_eq!(idx[0]["auth_user"], "rooftop");

        s.password = Some("wrong".into());
        let ch = EmailChannel::new("rooftop@dealer.example", EmailTransport::Smtp(s)).unwrap();
        match ch
            .send(&sample_notice(NoticeKind::Trigger), Some(&maria()))
            .await
        {
            Delivery::Rejected { reason } => {
                assert!(
                    !reason.contains("wrong"),
                    "the password never appears: {reason}"
                )
            }
            other => panic!("{tls:?}: a wrong password is permanent: {other:?}"),
        }
        assert!(format!("{ch:?}").contains("<redacted>"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_or_defers_means_retry() {
    let port = tools::free_port();
    let ch = EmailChannel::new(
        "rooftop@dealer.example",
        EmailTransport::Smtp(settings(port, SmtpSecurity::None)),
    )
    .unwrap();
    let d = ch
        .send(&sample_notice(NoticeKind::Trigger), Some(&maria()))
        .await;
    assert!(matches!(d, Delivery::Retry { .. }), "{d:?}");

    let smtp = SmtpServer::start(SmtpOptions {
        reject_first: 1,
        ..SmtpOptions::default()
    });
    let ch = EmailChannel::new(
        "rooftop@dealer.example",
        EmailTransport::Smtp(settings(smtp.port, SmtpSecurity::None)),
    )
    .unwrap();
    let first = ch
        .send(&sample_notice(NoticeKind::Trigger), Some(&maria()))
        .await;
    assert!(
        matches!(first, Delivery::Retry { .. }),
        "451 is transient: {first:?}"
    );
    let second = ch
        .send(&sample_notice(NoticeKind::Trigger), Some(&maria()))
        .await;
    assert!(matches!(second, Delivery::Accepted { .. }), "{second:?}");
    assert_eq!(
        smtp.wait_for_count(1, Duration::from_secs(10)).await.len(),
        1
    );
}
