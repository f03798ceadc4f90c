//! The Grafana dashboards (dashboards/) and the fleet alert rules (alerts/): the dashboards
//! are well-formed and provisionable, every panel query is valid PromQL on a real
//! Prometheus and filters by the dashboard's variables, the rules pass promtool's check and
//! their unit tests, every alert links a runbook that exists, and the links expand with
//! Prometheus' `runbook_base_url` external label.

#[path = "common/dashboards.rs"]
mod dashboards;
#[path = "common/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tools::Prometheus;

fn repo() -> PathBuf {
    tools::repo_dir()
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A YAML file of the repository as a JSON value tree (rooftop's own YAML parser).
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    rooftop::config::yaml::parse(&text)
        .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), e.loc.line))
        .value
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

// ---- dashboards ----------------------------------------------------------------------------

#[test]
fn every_dashboard_is_well_formed_and_uses_the_datasource_and_rooftop_variables() {
    let all = dashboards::dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for required in dashboards::DASHBOARD_FILES {
        assert!(names.contains(required), "dashboards/{required} is missing");
    }
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        check_dashboard(file, d);
        assert!(
            uids.insert(str_of(&d["uid"], "uid").to_string()),
            "{file}: uid {} used twice",
            d["uid"]
        );
    }
}

fn check_dashboard(file: &str, d: &Value) {
    assert!(
        d["schemaVersion"]
            .as_u64()
            .is_some_and(|v| v >= dashboards::MIN_SCHEMA_VERSION),
        "{file}: schemaVersion {} < {}",
        d["schemaVersion"],
        dashboards::MIN_SCHEMA_VERSION
    );
    assert!(
        d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "{file}: a uid of 1–40 characters keeps the dashboard's URL stable: {}",
        d["uid"]
    );
    assert!(
        d["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{file}: no title"
    );
    assert!(
        d["id"].is_null(),
        "{file}: a provisioned dashboard has id null"
    );

    // Variables.
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no templating.list"))
        .iter()
        .map(|v| (str_of(&v["name"], "variable name"), v))
        .collect();
    let ds = vars
        .get("datasource")
        .unwrap_or_else(|| panic!("{file}: no datasource variable"));
    assert_eq!(ds["type"], "datasource", "{file}: $datasource");
    assert_eq!(ds["query"], "prometheus", "{file}: $datasource");
    let ds_ref = dashboards::datasource_ref();
    let expected = [
        ("rooftop", "label_values(rooftop_probe_runs_total, rooftop)"),
        (
            "probe",
            "label_values(rooftop_probe_runs_total{rooftop=~\"$rooftop\"}, probe)",
        ),
    ];
    for (name, query) in expected {
        let v = vars
            .get(name)
            .unwrap_or_else(|| panic!("{file}: no {name} variable"));
        assert_eq!(v["type"], "query", "{file}: ${name}");
        assert_eq!(v["datasource"], ds_ref, "{file}: ${name}'s datasource");
        assert_eq!(v["query"]["query"], query, "{file}: ${name}'s query");
        assert_eq!(v["definition"], query, "{file}: ${name}'s definition");
        assert_eq!(v["multi"], true, "{file}: ${name} is multi-value");
        assert_eq!(v["includeAll"], true, "{file}: ${name} includes All");
    }
    for (name, v) in &vars {
        if v["type"] == "query" {
            assert_eq!(v["datasource"], ds_ref, "{file}: ${name}'s datasource");
        }
    }

    // Panels: ids, datasources, grid.
    let panels = dashboards::all_panels(d);
    assert!(!panels.is_empty(), "{file}: no panels");
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("<untitled>");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: panel {title:?} has no numeric id"));
        assert!(
            ids.insert(id),
            "{file}: panel id {id} ({title:?}) used twice"
        );
        assert_eq!(
            p["datasource"], ds_ref,
            "{file}: panel {title:?}'s datasource must be the $datasource variable"
        );
        let targets = p["targets"].as_array();
        if p["type"] == "row" {
            assert!(
                targets.is_none_or(|t| t.is_empty()),
                "{file}: row {title:?} has targets"
            );
            continue;
        }
        let targets = targets.unwrap_or_else(|| panic!("{file}: panel {title:?} has no targets"));
        assert!(
            !targets.is_empty(),
            "{file}: panel {title:?} has no targets"
        );
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert_eq!(
                t["datasource"], ds_ref,
                "{file}: a target of {title:?} does not use the $datasource variable"
            );
            assert!(
                ref_ids.insert(t["refId"].as_str().unwrap_or_default()),
                "{file}: {title:?} repeats refId {}",
                t["refId"]
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "{file}: a target of {title:?} has no expr"
            );
            check_expr_filters(file, title, expr, vars.contains_key("flow"));
        }
    }
    check_grid(file, d);
}

/// `expr` uses `$rooftop`, and every selector of a contract metric filters by the
/// dashboard's variables its labels allow (`rooftop`; `probe`; `flow` where the dashboard
/// has that variable). Selectors only use labels the metric has.
fn check_expr_filters(file: &str, title: &str, expr: &str, has_flow_var: bool) {
    assert!(
        expr.contains("$rooftop"),
        "{file}: {title:?} does not use $rooftop: {expr}"
    );
    for rate in ["rate(", "increase("] {
        for (i, _) in expr.match_indices(rate) {
            let window = &expr[i..];
            let range = &window[window.find('[').unwrap_or(0)..];
            assert!(
                range.starts_with("[$__rate_interval]") || range.starts_with("[$__range]"),
                "{file}: {title:?}: rates are over $__rate_interval (or $__range for a total): {expr}"
            );
        }
    }
    let selectors = dashboards::selectors(expr);
    assert!(
        !selectors.is_empty(),
        "{file}: {title:?} reads no rooftop metric: {expr}"
    );
    for (metric, matchers) in selectors {
        let labels = dashboards::metric_labels(&metric)
            .unwrap_or_else(|| panic!("{file}: {title:?}: {metric} is not in the metric contract"));
        let has = |label: &str, value: &str| {
            matchers
                .iter()
                .any(|(l, op, v)| l == label && op == "=~" && v == value)
        };
        assert!(
            has("rooftop", "$rooftop"),
            "{file}: {title:?}: {metric} is not filtered by rooftop=~\"$rooftop\": {expr}"
        );
        if labels.contains(&"probe") {
            assert!(
                has("probe", "$probe"),
                "{file}: {title:?}: {metric} is not filtered by probe=~\"$probe\": {expr}"
            );
        }
        if has_flow_var && labels.contains(&"flow") {
            assert!(
                has("flow", "$flow"),
                "{file}: {title:?}: {metric} is not filtered by flow=~\"$flow\": {expr}"
            );
        }
        for (label, _, _) in &matchers {
            assert!(
                label == "rooftop" || labels.contains(&label.as_str()),
                "{file}: {title:?}: {metric} has no label {label}: {expr}"
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: u64,
    y: u64,
    w: u64,
    h: u64,
}

impl Rect {
    fn of(file: &str, p: &Value) -> Rect {
        let g = &p["gridPos"];
        let get = |k: &str| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{file}: panel {} has no gridPos.{k}", p["title"]))
        };
        let r = Rect {
            x: get("x"),
            y: get("y"),
            w: get("w"),
            h: get("h"),
        };
        assert!(
            r.w >= 1 && r.h >= 1 && r.x + r.w <= 24,
            "{file}: panel {} does not fit the 24-column grid: {r:?}",
            p["title"]
        );
        r
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// No two panels overlap: the top-level panels (collapsed rows shut), and the panels of
/// each collapsed row among themselves (that row open), which sit below their row.
fn check_grid(file: &str, d: &Value) {
    let top: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
    let mut groups = vec![top.clone()];
    for row in top.iter().filter(|p| p["type"] == "row") {
        let nested: Vec<&Value> = row["panels"].as_array().into_iter().flatten().collect();
        if !nested.is_empty() {
            assert_eq!(
                row["collapsed"], true,
                "{file}: row {} holds panels but is not collapsed",
                row["title"]
            );
        }
        let row_y = Rect::of(file, row).y;
        for p in &nested {
            assert!(
                Rect::of(file, p).y > row_y,
                "{file}: panel {} sits above its row {}",
                p["title"],
                row["title"]
            );
        }
        groups.push(nested);
    }
    for group in groups {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                assert!(
                    !Rect::of(file, a).overlaps(&Rect::of(file, b)),
                    "{file}: panels {} and {} overlap",
                    a["title"],
                    b["title"]
                );
            }
        }
    }
}

#[test]
fn panel_queries_substitute_every_variable() {
    let queries = dashboards::panel_queries();
    assert!(queries.len() > 20, "{} queries", queries.len());
    for (file, title, expr) in &queries {
        assert!(
            !expr.contains('$'),
            "{file}: {title:?} keeps a variable: {expr}"
        );
    }
    assert_eq!(
        dashboards::substitute(
            "rate(x{rooftop=~\"$rooftop\", probe=~\"${probe}\"}[$__rate_interval]) / $__interval $__range"
        ),
        "rate(x{rooftop=~\".+\", probe=~\".+\"}[1m]) / 1m 1h"
    );
}

/// Every panel query, variables substituted, is valid PromQL to a real Prometheus (which
/// has no rooftop data here: the answers are empty, the syntax and types are checked).
#[test]
fn every_panel_query_is_valid_promql() {
    let prom = Prometheus::start("global:\n  scrape_interval: 15s\nscrape_configs: []\n");
    let mut failures = Vec::new();
    let queries = dashboards::panel_queries();
    for (file, title, expr) in &queries {
        let answer = prom.query(expr);
        if answer["status"] != "success" {
            failures.push(format!("{file}: {title:?}: {expr}\n  -> {answer}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} panel queries are not valid PromQL:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}

#[test]
fn provisioning_files_point_at_the_dashboards() {
    let dir = repo().join("dashboards/provisioning");
    let ds = yaml(&dir.join("datasources/rooftop.yaml"));
    assert_eq!(ds["apiVersion"], 1);
    let prom = &ds["datasources"][0];
    assert_eq!(prom["type"], "prometheus");
    assert!(
        prom["url"].as_str().is_some_and(|u| u.starts_with("http")),
        "datasource url: {}",
        prom["url"]
    );
    let provider = &yaml(&dir.join("dashboards/rooftop.yaml"))["providers"][0];
    assert_eq!(provider["type"], "file");
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "provider path: {}",
        provider["options"]["path"]
    );
    // The datasource the dashboards select first is the provisioned one.
    for (file, d) in dashboards::dashboards() {
        let var = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap();
        assert_eq!(var["current"]["value"], prom["uid"], "{file}");
    }
}

// ---- alert rules ---------------------------------------------------------------------------

fn rules_path() -> PathBuf {
    repo().join("alerts/rooftop.rules.yaml")
}

fn rule_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("alerts/tests"))
        .expect("alerts/tests/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in alerts/tests/");
    files
}

/// Every alerting rule of alerts/rooftop.rules.yaml (recording rules left out).
fn alert_rules() -> Vec<Value> {
    let rules = yaml(&rules_path());
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            if rule.get("alert").is_some() {
                out.push(rule.clone());
            }
        }
    }
    assert!(!out.is_empty(), "no alerting rules");
    out
}

#[test]
fn promtool_checks_the_alert_rules() {
    let out = tools::promtool(["check".as_ref(), "rules".as_ref(), rules_path().as_os_str()]);
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        output_text(&out)
    );
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let mut args = vec!["test".into(), "rules".into()];
    args.extend(rule_test_files().into_iter().map(|p| p.into_os_string()));
    let out = tools::promtool(&args);
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        output_text(&out)
    );
}

const SEVERITIES: &[&str] = &["page", "ticket"];
const RUNBOOK_PREFIX: &str = "{{ $externalLabels.runbook_base_url }}/runbooks/";

/// The runbook file names a runbook_url template can produce: the literal text between its
/// template actions, after `/runbooks/`, each followed by `.md` (a fixed URL's one name, or
/// each branch of an if/else chain).
fn runbook_names(url: &str) -> Vec<String> {
    let rest = url
        .strip_prefix(RUNBOOK_PREFIX)
        .unwrap_or_else(|| panic!("runbook_url must start with {RUNBOOK_PREFIX:?}: {url:?}"));
    assert!(
        rest.ends_with(".md"),
        "runbook_url must end with .md: {url:?}"
    );
    let mut literals = Vec::new();
    let mut text = rest;
    while let Some(open) = text.find("{{") {
        literals.push(&text[..open]);
        let close = open + text[open..].find("}}").expect("unclosed {{");
        text = &text[close + 2..];
    }
    literals.push(text);
    let names: Vec<String> = literals
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && *l != ".md")
        .map(|l| l.strip_suffix(".md").unwrap_or(l).to_string())
        .collect();
    assert!(!names.is_empty(), "runbook_url names no runbook: {url:?}");
    names
}

#[test]
fn every_alert_has_severity_summary_description_and_an_existing_runbook() {
    let mut names = BTreeSet::new();
    for rule in alert_rules() {
        let name = str_of(&rule["alert"], "alert").to_string();
        assert!(names.insert(name.clone()), "alert {name} defined twice");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            SEVERITIES.contains(&severity),
            "{name}: severity {severity:?} is none of {SEVERITIES:?}"
        );
        let ann = &rule["annotations"];
        let summary = ann["summary"].as_str().unwrap_or_default();
        let description = ann["description"].as_str().unwrap_or_default();
        assert!(
            summary.contains("$labels.rooftop"),
            "{name}: the summary names the rooftop: {summary:?}"
        );
        let expr = str_of(&rule["expr"], "expr");
        if expr.contains("probe") {
            for label in ["$labels.probe", "$labels.connector"] {
                assert!(
                    summary.contains(label),
                    "{name}: the summary names {label}: {summary:?}"
                );
            }
        }
        assert!(
            description.len() > summary.len(),
            "{name}: the description says more than the summary"
        );
        let url = str_of(&ann["runbook_url"], "runbook_url");
        for runbook in runbook_names(url) {
            let path = repo().join("runbooks").join(format!("{runbook}.md"));
            assert!(
                path.is_file(),
                "{name}: runbooks/{runbook}.md does not exist"
            );
        }
        for (metric, matchers) in dashboards::selectors(expr) {
            let labels = dashboards::metric_labels(&metric)
                .unwrap_or_else(|| panic!("{name}: {metric} is not in the metric contract"));
            for (label, _, _) in matchers {
                assert!(
                    label == "rooftop" || labels.contains(&label.as_str()),
                    "{name}: {metric} has no label {label}"
                );
            }
        }
    }
}

/// A duration of a promtool test file ("75m", "1h30m", "90s").
fn duration_secs(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => panic!("bad duration {text:?}"),
        };
        total += number.parse::<u64>().unwrap() * unit;
        number.clear();
    }
    assert!(number.is_empty(), "bad duration {text:?}");
    total
}

/// Every alert has a unit test where it fires, and one where an alert that fired is gone
/// at a later eval_time of the same test (it resolves).
#[test]
fn every_alert_has_unit_tests_that_fire_and_resolve_it() {
    // alertname -> (fires somewhere, resolves somewhere)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in rule_test_files() {
        let doc = yaml(&file);
        for test in doc["tests"].as_array().expect("tests") {
            let mut evals: BTreeMap<String, Vec<(u64, BTreeSet<String>)>> = BTreeMap::new();
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = str_of(&case["alertname"], "alertname").to_string();
                let at = duration_secs(str_of(&case["eval_time"], "eval_time"));
                let alerts: BTreeSet<String> = case["exp_alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["exp_labels"].to_string())
                    .collect();
                evals.entry(name).or_default().push((at, alerts));
            }
            for (name, mut cases) in evals {
                cases.sort();
                let entry = seen.entry(name).or_default();
                entry.0 |= cases.iter().any(|(_, a)| !a.is_empty());
                for (i, (_, earlier)) in cases.iter().enumerate() {
                    for (_, later) in &cases[i + 1..] {
                        entry.1 |= earlier.iter().any(|a| !later.contains(a));
                    }
                }
            }
        }
    }
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let (fires, resolves) = seen.get(name).copied().unwrap_or_default();
        assert!(fires, "no test in alerts/tests/ fires {name}");
        assert!(resolves, "no test in alerts/tests/ sees {name} resolve");
    }
}

/// The bundled probes: (name, flow, connector, runbook file name without `.md`).
fn bundled_probes() -> Vec<(String, String, String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("probes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let p = yaml(f);
            let runbook = str_of(&p["runbook"], "runbook");
            let runbook = runbook
                .strip_prefix("runbooks/")
                .and_then(|r| r.strip_suffix(".md"))
                .unwrap_or_else(|| panic!("{}: runbook {runbook:?}", f.display()));
            (
                str_of(&p["name"], "name").to_string(),
                str_of(&p["labels"]["flow"], "flow").to_string(),
                str_of(&p["labels"]["connector"], "connector").to_string(),
                runbook.to_string(),
            )
        })
        .collect()
}

/// `vector(1)` with `labels`, as PromQL.
fn constant_series(labels: &BTreeMap<&str, String>) -> String {
    labels
        .iter()
        .fold("vector(1)".to_string(), |inner, (k, v)| {
            format!("label_replace({inner}, \"{k}\", \"{v}\", \"\", \"\")")
        })
}

/// On a real Prometheus with the `runbook_base_url` external label, each alert (its labels
/// and annotations as written, its expression replaced by constant series that fire at
/// once) links `<base>/runbooks/<file>.md`. The alerts that pick the runbook by flow pick
/// each bundled probe's own runbook (probes/*.yaml), and failed-sync-job for other flows.
#[test]
fn runbook_links_expand_with_the_external_label_on_prometheus() {
    const BASE: &str = "https://runbooks.example/dealer-group/rooftop";
    let probes = bundled_probes();
    assert!(probes.len() >= 5, "{probes:?}");
    let mut series: Vec<(BTreeMap<&str, String>, String)> = probes
        .iter()
        .map(|(name, flow, connector, runbook)| {
            let labels = BTreeMap::from([
                ("rooftop", "toronto-north".to_string()),
                ("probe", name.clone()),
                ("flow", flow.clone()),
                ("connector", connector.clone()),
                ("step", "a-step".to_string()),
                ("error_type", "connect".to_string()),
            ]);
            (labels, runbook.clone())
        })
        .collect();
    series.push((
        BTreeMap::from([
            ("rooftop", "toronto-north".to_string()),
            ("probe", "warranty-claim-to-oem".to_string()),
            ("flow", "warranty-claims".to_string()),
            ("connector", "dms-to-oem".to_string()),
            ("step", "a-step".to_string()),
            ("error_type", "connect".to_string()),
        ]),
        "failed-sync-job".to_string(),
    ));

    // alert name -> (probe label or "", expected runbook)
    let mut expected: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut rules = Vec::new();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap().to_string();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let by_flow = url.contains("$labels.flow");
        let fixed = runbook_names(url);
        let expr = if rule["expr"].as_str().unwrap().contains("probe") {
            for (labels, runbook) in &series {
                let runbook = if by_flow {
                    runbook.clone()
                } else {
                    fixed[0].clone()
                };
                expected.insert((name.clone(), labels["probe"].clone(), runbook));
            }
            series
                .iter()
                .map(|(labels, _)| constant_series(labels))
                .collect::<Vec<_>>()
                .join(" or ")
        } else {
            expected.insert((name.clone(), String::new(), fixed[0].clone()));
            constant_series(&BTreeMap::from([("rooftop", "toronto-north".to_string())]))
        };
        rules.push(json!({
            "alert": name,
            "expr": expr,
            "labels": rule["labels"],
            "annotations": rule["annotations"],
        }));
    }
    let rule_file =
        json!({"groups": [{"name": "runbook-links", "interval": "1s", "rules": rules}]});
    let config = format!(
        "global:\n  evaluation_interval: 1s\n  external_labels:\n    runbook_base_url: {BASE}\n\
         rule_files: [runbook-links.rules.json]\nscrape_configs: []\n"
    );
    let prom = Prometheus::start_with_files(
        &config,
        &[("runbook-links.rules.json", &rule_file.to_string())],
    );

    let alerts = tools::eventually_blocking(
        Duration::from_secs(30),
        || {
            format!(
                "waiting for {} alerts; prometheus log:\n{}",
                expected.len(),
                prom.log()
            )
        },
        || {
            let (_, body) = prom.get("/api/v1/alerts");
            let answer: Value = serde_json::from_str(&body).ok()?;
            let alerts = answer["data"]["alerts"].as_array()?.clone();
            (alerts.len() >= expected.len()).then_some(alerts)
        },
    );
    let mut got = BTreeSet::new();
    for alert in &alerts {
        let name = alert["labels"]["alertname"].as_str().unwrap().to_string();
        let probe = alert["labels"]["probe"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let url = alert["annotations"]["runbook_url"].as_str().unwrap();
        let file = url
            .strip_prefix(&format!("{BASE}/runbooks/"))
            .and_then(|f| f.strip_suffix(".md"))
            .unwrap_or_else(|| panic!("{name} {probe}: runbook_url {url:?}"));
        assert!(
            repo().join("runbooks").join(format!("{file}.md")).is_file(),
            "{name} {probe}: {url} names no file in runbooks/"
        );
        assert!(
            !alert["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("<no value>"),
            "{name}: {}",
            alert["annotations"]["summary"]
        );
        got.insert((name, probe, file.to_string()));
    }
    assert_eq!(got, expected, "alert, probe and runbook");
}
