//! Paging that respects the on-call engineer's phone, through the running agent and a
//! real SMTP server (aiosmtpd): three probes failing together on one connector are one
//! page and one resolve notice, not six e-mails; a flapping connector is one incident,
//! not a page per flap.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::path::Path;
use std::time::Duration;

use paging::{crm_down, incidents_json, lead_probe, spawn_agent, subject_and_text};
use tools::{SmtpOptions, SmtpServer};

/// Lead probes with these names, paging Maria by e-mail through `smtp_port`.
fn write_config(dir: &Path, names: &[&str], smtp_port: u16, extra_alerting: &str) {
    let probes: Vec<(&str, String)> = names.iter().map(|n| (*n, lead_probe(n, false))).collect();
    paging::write_config(
        dir,
        &probes,
        &format!(
            "rooftop: {{id: toronto-north, name: Toronto North Honda}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5s}}}}\n\
             {extra_alerting}"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_probes_failing_on_one_connector_are_one_page_and_one_resolve() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let names = ["lead-web", "lead-oem", "lead-3rd-party"];
    // The first page waits 3 s for the others of its connector (on a loaded machine a
    // probe may open later: it then joins silently and shows in the resolve).
    write_config(
        dir.path(),
        &names,
        smtp.port,
        "\x20 group: {window: 10m, wait: 3s}\n",
    );
    let agent = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sb.set_faults(crm_down());

    let page = smtp.wait_for_count(1, Duration::from_secs(20)).await;
    let first = subject_and_text(&page[0]);
    let subject = first.lines().next().unwrap().to_string();
    let leader = *names
        .iter()
        .find(|n| subject.contains(&format!(": {n} failing")))
        .unwrap_or_else(|| panic!("the page names one of the probes: {first}"));
    if let Some(also) = first
        .lines()
        .find_map(|l| l.strip_prefix("Also failing on this connector (grouped into this page): "))
    {
        let listed: Vec<&str> = also.split(", ").collect();
        assert!(
            subject.ends_with(&format!("failing (+{} more on crm-to-bdc)", listed.len())),
            "{first}"
        );
        assert!(
            listed.iter().all(|p| names.contains(p) && *p != leader),
            "{first}"
        );
    }
    // Until every probe has its incident (a run caught mid-poll by the outage fails
    // only after its 5 s poll window): still one page.
    tools::eventually(
        Duration::from_secs(30),
        || "an incident per probe".into(),
        || (incidents_json(dir.path(), state.path()).len() == 3).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.messages().len(), 1);

    sb.set_faults(vec![]);
    let both = smtp.wait_for_count(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    let resolve = subject_and_text(&both[1]);
    assert!(
        resolve.starts_with(&format!(
            "[P2] RESOLVED Toronto North Honda · lead-ingestion: {leader} resolved (+2 more on crm-to-bdc)"
        )),
        "{resolve}\n{out}"
    );
    assert!(
        resolve.contains("Also affected on this connector (all resolved now): "),
        "{resolve}"
    );
    assert_eq!(smtp.messages().len(), 2, "one page, one resolve");

    assert_eq!(out.matches(" opened: ").count(), 3, "{out}");
    assert_eq!(out.matches("grouped into inc-").count(), 2, "{out}");
    // Three incidents, two of them in the first one's group, all resolved; the
    // notifications are the leader's.
    let incidents = incidents_json(dir.path(), state.path());
    assert_eq!(incidents.len(), 3, "{incidents:?}");
    let lead = incidents.iter().find(|i| i["probe"] == *leader).unwrap()["id"].clone();
    for i in &incidents {
        assert_eq!(i["group"], lead, "{i}");
        assert_eq!(i["state"], "resolved", "{i}");
        let notes = i["notifications"].as_array().unwrap().len();
        assert_eq!(notes, if i["id"] == lead { 2 } else { 0 }, "{i}");
    }
}

/// The CRM goes down and comes back every 3 s, four times. Without damping that is four
/// pages and four resolves; here it is one incident: the page, at most one "flapping"
/// notice (it failed again right after recovering), and resolves only once the flapping
/// stopped for a whole flap window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_connector_is_one_incident_not_a_page_per_flap() {
    let sb = paging::sandbox().await;
    let smtp = SmtpServer::start(SmtpOptions::default());
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_config(
        dir.path(),
        &["lead-web"],
        smtp.port,
        "\x20 rules: {fire_after: 2, resolve_after: 2, flapping: {changes: 4, window: 10s}}\n",
    );
    let agent = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..4 {
        sb.set_faults(crm_down());
        tokio::time::sleep(Duration::from_secs(3)).await;
        sb.set_faults(vec![]);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Healthy from now on: after a quiet flap window (10 s) the incident resolves.
    let incident = tools::eventually(
        Duration::from_secs(30),
        || "the flapping incident resolved".into(),
        || {
            let all = incidents_json(dir.path(), state.path());
            (all.len() == 1 && all[0]["state"] == "resolved").then(|| all[0].clone())
        },
    )
    .await;
    assert_eq!(incident["flapping"], true, "{incident}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (out, _) = agent::sigterm(agent, Duration::from_secs(60)).await;
    assert_eq!(out.matches(" opened: ").count(), 1, "{out}");

    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| subject_and_text(m).lines().next().unwrap().to_string())
        .collect();
    let count = |what: &str| subjects.iter().filter(|s| s.ends_with(what)).count();
    assert_eq!(count("lead-web failing"), 1, "{subjects:?}");
    assert!(count("lead-web flapping") <= 1, "{subjects:?}");
    // A resolve per round that reached people: the flapping notice's round has its own.
    assert_eq!(
        count("lead-web resolved"),
        1 + count("lead-web flapping"),
        "{subjects:?}"
    );
    assert!(subjects.len() <= 4, "{subjects:?}\n{out}");
}
