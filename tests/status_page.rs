//! The status page of a real agent running against the sandbox through an outage: fetched
//! over HTTP (content, headers, token, escaping) and rendered by a real headless Chromium
//! at phone and desktop width. The screenshots are kept as test artifacts in
//! `target/tmp/status-page/` (look at them).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use paging::{crm_down, lead_probe, spawn_agent};
use tools::{SmtpOptions, SmtpServer};

const TOKEN: &str = "status-7f3a9c";

/// A probe that only reads the DMS: healthy while the CRM is down. Its description
/// carries markup the page must print as text.
const DMS_PROBE: &str = "name: dms-repair-orders
description: \"The DMS answers <script>alert('ro')</script> & lists ROs\"
schedule: {every: 1s}
timeout: 10s
severity: P3
labels: {flow: service, connector: dms}
steps:
  - name: list-ros
    request:
      url: \"{{ env.DMS_URL }}/api/repair-orders\"
      headers: {Authorization: \"Bearer {{ secret.dms_token }}\"}
    expect: {status: 200}
";

/// A page for a failure message: its text without the bars' cells.
fn shown(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find("<svg") {
        out.push_str(&rest[..i]);
        out.push_str("<svg…/>");
        rest = rest[i..]
            .find("</svg>")
            .map(|j| &rest[i + j + 6..])
            .unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// A heartbeat check the test's "job" pings once.
const EXPORT_CHECK: &str = "name: dms-to-crm-export
description: The nightly DMS-to-CRM customer export ran.
schedule: {every: 24h}
severity: P3
labels: {flow: customer-export, connector: dms-to-crm}
token: \"{{ secret.export_ping }}\"
";

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Headless Chromium on `url`: `--dump-dom` (the DOM after rendering) or a screenshot.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(tools::bin("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--no-default-browser-check",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .env("HOME", profile.path())
        .output()
        .expect("start chromium (tests/tools/install fetches it)");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_an_outage_its_incident_and_renders_on_a_phone() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    paging::write_config(
        dir.path(),
        &[
            ("lead", lead_probe("lead-to-bdc-call-list", false)),
            ("dms", DMS_PROBE.to_string()),
        ],
        &format!(
            "rooftop: {{id: toronto-north, name: Toronto North Honda}}\n\
             defaults: {{timezone: America/Toronto}}\n\
             secrets: {{status_token: {{env: STATUS_TOKEN}}}}\n\
             telemetry:\n\
             \x20 status_page: {{token: \"{{{{ secret.status_token }}}}\"}}\n\
             time_windows:\n\
             \x20 always-on-change-window: {{timezone: America/Toronto, when: [{{times: [{{start: \"00:00\", end: \"24:00\"}}]}}]}}\n\
             oncall:\n\
             \x20 rotations:\n\
             \x20   service-desk: {{timezone: America/Toronto, members: [Maria Lopez, Sam Chen], handoff: {{every: day, at: \"09:00\"}}, start: 2026-01-05}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example, phone: \"+14165550100\"}}, {{name: Sam Chen, email: sam@dealer.example}}]\n\
             \x20 routes: {{P1: [Maria Lopez], P2: [Maria Lopez], P3: [Maria Lopez], P4: [Maria Lopez]}}\n\
             \x20 ack_base_url: http://127.0.0.1:{port}\n\
             \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    std::fs::create_dir_all(dir.path().join("heartbeats")).unwrap();
    std::fs::write(dir.path().join("heartbeats/export.yaml"), EXPORT_CHECK).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &listen,
        &[
            ("STATUS_TOKEN", TOKEN),
            ("ROOFTOP_SECRET_EXPORT_PING", "ping-4242"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The dealer's export job reports success.
    let pinged = reqwest::Client::new()
        .post(format!("http://{listen}/ping/dms-to-crm-export"))
        .bearer_auth("ping-4242")
        .send()
        .await
        .unwrap();
    assert_eq!(pinged.status(), 200);
    sb.set_faults(crm_down());
    let page = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    // Acknowledged through the page's link, so the status page can say by whom.
    let http = reqwest::Client::new();
    let acked = paging::ack_by(&http, &paging::ack_link(&page[0]), "Maria Lopez").await;
    assert_eq!(acked.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let base = format!("http://{listen}");
    // The token: none or a wrong one is refused, the query or a bearer header passes.
    for (url, bearer, want) in [
        (format!("{base}/status"), None, 401),
        (format!("{base}/status?token=wrong"), None, 401),
        (format!("{base}/"), None, 401),
        (format!("{base}/status?token={TOKEN}"), None, 200),
        (format!("{base}/status"), Some(TOKEN), 200),
    ] {
        let mut req = http.get(&url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), want, "{url}");
    }
    let res = http
        .get(format!("{base}/status?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    let headers = res.headers().clone();
    let html = res.text().await.unwrap();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        !html.contains(TOKEN) || html.matches(TOKEN).count() == html.matches("?token=").count(),
        "the token appears only in the page's own links"
    );
    for needle in [
        "Toronto North Honda — integration status",
        "lead-to-bdc-call-list",
        "badge failing",
        "dms-repair-orders",
        "badge up",
        "id=\"probe-dms-to-crm-export\"><div class=\"head\"><h3><a href=\"/status/probe/dms-to-crm-export?token=status-7f3a9c\">dms-to-crm-export</a></h3><span class=\"badge up\">OK</span>",
        "Open incidents",
        "Maria Lopez at ",
        "service-desk: <b>",
        "always-on-change-window",
        "Last 90 days (America/Toronto days",
        "Last 24 hours (one cell per run)",
        "[http_5xx]",
        "Sync latency of",
        "&lt;script&gt;alert(&#39;ro&#39;)&lt;/script&gt;",
    ] {
        let found = html.contains(needle) || html.contains(&needle.replace("&#39;", "'"));
        assert!(found, "status page lacks {needle:?}:\n{}", shown(&html));
    }
    assert!(
        !html.contains("<script"),
        "no script, and nothing unescaped"
    );
    assert!(
        !html.contains("+14165550100"),
        "contacts appear by name only"
    );
    assert!(!html.contains("maria@dealer.example"));
    assert!(!html.contains("ping-4242"), "nor a heartbeat's token");

    let res = http
        .get(format!(
            "{base}/status/probe/lead-to-bdc-call-list?token={TOKEN}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let detail = res.text().await.unwrap();
    for needle in [
        "Last runs",
        "Incidents (open and resolved",
        "acknowledged",
        "failed",
    ] {
        assert!(
            detail.contains(needle),
            "drill-down lacks {needle:?}:\n{}",
            shown(&detail)
        );
    }
    let missing = http
        .get(format!("{base}/status/probe/%3Cnope%3E?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(!missing.text().await.unwrap().contains("<nope>"));

    // A real browser: the DOM it rendered, then screenshots at phone and desktop width.
    let url = format!("{base}/status?token={TOKEN}");
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"], &url).stdout).to_string();
    assert!(
        dom.contains("lead-to-bdc-call-list") && dom.contains("FAILING"),
        "{dom}"
    );
    assert!(dom.contains("Open incidents"), "{dom}");
    let out = artifacts();
    for (name, w, h) in [("phone", 390, 1800), ("desktop", 1280, 1400)] {
        let png = out.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        chromium(
            &[
                &format!("--window-size={w},{h}"),
                &format!("--screenshot={}", png.display()),
            ],
            &url,
        );
        assert_eq!(png_size(&png), (w, h), "{}", png.display());
        assert!(
            std::fs::metadata(&png).unwrap().len() > 20_000,
            "a page, not a blank"
        );
    }
    let detail_png = out.join("probe-phone.png");
    chromium(
        &[
            "--window-size=390,1800",
            &format!("--screenshot={}", detail_png.display()),
        ],
        &format!("{base}/status/probe/lead-to-bdc-call-list?token={TOKEN}"),
    );
    assert_eq!(png_size(&detail_png), (390, 1800));
    eprintln!("status page screenshots in {}", out.display());

    let _ = agent.start_kill();
    let _ = agent.wait().await;
}
