//! Fault scenarios built into `rooftop demo --scenario NAME` (a file path works too).
//! Each shows a different failure class, its error class and its runbook.

use crate::sandbox::{Scenario, parse_scenario};

/// (name, description, YAML).
pub const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "dms-stall",
        "the appointment→RO job stalls for 40 s every 80 s (sync_timeout, runbooks/ro-not-created.md)",
        r#"
repeat: true
steps:
  - {at: 0s, faults: []}
  - {at: 20s, faults: [{kind: job_stalled, job: appointment_to_ro}]}
  - {at: 60s, faults: []}
  - {at: 80s, faults: []}
"#,
    ),
    (
        "crm-outage",
        "the CRM refuses connections for 30 s every 60 s (connect errors, runbooks/connector-down.md)",
        r#"
repeat: true
steps:
  - {at: 0s, faults: []}
  - {at: 15s, faults: [{kind: connector_down, system: crm, mode: refuse}]}
  - {at: 45s, faults: []}
  - {at: 60s, faults: []}
"#,
    ),
    (
        "bad-day",
        "a tour of failures: DMS 5xx burst, rejected survey token, duplicate customers, stalled BDC job",
        r#"
repeat: true
steps:
  - {at: 0s, faults: []}
  - {at: 15s, faults: [{kind: error_burst, system: dms, rate: 0.5, status: 502}]}
  - {at: 35s, faults: [{kind: auth_rejected, system: survey}]}
  - {at: 55s, faults: [{kind: duplicate_customer}]}
  - {at: 75s, faults: [{kind: job_stalled, job: lead_to_bdc}]}
  - {at: 100s, faults: []}
  - {at: 115s, faults: []}
"#,
    ),
];

/// A built-in scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    let (_, _, text) = BUILTIN.iter().find(|(n, _, _)| *n == name)?;
    let doc = crate::config::yaml::parse(text).ok()?;
    parse_scenario(doc.value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_scenario_parses() {
        for (name, _, _) in BUILTIN {
            assert!(builtin(name).is_some(), "{name}");
        }
        assert!(builtin("nope").is_none());
    }
}
