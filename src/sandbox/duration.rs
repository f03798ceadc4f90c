//! Durations on the wire: humantime strings (`"1.5s"`, `"250ms"`, `"10m"`) or bare
//! numbers of milliseconds, used by sandbox config, faults and scenarios.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// Parses a humantime duration string such as `"1.5s"` or `"10m"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Formats a duration the way `parse` reads it back.
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Millis(f64),
    Text(String),
}

fn from_raw(raw: Raw) -> Result<Duration, String> {
    match raw {
        Raw::Text(text) => parse(&text),
        Raw::Millis(ms) => Duration::try_from_secs_f64(ms / 1000.0)
            .map_err(|e| format!("invalid duration {ms} ms: {e}")),
    }
}

/// Serde adapter for `Duration` fields.
pub mod required {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        from_raw(Raw::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// Deserialiser for optional durations (`null` or absent is `None`).
pub mod optional {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<Raw>::deserialize(deserializer)? {
            Some(raw) => from_raw(raw).map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(with = "required")]
        d: Duration,
    }

    #[test]
    fn parses_strings_and_millis() {
        let h: Holder = serde_json::from_value(serde_json::json!({"d": "1.5s"})).unwrap();
        assert_eq!(h.d, Duration::from_millis(1500));
        let h: Holder = serde_json::from_value(serde_json::json!({"d": 250})).unwrap();
        assert_eq!(h.d, Duration::from_millis(250));
        assert!(serde_json::from_value::<Holder>(serde_json::json!({"d": "soon"})).is_err());
        assert!(serde_json::from_value::<Holder>(serde_json::json!({"d": -5})).is_err());
        assert_eq!(
            parse(&format(Duration::from_millis(1500))).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
