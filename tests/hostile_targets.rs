//! Hostile targets: `rooftop once` (the real binary) against local servers that misbehave
//! on purpose — endless bodies, a gzip bomb, slowloris, silence, redirect games, broken
//! UTF-8 and JSON, a 100,000-element array, bad certificates, an unresolvable name — and
//! `rooftop run` with those probes beside a healthy one. Every run must end within its
//! probe's deadline with the right `error_class`, and the agent's memory must stay
//! bounded. No assertion on latency: only outcomes, classes, counts and "before the
//! deadline plus generous slack".

#[path = "common/hostile.rs"]
mod hostile;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hostile::{Certs, Once, Target, TlsServer, once, probe, respond, serve, write_config};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Peak RSS any `rooftop once` child may reach against a hostile target (the agent
/// itself is ~20 MB; the default body cap is 1 MiB).
const MAX_RSS_KIB: i64 = 200 * 1024;

/// Slack on top of a probe's timeout for a run to count as ended "within its deadline":
/// process start, config load, cleanup and exit on a shared, noisy machine.
const SLACK: Duration = Duration::from_secs(30);

/// The run ended within `timeout` (its steps, by the runner's own clock) and the whole
/// child within `timeout` + `SLACK`.
fn assert_within_deadline(o: &Once, timeout: Duration) {
    let steps_ms = o.run["duration_ms"].as_f64().unwrap();
    assert!(
        steps_ms <= (timeout + Duration::from_secs(5)).as_millis() as f64,
        "steps took {steps_ms} ms, probe timeout {timeout:?}: {:#}",
        o.run
    );
    assert!(
        o.elapsed <= timeout + SLACK,
        "`rooftop once` took {:?} (probe timeout {timeout:?})",
        o.elapsed
    );
}

/// The run ended as `outcome` with `class`, `rooftop once` exited accordingly, within the
/// deadline and the memory bound.
fn assert_run(o: &Once, outcome: &str, class: &str, timeout: Duration) {
    assert_eq!(
        (o.outcome(), o.class()),
        (outcome, class),
        "{:#}\nstderr: {}",
        o.run,
        o.stderr
    );
    let code = if outcome == "success" { 0 } else { 1 };
    assert_eq!(o.code, Some(code), "stderr: {}", o.stderr);
    assert_within_deadline(o, timeout);
    assert!(
        o.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB against a hostile target",
        o.max_rss_kib
    );
}

/// Runs probe `name` of `dir` with `rooftop once` and prints what it found.
async fn once_in(dir: &std::path::Path, name: &str) -> Once {
    let o = once(dir, name, &[]).await;
    eprintln!(
        "{name}: {} {} in {:?}, peak RSS {} KiB: {}",
        o.outcome(),
        o.class(),
        o.elapsed,
        o.max_rss_kib,
        o.run["message"].as_str().unwrap_or("")
    );
    o
}

/// The request path of a head (`GET /path?query HTTP/1.1`), without its query.
fn path_of(head: &str) -> &str {
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    target.split('?').next().unwrap_or(target)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---- bodies ---------------------------------------------------------------------------------

/// Writes `chunk` forever (as HTTP chunks when `chunked`), counting the bytes that left;
/// stops when the peer goes away.
async fn stream_forever(mut s: TcpStream, chunked: bool, sent: Arc<AtomicU64>) {
    let chunk = vec![b'x'; 64 * 1024];
    let framed = if chunked {
        let mut f = format!("{:x}\r\n", chunk.len()).into_bytes();
        f.extend_from_slice(&chunk);
        f.extend_from_slice(b"\r\n");
        f
    } else {
        chunk
    };
    while s.write_all(&framed).await.is_ok() {
        sent.fetch_add(framed.len() as u64, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_stops_at_max_body_bytes_without_buffering_it() {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let target = serve(move |mut s, head| {
        let sent = counter.clone();
        async move {
            let head_line = match path_of(&head) {
                // A body that never ends, with no length announced.
                "/chunked" => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                // Ten gibibytes announced, and sent for as long as anyone reads.
                _ => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10737418240\r\n\r\n",
            };
            if s.write_all(head_line.as_bytes()).await.is_ok() {
                stream_forever(s, path_of(&head) == "/chunked", sent).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let step = "expect: {json: {\"$.id\": {exists: true}}}";
    write_config(
        dir.path(),
        "{}\n",
        &[
            (
                "chunked",
                probe("chunked", "20s", &target.url("/chunked"), "10s", step),
            ),
            (
                "declared",
                probe("declared", "20s", &target.url("/declared"), "10s", step),
            ),
        ],
    );
    for name in ["chunked", "declared"] {
        let o = once_in(dir.path(), name).await;
        assert_run(&o, "error", "body_too_large", secs(20));
        assert_eq!(o.request()["status"], 200, "{:#}", o.run);
        assert!(
            o.run["message"]
                .as_str()
                .unwrap()
                .contains("1048576 byte limit"),
            "{:#}",
            o.run
        );
    }
    eprintln!(
        "the endless-body server got {} bytes out before the agent hung up",
        sent.load(Ordering::Relaxed)
    );
}

/// 256 MiB of zeros, gzipped (about 250 KB).
fn gzip_bomb() -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .args(["-c", "head -c 268435456 /dev/zero | gzip -9 -c"])
        .output()
        .expect("sh, head and gzip");
    assert!(out.status.success() && out.stdout.len() < 1 << 20);
    out.stdout
}

/// reqwest is built without its `gzip`/`deflate`/`brotli`/`zstd` features: the agent
/// never asks for compression and never inflates a body, so a bomb is just its own
/// compressed bytes, under the cap, and not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_never_decompressed() {
    let bomb = Arc::new(gzip_bomb());
    let body = bomb.clone();
    let target = serve(move |mut s, _| {
        let body = body.clone();
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ];
            respond(&mut s, "200 OK", &headers, &body).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let step = "expect: {json: {\"$.id\": {exists: true}}}";
    write_config(
        dir.path(),
        "{}\n",
        &[(
            "bomb",
            probe("bomb", "20s", &target.url("/bomb"), "10s", step),
        )],
    );
    let o = once_in(dir.path(), "bomb").await;
    assert_run(&o, "error", "invalid_json", secs(20));
    // What was read is the compressed bytes, not 256 MiB.
    assert_eq!(
        o.request()["response_bytes"],
        bomb.len() as u64,
        "{:#}",
        o.run
    );
    let heads = target.heads();
    assert!(
        heads.iter().all(|h| !h.contains("accept-encoding")),
        "{heads:?}"
    );
}

// ---- slow and silent ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_or_body_end_at_the_request_timeout() {
    let target = serve(|mut s, head| async move {
        let slow_body = path_of(&head) == "/body";
        let start: &[u8] = if slow_body {
            b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\n"
        };
        if s.write_all(start).await.is_err() {
            return;
        }
        // One byte a second, forever: a header that never ends, or a body.
        for b in b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
            .cycle()
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{}\n",
        &[
            (
                "headers",
                probe("headers", "20s", &target.url("/headers"), "3s", ""),
            ),
            ("body", probe("body", "20s", &target.url("/body"), "3s", "")),
        ],
    );
    for name in ["headers", "body"] {
        let o = once_in(dir.path(), name).await;
        assert_run(&o, "error", "timeout", secs(20));
    }
}

/// A server that accepts and never says a word: the request timeout ends it when it is the
/// shorter, else the probe's own `timeout` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_ends_at_the_first_deadline() {
    let target = serve(|s, _| hostile::hold_silently(s)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{}\n",
        &[
            (
                "request",
                probe("request", "20s", &target.url("/"), "2s", ""),
            ),
            ("probe", probe("probe", "3s", &target.url("/"), "30s", "")),
            (
                "polled",
                probe(
                    "polled",
                    "4s",
                    &target.url("/"),
                    "30s",
                    "until: {status: 200}\npoll: {interval: 200ms, within: 3s}",
                ),
            ),
        ],
    );
    let o = once_in(dir.path(), "request").await;
    assert_run(&o, "error", "timeout", secs(20));
    let o = once_in(dir.path(), "probe").await;
    assert_run(&o, "error", "probe_timeout", secs(3));
    // Polled: an attempt's request is cut to what is left of the probe, so it times out
    // at the probe's deadline: `probe_timeout`, whichever of the two timers fires first.
    let o = once_in(dir.path(), "polled").await;
    assert_run(&o, "error", "probe_timeout", secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_headers_garbage_and_a_refused_connection() {
    let target = serve(|mut s, head| async move {
        if path_of(&head) == "/garbage" {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
            return;
        }
        // Headers as fast as the socket takes them, never a blank line.
        if s.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
            return;
        }
        let line = format!("x-h: {}\r\n", "a".repeat(1000));
        while s.write_all(line.as_bytes()).await.is_ok() {}
    })
    .await;
    let refused = format!("http://127.0.0.1:{}/", hostile::closed_port());
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{}\n",
        &[
            (
                "headers",
                probe("headers", "20s", &target.url("/headers"), "10s", ""),
            ),
            (
                "garbage",
                probe("garbage", "20s", &target.url("/garbage"), "10s", ""),
            ),
            ("refused", probe("refused", "20s", &refused, "10s", "")),
        ],
    );
    for (name, class) in [
        ("headers", "protocol"),
        ("garbage", "protocol"),
        ("refused", "connect"),
    ] {
        let o = once_in(dir.path(), name).await;
        assert_run(&o, "error", class, secs(20));
    }
}

// ---- redirects ------------------------------------------------------------------------------

/// Within its origin the client follows at most 5 redirects (`MAX_REDIRECTS`): a loop is
/// 6 requests and a `protocol` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_stops_after_five_hops() {
    let target = serve(|mut s, _| async move {
        respond(&mut s, "302 Found", &[("location", "/loop")], b"").await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{}\n",
        &[(
            "loop",
            probe("loop", "20s", &target.url("/loop"), "10s", ""),
        )],
    );
    let o = once_in(dir.path(), "loop").await;
    assert_run(&o, "error", "protocol", secs(20));
    assert!(
        o.run["message"]
            .as_str()
            .unwrap()
            .contains("too many redirects"),
        "{:#}",
        o.run
    );
    assert_eq!(target.heads().len(), 6, "{:?}", target.heads());
}

/// A redirect within the probe's origin is followed with the probe's headers (and no
/// `Referer`); one to another origin is not followed, so a secret in a header such as
/// `X-Api-Key` (reqwest strips only `Authorization` and cookies on a hop) never reaches a
/// host the probe did not name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_stays_on_the_probes_origin() {
    let other = serve(|mut s, _| async move {
        let h = [("content-type", "application/json")];
        respond(&mut s, "200 OK", &h, br#"{"ok": true}"#).await;
    })
    .await;
    let elsewhere = other.url("/landing");
    let first = serve(move |mut s, head| {
        let elsewhere = elsewhere.clone();
        async move {
            let h = [("content-type", "application/json")];
            match path_of(&head) {
                "/away" => {
                    respond(
                        &mut s,
                        "307 Temporary Redirect",
                        &[("location", &elsewhere)],
                        b"",
                    )
                    .await
                }
                "/same" => respond(&mut s, "302 Found", &[("location", "/landing")], b"").await,
                _ => respond(&mut s, "200 OK", &h, br#"{"ok": true}"#).await,
            }
        }
    })
    .await;
    let canary = "Canary-9f2e7c41d3";
    let text = |name: &str| {
        format!(
            "name: {name}\ntimeout: 20s\nsteps:\n  - name: get\n    request:\n      url: \"{}?key={{{{ secret.api_key }}}}\"\n      headers: {{X-Api-Key: \"{{{{ secret.api_key }}}}\", Authorization: \"Bearer {{{{ secret.api_key }}}}\"}}\n      timeout: 10s\n    expect: {{json: {{\"$.ok\": true}}}}\n",
            first.url(&format!("/{name}"))
        )
    };
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{}\n",
        &[("away", text("away")), ("same", text("same"))],
    );
    let env = [("ROOFTOP_SECRET_API_KEY", canary.to_string())];
    let secret = canary.to_ascii_lowercase();

    let o = once(dir.path(), "away", &env).await;
    assert_run(&o, "failed", "assertion", secs(20));
    let message = o.run["message"].as_str().unwrap();
    let note = format!(
        "got 307; redirect to {} not followed",
        other.url("/landing")
    );
    assert!(message.contains(&note), "{message}");
    assert!(
        other.heads().is_empty(),
        "reached the other origin: {:?}",
        other.heads()
    );

    let o = once(dir.path(), "same", &env).await;
    assert_run(&o, "success", "none", secs(20));
    let heads = first.heads();
    let landing = heads
        .iter()
        .find(|h| h.starts_with("get /landing"))
        .unwrap();
    assert!(
        landing.contains(&format!("x-api-key: {secret}")),
        "{landing}"
    );
    assert!(!landing.contains("referer"), "{landing}");
    assert!(
        heads
            .iter()
            .all(|h| !h.starts_with("get /landing") || h.contains("host: 127.0.0.1"))
    );
}

/// A redirect to another scheme is never followed, whatever the scheme: the 3xx is the
/// step's answer (so `expect: {status: 302}` holds), failing the default 2xx expectation
/// with where it pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_non_http_scheme_is_not_followed() {
    let target = serve(|mut s, head| async move {
        let to = match path_of(&head) {
            "/file" => "file:///etc/passwd",
            "/ftp" => "ftp://127.0.0.1/pub",
            _ => "javascript:alert(1)",
        };
        respond(&mut s, "302 Found", &[("location", to)], b"").await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let names = [
        ("file", "file:///etc/passwd"),
        ("ftp", "ftp://127.0.0.1/pub"),
        ("javascript", "javascript:alert(1)"),
    ];
    let mut probes: Vec<_> = names
        .iter()
        .map(|(n, _)| {
            (
                *n,
                probe(n, "20s", &target.url(&format!("/{n}")), "10s", ""),
            )
        })
        .collect();
    let expecting = "expect: {status: 302, headers: {Location: \"ftp://127.0.0.1/pub\"}}";
    probes.push((
        "expected",
        probe("expected", "20s", &target.url("/ftp"), "10s", expecting),
    ));
    write_config(dir.path(), "{}\n", &probes);
    for (name, to) in names {
        let o = once_in(dir.path(), name).await;
        assert_run(&o, "failed", "assertion", secs(20));
        assert_eq!(o.request()["status"], 302);
        let message = o.run["message"].as_str().unwrap();
        let note = format!("got 302; redirect to {to} not followed");
        assert!(message.contains(&note), "{message}");
    }
    let o = once_in(dir.path(), "expected").await;
    assert_run(&o, "success", "none", secs(20));
    assert_eq!(
        target.heads().len(),
        4,
        "one request per run: {:?}",
        target.heads()
    );
}

// ---- bodies that are not what they claim ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_invalid_json_meet_json_expectations_and_captures() {
    let target = serve(|mut s, head| async move {
        let body: Vec<u8> = match path_of(&head) {
            "/utf8" => b"\xff\xfe{\"id\": \"\xc3\x28\"} id=42 \xed\xa0\x80".to_vec(),
            "/truncated" => br#"{"id": 1, "items": [1, 2"#.to_vec(),
            // Deeper than any parser should recurse.
            _ => "[".repeat(100_000).into_bytes(),
        };
        respond(
            &mut s,
            "200 OK",
            &[("content-type", "application/json")],
            &body,
        )
        .await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = |p: &str| target.url(p);
    write_config(
        dir.path(),
        "{}\n",
        &[
            (
                "utf8-expect",
                probe(
                    "utf8-expect",
                    "20s",
                    &url("/utf8"),
                    "10s",
                    "expect: {json: {\"$.id\": {exists: true}}}",
                ),
            ),
            (
                "utf8-regex",
                probe(
                    "utf8-regex",
                    "20s",
                    &url("/utf8"),
                    "10s",
                    "expect: {body: {contains: \"id=\"}}\ncapture: {n: {regex: \"id=(\\\\d+)\"}}",
                ),
            ),
            (
                "truncated",
                probe(
                    "truncated",
                    "20s",
                    &url("/truncated"),
                    "10s",
                    "capture: {id: \"$.id\"}",
                ),
            ),
            (
                "deep",
                probe(
                    "deep",
                    "20s",
                    &url("/deep"),
                    "10s",
                    "expect: {json: {\"$[0]\": {exists: true}}}",
                ),
            ),
        ],
    );
    for (name, outcome, class) in [
        ("utf8-expect", "error", "invalid_json"),
        ("utf8-regex", "success", "none"),
        ("truncated", "error", "invalid_json"),
        ("deep", "error", "invalid_json"),
    ] {
        let o = once_in(dir.path(), name).await;
        assert_run(&o, outcome, class, secs(20));
        if name == "utf8-regex" {
            assert_eq!(o.run["steps"][0]["captures"]["n"], "42", "{:#}", o.run);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_element_array_under_a_jsonpath_capture() {
    let mut body = String::from("{\"items\": [");
    for i in 0..100_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\": \"R{i}\", \"vin\": \"0RTSYNTH{i:09}\"}}"
        ));
    }
    body.push_str("]}");
    let body = Arc::new(body.into_bytes());
    let served = body.clone();
    let target = serve(move |mut s, _| {
        let body = served.clone();
        async move {
            respond(
                &mut s,
                "200 OK",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let step = "expect: {json: {\"$.items\": {length: 100000}, \"$.items[*].id\": {contains: R99999}}}\n\
                capture: {ids: \"$.items[*].id\", last: \"$.items[-1].vin\"}";
    write_config(
        dir.path(),
        // The array is about 5 MB: over the default 1 MiB cap.
        "defaults: {max_body_bytes: 16777216}\n",
        &[(
            "array",
            probe("array", "60s", &target.url("/items"), "30s", step),
        )],
    );
    let o = once_in(dir.path(), "array").await;
    assert_run(&o, "success", "none", secs(60));
    let captures = &o.run["steps"][0]["captures"];
    assert_eq!(captures["ids"].as_array().map(Vec::len), Some(100_000));
    assert_eq!(captures["last"], "0RTSYNTH000099999");
    assert_eq!(o.request()["response_bytes"], body.len() as u64);
}

// ---- TLS ------------------------------------------------------------------------------------

/// `verify_tls` defaults to true: a self-signed or expired certificate is a `tls` error;
/// `defaults.verify_tls: false` accepts both. The expired leaf is signed by a CA the agent
/// trusts (`SSL_CERT_FILE`), and a valid leaf of the same CA passes: it fails on its dates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_fail_unless_verify_tls_is_off() {
    let certs = Certs::generate();
    let self_signed = TlsServer::start(&certs.self_signed, &certs.self_signed_key).await;
    let expired = TlsServer::start(&certs.expired, &certs.key).await;
    let valid = TlsServer::start(&certs.valid, &certs.key).await;
    let expect = "expect: {json: {\"$.ok\": true}}";
    let probes = [
        (
            "self-signed",
            probe("self-signed", "20s", &self_signed.url(), "10s", expect),
        ),
        (
            "expired",
            probe("expired", "20s", &expired.url(), "10s", expect),
        ),
        ("valid", probe("valid", "20s", &valid.url(), "10s", expect)),
    ];
    let verifying = tempfile::tempdir().unwrap();
    write_config(verifying.path(), "{}\n", &probes);
    let trusting = tempfile::tempdir().unwrap();
    write_config(trusting.path(), "defaults: {verify_tls: false}\n", &probes);
    let ca = [("SSL_CERT_FILE", certs.ca.display().to_string())];
    for (name, class, hint) in [
        ("self-signed", "tls", "UnknownIssuer"),
        ("expired", "tls", "expired"),
    ] {
        let o = once(verifying.path(), name, &ca).await;
        assert_run(&o, "error", class, secs(20));
        assert!(
            o.run["message"].as_str().unwrap().contains(hint),
            "{:#}",
            o.run
        );
        let o = once(trusting.path(), name, &ca).await;
        assert_run(&o, "success", "none", secs(20));
        assert!(o.stderr.contains("verification is OFF"), "{}", o.stderr);
    }
    let o = once(verifying.path(), "valid", &ca).await;
    assert_run(&o, "success", "none", secs(20));
}

// ---- DNS ------------------------------------------------------------------------------------

/// A name under `.invalid` (RFC 6761) never resolves. Only run where the resolver answers
/// it on this machine (the systemd-resolved stub, which refuses `.invalid` itself); with a
/// nameserver elsewhere the lookup would leave the machine, so the case says so and
/// returns (the next test pins the `dns` class with an in-process resolver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_under_invalid_is_a_dns_error() {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    if servers.is_empty() || servers.iter().any(|s| *s != "127.0.0.53") {
        eprintln!(
            "SKIPPED: the resolver here ({servers:?}) would send the `.invalid` lookup off the machine"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = "http://no-such-host.invalid/";
    write_config(
        dir.path(),
        "{}\n",
        &[("nxdomain", probe("nxdomain", "20s", url, "10s", ""))],
    );
    let o = once_in(dir.path(), "nxdomain").await;
    assert_run(&o, "error", "dns", secs(20));
}

/// Answers a name under `.invalid` with "no such host" at once, as RFC 6761 asks of a
/// resolver, and never answers anything else (a DNS server that has gone silent).
struct LocalResolver;

impl reqwest::dns::Resolve for LocalResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let invalid = name.as_str().ends_with(".invalid");
        Box::pin(async move {
            if !invalid {
                std::future::pending::<()>().await;
            }
            Err::<reqwest::dns::Addrs, _>("no such host: NXDOMAIN".into())
        })
    }
}

/// The library's runner with `resolver` in place of the system's.
fn runner_resolving_with(
    resolver: Arc<dyn reqwest::dns::Resolve>,
    state: &std::path::Path,
) -> rooftop::runner::Runner {
    use rooftop::runner::http::{HttpClient, HttpSettings};
    rooftop::runner::Runner {
        http: HttpClient::with_resolver(&HttpSettings::default(), Some(resolver)).unwrap(),
        env: Arc::default(),
        secrets: Arc::default(),
        ledger: rooftop::store::Ledger::open_in(state).unwrap(),
        clock: Arc::new(rooftop::clock::SystemClock),
    }
}

/// Runs a probe given as YAML text through `runner`, with the time it took.
async fn run_probe_text(
    runner: &rooftop::runner::Runner,
    text: &str,
) -> (rooftop::runner::ProbeRun, Duration) {
    let p = rooftop::config::load_probe_text(
        std::path::Path::new("dns.yaml"),
        text,
        &rooftop::config::Defaults::default(),
        &Default::default(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = runner.run(&p, None).await;
    (run, started.elapsed())
}

/// The same two lookups through the library's runner with `LocalResolver` in place of the
/// system's, so they run on any machine: NXDOMAIN is `dns`, and so is a resolver that
/// never answers, cut by the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_or_unanswered_name_through_the_runner() {
    let state = tempfile::tempdir().unwrap();
    let runner = runner_resolving_with(Arc::new(LocalResolver), state.path());
    for (url, message) in [
        ("http://no-such-host.invalid/", "NXDOMAIN"),
        (
            "http://crm.dealer.test/api",
            "`crm.dealer.test` did not resolve within 2s",
        ),
    ] {
        let (run, took) = run_probe_text(&runner, &probe("dns", "20s", url, "2s", "")).await;
        assert_eq!(
            run.error_class.map(|c| c.as_str()),
            Some("dns"),
            "{url}: {:?}",
            run.message
        );
        let m = run.message.unwrap_or_default();
        assert!(m.contains(message), "{url}: {m}");
        assert!(took < secs(20) + SLACK, "{url}");
    }
}

/// Regression: a DNS server that never answered ended the run as `timeout` (reqwest
/// reports every expired deadline alike), pointing the on-call at the CRM instead of the
/// dealership's resolver. A real UDP lookup against a server on 127.0.0.1 that swallows
/// it, ended by the request timeout, by the probe's, and polled: `dns` each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_server_that_never_answers_is_a_dns_error_not_a_timeout() {
    let dns = hostile::SilentDns::start().await;
    let state = tempfile::tempdir().unwrap();
    let runner = runner_resolving_with(
        Arc::new(hostile::UdpResolver { server: dns.addr }),
        state.path(),
    );
    let url = "http://crm.dealer.test:8080/api";
    let poll = "until: {status: 200}\npoll: {interval: 200ms, within: 3s}";
    for (text, timeout, message) in [
        (
            probe("request", "20s", url, "2s", ""),
            secs(20),
            "`crm.dealer.test` did not resolve within 2s (no answer from DNS)",
        ),
        (
            probe("probe", "3s", url, "30s", ""),
            secs(3),
            "`crm.dealer.test` did not resolve before the probe timeout of 3s (no answer from DNS)",
        ),
        (
            probe("polled", "4s", url, "1s", poll),
            secs(4),
            // Its last attempt may or may not be cut to the probe's deadline.
            "`crm.dealer.test` did not resolve ",
        ),
    ] {
        let before = dns.queries();
        let (run, took) = run_probe_text(&runner, &text).await;
        eprintln!("{}: {:?} in {took:?}", run.probe, run.message);
        assert_eq!(
            (run.outcome.as_str(), run.error_class.map(|c| c.as_str())),
            ("error", Some("dns")),
            "{}: {:?}",
            run.probe,
            run.message
        );
        let m = run.message.clone().unwrap_or_default();
        assert!(m.starts_with(message), "{}: {m}", run.probe);
        if run.probe == "polled" {
            assert!(m.contains("polls over 3s"), "{m}");
            assert!(run.steps[0].attempts > 1, "{m}");
        }
        assert!(took <= timeout + secs(2), "{}: took {took:?}", run.probe);
        assert!(
            dns.queries() > before,
            "the lookup reached the silent server"
        );
    }
}

// ---- all together under `rooftop run` ------------------------------------------------------

/// `rooftop history PROBE --json` of a stopped agent.
fn history(config: &std::path::Path, state: &std::path::Path, probe: &str) -> Vec<Value> {
    let out = std::process::Command::new(hostile::BIN)
        .args(["history", probe, "--json", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One agent runs a healthy probe every second beside hostile ones every two: the healthy
/// probe keeps its schedule, the hostile ones end in their classes, the agent's memory stays
/// bounded, and the endless body is hung up on rather than drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_probes_do_not_hold_up_a_healthy_one() {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let target: Target = serve(move |mut s, head| {
        let sent = counter.clone();
        async move {
            match path_of(&head) {
                "/ok" => {
                    let h = [("content-type", "application/json")];
                    respond(&mut s, "200 OK", &h, br#"{"ok": true}"#).await;
                }
                "/endless" => {
                    let start = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                    if s.write_all(start).await.is_ok() {
                        stream_forever(s, true, sent).await;
                    }
                }
                "/loop" => respond(&mut s, "302 Found", &[("location", "/loop")], b"").await,
                "/slow" => {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if s.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                }
                _ => hostile::hold_silently(s).await,
            }
        }
    })
    .await;
    let every = |text: String, period: &str| format!("schedule: {{every: {period}}}\n{text}");
    let expect_ok = "expect: {json: {\"$.ok\": true}}";
    let probes = [
        (
            "healthy",
            every(
                probe("healthy", "5s", &target.url("/ok"), "3s", expect_ok),
                "1s",
            ),
        ),
        (
            "endless",
            every(
                probe("endless", "10s", &target.url("/endless"), "5s", ""),
                "2s",
            ),
        ),
        (
            "redirects",
            every(
                probe("redirects", "10s", &target.url("/loop"), "5s", ""),
                "2s",
            ),
        ),
        (
            "slowloris",
            every(
                probe("slowloris", "10s", &target.url("/slow"), "1500ms", ""),
                "2s",
            ),
        ),
        (
            "silent",
            every(
                probe("silent", "3s", &target.url("/silent"), "30s", ""),
                "2s",
            ),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{}\n", &probes);
    let state = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(hostile::BIN);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("ROOFTOP_CONFIG")
        .env_remove("ROOFTOP_STATE_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap());
    for v in hostile::PROXY_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let hwm = hostile::vm_hwm_kib(pid).expect("the agent is running");
    // SAFETY: signalling our own child, not yet reaped, by its pid.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = |f: &str| std::fs::read_to_string(logs.path().join(f)).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        log("stdout"),
        log("stderr")
    );

    let healthy = history(dir.path(), state.path(), "healthy");
    let ok = healthy.iter().filter(|r| r["outcome"] == "success").count();
    let lags: Vec<f64> = healthy
        .iter()
        .filter_map(|r| r["lag_ms"].as_f64())
        .collect();
    let max_lag = lags.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "healthy: {ok} successful runs of {} in ~15 s, max start lag {max_lag:.1} ms; agent VmHWM {hwm} KiB; endless body: {} bytes sent in all",
        healthy.len(),
        sent.load(Ordering::Relaxed)
    );
    // Fifteen fires at one a second; a third of them is plenty on a loaded machine.
    assert!(ok >= 5, "{healthy:#?}\nstdout:\n{}", log("stdout"));
    assert!(
        healthy.iter().all(|r| r["outcome"] == "success"),
        "{healthy:#?}"
    );
    assert!(hwm < MAX_RSS_KIB, "agent VmHWM {hwm} KiB");
    // Each endless-body run reads 1 MiB and hangs up; draining would be ~GB per run.
    assert!(sent.load(Ordering::Relaxed) < 512 << 20);
    for (name, class) in [
        ("endless", "body_too_large"),
        ("redirects", "protocol"),
        ("slowloris", "timeout"),
        ("silent", "probe_timeout"),
    ] {
        let runs = history(dir.path(), state.path(), name);
        let done: Vec<_> = runs.iter().filter(|r| r["outcome"] != "skipped").collect();
        assert!(!done.is_empty(), "{name}: no run stored\n{}", log("stdout"));
        assert!(
            done.iter().all(|r| r["error_class"] == class),
            "{name}: {runs:#?}"
        );
    }
}
