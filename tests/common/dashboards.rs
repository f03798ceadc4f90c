//! The Grafana dashboards in `dashboards/*.json` and the metric contract they and the alert
//! rules are written against. Include it with
//!
//! ```ignore
//! #[path = "common/dashboards.rs"]
//! mod dashboards;
//! ```
//!
//! [`panel_queries`] gives every panel's PromQL with the dashboard variables replaced by
//! values that make it a plain query (`$rooftop` → `.+`, `$__rate_interval` → `1m`, …), to
//! run on a real Prometheus.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// The dashboards every installation gets (`dashboards/` may hold more).
pub const DASHBOARD_FILES: &[&str] = &[
    "rooftop-overview.json",
    "rooftop-flow.json",
    "rooftop-oncall.json",
];

/// The oldest dashboard schema the files may have: 39 is Grafana 11.0's.
pub const MIN_SCHEMA_VERSION: u64 = 39;

/// The datasource of every panel and target: the dashboard's `datasource` variable.
pub fn datasource_ref() -> Value {
    serde_json::json!({"type": "prometheus", "uid": "${datasource}"})
}

/// Dashboard variables and what they become in a concrete query: every rooftop, probe and
/// flow, one-minute rates, a one-hour range.
pub const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("rooftop", ".+"),
    ("probe", ".+"),
    ("flow", ".+"),
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__range", "1h"),
];

pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The metric contract: every series the agent exports, with its labels besides `rooftop`
/// (a histogram's `_bucket` series also has `le`). Histograms are named without the
/// `_bucket` / `_sum` / `_count` suffix.
pub const METRICS: &[(&str, Kind, &[&str])] = &[
    (
        "rooftop_probe_runs_total",
        Kind::Counter,
        &["probe", "flow", "connector", "outcome", "error_type"],
    ),
    (
        "rooftop_probe_duration_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "outcome"],
    ),
    (
        "rooftop_step_runs_total",
        Kind::Counter,
        &[
            "probe",
            "flow",
            "connector",
            "step",
            "outcome",
            "error_type",
            "http_response_status_code",
        ],
    ),
    (
        "rooftop_step_duration_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "step", "outcome"],
    ),
    (
        "rooftop_sync_latency_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "step"],
    ),
    (
        "rooftop_sync_interval_width_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "step"],
    ),
    (
        "rooftop_sync_polls",
        Kind::Histogram,
        &["probe", "flow", "connector", "step"],
    ),
    (
        "rooftop_sync_slo_breaches_total",
        Kind::Counter,
        &["probe", "flow", "connector", "step"],
    ),
    (
        "rooftop_cleanup_runs_total",
        Kind::Counter,
        &["probe", "flow", "connector", "outcome"],
    ),
    ("rooftop_cleanup_leftovers", Kind::Gauge, &["probe"]),
    (
        "rooftop_probe_success_ratio",
        Kind::Gauge,
        &["probe", "flow", "connector", "window"],
    ),
    (
        "rooftop_probe_failing",
        Kind::Gauge,
        &["probe", "flow", "connector"],
    ),
    (
        "rooftop_probe_recovery_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector"],
    ),
    ("rooftop_scheduler_lag_seconds", Kind::Histogram, &[]),
    (
        "rooftop_scheduler_skipped_runs_total",
        Kind::Counter,
        &["probe", "reason"],
    ),
    ("rooftop_store_size_bytes", Kind::Gauge, &[]),
    (
        "rooftop_exporter_failures_total",
        Kind::Counter,
        &["signal"],
    ),
    ("rooftop_exporter_queue", Kind::Gauge, &["signal"]),
    ("rooftop_exporter_dropped_total", Kind::Counter, &["signal"]),
    ("rooftop_incidents_open", Kind::Gauge, &["severity"]),
    (
        "rooftop_incidents_opened_total",
        Kind::Counter,
        &["probe", "flow", "connector", "severity"],
    ),
    (
        "rooftop_incident_time_to_acknowledge_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "severity"],
    ),
    (
        "rooftop_incident_time_to_resolve_seconds",
        Kind::Histogram,
        &["probe", "flow", "connector", "severity"],
    ),
    (
        "rooftop_notifications_total",
        Kind::Counter,
        &["channel", "kind", "result"],
    ),
    ("rooftop_agent_info", Kind::Gauge, &["version"]),
];

/// The labels (besides `rooftop`) of the exported series `name` (`_bucket`, `_sum` and
/// `_count` of a histogram included), or None when the contract has no such series.
pub fn metric_labels(name: &str) -> Option<Vec<&'static str>> {
    for (base, kind, labels) in METRICS {
        if name == *base && !matches!(kind, Kind::Histogram) {
            return Some(labels.to_vec());
        }
        if let (Kind::Histogram, Some(suffix)) = (kind, name.strip_prefix(base)) {
            match suffix {
                "_sum" | "_count" => return Some(labels.to_vec()),
                "_bucket" => return Some([*labels, &["le"]].concat()),
                _ => {}
            }
        }
    }
    None
}

pub fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every `dashboards/*.json`, sorted by file name: (file name, parsed JSON). Panics on a
/// file that is not JSON.
pub fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dashboards/{name} is not valid JSON: {e}"));
            (name, value)
        })
        .collect()
}

/// Every panel of a dashboard in order: rows, and the panels a collapsed row holds right
/// after it.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `text` with Grafana's `$name` and `${name}` replaced per [`SUBSTITUTIONS`]. Panics on
/// any other variable, so that a new one gets a value here before a query uses it.
pub fn substitute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = SUBSTITUTIONS
            .iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no value for the variable ${name} in {text:?}"));
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Every target of every panel of every dashboard (rows included): (dashboard file, panel
/// title, expr with the variables substituted). A target without `expr` gives "".
pub fn panel_queries() -> Vec<(String, String, String)> {
    raw_panel_queries()
        .into_iter()
        .map(|(file, title, expr)| (file, title, substitute(&expr)))
        .collect()
}

/// [`panel_queries`] as written in the dashboards, variables and all.
pub fn raw_panel_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in all_panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    file.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    target["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// One label matcher of a selector, e.g. `probe=~"$probe"`: (label, operator, value).
pub type Matcher = (String, String, String);

/// Every selector of a contract metric (`rooftop_…`) in a PromQL expression: the metric
/// name and its matchers (none when it has no `{…}`). Names in `by (…)`/`on (…)` lists are
/// label names, not metrics, and none of them starts with `rooftop_`.
pub fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let bytes = expr.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' || bytes[i] == b'`' {
            // Skip string literals (label values, label_replace arguments).
            let quote = bytes[i];
            i += 1;
            while i < bytes.len() && bytes[i] != quote {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let word = &expr[start..i];
        if !word.starts_with("rooftop_") {
            continue;
        }
        let mut matchers = Vec::new();
        if bytes.get(i) == Some(&b'{') {
            let mut close = i + 1;
            while bytes.get(close).is_some_and(|&b| b != b'}') {
                if bytes[close] == b'"' {
                    close += 1;
                    while bytes[close] != b'"' {
                        close += if bytes[close] == b'\\' { 2 } else { 1 };
                    }
                }
                close += 1;
            }
            assert!(close < bytes.len(), "selector without }} in {expr:?}");
            matchers = parse_matchers(&expr[i + 1..close]);
            i = close + 1;
        }
        out.push((word.to_string(), matchers));
    }
    out
}

fn parse_matchers(body: &str) -> Vec<Matcher> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| panic!("bad matcher {rest:?}"));
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .unwrap_or_else(|| panic!("no operator in matcher {rest:?}"));
        rest = rest[op.len()..].trim_start();
        assert!(rest.starts_with('"'), "unquoted matcher value {rest:?}");
        let mut end = 1;
        let b = rest.as_bytes();
        while b[end] != b'"' {
            end += if b[end] == b'\\' { 2 } else { 1 };
        }
        out.push((name.to_string(), op.to_string(), rest[1..end].to_string()));
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    out
}
