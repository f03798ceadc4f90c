//! Prometheus text exposition of the agent's OpenTelemetry metrics, named the way an
//! OpenTelemetry Collector's Prometheus exporter names them, so one set of dashboards
//! and alert rules serves both paths (scrape `/metrics`, or OTLP → collector → Prometheus):
//!
//! - dots become underscores (`rooftop.probe.runs` → `rooftop_probe_runs`, attribute
//!   `error.type` → label `error_type`);
//! - the unit becomes a suffix: `s` → `_seconds`, `By` → `_bytes`, `1` on a gauge →
//!   `_ratio` (unless the name already ends so); annotations such as `{run}` are dropped;
//! - monotonic sums get `_total`; histograms become `_bucket{le}`, `_sum`, `_count`.
//!
//! The resource goes into `target_info`, as the collector does.

use std::fmt::Write as _;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

/// The Prometheus metric name for an OTel metric name, unit and kind.
pub fn metric_name(name: &str, unit: &str, monotonic_sum: bool, gauge: bool) -> String {
    let mut n = sanitize(name);
    let suffix = match unit {
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "1" if gauge => Some("ratio"),
        _ => None,
    };
    if let Some(sfx) = suffix
        && !n.ends_with(&format!("_{sfx}"))
    {
        n.push('_');
        n.push_str(sfx);
    }
    if monotonic_sum && !n.ends_with("_total") {
        n.push_str("_total");
    }
    n
}

/// Letters, digits and underscores; anything else becomes `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_string(),
        other => other.to_string(),
    }
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut pairs: Vec<(String, String)> = attrs
        .map(|kv| (sanitize(kv.key.as_str()), value_text(&kv.value)))
        .collect();
    pairs.sort();
    if let Some((k, v)) = extra {
        pairs.push((k.to_string(), v));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn number<T: Into<f64>>(v: T) -> String {
    let f: f64 = v.into();
    if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if f.is_nan() {
        "NaN".into()
    } else {
        format!("{f}")
    }
}

trait AsF64: Copy {
    fn f(self) -> f64;
}
impl AsF64 for f64 {
    fn f(self) -> f64 {
        self
    }
}
impl AsF64 for u64 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl AsF64 for i64 {
    fn f(self) -> f64 {
        self as f64
    }
}

fn write_data<T: AsF64>(
    out: &mut String,
    name: &str,
    unit: &str,
    help: &str,
    data: &MetricData<T>,
) {
    match data {
        MetricData::Gauge(g) => {
            let n = metric_name(name, unit, false, true);
            header(out, &n, help, "gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{n}{} {}",
                    labels(p.attributes(), None),
                    number(p.value().f())
                );
            }
        }
        MetricData::Sum(s) => {
            let n = metric_name(name, unit, s.is_monotonic(), !s.is_monotonic());
            header(
                out,
                &n,
                help,
                if s.is_monotonic() { "counter" } else { "gauge" },
            );
            for p in s.data_points() {
                let _ = writeln!(
                    out,
                    "{n}{} {}",
                    labels(p.attributes(), None),
                    number(p.value().f())
                );
            }
        }
        MetricData::Histogram(h) => {
            let n = metric_name(name, unit, false, false);
            header(out, &n, help, "histogram");
            for p in h.data_points() {
                let mut cumulative = 0u64;
                let counts: Vec<u64> = p.bucket_counts().collect();
                for (i, bound) in p.bounds().enumerate() {
                    cumulative += counts.get(i).copied().unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "{n}_bucket{} {cumulative}",
                        labels(p.attributes(), Some(("le", number(bound))))
                    );
                }
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {}",
                    labels(p.attributes(), Some(("le", "+Inf".into()))),
                    p.count()
                );
                let _ = writeln!(
                    out,
                    "{n}_sum{} {}",
                    labels(p.attributes(), None),
                    number(p.sum().f())
                );
                let _ = writeln!(
                    out,
                    "{n}_count{} {}",
                    labels(p.attributes(), None),
                    p.count()
                );
            }
        }
        // Not used by rooftop.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    if !help.is_empty() {
        let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
    }
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text (format 0.0.4) of one collection.
pub fn encode(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    let res: Vec<KeyValue> = rm
        .resource()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    header(&mut out, "target_info", "Target metadata", "gauge");
    let _ = writeln!(out, "target_info{} 1", labels(res.iter(), None));
    for scope in rm.scope_metrics() {
        for m in scope.metrics() {
            match m.data() {
                AggregatedMetrics::F64(d) => {
                    write_data(&mut out, m.name(), m.unit(), m.description(), d)
                }
                AggregatedMetrics::U64(d) => {
                    write_data(&mut out, m.name(), m.unit(), m.description(), d)
                }
                AggregatedMetrics::I64(d) => {
                    write_data(&mut out, m.name(), m.unit(), m.description(), d)
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_collectors_prometheus_exporter() {
        assert_eq!(
            metric_name("rooftop.probe.runs", "{run}", true, false),
            "rooftop_probe_runs_total"
        );
        assert_eq!(
            metric_name("rooftop.sync.latency", "s", false, false),
            "rooftop_sync_latency_seconds"
        );
        assert_eq!(
            metric_name("rooftop.store.size", "By", false, true),
            "rooftop_store_size_bytes"
        );
        assert_eq!(
            metric_name("rooftop.probe.success_ratio", "1", false, true),
            "rooftop_probe_success_ratio"
        );
        assert_eq!(
            metric_name("rooftop.probe.failing", "{probe}", false, true),
            "rooftop_probe_failing"
        );
        assert_eq!(
            sanitize("http.response.status_code"),
            "http_response_status_code"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
