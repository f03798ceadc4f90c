//! The external test tools (tests/tools/install, tests/common/tools.rs) work with real data:
//! the OTLP receiver decodes what real OTLP clients send, the SMTP server keeps what real
//! SMTP clients deliver (AUTH, STARTTLS, SMTPS, retries), Prometheus scrapes and answers
//! PromQL, and promtool tells good rules from bad. All on 127.0.0.1.

#[path = "common/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tools::{
    OtlpReceiver, Prometheus, SmtpOptions, SmtpServer, SmtpTls, otlp_log_records, otlp_metrics,
    otlp_spans,
};

const WAIT: Duration = Duration::from_secs(20);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `otlp_send.py` over `transport` to the receiver; its output.
fn otlp_send(
    receiver: &OtlpReceiver,
    transport: &str,
    signal: &str,
    name: &str,
    gzip: bool,
) -> std::process::Output {
    let port = match transport {
        "grpc" => receiver.grpc_port,
        _ => receiver.http_port,
    };
    let port = port.to_string();
    let mut args = vec![
        "--transport",
        transport,
        "--port",
        &port,
        "--signal",
        signal,
        "--name",
        name,
    ];
    if gzip {
        args.push("--gzip");
    }
    tools::run_script("otlp_send.py", args)
}

fn is(transport: &str, signal: &str, r: &Value) -> bool {
    r["transport"] == transport && r["signal"] == signal
}

fn metric_named(r: &Value, name: &str) -> bool {
    otlp_metrics(&r["request"])
        .iter()
        .any(|m| m["name"] == name)
}

#[tokio::test]
async fn otlp_receiver_decodes_http_protobuf_posted_by_reqwest() {
    let receiver = OtlpReceiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("request.bin");
    let out = tools::run_script(
        "otlp_send.py",
        [
            "--signal".as_ref(),
            "metrics".as_ref(),
            "--name".as_ref(),
            "rooftop.smoke.http_metric".as_ref(),
            "--write".as_ref(),
            body_file.as_os_str(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let body = std::fs::read(&body_file).unwrap();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/v1/metrics", receiver.http_endpoint());
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-protobuf",
        "an ExportMetricsServiceResponse comes back"
    );

    let line = receiver
        .wait_for(
            |r| is("http", "metrics", r) && metric_named(r, "rooftop.smoke.http_metric"),
            WAIT,
        )
        .await;
    let metric = &otlp_metrics(&line["request"])[0];
    assert_eq!(metric["sum"]["data_points"][0]["as_int"], "42");
    assert_eq!(
        line["request"]["resource_metrics"][0]["resource"]["attributes"][0]["value"]["string_value"],
        "otlp_send"
    );
    assert_eq!(receiver.metric_names(), ["rooftop.smoke.http_metric"]);

    // What is no ExportMetricsServiceRequest is refused, not recorded.
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .post(format!("{}/v1/nothing", receiver.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(receiver.all_requests().len(), 1);

    assert!(
        receiver.stop().success(),
        "SIGTERM ends the receiver cleanly"
    );
}

#[tokio::test]
async fn otlp_receiver_records_every_signal_over_grpc_and_gzipped_http() {
    let receiver = OtlpReceiver::start(0);
    for (transport, gzip) in [("grpc", false), ("grpc", true), ("http", true)] {
        for signal in ["metrics", "traces", "logs"] {
            let name = format!("rooftop.smoke.{transport}.{signal}.gzip_{gzip}");
            let out = otlp_send(&receiver, transport, signal, &name, gzip);
            assert!(
                out.status.success(),
                "{transport} {signal}: {}",
                stderr(&out)
            );
            let line = receiver
                .wait_for(
                    |r| {
                        is(transport, signal, r)
                            && match signal {
                                "metrics" => metric_named(r, &name),
                                "traces" => {
                                    otlp_spans(&r["request"]).iter().any(|s| s["name"] == *name)
                                }
                                _ => otlp_log_records(&r["request"])
                                    .iter()
                                    .any(|l| l["body"]["string_value"] == *name),
                            }
                    },
                    WAIT,
                )
                .await;
            if signal == "traces" {
                let span = &otlp_spans(&line["request"])[0];
                assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
                // bytes fields come out base64-encoded: 0x01..0x10
                assert_eq!(span["trace_id"], "0102030405060708090a0b0c0d0e0f10");
            }
        }
    }
    assert_eq!(receiver.requests().len(), 9);
}

#[tokio::test]
async fn otlp_receiver_fail_first_refuses_the_first_request_of_each_transport() {
    let receiver = OtlpReceiver::start(1);
    for transport in ["grpc", "http"] {
        let first = otlp_send(
            &receiver,
            transport,
            "metrics",
            "rooftop.smoke.first",
            false,
        );
        assert!(
            !first.status.success(),
            "the first {transport} export fails"
        );
        let expected = if transport == "grpc" {
            "UNAVAILABLE"
        } else {
            "HTTP 503"
        };
        assert!(
            stderr(&first).contains(expected),
            "{transport}: {}",
            stderr(&first)
        );
        let second = otlp_send(
            &receiver,
            transport,
            "metrics",
            "rooftop.smoke.second",
            false,
        );
        assert!(second.status.success(), "{transport}: {}", stderr(&second));
    }
    let all = receiver.all_requests();
    let summary: Vec<(String, bool)> = all
        .iter()
        .map(|r| {
            let name = otlp_metrics(&r["request"])[0]["name"]
                .as_str()
                .unwrap()
                .to_string();
            (
                format!("{} {name}", r["transport"].as_str().unwrap()),
                r["accepted"] == true,
            )
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("grpc rooftop.smoke.first", false),
        ("grpc rooftop.smoke.second", true),
        ("http rooftop.smoke.first", false),
        ("http rooftop.smoke.second", true),
    ]
    .iter()
    .map(|(s, a)| (s.to_string(), *a))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(
        receiver.metric_names(),
        ["rooftop.smoke.second", "rooftop.smoke.second"],
        "requests() holds the accepted ones only"
    );
}

/// Reads one SMTP reply (all its lines); returns the code and the last line.
fn smtp_reply(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.len() >= 4, "short SMTP reply line {line:?}");
        if line.as_bytes()[3] == b' ' {
            return (line[..3].parse().unwrap(), line.trim_end().to_string());
        }
    }
}

fn smtp_command(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, cmd: &str) -> u16 {
    stream.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    smtp_reply(reader).0
}

#[tokio::test]
async fn smtp_server_saves_a_message_from_a_raw_smtp_dialogue() {
    let server = SmtpServer::start(SmtpOptions::default());
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(smtp_reply(&mut reader).0, 220);
    assert_eq!(
        smtp_command(&mut stream, &mut reader, "EHLO rooftop-test"),
        250
    );
    assert_eq!(
        smtp_command(&mut stream, &mut reader, "MAIL FROM:<rooftop@example.test>"),
        250
    );
    assert_eq!(
        smtp_command(&mut stream, &mut reader, "RCPT TO:<oncall@example.test>"),
        250
    );
    assert_eq!(smtp_command(&mut stream, &mut reader, "DATA"), 354);
    let message = "From: rooftop@example.test\r\nTo: oncall@example.test\r\n\
                   Subject: rooftop smoke page\r\n\r\nlead probe failing\r\n.\r\n";
    stream.write_all(message.as_bytes()).unwrap();
    let (code, text) = smtp_reply(&mut reader);
    assert_eq!(code, 250, "{text}");
    assert_eq!(smtp_command(&mut stream, &mut reader, "QUIT"), 221);

    let messages = server.wait_for_count(1, WAIT).await;
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("Subject: rooftop smoke page"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("lead probe failing"));
    let index = server.index();
    assert_eq!(index[0]["file"], "000001.eml");
    assert_eq!(index[0]["mail_from"], "rooftop@example.test");
    assert_eq!(
        index[0]["rcpt_tos"],
        serde_json::json!(["oncall@example.test"])
    );
    assert_eq!(index[0]["tls"], false);
    assert!(server.message_paths()[0].ends_with("000001.eml"));
    assert!(server.stop().success(), "SIGTERM ends the server cleanly");
}

fn smtp_send(server: &SmtpServer, subject: &str, extra: &[&str]) -> std::process::Output {
    let port = server.port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--from",
        "rooftop@example.test",
        "--to",
        "oncall@example.test",
        "--subject",
        subject,
    ];
    args.extend_from_slice(extra);
    tools::run_script("smtp_send.py", args)
}

fn pager_auth() -> Option<(String, String)> {
    Some(("pager".to_string(), "s3cret".to_string()))
}

#[tokio::test]
async fn smtp_server_requires_auth_over_starttls() {
    let server = SmtpServer::start(SmtpOptions {
        auth: pager_auth(),
        tls: SmtpTls::StartTls,
        ..Default::default()
    });
    let ca = server
        .tls
        .as_ref()
        .unwrap()
        .ca
        .to_str()
        .unwrap()
        .to_string();

    let out = smtp_send(&server, "no auth", &["--starttls", &ca]);
    assert!(
        stderr(&out).contains("SMTP 530"),
        "MAIL without AUTH: {}",
        stderr(&out)
    );
    let out = smtp_send(
        &server,
        "wrong password",
        &["--starttls", &ca, "--auth", "pager:nope"],
    );
    assert!(
        stderr(&out).contains("SMTP 535"),
        "bad password: {}",
        stderr(&out)
    );
    let out = smtp_send(&server, "no tls", &["--auth", "pager:s3cret"]);
    assert!(!out.status.success(), "AUTH is not offered before STARTTLS");
    let out = smtp_send(
        &server,
        "starttls auth",
        &["--starttls", &ca, "--auth", "pager:s3cret"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let messages = server.wait_for_count(1, WAIT).await;
    assert!(
        messages[0].contains("Subject: starttls auth"),
        "{}",
        messages[0]
    );
    let index = server.index();
    assert_eq!(index.len(), 1, "only the authenticated message was saved");
    assert_eq!(index[0]["tls"], true);
    assert_eq!(index[0]["auth_user"], "pager");
}

#[tokio::test]
async fn smtp_server_speaks_smtps_and_plain_auth_when_allowed() {
    let smtps = SmtpServer::start(SmtpOptions {
        auth: pager_auth(),
        tls: SmtpTls::Implicit,
        ..Default::default()
    });
    let ca = smtps.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let out = smtp_send(
        &smtps,
        "over smtps",
        &["--implicit-tls", &ca, "--auth", "pager:s3cret"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = smtp_send(&smtps, "plain to smtps", &["--auth", "pager:s3cret"]);
    assert!(!out.status.success(), "plain SMTP to an SMTPS port fails");

    let plain = SmtpServer::start(SmtpOptions {
        auth: pager_auth(),
        allow_plain_auth: true,
        ..Default::default()
    });
    let out = smtp_send(&plain, "plain auth", &["--auth", "pager:s3cret"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let m = smtps.wait_for_count(1, WAIT).await;
    assert!(m[0].contains("Subject: over smtps"));
    assert_eq!(smtps.index()[0]["tls"], true);
    let m = plain.wait_for_count(1, WAIT).await;
    assert!(m[0].contains("Subject: plain auth"));
    assert_eq!(plain.index()[0]["tls"], false);
    assert_eq!(plain.index()[0]["auth_user"], "pager");
}

#[tokio::test]
async fn smtp_server_reject_first_answers_451_then_accepts() {
    let server = SmtpServer::start(SmtpOptions {
        reject_first: 1,
        ..Default::default()
    });
    let out = smtp_send(&server, "attempt 1", &[]);
    assert!(stderr(&out).contains("SMTP 451"), "{}", stderr(&out));
    let out = smtp_send(&server, "attempt 2", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let messages = server.wait_for_count(1, WAIT).await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: attempt 2"));
    assert_eq!(server.rejected().len(), 1);
}

/// A /metrics endpoint on 127.0.0.1 serving `body` to every request, on a thread.
fn serve_metrics(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn prometheus_scrapes_itself_and_a_target_and_answers_promql() {
    let target = serve_metrics(
        "# TYPE rooftop_smoke_total counter\nrooftop_smoke_total{probe=\"lead\"} 7\n",
    );
    let config = r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:{{PROMETHEUS_PORT}}']}]
  - job_name: smoke
    static_configs: [{targets: ['127.0.0.1:TARGET_PORT']}]
"#
    .replace("TARGET_PORT", &target.to_string());
    let prom = Prometheus::start(&config);
    let up = prom
        .wait_for_query(
            "up",
            |v| v.len() == 2 && v.iter().all(|(_, value)| *value == 1.0),
            Duration::from_secs(30),
        )
        .await;
    let mut jobs: Vec<&str> = up.iter().map(|(m, _)| m["job"].as_str().unwrap()).collect();
    jobs.sort();
    assert_eq!(jobs, ["prometheus", "smoke"]);

    let v = prom.query_vector("sum by (probe) (rooftop_smoke_total{job=\"smoke\"}) * 2");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0["probe"], "lead");
    assert_eq!(v[0].1, 14.0);
    let bad = prom.query("sum(");
    assert_eq!(bad["status"], "error", "{bad}");
    assert!(prom.stop().success(), "SIGTERM ends prometheus cleanly");
}

#[test]
fn promtool_checks_and_tests_rules() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "groups:\n- name: rooftop\n  rules:\n  - alert: ProbeFailing\n    \
         expr: rooftop_probe_success == 0\n    for: 1m\n    labels: {severity: page}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n- name: rooftop\n  rules:\n  - alert: Broken\n    expr: sum(rooftop_probe_success\n",
    )
    .unwrap();

    let out = tools::promtool(["check".as_ref(), "rules".as_ref(), good.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 1 rules found"));
    let out = tools::promtool(["check".as_ref(), "rules".as_ref(), bad.as_os_str()]);
    assert!(!out.status.success(), "an unparsable expr fails the check");

    // Rule unit tests: the alert fires after 1m of failures, and a wrong expectation fails.
    let unit = |expect_firing: bool| {
        let alerts = if expect_firing {
            "      - exp_labels: {severity: page, probe: lead}\n"
        } else {
            ""
        };
        format!(
            "rule_files: [good.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  \
             input_series:\n  - series: 'rooftop_probe_success{{probe=\"lead\"}}'\n    \
             values: '0 0 0 0'\n  alert_rule_test:\n  - eval_time: 3m\n    \
             alertname: ProbeFailing\n    exp_alerts:\n{alerts}"
        )
    };
    let right = dir.path().join("right_test.yml");
    std::fs::write(&right, unit(true)).unwrap();
    let out = tools::promtool(["test".as_ref(), "rules".as_ref(), right.as_os_str()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let wrong = dir.path().join("wrong_test.yml");
    std::fs::write(&wrong, unit(false)).unwrap();
    let out = tools::promtool(["test".as_ref(), "rules".as_ref(), wrong.as_os_str()]);
    assert!(!out.status.success(), "a wrong expectation fails");
}

#[test]
fn every_installed_tool_runs() {
    for name in [
        "prometheus",
        "promtool",
        "alertmanager",
        "amtool",
        "prometheus-blackbox-exporter",
    ] {
        let out = std::process::Command::new(tools::bin(name))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --version: {}", stderr(&out));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(text.contains("version"), "{name}: {text}");
    }
    let out = std::process::Command::new(tools::python())
        .args([
            "-c",
            "import aiosmtpd, grpc, google.protobuf; \
             from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
