//! Secret canaries (issue 16): every secret source — `secrets:` entries in rooftop.yaml
//! (file, env, credential), `ROOFTOP_SECRET_<NAME>`, `$CREDENTIALS_DIRECTORY/NAME` — holds
//! a unique value, used by probes (Authorization and other headers, query strings, URL
//! paths, JSON bodies) and by every paging channel (SMTP password, Twilio token, webhook
//! secret, PagerDuty key), the OTLP headers and the heartbeat URL. Requests then fail in
//! every way: a 4xx whose JSON body quotes the request's Authorization header, path,
//! query and body, a 5xx echoing them as text, a timeout, a template error, invalid
//! JSON quoting the request; the providers answer with echoes too. Then every output is
//! searched for each canary (raw, percent-encoded, base64, `Basic user:secret`):
//! `rooftop run` (text and JSON logs), `rooftop once`, the store and its WAL as raw bytes,
//! `status`/`history`/`incidents`, `/metrics`, OTLP spans, logs and metrics, e-mail pages
//! and webhook bodies. The goal is 0 occurrences.

#[path = "common/canary.rs"]
mod canary;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use canary::{Canary, Hit};
use rooftop::sandbox::{Sandbox, SandboxConfig};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tools::{OtlpReceiver, SmtpOptions, SmtpServer};

/// Requests the echo server received: (method, path and query, headers, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// What a request said, for an echo: its Authorization header, URI, other headers, body.
fn echo_of(uri: &Uri, headers: &HeaderMap, body: &str) -> serde_json::Value {
    let hs: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    serde_json::json!({
        "authorization": headers.get("authorization").map(|v| String::from_utf8_lossy(v.as_bytes()).to_string()),
        "uri": uri.to_string(),
        "query": uri.query(),
        "headers": hs,
        "body": body,
    })
}

/// One server for every hostile answer, by path prefix:
/// `/e4/…` 400 with a JSON echo, `/e5/…` 500 with a text echo, `/slow/…` no answer for
/// 30 s, `/badjson/…` 200 with invalid JSON quoting the request, `/ok/…` 200 with a
/// JSON echo (a capture takes the Authorization header from it), `/twilio/…` 401 echoing
/// the Basic credentials, `/pd/…` 400 echoing the event (with its routing key),
/// `/hook` 500 echoing the first request, then 200, `/hb/…` 404 echoing the ping URL,
/// `/otlp/…` 400 echoing the export request's headers.
async fn echo_server(seen: Seen) -> String {
    let hook_calls = Arc::new(Mutex::new(0u32));
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let hook_calls = hook_calls.clone();
            async move {
                let body = String::from_utf8_lossy(&body).to_string();
                let path = uri.path().to_string();
                let echo = echo_of(&uri, &headers, &body);
                seen.lock().unwrap().push((
                    method.to_string(),
                    uri.to_string(),
                    echo["headers"].to_string(),
                    body.clone(),
                ));
                let text = format!(
                    "request {method} {uri} Authorization: {} headers: {} body: {body}",
                    echo["authorization"].as_str().unwrap_or("-"),
                    echo["headers"]
                );
                let json = |status: StatusCode| -> Response {
                    (
                        status,
                        [("content-type", "application/json")],
                        serde_json::json!({"error": "denied", "request": echo}).to_string(),
                    )
                        .into_response()
                };
                if path.starts_with("/e4/") {
                    json(StatusCode::BAD_REQUEST)
                } else if path.starts_with("/e5/") {
                    (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
                } else if path.starts_with("/slow/") {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    (StatusCode::OK, "too late").into_response()
                } else if path.starts_with("/badjson/") {
                    (
                        StatusCode::OK,
                        [("content-type", "application/json")],
                        format!("{{\"id\": \"x\", \"echo\": \"{text}"),
                    )
                        .into_response()
                } else if path.starts_with("/ok/") {
                    json(StatusCode::OK)
                } else if path.starts_with("/twilio/") {
                    // Twilio's error shape, its message quoting the request.
                    (
                        StatusCode::UNAUTHORIZED,
                        [("content-type", "application/json")],
                        serde_json::json!({"code": 20003, "message": format!("Authenticate: {text}"), "status": 401})
                            .to_string(),
                    )
                        .into_response()
                } else if path.starts_with("/otlp/") {
                    (StatusCode::BAD_REQUEST, text).into_response()
                } else if path.starts_with("/pd/") {
                    (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "application/json")],
                        serde_json::json!({"status": "invalid event", "message": text, "errors": [body]})
                            .to_string(),
                    )
                        .into_response()
                } else if path.starts_with("/hook") {
                    let n = {
                        let mut c = hook_calls.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    if n == 1 {
                        (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
                    } else {
                        (StatusCode::OK, "ok").into_response()
                    }
                } else {
                    // `/hb/…` (the heartbeat) and anything else: 404 quoting the request.
                    (StatusCode::NOT_FOUND, text).into_response()
                }
            }
        },
    );
    paging::serve(app).await
}

/// The canaries, one per secret and source.
struct Canaries {
    all: Vec<Canary>,
}

impl Canaries {
    fn new() -> Canaries {
        Canaries {
            all: vec![
                // secrets: {cfg_file: {file: …}}, raw in a URL path
                Canary::with_tail("cfg_file", "a b"),
                // secrets: {cfg_env: {env: CANARY_CFG_ENV}}, raw in a query
                Canary::with_tail("cfg_env", "a b+c"),
                // secrets: {cfg_cred: {credential: cfgcred}}, a header
                Canary::new("cfg_cred"),
                // ROOFTOP_SECRET_ENV_TOK, the Authorization header (base64-like)
                Canary::with_tail("env_tok", "/+"),
                // $CREDENTIALS_DIRECTORY/cred_tok, `| urlencode` in a query
                Canary::with_tail("cred_tok", "/+~"),
                Canary::new("crm_token"), // the sandbox's CRM token, ROOFTOP_SECRET_CRM_TOKEN
                Canary::new("smtp").with_user("rooftop"),
                Canary::new("twilio").with_user("AC0123456789"),
                Canary::new("hook"),
                Canary::new("pagerduty"),
                Canary::new("otlp_key"),
                Canary::new("hc_uuid"),
            ],
        }
    }

    fn get(&self, name: &str) -> &str {
        &self
            .all
            .iter()
            .find(|c| c.name == name)
            .expect("a canary by that name")
            .value
    }
}

/// The probes: each fails its own way, with every secret source in its request.
fn probes() -> Vec<(&'static str, String)> {
    let request = |prefix: &str, extra: &str| {
        format!(
            "    request:\n\
             \x20     method: POST\n\
             \x20     url: \"{{{{ env.ECHO_URL }}}}/{prefix}/{{{{ secret.cfg_file }}}}/item?key={{{{ secret.cfg_env }}}}&cred={{{{ secret.cred_tok | urlencode }}}}\"\n\
             \x20     headers: {{Authorization: \"Bearer {{{{ secret.env_tok }}}}\", X-Api-Key: \"{{{{ secret.cfg_cred }}}}\"}}\n\
             \x20     json: {{token: \"{{{{ secret.cred_tok }}}}\", nested: {{key: \"{{{{ secret.cfg_file }}}}\", list: [\"{{{{ secret.cfg_env }}}}\"]}}}}\n\
             {extra}"
        )
    };
    let probe = |name: &str, steps: String| {
        format!(
            "name: {name}\n\
             description: A probe whose requests fail while carrying secrets.\n\
             schedule: {{every: 1s}}\n\
             timeout: 20s\n\
             severity: P2\n\
             labels: {{flow: canary, connector: {name}}}\n\
             steps:\n{steps}"
        )
    };
    vec![
        (
            "canary-4xx",
            probe(
                "canary-4xx",
                format!(
                    "  - name: denied\n{}\x20   capture: {{echoed: \"$.request.authorization\"}}\n",
                    request("e4", "")
                ),
            ),
        ),
        (
            "canary-5xx",
            probe(
                "canary-5xx",
                format!("  - name: broken\n{}", request("e5", "")),
            ),
        ),
        (
            "canary-timeout",
            probe(
                "canary-timeout",
                format!(
                    "  - name: silent\n{}",
                    request("slow", "      timeout: 1s\n")
                ),
            ),
        ),
        (
            "canary-badjson",
            probe(
                "canary-badjson",
                format!(
                    "  - name: garbled\n{}\x20   capture: {{id: \"$.id\"}}\n\x20   expect: {{json: {{\"$.id\": x}}}}\n",
                    request("badjson", "")
                ),
            ),
        ),
        (
            // Assertions whose expected and actual values hold secrets.
            "canary-assert",
            probe(
                "canary-assert",
                format!(
                    "  - name: compare\n{}\x20   expect:\n\x20     json: {{\"$.request.authorization\": \"Bearer {{{{ secret.cfg_cred }}}}\", \"$.request.query\": {{contains: \"{{{{ secret.cfg_env }}}}\"}}}}\n\x20     body: {{contains: \"{{{{ secret.cred_tok }}}}\"}}\n",
                    request("ok", "")
                ),
            ),
        ),
        (
            // A poll that rides out 5xx echoes until its deadline.
            "canary-poll",
            probe(
                "canary-poll",
                format!(
                    "  - name: wait\n{}\x20   until: {{json: {{\"$.token\": \"{{{{ secret.env_tok }}}}\"}}}}\n\x20   poll: {{interval: 100ms, backoff: 1, within: 1s}}\n",
                    request("e5", "")
                ),
            ),
        ),
        (
            // A capture holding the echoed Authorization header (masked on the way in),
            // a record in the cleanup ledger whose cleanup fails with an echo, and a
            // template error over a secret and over the capture.
            "canary-template",
            probe(
                "canary-template",
                format!(
                    "  - name: echo\n{}\x20   capture: {{echoed: \"$.request.authorization\", query: \"$.request.query\"}}\n\
                     \x20   creates: {{cleanup: undo}}\n\
                     \x20 - name: bad-template\n\
                     \x20   request:\n\
                     \x20     url: \"{{{{ env.ECHO_URL }}}}/ok/{{{{ (echoed ~ secret.env_tok) | int(base=2) }}}}\"\n\
                     \x20     headers: {{X-Bad: \"{{{{ secret.cfg_env | int(base=2) }}}}\"}}\n\
                     \x20     json: {{bad: \"{{{{ secret.cfg_file[100] }}}}\", worse: \"{{{{ query.nope }}}}\"}}\n\
                     cleanup:\n\
                     \x20 - name: undo\n\
                     \x20   retries: 0\n\
                     \x20   request: {{method: DELETE, url: \"{{{{ env.ECHO_URL }}}}/e5/{{{{ echoed | urlencode }}}}?q={{{{ query | urlencode }}}}\", headers: {{Authorization: \"{{{{ echoed }}}}\"}}}}\n",
                    request("ok", "")
                ),
            ),
        ),
    ]
}

fn rooftop_yaml(
    secrets_dir: &Path,
    echo: &str,
    smtp_port: u16,
    otlp: &str,
    listen_port: u16,
) -> String {
    format!(
        "rooftop: {{id: canary-rooftop, name: Canary Motors}}\n\
         secrets:\n\
         \x20 cfg_file: {{file: {}}}\n\
         \x20 cfg_env: {{env: CANARY_CFG_ENV}}\n\
         \x20 cfg_cred: {{credential: cfgcred}}\n\
         env:\n\
         \x20 ECHO_URL: {echo}\n\
         telemetry:\n\
         \x20 interval: 1s\n\
         \x20 otlp: {{endpoint: \"{otlp}\", protocol: http/protobuf, headers: {{x-api-key: \"{{{{ secret.otlp_key }}}}\"}}}}\n\
         self_monitoring:\n\
         \x20 heartbeat: {{url: \"{echo}/hb/{{{{ secret.hc_uuid }}}}\", every: 10s, timeout: 2s}}\n\
         alerting:\n\
         \x20 rules: {{fire_after: 1}}\n\
         \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example, phone: \"+14165550123\"}}]\n\
         \x20 routes: {{P1: [Maria Lopez], P2: [Maria Lopez], P3: [Maria Lopez], P4: [Maria Lopez]}}\n\
         \x20 prefer: [sms, email]\n\
         \x20 ack_base_url: http://127.0.0.1:{listen_port}\n\
         \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, username: rooftop, password: \"{{{{ secret.smtp }}}}\", timeout: 5s}}}}\n\
         \x20 sms: {{account_sid: AC0123456789, auth_token: \"{{{{ secret.twilio }}}}\", from: \"+14165550100\", base_url: \"{echo}/twilio\", replies: {{poll: 5s}}}}\n\
         \x20 webhook: {{url: \"{echo}/hook\", secret: \"{{{{ secret.hook }}}}\"}}\n\
         \x20 pagerduty: {{routing_key: \"{{{{ secret.pagerduty }}}}\", url: \"{echo}/pd/v2/enqueue\"}}\n",
        secrets_dir.join("cfg_file.token").display()
    )
}

/// Everything the test reads back, each with a name, as raw bytes.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn add(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((name.into(), bytes.into()));
    }

    /// Every file in the state directory (the store, its WAL and shared memory).
    fn add_state_dir(&mut self, label: &str, state: &Path) {
        for entry in std::fs::read_dir(state).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                self.add(format!("{label} {name}"), bytes);
            }
        }
    }

    fn hits(&self, canaries: &Canaries) -> Vec<Hit> {
        self.0
            .iter()
            .flat_map(|(name, bytes)| canary::find(name, bytes, &canaries.all))
            .collect()
    }
}

/// The environment every command gets: the sandbox's (its CRM token a canary), the
/// env-sourced secrets and the credentials directory.
fn env_of(sb: &Sandbox, canaries: &Canaries, creds: &Path) -> Vec<(String, String)> {
    let mut env = sb.env();
    for (var, name) in [
        ("CANARY_CFG_ENV", "cfg_env"),
        ("ROOFTOP_SECRET_ENV_TOK", "env_tok"),
        ("ROOFTOP_SECRET_SMTP", "smtp"),
        ("ROOFTOP_SECRET_TWILIO", "twilio"),
        ("ROOFTOP_SECRET_HOOK", "hook"),
        ("ROOFTOP_SECRET_PAGERDUTY", "pagerduty"),
    ] {
        env.push((var.into(), canaries.get(name).into()));
    }
    env.push(("CREDENTIALS_DIRECTORY".into(), creds.display().to_string()));
    env
}

fn rooftop(args: &[&str], dir: &Path, state: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rooftop"));
    cmd.args(args)
        .arg("--config")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// SIGTERM, then everything the agent printed (any exit status: a probe timing out at the
/// stop is fine here).
async fn stop(mut child: Child) -> (Vec<u8>, Vec<u8>) {
    let pid = child.id().expect("the agent is running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let (a, b) = tokio::join!(so.read_to_end(&mut out), se.read_to_end(&mut err));
    a.unwrap();
    b.unwrap();
    tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the agent stops")
        .unwrap();
    (out, err)
}

/// Every text part of each received message, decoded (quoted-printable, base64).
fn decoded_parts(eml: &str) -> String {
    let out = std::process::Command::new(tools::python())
        .arg("-c")
        .arg(
            "import email, email.policy, sys\n\
             m = email.message_from_string(sys.stdin.read(), policy=email.policy.default)\n\
             for k, v in m.items(): print(k, v)\n\
             for part in m.walk():\n\
             \x20   if part.get_content_maintype() == 'text': print(part.get_content())\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(eml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// An SMTP server that answers every AUTH with a 535 quoting what the client sent (the
/// base64 credentials of AUTH PLAIN / LOGIN) and every other command with 250.
async fn hostile_smtp() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 hostile ESMTP\r\n").await;
                let mut in_login = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let answer = if upper.starts_with("EHLO") {
                        "250-hostile\r\n250 AUTH PLAIN LOGIN\r\n".to_string()
                    } else if upper == "AUTH LOGIN" {
                        in_login = true;
                        "334 VXNlcm5hbWU6\r\n".to_string()
                    } else if upper.starts_with("AUTH") || in_login {
                        format!("535 5.7.8 authentication failed for `{line}`\r\n")
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        "250 ok\r\n".to_string()
                    };
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// The store's readers on `state`: `status`, `incidents` and each probe's `history`, as
/// JSON and as text.
async fn read_store(
    outputs: &mut Outputs,
    label: &str,
    probes: &[&str],
    dir: &Path,
    state: &Path,
    env: &[(String, String)],
) {
    let mut reads: Vec<Vec<String>> = Vec::new();
    for json in [true, false] {
        let flag = |mut v: Vec<String>| {
            if json {
                v.push("--json".into());
            }
            v
        };
        reads.push(flag(vec!["status".into()]));
        reads.push(flag(vec!["incidents".into()]));
        for p in probes {
            reads.push(flag(vec!["history".into(), p.to_string()]));
        }
    }
    for args in reads {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = rooftop(&args, dir, state, env).output().await.unwrap();
        assert!(
            o.status.success(),
            "rooftop {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        outputs.add(format!("{label}: {} stdout", args.join(" ")), o.stdout);
        outputs.add(format!("{label}: {} stderr", args.join(" ")), o.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_canary_appears_in_any_output() {
    let canaries = Canaries::new();
    let mut config = SandboxConfig::default().with_fixed_latency(Duration::from_millis(20));
    config.tokens.crm = canaries.get("crm_token").to_string();
    let sb = Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let echo = echo_server(seen.clone()).await;
    let smtp = SmtpServer::start(SmtpOptions {
        auth: Some(("rooftop".into(), canaries.get("smtp").into())),
        allow_plain_auth: true,
        ..SmtpOptions::default()
    });
    let otlp = OtlpReceiver::start(0);

    let secrets = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("cfg_file.token"),
        format!("{}\n", canaries.get("cfg_file")),
    )
    .unwrap();
    for (file, name) in [
        ("cfgcred", "cfg_cred"),
        ("cred_tok", "cred_tok"),
        ("otlp_key", "otlp_key"),
        ("hc_uuid", "hc_uuid"),
    ] {
        std::fs::write(creds.path().join(file), canaries.get(name)).unwrap();
    }
    let mut all_probes = probes();
    all_probes.push(("lead", paging::lead_probe("lead-to-bdc-call-list", false)));
    let probe_names: Vec<&str> = all_probes
        .iter()
        .map(|(n, _)| {
            if *n == "lead" {
                "lead-to-bdc-call-list"
            } else {
                n
            }
        })
        .collect();
    let env = env_of(&sb, &canaries, creds.path());
    let mut outputs = Outputs::default();

    // Phase 1: real receivers (aiosmtpd with AUTH, the OTLP receiver), text logs.
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let listen_port = tools::free_port();
    paging::write_config(
        dir.path(),
        &all_probes,
        &rooftop_yaml(
            secrets.path(),
            &echo,
            smtp.port,
            &otlp.http_endpoint(),
            listen_port,
        ),
    );

    // The configuration is valid (a failure here would hide every probe).
    let check = rooftop(&["check"], dir.path(), state.path(), &env)
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "rooftop check:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    outputs.add("check stdout", check.stdout);
    outputs.add("check stderr", check.stderr);

    // `rooftop run`; the sandbox's CRM goes down after a few runs (a 5xx there too).
    let listen = format!("127.0.0.1:{listen_port}");
    let agent = rooftop(
        &["run", "--listen", &listen, "--stop-deadline", "30s"],
        dir.path(),
        state.path(),
        &env,
    )
    .env("ROOFTOP_LOG_FORMAT", "text")
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sb.set_faults(paging::crm_down());
    // Pages: e-mail (Twilio refuses the SMS, so e-mail takes over), the webhook (its
    // first attempt answered 500), PagerDuty (400), and the sandbox's own incident.
    smtp.wait_for_count(1, Duration::from_secs(30)).await;
    let requests_to = |prefix: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.1.starts_with(prefix))
            .count()
    };
    tools::eventually(
        Duration::from_secs(30),
        || format!("provider requests: {:?}", seen.lock().unwrap()),
        || {
            (requests_to("/hook") >= 2 && requests_to("/pd/") >= 1 && requests_to("/twilio/") >= 2)
                .then_some(())
        },
    )
    .await;
    tools::eventually(
        Duration::from_secs(30),
        || "the sandbox's probe paged".to_string(),
        || {
            smtp.messages()
                .iter()
                .any(|m| m.contains("lead-to-bdc-call-list"))
                .then_some(())
        },
    )
    .await;
    otlp.wait_for(|r| r["signal"] == "logs", Duration::from_secs(30))
        .await;
    otlp.wait_for(|r| r["signal"] == "traces", Duration::from_secs(30))
        .await;
    let (status, metrics) = tools::http_request("GET", listen_port, "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    outputs.add("/metrics", metrics);
    // The store while the agent writes: the WAL holds the latest frames.
    outputs.add_state_dir("state dir (agent running)", state.path());
    let (out, err) = stop(agent).await;
    outputs.add("run stdout (text)", out);
    outputs.add("run stderr (text)", err);
    outputs.add_state_dir("state dir (after run)", state.path());

    // `rooftop once` for each probe, text and JSON.
    for probe in &probe_names {
        for json in [false, true] {
            let mut args = vec!["once", probe];
            if json {
                args.push("--json");
            }
            let o = rooftop(&args, dir.path(), state.path(), &env)
                .output()
                .await
                .unwrap();
            outputs.add(format!("once {probe} json={json} stdout"), o.stdout);
            outputs.add(format!("once {probe} json={json} stderr"), o.stderr);
        }
    }
    // `rooftop cleanup` retries the ledger's records (their cleanup fails with an echo).
    let o = rooftop(&["cleanup"], dir.path(), state.path(), &env)
        .output()
        .await
        .unwrap();
    outputs.add("cleanup stdout", o.stdout);
    outputs.add("cleanup stderr", o.stderr);
    read_store(
        &mut outputs,
        "phase 1",
        &probe_names,
        dir.path(),
        state.path(),
        &env,
    )
    .await;
    outputs.add_state_dir("state dir (end)", state.path());

    // Phase 2: hostile receivers (an SMTP server quoting the AUTH line, an OTLP endpoint
    // echoing the export's headers), JSON logs, a new state directory.
    let dir2 = tempfile::tempdir().unwrap();
    let state2 = tempfile::tempdir().unwrap();
    let smtp2 = hostile_smtp().await;
    paging::write_config(
        dir2.path(),
        &all_probes,
        &rooftop_yaml(
            secrets.path(),
            &echo,
            smtp2,
            &format!("{echo}/otlp"),
            listen_port,
        ),
    );
    let otlp_before = requests_to("/otlp/");
    let agent = rooftop(
        &["run", "--listen", "127.0.0.1:0", "--stop-deadline", "30s"],
        dir2.path(),
        state2.path(),
        &env,
    )
    .env("ROOFTOP_LOG_FORMAT", "json")
    .spawn()
    .unwrap();
    tools::eventually(
        Duration::from_secs(30),
        || "phase 2: an e-mail attempt refused and an OTLP export echoed".to_string(),
        || {
            let incidents = paging::incidents(dir2.path(), state2.path(), &["--json"]);
            (requests_to("/otlp/") > otlp_before
                && incidents.contains("SMTP 127.0.0.1")
                && incidents.contains("535"))
            .then_some(())
        },
    )
    .await;
    // Export failures are logged when they have lasted a little.
    tokio::time::sleep(Duration::from_secs(3)).await;
    outputs.add_state_dir("phase 2 state dir (agent running)", state2.path());
    let (out, err) = stop(agent).await;
    assert!(
        String::from_utf8_lossy(&out).contains("{\""),
        "JSON log lines: {}",
        String::from_utf8_lossy(&out)
    );
    outputs.add("run stdout (json)", out);
    outputs.add("run stderr (json)", err);
    read_store(
        &mut outputs,
        "phase 2",
        &probe_names,
        dir2.path(),
        state2.path(),
        &env,
    )
    .await;
    outputs.add_state_dir("phase 2 state dir (end)", state2.path());

    // What left the agent: OTLP exports, e-mails (raw and decoded), provider requests.
    outputs.add(
        "OTLP exports (spans, logs, metrics)",
        std::fs::read(&otlp.out).unwrap(),
    );
    let signals: std::collections::BTreeSet<String> = otlp
        .requests()
        .iter()
        .filter_map(|r| r["signal"].as_str().map(str::to_string))
        .collect();
    assert_eq!(signals.len(), 3, "metrics, traces and logs: {signals:?}");
    let mails = smtp.messages();
    for (i, m) in mails.iter().enumerate() {
        outputs.add(format!("e-mail {i} (raw)"), m.clone());
        outputs.add(format!("e-mail {i} (decoded)"), decoded_parts(m));
    }
    for (method, uri, _, body) in seen.lock().unwrap().iter() {
        // A provider's request carries its own secret by design (the PagerDuty event its
        // routing key); no other secret may be in it.
        if uri.starts_with("/hook") {
            outputs.add(format!("webhook body {method} {uri}"), body.clone());
        }
        if uri.starts_with("/twilio/") {
            outputs.add(format!("SMS request {method} {uri}"), body.clone());
        }
        if uri.starts_with("/pd/") {
            let without_key = body.replace(canaries.get("pagerduty"), "<routing key>");
            outputs.add(format!("PagerDuty event {method} {uri}"), without_key);
        }
    }

    // The runs did fail in every way they were meant to.
    let history = |probe: &str| {
        outputs
            .0
            .iter()
            .find(|(n, _)| n == &format!("phase 1: history {probe} --json stdout"))
            .map(|(_, b)| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default()
    };
    for (probe, classes) in [
        ("canary-4xx", &["http_4xx"][..]),
        ("canary-5xx", &["http_5xx"]),
        ("canary-timeout", &["timeout"]),
        ("canary-badjson", &["invalid_json"]),
        ("canary-template", &["template"]),
        ("canary-assert", &["assertion"]),
        // The last answer decides: a 5xx whose body is not JSON.
        ("canary-poll", &["sync_timeout", "http_5xx", "invalid_json"]),
        ("lead-to-bdc-call-list", &["http_5xx"]),
    ] {
        let h = history(probe);
        assert!(
            classes
                .iter()
                .any(|c| h.contains(&format!("\"error_class\": \"{c}\""))),
            "{probe} failed with one of {classes:?}: {h}"
        );
    }

    // Positive control: the requests did carry every probe secret, in the path, the
    // query, the headers and the body (so a search that finds nothing means something).
    let sent: String = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, uri, _, _)| !uri.starts_with("/hb/"))
        .map(|(m, u, h, b)| format!("{m} {u} {h} {b}\n"))
        .collect();
    let probe_secrets = ["cfg_file", "cfg_env", "cfg_cred", "env_tok", "cred_tok"];
    let probe_canaries: Vec<Canary> = canaries
        .all
        .iter()
        .filter(|c| probe_secrets.contains(&c.name))
        .cloned()
        .collect();
    let carried: std::collections::BTreeSet<&str> =
        canary::find("requests", sent.as_bytes(), &probe_canaries)
            .iter()
            .map(|h| h.canary)
            .collect();
    assert_eq!(
        carried.len(),
        probe_secrets.len(),
        "the requests carried every probe secret: {carried:?}"
    );

    if let Some(dump) = std::env::var_os("ROOFTOP_CANARY_DUMP") {
        // For a look by hand: every output searched, one file each.
        let dump = Path::new(&dump);
        std::fs::create_dir_all(dump).unwrap();
        for (i, (name, bytes)) in outputs.0.iter().enumerate() {
            let file: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            std::fs::write(dump.join(format!("{i:03}-{file}")), bytes).unwrap();
        }
        std::fs::write(dump.join("requests.txt"), &sent).unwrap();
        let list: Vec<String> = canaries
            .all
            .iter()
            .map(|c| format!("{} {}", c.name, c.value))
            .collect();
        std::fs::write(dump.join("canaries.txt"), list.join("\n")).unwrap();
    }

    let hits = outputs.hits(&canaries);
    let listing: Vec<String> = hits.iter().map(ToString::to_string).collect();
    let searched: usize = outputs.0.iter().map(|(_, b)| b.len()).sum();
    assert!(
        hits.is_empty(),
        "{} canary occurrence(s) in {} outputs ({searched} bytes):\n{}",
        hits.len(),
        outputs.0.len(),
        listing.join("\n")
    );
    eprintln!(
        "0 canary occurrences: {} canaries × their forms in {} outputs ({searched} bytes)",
        canaries.all.len(),
        outputs.0.len()
    );
}
