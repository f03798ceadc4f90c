//! Escalation end to end, against the sandbox and a real SMTP server (aiosmtpd): a P1
//! page to the primary, no acknowledgement within a short `ack_within` → the secondary
//! is paged → acknowledged through the signed link → nobody else is paged → the resolve
//! notice reaches both. The same across a SIGKILL between the two pages (the secondary
//! is paged exactly once), and a probe whose dependency is failing pages nobody of its
//! own: the dependency's page lists it.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::time::Duration;

use paging::{crm_down, lead_probe, spawn_agent, subject_and_text};
use tools::{SmtpOptions, SmtpServer};

/// The lead probe as a P1.
fn p1_probe() -> String {
    let p = lead_probe("lead-to-bdc-call-list", false).replace("severity: P2", "severity: P1");
    assert!(p.contains("severity: P1"));
    p
}

/// Contacts Maria, Dev and the IT lead; the rotation `desk` of Maria and Dev hands over
/// daily at midnight UTC from today (Maria today, Dev the secondary); P1 escalates
/// through `steps` with `ack_within`.
fn rooftop_yaml(smtp_port: u16, ack_port: u16, ack_within: &str, steps: &str) -> String {
    // The agent reads the same wall clock: the rotation starts today in UTC.
    let today = rooftop::clock::Clock::now(&rooftop::clock::SystemClock).date_naive();
    format!(
        "oncall:\n\
         \x20 rotations:\n\
         \x20   desk: {{timezone: UTC, members: [Maria Lopez, Dev Patel], handoff: {{every: day, at: \"00:00\"}}, start: {today}}}\n\
         alerting:\n\
         \x20 contacts:\n\
         \x20   - {{name: Maria Lopez, email: maria@dealer.example}}\n\
         \x20   - {{name: Dev Patel, email: dev@dealer.example}}\n\
         \x20   - {{name: IT Lead, email: it@dealer.example}}\n\
         \x20 severities: {{P1: {{ack_within: {ack_within}}}}}\n\
         \x20 escalation:\n\
         \x20   service: {{steps: [{steps}]}}\n\
         \x20 routes: {{P1: {{escalation: service}}, P2: [Maria Lopez]}}\n\
         \x20 ack_base_url: http://127.0.0.1:{ack_port}\n\
         \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s}}}}\n"
    )
}

/// Each message's `To:` address and its subject and text.
fn mails(smtp: &SmtpServer) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .map(|m| {
            let to = m
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap_or_default()
                .trim()
                .to_string();
            (to, subject_and_text(m))
        })
        .collect()
}

fn to_count(smtp: &SmtpServer, who: &str) -> usize {
    mails(smtp)
        .iter()
        .filter(|(to, _)| to.contains(who))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_p1_escalates_to_the_secondary_and_the_ack_link_stops_it() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    paging::write_config(
        dir.path(),
        &[("lead", p1_probe())],
        &rooftop_yaml(
            smtp.port,
            port,
            "4s",
            "{notify: [{rotation: desk}]}, {notify: [{rotation: desk, offset: 1}]}, {notify: [IT Lead]}",
        ),
    );
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    sb.set_faults(crm_down());
    let first = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    assert!(
        first[0].contains("To: maria@dealer.example"),
        "{}",
        first[0]
    );
    // Nobody acknowledges: four seconds later the secondary is paged.
    let two = smtp.wait_for_count(2, Duration::from_secs(20)).await;
    let (to, text) = &mails(&smtp)[1];
    assert!(to.contains("dev@dealer.example"), "{to}\n{}", two[1]);
    assert!(
        text.contains("ESCALATED to step 2 of 3: not acknowledged within 4s by Maria Lopez."),
        "{text}"
    );
    // Dev acknowledges through the page's signed link.
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge: "))
        .expect("an ack link in the escalated page")
        .to_string();
    let acked = paging::ack_by(&reqwest::Client::new(), &link, "Dev Patel").await;
    assert_eq!(acked.status(), 200);
    // Well past the next deadline: the IT lead is never paged.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(smtp.messages().len(), 2, "{:#?}", mails(&smtp));
    sb.set_faults(vec![]);
    smtp.wait_for_count(4, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = mails(&smtp);
    assert_eq!(all.len(), 4, "{all:#?}");
    let resolves: Vec<&String> = all[2..]
        .iter()
        .filter(|(_, t)| t.contains("RESOLVED"))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(resolves.len(), 2, "{all:#?}");
    assert!(resolves.iter().any(|t| t.contains("maria@")), "{all:#?}");
    assert!(resolves.iter().any(|t| t.contains("dev@")), "{all:#?}");
    assert_eq!(to_count(&smtp, "it@dealer.example"), 0);

    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert_eq!(out.matches(" opened: ").count(), 1, "{out}");
    // `rooftop incidents` tells the escalation's story.
    let listing = paging::incidents(dir.path(), state.path(), &[]);
    assert!(listing.contains("step 1 paged: Maria Lopez"), "{listing}");
    assert!(listing.contains("step 2 paged: Dev Patel"), "{listing}");
    assert!(listing.contains("acknowledged by Dev Patel"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_two_pages_pages_the_secondary_exactly_once() {
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    paging::write_config(
        dir.path(),
        &[("lead", p1_probe())],
        &rooftop_yaml(
            smtp.port,
            port,
            "6s",
            "{notify: [Maria Lopez]}, {notify: [Dev Patel]}",
        ),
    );
    let listen = format!("127.0.0.1:{port}");
    let mut agent = spawn_agent(&sb, dir.path(), state.path(), &listen, &[]);
    smtp.wait_for_count(1, Duration::from_secs(20)).await;
    // SIGKILL: no drain, no last pass. The deadline passes while it is down.
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(smtp.messages().len(), 1);
    let agent = spawn_agent(&sb, dir.path(), state.path(), &listen, &[]);
    smtp.wait_for_count(2, Duration::from_secs(20)).await;
    let all = mails(&smtp);
    assert!(all[1].0.contains("dev@dealer.example"), "{all:#?}");
    assert!(all[1].1.contains("ESCALATED to step 2 of 2"), "{all:#?}");
    // Longer than another deadline: no one is paged twice, nobody else is left.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(to_count(&smtp, "maria@"), 1, "{:#?}", mails(&smtp));
    assert_eq!(to_count(&smtp, "dev@"), 1, "{:#?}", mails(&smtp));
    agent::sigterm(agent, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_whose_dependency_fails_pages_nobody_and_is_listed_on_its_page() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // `wan-uplink` opens after one failure; the lead probe, which depends on it, after
    // three. Both fail when the CRM is unreachable.
    let wan = lead_probe("wan-uplink", false)
        .replace("connector: crm-to-bdc", "connector: wan")
        .replace("severity: P2", "severity: P2\nalert: {fire_after: 1}");
    let lead = lead_probe("lead-to-bdc-call-list", false).replace(
        "severity: P2",
        "severity: P2\nalert: {fire_after: 3}\ndepend_on: wan-uplink",
    );
    paging::write_config(
        dir.path(),
        &[("wan", wan), ("lead", lead)],
        &format!(
            "alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 group: {{wait: 6s}}\n\
             \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let port = tools::free_port();
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    sb.set_faults(crm_down());
    let page = smtp.wait_for_count(1, Duration::from_secs(30)).await;
    let text = subject_and_text(&page[0]);
    assert!(text.contains("wan-uplink failing"), "{text}");
    assert!(
        text.contains(
            "Also failing because of this (they depend on wan-uplink): lead-to-bdc-call-list"
        ),
        "{text}"
    );
    // The dependent keeps running and recording: its incident is open, held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let open = paging::incidents_json(dir.path(), state.path());
    let lead = open
        .iter()
        .find(|i| i["probe"] == "lead-to-bdc-call-list")
        .unwrap_or_else(|| panic!("the dependent's incident: {open:#?}"));
    assert!(lead["resolved_at"].is_null(), "{lead:#}");
    sb.set_faults(vec![]);
    smtp.wait_for_count(2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = mails(&smtp);
    assert_eq!(all.len(), 2, "one page, one resolve: {all:#?}");
    assert!(
        all[1].1.contains("RESOLVED") && all[1].1.contains("wan-uplink"),
        "{all:#?}"
    );
    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert!(
        out.contains("not paged: its dependency `wan-uplink` is failing"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_window_mutes_one_probe_records_it_and_the_other_page_says_so() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Both probes fail when the CRM is down; the change window (all day, every day)
    // mutes the P3 one only.
    let muted = lead_probe("price-file", false)
        .replace("connector: crm-to-bdc", "connector: parts")
        .replace("severity: P2", "severity: P3");
    paging::write_config(
        dir.path(),
        &[
            ("lead", lead_probe("lead-to-bdc-call-list", false)),
            ("muted", muted),
        ],
        &format!(
            "time_windows:\n\
             \x20 change-window: {{timezone: America/Toronto, when: [{{times: [{{start: \"00:00\", end: \"24:00\"}}]}}]}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez], P3: [Maria Lopez]}}\n\
             \x20 windows: [{{window: change-window, mute: true, severities: [P3]}}]\n\
             \x20 email: {{from: 'rooftop <rooftop@dealer.example>', smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let port = tools::free_port();
    let agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    sb.set_faults(crm_down());
    let page = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    let text = subject_and_text(&page[0]);
    assert!(text.contains("lead-to-bdc-call-list failing"), "{text}");
    assert!(
        text.contains("Sent during change window `change-window`"),
        "{text}"
    );
    // The P3 incident is open and shown as muted.
    let listing = tools::eventually(
        Duration::from_secs(20),
        || "the muted incident listed".into(),
        || {
            let l = paging::incidents(dir.path(), state.path(), &[]);
            l.contains("muted by change window `change-window`")
                .then_some(l)
        },
    )
    .await;
    assert!(listing.contains("price-file"), "{listing}");
    sb.set_faults(vec![]);
    // The unmuted page's resolve is delivered inside the window; the muted one never
    // paged anyone, so nobody hears of its recovery either.
    smtp.wait_for_count(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = mails(&smtp);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[1].1.contains("RESOLVED") && all[1].1.contains("lead-to-bdc-call-list"),
        "{all:#?}"
    );
    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert!(
        out.contains("muted by change window `change-window`"),
        "{out}"
    );
}

/// An override added while the agent runs (Maria is off sick: the IT lead covers) applies
/// at the SIGHUP, without a restart: the next page goes to the IT lead, not to Maria.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_override_pages_the_stand_in_without_a_restart() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    let yaml = rooftop_yaml(smtp.port, port, "10m", "{notify: [{rotation: desk}]}");
    paging::write_config(dir.path(), &[("lead", p1_probe())], &yaml);
    let mut agent = spawn_agent(
        &sb,
        dir.path(),
        state.path(),
        &format!("127.0.0.1:{port}"),
        &[],
    );
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (e, pipe) = (stderr.clone(), agent.stderr.take().unwrap());
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut t = e.lock().unwrap();
            t.push_str(&l);
            t.push('\n');
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The override spans today and tomorrow in UTC, whatever the hour of the test.
    let today = rooftop::clock::Clock::now(&rooftop::clock::SystemClock).date_naive();
    let tomorrow = today.succ_opt().unwrap().succ_opt().unwrap();
    let with_override = yaml.replacen(
        &format!("start: {today}}}"),
        &format!(
            "start: {today}, overrides: [{{who: IT Lead, replaces: Maria Lopez, from: \"{today} 00:00\", until: \"{tomorrow} 00:00\", note: Maria off sick}}]}}"
        ),
        1,
    );
    assert_ne!(with_override, yaml);
    std::fs::write(dir.path().join("rooftop.yaml"), &with_override).unwrap();
    let pid = agent.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let t = stderr.lock().unwrap().clone();
        if t.contains("oncall / time_windows applied (1 rotation, 0 windows)") {
            assert!(!t.contains("restart the agent"), "{t}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no reload note within 20 s:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sb.set_faults(crm_down());
    let first = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    assert!(first[0].contains("To: it@dealer.example"), "{}", first[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        to_count(&smtp, "maria@dealer.example"),
        0,
        "{:#?}",
        mails(&smtp)
    );
    agent::sigterm(agent, Duration::from_secs(60)).await;
}
