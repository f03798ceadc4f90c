//! The dealership's WAN is down: the uplink probe fails, and so does an on-premises probe
//! (the CRM answers 503, a sandbox fault). The LAN's SMTP relay (aiosmtpd) answers;
//! PagerDuty and the OTLP collector, cloud services, do not. The e-mail pages go out at
//! once and probing goes on; when the link returns PagerDuty gets each incident's trigger
//! exactly once, and the collector's first export carries every counter on from where it
//! was, with the same start time: cumulative metrics lose no count to an outage.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/paging.rs"]
mod paging;
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paging::{
    crm_down, incidents_json, lead_probe, serve_pagerduty, spawn_agent, subject_and_text,
};
use rooftop::clock::{Clock, SystemClock};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tools::{OtlpReceiver, SmtpOptions, SmtpServer, otlp_metrics};

/// The on-premises probe: the bundled lead flow, every second, against the sandbox CRM.
const LEAD: &str = "lead-to-bdc-call-list";
/// The probe that watches the WAN.
const UPLINK: &str = "wan-uplink";
/// Failed PagerDuty attempts each page must have behind it before the link returns. The
/// outbox waits 5, 10, 20 s (±20 %) between them (`Policy` in src/notify/outbox.rs, not
/// configurable), so the next attempt comes 28–42 s after the first.
const PD_FAILURES: u64 = 3;

fn now() -> DateTime<Utc> {
    Clock::now(&SystemClock)
}

/// `n` distinct loopback ports nothing listens on (bound together, then all released).
fn closed_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A probe of the uplink: one GET to a cloud endpoint, here a port nobody listens on.
fn uplink_probe(port: u16) -> String {
    format!(
        "name: {UPLINK}\n\
         description: The dealership reaches the internet.\n\
         schedule: {{every: 1s}}\n\
         severity: P3\n\
         labels: {{flow: uplink, connector: wan}}\n\
         steps:\n\
         \x20 - name: reach-cloud\n\
         \x20   request: {{url: 'http://127.0.0.1:{port}/', timeout: 500ms}}\n"
    )
}

/// A stdout line and the instant it was read.
type Line = (DateTime<Utc>, String);

/// The agent's stdout, line by line as it comes.
#[derive(Clone, Default)]
struct Stdout(Arc<Mutex<Vec<Line>>>);

impl Stdout {
    fn follow(child: &mut Child) -> Stdout {
        let seen = Stdout::default();
        let lines = seen.0.clone();
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                lines.lock().unwrap().push((now(), line));
            }
        });
        seen
    }

    /// When each finished run of `probe` was printed (`HH:MM:SS probe outcome …`).
    fn runs(&self, probe: &str) -> Vec<DateTime<Utc>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.split_whitespace().nth(1) == Some(probe))
            .filter(|(_, l)| !l.contains("skipped: overlap") && !l.contains("interrupted"))
            .map(|(at, _)| *at)
            .collect()
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }
}

/// The notifications of `probe`'s incident over `channel`.
fn notifications(incidents: &[Value], probe: &str, channel: &str) -> Vec<Value> {
    incidents
        .iter()
        .filter(|i| i["probe"] == probe)
        .flat_map(|i| i["notifications"].as_array().cloned().unwrap_or_default())
        .filter(|n| n["channel"] == channel)
        .collect()
}

fn attr_str<'a>(attrs: &'a Value, key: &str) -> Option<&'a str> {
    attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["string_value"].as_str()
}

/// A 64-bit OTLP field (the JSON mapping writes them as strings).
fn as_u64(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// One probe's `rooftop.probe.runs` series in one metrics export, over every outcome.
#[derive(Debug, Clone)]
struct RunsCounter {
    /// The start times of its points (one, for a series that never restarted).
    starts: BTreeSet<u64>,
    /// When the agent collected it (Unix ms): a retried export arrives after its time.
    collected_ms: i64,
    total: u64,
}

/// `probe`'s `rooftop.probe.runs` in one metrics export; `None` when it does not hold it.
fn runs_counter(request: &Value, probe: &str) -> Option<RunsCounter> {
    let metrics = otlp_metrics(request);
    let runs = metrics.iter().find(|m| m["name"] == "rooftop.probe.runs")?;
    assert_eq!(
        runs["sum"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{runs}"
    );
    let points: Vec<&Value> = runs["sum"]["data_points"]
        .as_array()?
        .iter()
        .filter(|p| attr_str(&p["attributes"], "probe") == Some(probe))
        .collect();
    (!points.is_empty()).then(|| RunsCounter {
        starts: points
            .iter()
            .map(|p| as_u64(&p["start_time_unix_nano"]))
            .collect(),
        collected_ms: points
            .iter()
            .map(|p| (as_u64(&p["time_unix_nano"]) / 1_000_000) as i64)
            .max()
            .unwrap_or(0),
        total: points.iter().map(|p| as_u64(&p["as_int"])).sum(),
    })
}

/// Failed metrics exports the agent has counted, as one export reports them.
fn metrics_export_failures(request: &Value) -> Option<u64> {
    let metrics = otlp_metrics(request);
    let failures = metrics
        .iter()
        .find(|m| m["name"] == "rooftop.exporter.failures")?;
    failures["sum"]["data_points"]
        .as_array()?
        .iter()
        .find(|p| attr_str(&p["attributes"], "signal") == Some("metrics"))
        .map(|p| as_u64(&p["as_int"]))
}

fn metrics_requests(receiver: &OtlpReceiver) -> Vec<Value> {
    receiver
        .requests()
        .into_iter()
        .filter(|r| r["signal"] == "metrics")
        .map(|r| r["request"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wan_down_email_pages_at_once_and_pagerduty_and_the_collector_catch_up_when_it_returns()
 {
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    // Beyond the WAN: the uplink's cloud endpoint, PagerDuty, the OTLP collector.
    let [cloud_port, pd_port, otlp_port] = closed_ports::<3>();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[
            ("lead", lead_probe(LEAD, false)),
            ("uplink", uplink_probe(cloud_port)),
        ],
        &format!(
            "rooftop: {{id: toronto-north, name: Toronto North Honda}}\n\
             telemetry:\n\
             \x20 interval: 1s\n\
             \x20 otlp: {{endpoint: 'http://127.0.0.1:{otlp_port}', protocol: http/protobuf, timeout: 2s}}\n\
             alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez], P3: [Maria Lopez]}}\n\
             \x20 pagerduty: {{routing_key: R0123456789abcdef0123456789abcdef, url: 'http://127.0.0.1:{pd_port}/v2/enqueue'}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let mut child = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    let stdout = Stdout::follow(&mut child);
    let incidents = || incidents_json(dir.path(), state.path());

    // Both incidents page Maria over the LAN at once, while PagerDuty is unreachable.
    let mail = smtp.wait_for_count(2, Duration::from_secs(30)).await;
    let opened = tools::eventually(
        Duration::from_secs(10),
        || format!("both incidents: {:#?}", incidents()),
        || {
            let all = incidents();
            (all.len() == 2).then_some(all)
        },
    )
    .await;
    for probe in [LEAD, UPLINK] {
        let incident = opened
            .iter()
            .find(|i| i["probe"] == probe)
            .unwrap_or_else(|| panic!("no incident of {probe}: {opened:#?}"));
        let opened_ms = DateTime::parse_from_rfc3339(incident["opened_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        let (i, text) = mail
            .iter()
            .map(|m| subject_and_text(m))
            .enumerate()
            .find(|(_, t)| {
                t.lines()
                    .next()
                    .unwrap_or("")
                    .contains(&format!("{probe} failing"))
            })
            .unwrap_or_else(|| panic!("no e-mail page for {probe}: {mail:#?}"));
        let received_ms = smtp.index()[i]["received_ms"].as_i64().unwrap();
        assert!(
            received_ms - opened_ms < 10_000,
            "the e-mail page for {probe} came {} ms after the incident opened:\n{text}",
            received_ms - opened_ms
        );
    }

    // The PagerDuty events wait in the outbox, failing, while probing goes on.
    let waiting = tools::eventually(
        Duration::from_secs(40),
        || {
            format!(
                "{PD_FAILURES} failed PagerDuty attempts each: {:#?}",
                incidents()
            )
        },
        || {
            let all = incidents();
            [LEAD, UPLINK]
                .iter()
                .all(|p| {
                    let rows = notifications(&all, p, "pagerduty");
                    rows.len() == 1
                        && rows[0]["state"] == "pending"
                        && rows[0]["attempts"].as_u64() >= Some(PD_FAILURES)
                })
                .then_some(all)
        },
    )
    .await;
    for probe in [LEAD, UPLINK] {
        let email = notifications(&waiting, probe, "email");
        assert_eq!(email.len(), 1, "{waiting:#?}");
        assert_eq!(email[0]["state"], "delivered", "{waiting:#?}");
        let pd = &notifications(&waiting, probe, "pagerduty")[0];
        assert!(pd["last_error"].as_str().is_some(), "{pd}");
    }
    let first_lead_run = stdout.runs(LEAD)[0];
    let outage_runs = (stdout.runs(LEAD).len(), stdout.runs(UPLINK).len());
    assert!(
        outage_runs.0 >= 3 && outage_runs.1 >= 10,
        "probing goes on during the outage: {outage_runs:?} runs\n{}",
        stdout.text()
    );

    // The link returns: PagerDuty and the collector answer again, on the same ports.
    let events = serve_pagerduty(pd_port).await;
    let receiver = OtlpReceiver::start_on(0, otlp_port, 0);
    let back_ms = now().timestamp_millis();
    let delivered = tools::eventually(
        Duration::from_secs(50),
        || format!("the PagerDuty events delivered: {:#?}", incidents()),
        || {
            let all = incidents();
            [LEAD, UPLINK]
                .iter()
                .all(|p| notifications(&all, p, "pagerduty")[0]["state"] == "delivered")
                .then_some(all)
        },
    )
    .await;

    // The first metrics the agent collects once the link is back hold every run of the
    // outage, counted since before it began (same start time), and its failed exports.
    // (An export collected during the outage may still arrive late, on a retry, with the
    // counts of its own time: that one is not "after the outage".)
    let fresh = |r: &Value| runs_counter(r, LEAD).is_some_and(|c| c.collected_ms >= back_ms);
    let first = tools::eventually(
        Duration::from_secs(20),
        || format!("a metrics export; receiver log:\n{}", receiver.log()),
        || metrics_requests(&receiver).into_iter().find(|r| fresh(r)),
    )
    .await;
    for (probe, runs_in_outage) in [(LEAD, outage_runs.0), (UPLINK, outage_runs.1)] {
        let counter = runs_counter(&first, probe)
            .unwrap_or_else(|| panic!("no runs of {probe} in the export: {first:#}"));
        assert!(
            counter.total >= runs_in_outage as u64,
            "{probe}: the first export after the outage says {} runs, the agent printed \
             {runs_in_outage} during it; every export: {:?}",
            counter.total,
            metrics_requests(&receiver)
                .iter()
                .filter_map(|r| runs_counter(r, probe))
                .map(|c| (c.collected_ms - back_ms, c.total))
                .collect::<Vec<_>>()
        );
        assert_eq!(counter.starts.len(), 1, "{probe}: {counter:?}");
        let start_ms = (*counter.starts.first().unwrap() / 1_000_000) as i64;
        assert!(
            start_ms <= first_lead_run.timestamp_millis(),
            "{probe}: the series starts at {start_ms}, after the outage's first run at {first_lead_run}"
        );
    }
    assert!(
        metrics_export_failures(&first).is_some_and(|n| n >= 1),
        "the outage's failed exports are counted: {:?}",
        metrics_export_failures(&first)
    );

    // PagerDuty got each incident's trigger once, not once per retry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = events.lock().unwrap().clone();
    let ids: BTreeSet<&str> = delivered.iter().filter_map(|i| i["id"].as_str()).collect();
    let keys: BTreeSet<&str> = got.iter().filter_map(|e| e["dedup_key"].as_str()).collect();
    assert_eq!(got.len(), 2, "one event per incident: {got:#?}");
    assert_eq!(keys, ids, "{got:#?}");
    assert!(
        got.iter().all(|e| e["event_action"] == "trigger"),
        "{got:#?}"
    );
    assert_eq!(smtp.messages().len(), 2, "each e-mail page once");

    // Counters carry on: one start time per series, never going back, every printed run
    // exported.
    let printed = (stdout.runs(LEAD).len(), stdout.runs(UPLINK).len());
    let exports = tools::eventually(
        Duration::from_secs(20),
        || {
            format!(
                "an export with {printed:?} runs; receiver log:\n{}",
                receiver.log()
            )
        },
        || {
            let m = metrics_requests(&receiver);
            let caught_up = m.iter().rev().any(|r| {
                runs_counter(r, LEAD).is_some_and(|c| c.total >= printed.0 as u64)
                    && runs_counter(r, UPLINK).is_some_and(|c| c.total >= printed.1 as u64)
            });
            caught_up.then_some(m)
        },
    )
    .await;
    for probe in [LEAD, UPLINK] {
        let series: Vec<RunsCounter> = exports
            .iter()
            .filter_map(|r| runs_counter(r, probe))
            .collect();
        let starts: BTreeSet<u64> = series.iter().flat_map(|c| c.starts.clone()).collect();
        assert_eq!(
            starts.len(),
            1,
            "{probe}: the series never restarts: {starts:?}"
        );
        let totals: Vec<u64> = series.iter().map(|c| c.total).collect();
        assert!(
            totals.windows(2).all(|w| w[0] <= w[1]),
            "{probe}: a cumulative count never goes back: {totals:?}"
        );
    }

    let (_, err) = agent::sigterm(child, Duration::from_secs(60)).await;
    let failing = err
        .lines()
        .filter(|l| l.contains("OTLP metrics export") && l.contains("failing"))
        .count();
    assert_eq!(failing, 1, "the outage is reported once:\n{err}");
    assert!(
        err.contains("OTLP metrics export") && err.contains("recovered after"),
        "{err}"
    );
}

/// The CRM recovers while the WAN is still down: the incident resolves with its PagerDuty
/// trigger still in the outbox, so a resolve joins it there. PagerDuty must get the
/// trigger before the resolve (a resolve first is dropped, and the late trigger then
/// opens a PagerDuty incident nobody will ever resolve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_held_with_its_trigger_reaches_pagerduty_after_the_trigger() {
    let sb = paging::sandbox().await;
    sb.set_faults(crm_down());
    let smtp = SmtpServer::start(SmtpOptions::default());
    let [pd_port] = closed_ports::<1>();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    paging::write_config(
        dir.path(),
        &[("lead", lead_probe(LEAD, false))],
        &format!(
            "alerting:\n\
             \x20 contacts: [{{name: Maria Lopez, email: maria@dealer.example}}]\n\
             \x20 routes: {{P2: [Maria Lopez]}}\n\
             \x20 pagerduty: {{routing_key: R0123456789abcdef0123456789abcdef, url: 'http://127.0.0.1:{pd_port}/v2/enqueue'}}\n\
             \x20 email: {{from: rooftop@dealer.example, smtp: {{host: 127.0.0.1, port: {}, security: none, timeout: 5s}}}}\n",
            smtp.port
        ),
    );
    let mut child = spawn_agent(&sb, dir.path(), state.path(), "off", &[]);
    let incidents = || incidents_json(dir.path(), state.path());
    let pd_rows = |all: &[Value]| -> Vec<(String, u64, String)> {
        notifications(all, LEAD, "pagerduty")
            .iter()
            .map(|n| {
                (
                    n["kind"].as_str().unwrap_or("").to_string(),
                    n["attempts"].as_u64().unwrap_or(0),
                    n["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    smtp.wait_for_count(1, Duration::from_secs(30)).await;
    sb.set_faults(vec![]);
    // The resolve is queued beside the trigger, which has failed twice by now; it is
    // held behind the trigger, not tried on its own.
    tools::eventually(
        Duration::from_secs(40),
        || format!("a pending trigger and resolve: {:?}", pd_rows(&incidents())),
        || {
            let rows = pd_rows(&incidents());
            let failed = |kind: &str, n: u64| {
                rows.iter()
                    .any(|(k, a, s)| k == kind && *a >= n && s == "pending")
            };
            let held = rows
                .iter()
                .any(|(k, a, s)| k == "resolve" && *a == 0 && s == "pending");
            (failed("trigger", 2) && held).then_some(())
        },
    )
    .await;
    let events = serve_pagerduty(pd_port).await;
    tools::eventually(
        Duration::from_secs(50),
        || {
            format!(
                "both PagerDuty events delivered: {:?}",
                pd_rows(&incidents())
            )
        },
        || (events.lock().unwrap().len() >= 2).then_some(()),
    )
    .await;
    let actions: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["event_action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "{actions:?}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
