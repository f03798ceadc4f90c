//! Where telemetry goes: `rooftop.yaml`'s `telemetry` section merged with the standard
//! OpenTelemetry environment variables. Where both set something, the environment wins
//! (as the OpenTelemetry specification asks), and the agent says so at start.
//!
//! Pure: the environment comes in as a map, so every precedence rule is unit-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{OtlpProtocol, TelemetrySettings};

/// Default OTLP export timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One signal's exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Full URL: for HTTP including `/v1/<signal>`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The telemetry the agent will set up.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub metrics: Option<Export>,
    pub traces: Option<Export>,
    pub logs: Option<Export>,
    pub interval: Duration,
    /// Resource attributes from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, applied
    /// over rooftop's own.
    pub resource_overrides: Vec<(String, String)>,
    /// What the environment changed, for the start-up message.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("{var}=`{value}`: {problem}")]
    BadEnv {
        var: String,
        value: String,
        problem: String,
    },
}

const SIGNALS: [&str; 3] = ["metrics", "traces", "logs"];

/// Merges `settings` (with header templates already rendered into `headers`) and `env`.
pub fn resolve(
    settings: &TelemetrySettings,
    headers: &[(String, String)],
    env: &BTreeMap<String, String>,
) -> Result<Resolved, SettingsError> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut notes = Vec::new();
    let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        notes.push("OTEL_SDK_DISABLED=true: no OTLP export".to_string());
    }
    let mut exports: Vec<Option<Export>> = Vec::new();
    for signal in SIGNALS {
        let upper = signal.to_ascii_uppercase();
        let wanted = match signal {
            "metrics" => settings.metrics,
            "traces" => settings.traces,
            _ => settings.logs,
        };
        let exporter_var = format!("OTEL_{upper}_EXPORTER");
        let env_off = get(&exporter_var).is_some_and(|v| v == "none");
        if env_off && wanted {
            notes.push(format!("{exporter_var}=none: no {signal} export"));
        }
        if disabled || !wanted || env_off {
            exports.push(None);
            continue;
        }
        let protocol_var = format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL");
        let protocol = match [protocol_var.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"]
            .into_iter()
            .find_map(|k| get(k).map(|v| (k, v)))
        {
            Some((k, v)) => OtlpProtocol::parse(v).ok_or_else(|| SettingsError::BadEnv {
                var: k.to_string(),
                value: v.to_string(),
                problem: "rooftop speaks `grpc` and `http/protobuf`".into(),
            })?,
            None => settings.otlp_protocol.unwrap_or(OtlpProtocol::HttpProtobuf),
        };
        let signal_endpoint_var = format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT");
        let endpoint = if let Some(e) = get(&signal_endpoint_var) {
            // A signal's own endpoint is used as given.
            check_url(&signal_endpoint_var, e)?;
            Some(e.to_string())
        } else {
            let base = match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(e) => {
                    check_url("OTEL_EXPORTER_OTLP_ENDPOINT", e)?;
                    Some(e.trim_end_matches('/').to_string())
                }
                None => settings.otlp_endpoint.clone(),
            };
            base.map(|b| match protocol {
                OtlpProtocol::HttpProtobuf => format!("{b}/v1/{signal}"),
                OtlpProtocol::Grpc => b,
            })
        };
        let Some(endpoint) = endpoint else {
            exports.push(None);
            continue;
        };
        let mut merged: Vec<(String, String)> = headers.to_vec();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS".to_string(),
            format!("OTEL_EXPORTER_OTLP_{upper}_HEADERS"),
        ] {
            if let Some(v) = get(&var) {
                for (k, val) in parse_pairs(&var, v)? {
                    merged.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
                    merged.push((k, val));
                }
            }
        }
        let timeout = match [
            format!("OTEL_EXPORTER_OTLP_{upper}_TIMEOUT"),
            "OTEL_EXPORTER_OTLP_TIMEOUT".to_string(),
        ]
        .into_iter()
        .find_map(|k| get(&k).map(|v| (k.clone(), v.to_string())))
        {
            Some((k, v)) => millis(&k, &v)?,
            None => settings.otlp_timeout.unwrap_or(DEFAULT_TIMEOUT),
        };
        exports.push(Some(Export {
            endpoint,
            protocol,
            headers: merged,
            timeout,
        }));
    }
    if settings.otlp_endpoint.is_some()
        && (get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || SIGNALS.iter().any(|s| {
                get(&format!(
                    "OTEL_EXPORTER_OTLP_{}_ENDPOINT",
                    s.to_ascii_uppercase()
                ))
                .is_some()
            }))
    {
        notes.push(
            "OTEL_EXPORTER_OTLP_*ENDPOINT overrides rooftop.yaml's telemetry.otlp.endpoint".into(),
        );
    }
    let interval = match get("OTEL_METRIC_EXPORT_INTERVAL") {
        Some(v) => {
            let d = millis("OTEL_METRIC_EXPORT_INTERVAL", v)?;
            if d != settings.interval {
                notes.push(format!(
                    "OTEL_METRIC_EXPORT_INTERVAL={v} overrides telemetry.interval"
                ));
            }
            d
        }
        None => settings.interval,
    };
    let mut resource_overrides = match get("OTEL_RESOURCE_ATTRIBUTES") {
        Some(v) => parse_pairs("OTEL_RESOURCE_ATTRIBUTES", v)?,
        None => Vec::new(),
    };
    if let Some(name) = get("OTEL_SERVICE_NAME") {
        resource_overrides.retain(|(k, _)| k != "service.name");
        resource_overrides.push(("service.name".into(), name.to_string()));
    }
    let mut it = exports.into_iter();
    Ok(Resolved {
        metrics: it.next().flatten(),
        traces: it.next().flatten(),
        logs: it.next().flatten(),
        interval,
        resource_overrides,
        notes,
    })
}

fn check_url(var: &str, value: &str) -> Result<(), SettingsError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(())
    } else {
        Err(SettingsError::BadEnv {
            var: var.into(),
            value: value.into(),
            problem: "an OTLP endpoint starts with http:// or https://".into(),
        })
    }
}

fn millis(var: &str, value: &str) -> Result<Duration, SettingsError> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(SettingsError::BadEnv {
            var: var.into(),
            value: value.into(),
            problem: "expected a whole number of milliseconds above 0".into(),
        }),
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C baggage style, as the OTel spec uses
/// for headers and resource attributes).
fn parse_pairs(var: &str, value: &str) -> Result<Vec<(String, String)>, SettingsError> {
    value
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| SettingsError::BadEnv {
                var: var.into(),
                value: value.into(),
                problem: format!("`{}` is not key=value", pair.trim()),
            })?;
            Ok((k.trim().to_string(), percent_decode(v.trim())))
        })
        .collect()
}

/// `OTEL_EXPORTER_OTLP_HEADERS` values are percent-encoded (W3C Baggage rules); an
/// invalid escape is kept as written.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn yaml(endpoint: Option<&str>, protocol: Option<OtlpProtocol>) -> TelemetrySettings {
        TelemetrySettings {
            otlp_endpoint: endpoint.map(str::to_string),
            otlp_protocol: protocol,
            ..TelemetrySettings::default()
        }
    }

    #[test]
    fn nothing_configured_means_no_export() {
        let r = resolve(&yaml(None, None), &[], &env(&[])).unwrap();
        assert_eq!((r.metrics, r.traces, r.logs), (None, None, None));
        assert_eq!(r.interval, Duration::from_secs(30));
    }

    #[test]
    fn http_appends_signal_paths_and_grpc_uses_the_base() {
        let r = resolve(&yaml(Some("http://c:4318"), None), &[], &env(&[])).unwrap();
        assert_eq!(r.metrics.unwrap().endpoint, "http://c:4318/v1/metrics");
        assert_eq!(r.logs.unwrap().endpoint, "http://c:4318/v1/logs");
        let r = resolve(
            &yaml(Some("http://c:4317"), Some(OtlpProtocol::Grpc)),
            &[],
            &env(&[]),
        )
        .unwrap();
        assert_eq!(r.traces.unwrap().endpoint, "http://c:4317");
    }

    #[test]
    fn the_environment_wins_over_rooftop_yaml() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from%20env,other=1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_LOGS_EXPORTER", "none"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=x",
            ),
            ("OTEL_SERVICE_NAME", "rooftop-east"),
        ]);
        let headers = vec![("X-Api-Key".to_string(), "from-yaml".to_string())];
        let r = resolve(&yaml(Some("http://yaml:4318"), None), &headers, &e).unwrap();
        let m = r.metrics.unwrap();
        assert_eq!(m.endpoint, "http://env:4317");
        assert_eq!(m.protocol, OtlpProtocol::Grpc);
        assert_eq!(m.timeout, Duration::from_millis(2500));
        assert_eq!(
            m.headers,
            vec![
                ("x-api-key".to_string(), "from env".to_string()),
                ("other".to_string(), "1".to_string())
            ]
        );
        assert_eq!(r.traces.unwrap().endpoint, "http://traces:9999/custom");
        assert_eq!(r.logs, None);
        assert_eq!(r.interval, Duration::from_secs(1));
        assert_eq!(
            r.resource_overrides,
            vec![
                ("deployment.environment".to_string(), "prod".to_string()),
                ("service.name".to_string(), "rooftop-east".to_string())
            ]
        );
        assert!(
            r.notes.iter().any(|n| n.contains("overrides")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn bad_environment_values_are_clear_errors() {
        let err = resolve(
            &yaml(Some("http://c:4318"), None),
            &[],
            &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
        assert!(
            resolve(
                &yaml(None, None),
                &[],
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
            )
            .is_err()
        );
        let r = resolve(
            &yaml(Some("http://c:4318"), None),
            &[],
            &env(&[("OTEL_SDK_DISABLED", "true")]),
        )
        .unwrap();
        assert_eq!(r.metrics, None);
    }
}
