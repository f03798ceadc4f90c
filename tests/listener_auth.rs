//! The agent's local HTTP listener (issue 16), through `rooftop run`: the only endpoint
//! that changes state, `POST /ack/<incident>`, refuses every request without a valid
//! signed link — none, expired, tampered (a character of the signature, of the incident
//! id or of the expiry), replayed after use, the wrong method — and no endpoint reflects
//! its input unescaped: `<script>` and `"'><img src=x onerror=…>` in the path, the query
//! and the form come back escaped or not at all.

#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::path::Path;
use std::time::Duration;

use rooftop::alerting::ack::{AckSigner, LINK_LIFETIME};
use rooftop::clock::{Clock, SystemClock};

/// Markup an attacker would like reflected, in several shapes.
const PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "</title><svg onload=alert(1)>",
];

/// A server that answers 500 to everything: the probes against it fail at once.
async fn broken_server() -> String {
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") });
    paging::serve(app).await
}

fn probe(name: &str, url: &str) -> String {
    format!(
        "name: {name}\n\
         description: Fails on every run.\n\
         schedule: {{every: 1s}}\n\
         severity: P2\n\
         labels: {{connector: {name}}}\n\
         steps:\n\
         \x20 - name: get\n\
         \x20   request: {{url: \"{url}/x\"}}\n"
    )
}

/// `exp` and `sig` of a link `AckSigner::link` made.
fn parts(link: &str) -> (String, i64, String) {
    let (head, query) = link.split_once('?').expect("a query");
    let id = head.rsplit('/').next().unwrap().to_string();
    let (exp, sig) = query
        .strip_prefix("exp=")
        .and_then(|q| q.split_once("&sig="))
        .expect("exp and sig");
    (id, exp.parse().unwrap(), sig.to_string())
}

/// One character of `s` at `at` replaced by another of the same kind.
fn flip(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    chars[at] = match chars[at] {
        '0' => '1',
        'a'..='e' => 'f',
        'f' => 'a',
        c if c.is_ascii_digit() => '0',
        'z' => 'y',
        _ => 'z',
    };
    chars.into_iter().collect()
}

struct Listener {
    base: String,
    http: reqwest::Client,
}

impl Listener {
    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        form: Option<&str>,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some(body) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.text().await.unwrap(), headers)
    }
}

fn incident_state(dir: &Path, state: &Path, id: &str) -> serde_json::Value {
    paging::incidents_json(dir, state)
        .into_iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("incident {id}"))
}

fn acked_by(dir: &Path, state: &Path, id: &str) -> Option<String> {
    incident_state(dir, state, id)["acked_by"]
        .as_str()
        .map(str::to_string)
}

/// No payload appears as markup in `body`.
fn assert_not_reflected(what: &str, body: &str) {
    for p in PAYLOADS {
        assert!(!body.contains(p), "{what} reflects {p:?}:\n{body}");
    }
    // As text (escaped) `onerror=` is harmless; as markup it needs its tag.
    for raw in ["<script", "<img", "<svg", "\"'>"] {
        assert!(!body.contains(raw), "{what} reflects {raw:?}:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_unused_signed_link_acknowledges_and_nothing_is_reflected() {
    let target = broken_server().await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    let base = format!("http://127.0.0.1:{port}");
    paging::write_config(
        dir.path(),
        &[
            ("first", probe("first-broken", &target)),
            ("second", probe("second-broken", &target)),
        ],
        &format!(
            "alerting:\n\
             \x20 rules: {{fire_after: 1}}\n\
             \x20 ack_base_url: {base}\n\
             \x20 email: {{from: rooftop@dealer.example, folder: {}}}\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n",
            state.path().join("pages").display()
        ),
    );
    let sb = paging::sandbox().await;
    let _agent = paging::spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    // Both incidents open; the key the agent signs links with is in the state directory.
    let ids: Vec<String> = tools::eventually(
        Duration::from_secs(30),
        || "two open incidents".to_string(),
        || {
            let open: Vec<String> = paging::incidents_json(dir.path(), state.path())
                .iter()
                .filter(|i| i["state"] == "open")
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect();
            (open.len() == 2 && state.path().join("ack.key").exists()).then_some(open)
        },
    )
    .await;
    let signer = AckSigner::load_or_create(state.path(), &base).unwrap();
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let now = SystemClock.now();
    let link = signer.link(&a, now);
    let (id, exp, sig) = parts(&link);
    assert_eq!(id, a);
    let l = Listener {
        base: base.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let form = Some("by=Maria+Lopez");
    let still_open = |what: &str| {
        for id in [&a, &b] {
            assert_eq!(
                acked_by(dir.path(), state.path(), id),
                None,
                "{what} acknowledged {id}"
            );
        }
    };

    // GET shows the incident and the button, and changes nothing (mail scanners).
    let (status, page, headers) = l
        .send("GET", &format!("/ack/{a}?exp={exp}&sig={sig}"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{headers:?}"
    );
    assert!(
        headers
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().unwrap().contains("frame-ancestors 'none'")),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "a page with a signed link is not cached: {headers:?}"
    );
    let (status, _, _) = l
        .send("HEAD", &format!("/ack/{a}?exp={exp}&sig={sig}"), None)
        .await;
    assert_eq!(status, 200);
    still_open("GET / HEAD of a valid link");

    // Every POST without a valid link is refused and changes nothing.
    let lifetime = chrono::Duration::from_std(LINK_LIFETIME).unwrap();
    let expired = parts(&signer.link(&a, now - lifetime - chrono::Duration::seconds(5)));
    let cases: Vec<(String, String, Vec<u16>)> = vec![
        ("no link".into(), format!("/ack/{a}"), vec![400]),
        (
            "no signature".into(),
            format!("/ack/{a}?exp={exp}"),
            vec![400],
        ),
        ("no expiry".into(), format!("/ack/{a}?sig={sig}"), vec![400]),
        (
            "an empty signature".into(),
            format!("/ack/{a}?exp={exp}&sig="),
            vec![403],
        ),
        (
            "an expired link".into(),
            format!("/ack/{}?exp={}&sig={}", expired.0, expired.1, expired.2),
            vec![403],
        ),
        (
            "the signature's first character changed".into(),
            format!("/ack/{a}?exp={exp}&sig={}", flip(&sig, 0)),
            vec![403],
        ),
        (
            "the signature's last character changed".into(),
            format!("/ack/{a}?exp={exp}&sig={}", flip(&sig, sig.len() - 1)),
            vec![403],
        ),
        (
            "the signature cut short".into(),
            format!("/ack/{a}?exp={exp}&sig={}", &sig[..sig.len() - 1]),
            vec![403],
        ),
        (
            "the signature upper-cased".into(),
            format!("/ack/{a}?exp={exp}&sig={}", sig.to_ascii_uppercase()),
            vec![403],
        ),
        (
            "the incident id's last character changed".into(),
            format!("/ack/{}?exp={exp}&sig={sig}", flip(&a, a.len() - 1)),
            vec![403],
        ),
        (
            "another incident's id".into(),
            format!("/ack/{b}?exp={exp}&sig={sig}"),
            vec![403],
        ),
        (
            "the expiry moved a second later".into(),
            format!("/ack/{a}?exp={}&sig={sig}", exp + 1),
            vec![403],
        ),
        (
            "the expiry not a number".into(),
            format!("/ack/{a}?exp=tomorrow&sig={sig}"),
            vec![400],
        ),
    ];
    for (what, path, statuses) in &cases {
        let (status, body, _) = l.send("POST", path, form).await;
        assert!(
            statuses.contains(&status),
            "{what}: POST {path} answered {status}, expected {statuses:?}: {body}"
        );
        still_open(what);
    }

    // The wrong method with a valid link: refused, nothing changes.
    for method in ["PUT", "DELETE", "PATCH"] {
        let (status, body, _) = l
            .send(method, &format!("/ack/{a}?exp={exp}&sig={sig}"), form)
            .await;
        assert_eq!(status, 405, "{method}: {body}");
        still_open(method);
    }
    // The other endpoints take no writes at all.
    for path in ["/metrics", "/healthz", "/readyz"] {
        for method in ["POST", "PUT", "DELETE"] {
            let (status, body, _) = l.send(method, path, form).await;
            assert_eq!(status, 405, "{method} {path}: {body}");
        }
    }
    // A form that is not a form: refused.
    let resp = l
        .http
        .post(format!("{base}/ack/{a}?exp={exp}&sig={sig}"))
        .header("content-type", "application/json")
        .body(r#"{"by":"Maria"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    still_open("a JSON body");

    // The valid link acknowledges, once; the name typed in is stored as text and shown
    // escaped.
    let hostile_name = format!("by={}", tools::url_encode(PAYLOADS[1]));
    let (status, body, _) = l
        .send(
            "POST",
            &format!("/ack/{a}?exp={exp}&sig={sig}"),
            Some(&hostile_name),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("is acknowledged"), "{body}");
    let by = acked_by(dir.path(), state.path(), &a);
    assert_eq!(by.as_deref(), Some(PAYLOADS[1]), "stored as typed");
    assert_eq!(acked_by(dir.path(), state.path(), &b), None);
    // Replayed after use: refused, the acknowledgement stays as it was.
    for by in ["by=Mallory", ""] {
        let (status, body, _) = l
            .send("POST", &format!("/ack/{a}?exp={exp}&sig={sig}"), Some(by))
            .await;
        assert_eq!(status, 409, "a replayed link: {body}");
        assert_not_reflected("the replay's answer", &body);
        assert_eq!(
            acked_by(dir.path(), state.path(), &a).as_deref(),
            Some(PAYLOADS[1])
        );
    }
    let (status, page, _) = l
        .send("GET", &format!("/ack/{a}?exp={exp}&sig={sig}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Already acknowledged by"), "{page}");
    assert!(
        page.contains("&quot;'&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "the name escaped: {page}"
    );
    assert_not_reflected("the acknowledged page", &page);

    // Nothing reflects a payload in the path, the query or the form, on any endpoint.
    let link_b = parts(&signer.link(&b, now));
    for p in PAYLOADS {
        let e = tools::url_encode(p);
        let paths = [
            format!("/ack/{e}?exp={exp}&sig={sig}"),
            format!("/ack/{a}?exp={exp}&sig={e}"),
            format!("/ack/{a}?exp={e}&sig={sig}"),
            format!("/ack/{b}?exp={}&sig={}&x={e}", link_b.1, link_b.2),
            format!("/ack/{b}?exp={}&sig={}&{e}={e}", link_b.1, link_b.2),
            format!("/{e}"),
            format!("/ack/{e}"),
            format!("/metrics?{e}"),
            format!("/readyz?x={e}"),
            format!("/healthz/{e}"),
        ];
        for path in &paths {
            for (method, body) in [("GET", None), ("POST", Some(format!("by={e}&{e}={e}")))] {
                let (status, text, headers) = l.send(method, path, body.as_deref()).await;
                assert_not_reflected(&format!("{method} {path} ({status})"), &text);
                // Anything that is not one of the listener's own HTML pages is not HTML.
                let html = headers
                    .get("content-type")
                    .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/html"));
                if html {
                    assert!(
                        text.starts_with("<!DOCTYPE html>"),
                        "{method} {path}: {text}"
                    );
                }
            }
        }
    }
    // The POSTs with b's valid link and a hostile name acknowledged b; its page shows the
    // name escaped.
    let (_, page, _) = l
        .send(
            "GET",
            &format!("/ack/{b}?exp={}&sig={}", link_b.1, link_b.2),
            None,
        )
        .await;
    assert_not_reflected("b's page", &page);
    assert_eq!(
        acked_by(dir.path(), state.path(), &b).as_deref(),
        Some(PAYLOADS[0]),
        "the first POST with b's valid link acknowledged it, the name stored as typed"
    );
}
