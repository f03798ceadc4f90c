//! Sandbox configuration: bearer tokens per system, optional fixed ports, per-job
//! latency and schedule, and the RNG seed. Deserialised with unknown fields denied.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::SandboxError;
use super::jobs::JobName;
use super::latency::{Latency, Schedule};

/// Everything the sandbox can be told at start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Bearer tokens accepted by each system.
    pub tokens: Tokens,
    /// Ports for the system listeners; see [`Ports`].
    pub ports: Ports,
    /// Timing of each sync job.
    pub jobs: JobsConfig,
    /// Seed for every random draw (latencies, error bursts); random when absent.
    pub seed: Option<u64>,
}

impl SandboxConfig {
    /// Every job gets a fixed latency and a continuous schedule (handy in tests).
    pub fn with_fixed_latency(mut self, latency: Duration) -> Self {
        let job = JobConfig {
            latency: Latency::Fixed { ms: latency },
            schedule: Schedule::Continuous,
        };
        for name in JobName::ALL {
            *self.jobs.get_mut(name) = job.clone();
        }
        self
    }

    /// Checks tokens are non-empty and every job's timing is well formed.
    pub fn validate(&self) -> Result<(), SandboxError> {
        for (system, token) in [
            ("crm", &self.tokens.crm),
            ("dms", &self.tokens.dms),
            ("survey", &self.tokens.survey),
        ] {
            if token.trim().is_empty() {
                return Err(SandboxError::Config(format!("tokens.{system} is empty")));
            }
        }
        for name in JobName::ALL {
            let job = self.jobs.get(name);
            job.latency
                .validate()
                .and_then(|()| job.schedule.validate())
                .map_err(|e| SandboxError::Config(format!("jobs.{}: {e}", name.as_str())))?;
        }
        Ok(())
    }
}

/// Bearer tokens; defaults are `crm-sandbox-token`, `dms-sandbox-token`,
/// `survey-sandbox-token`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tokens {
    pub crm: String,
    pub dms: String,
    pub survey: String,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            crm: "crm-sandbox-token".to_string(),
            dms: "dms-sandbox-token".to_string(),
            survey: "survey-sandbox-token".to_string(),
        }
    }
}

/// Ports of the per-system listeners. When a port is absent it is ephemeral if the
/// control address uses port 0, and control port + 1 / + 2 / + 3 (crm / dms / survey)
/// otherwise, so a demo on a fixed port gets stable URLs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ports {
    pub crm: Option<u16>,
    pub dms: Option<u16>,
    pub survey: Option<u16>,
}

/// Timing of one sync job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    pub latency: Latency,
    pub schedule: Schedule,
}

/// Timing of every sync job; each defaults to lognormal (median 1.5 s, p99 6 s),
/// continuous.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    pub appointment_to_ro: JobConfig,
    pub ro_to_survey: JobConfig,
    pub lead_to_bdc: JobConfig,
    pub price_file_to_menu: JobConfig,
    pub note_to_ro: JobConfig,
}

impl JobsConfig {
    /// The timing of one job.
    pub fn get(&self, name: JobName) -> &JobConfig {
        match name {
            JobName::AppointmentToRo => &self.appointment_to_ro,
            JobName::RoToSurvey => &self.ro_to_survey,
            JobName::LeadToBdc => &self.lead_to_bdc,
            JobName::PriceFileToMenu => &self.price_file_to_menu,
            JobName::NoteToRo => &self.note_to_ro,
        }
    }

    /// The timing of one job, mutably.
    pub fn get_mut(&mut self, name: JobName) -> &mut JobConfig {
        match name {
            JobName::AppointmentToRo => &mut self.appointment_to_ro,
            JobName::RoToSurvey => &mut self.ro_to_survey,
            JobName::LeadToBdc => &mut self.lead_to_bdc,
            JobName::PriceFileToMenu => &mut self.price_file_to_menu,
            JobName::NoteToRo => &mut self.note_to_ro,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_partial_config_and_denies_unknown_fields() {
        let config: SandboxConfig = serde_json::from_value(json!({
            "seed": 9,
            "tokens": {"crm": "abc"},
            "jobs": {"ro_to_survey": {"latency": {"kind": "fixed", "ms": "20ms"},
                                       "schedule": {"kind": "batch", "every": "1m"}}}
        }))
        .unwrap();
        assert_eq!(config.seed, Some(9));
        assert_eq!(config.tokens.crm, "abc");
        assert_eq!(config.tokens.dms, "dms-sandbox-token");
        assert_eq!(config.jobs.appointment_to_ro, JobConfig::default());
        assert_eq!(
            config.jobs.ro_to_survey.schedule,
            Schedule::Batch {
                every: Duration::from_secs(60)
            }
        );
        assert!(config.validate().is_ok());
        assert!(serde_json::from_value::<SandboxConfig>(json!({"sed": 1})).is_err());
        assert!(serde_json::from_value::<SandboxConfig>(json!({"jobs": {"nope": {}}})).is_err());
    }

    #[test]
    fn validation_catches_empty_tokens_and_bad_latency() {
        let mut config = SandboxConfig::default();
        config.tokens.dms = String::new();
        assert!(config.validate().is_err());
        let mut config = SandboxConfig::default();
        config.jobs.note_to_ro.latency = Latency::Uniform {
            min: Duration::from_secs(2),
            max: Duration::from_secs(1),
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("note_to_ro")
        );
    }
}
