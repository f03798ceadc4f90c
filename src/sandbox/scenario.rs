//! Scenarios: fault sets scheduled over time (`{steps: [{at, faults}], repeat?}`),
//! parsed from JSON (YAML is turned into JSON elsewhere) and played against a
//! running sandbox's fault board.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::duration;
use super::error::SandboxError;
use super::faults::{Fault, FaultBoard};

/// One step: at `at` after the scenario starts, the active fault set becomes `faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    #[serde(with = "duration::required")]
    pub at: Duration,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Fault sets over time. With `repeat`, the cycle restarts when the last step's
/// `at` is reached (the last and first steps then apply back to back). Without it,
/// the last step's faults stay active after the scenario ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub steps: Vec<ScenarioStep>,
    #[serde(default)]
    pub repeat: bool,
}

impl Scenario {
    /// Length of one cycle (the last step's offset).
    pub fn cycle(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }
}

/// Parses and validates a scenario: at least one step, offsets in non-decreasing
/// order, and a non-zero cycle when it repeats.
pub fn parse_scenario(value: Value) -> Result<Scenario, SandboxError> {
    let scenario: Scenario =
        serde_json::from_value(value).map_err(|e| SandboxError::Scenario(e.to_string()))?;
    if scenario.steps.is_empty() {
        return Err(SandboxError::Scenario(
            "steps must not be empty".to_string(),
        ));
    }
    if let Some(pair) = scenario.steps.windows(2).find(|w| w[1].at < w[0].at) {
        return Err(SandboxError::Scenario(format!(
            "steps must be in time order: {} comes after {}",
            duration::format(pair[1].at),
            duration::format(pair[0].at)
        )));
    }
    if scenario.repeat && scenario.cycle().is_zero() {
        return Err(SandboxError::Scenario(
            "a repeating scenario needs its last step after 0s".to_string(),
        ));
    }
    Ok(scenario)
}

/// Applies each step's faults at its offset; loops forever when `repeat` is set.
pub async fn play(board: &FaultBoard, scenario: &Scenario) {
    let mut start = tokio::time::Instant::now();
    loop {
        for step in &scenario.steps {
            tokio::time::sleep_until(start + step.at).await;
            board.replace(step.faults.clone());
        }
        if !scenario.repeat {
            return;
        }
        start += scenario.cycle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::faults::FaultKind;
    use crate::sandbox::jobs::JobName;
    use serde_json::json;

    fn example() -> Value {
        json!({"steps": [
            {"at": "0s", "faults": []},
            {"at": "10m", "faults": [{"kind": "job_stalled", "job": "appointment_to_ro"}]},
            {"at": "15m", "faults": []}
        ]})
    }

    #[test]
    fn parses_the_documented_example() {
        let s = parse_scenario(example()).unwrap();
        assert_eq!(s.steps.len(), 3);
        assert!(!s.repeat);
        assert_eq!(s.steps[1].at, Duration::from_secs(600));
        assert_eq!(
            s.steps[1].faults,
            vec![Fault::new(FaultKind::JobStalled {
                job: JobName::AppointmentToRo
            })]
        );
        assert_eq!(s.cycle(), Duration::from_secs(900));
    }

    #[test]
    fn rejects_bad_scenarios() {
        for bad in [
            json!({"steps": []}),
            json!({"steps": [{"at": "5m"}, {"at": "1m"}]}),
            json!({"steps": [{"at": "0s"}], "repeat": true}),
            json!({"steps": [{"at": "0s", "faults": [{"kind": "nope"}]}]}),
            json!({"steps": [{"at": "0s"}], "loop": true}),
            json!({"steps": [{"at": "never"}]}),
        ] {
            assert!(parse_scenario(bad.clone()).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn plays_steps_in_time_and_repeats() {
        let mut value = example();
        value["repeat"] = json!(true);
        let scenario = parse_scenario(value).unwrap();
        let board = FaultBoard::new(1);
        let task = async { play(&board, &scenario).await };
        let check = async {
            let stalled = || board.job_stalled(JobName::AppointmentToRo);
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(!stalled());
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(stalled());
            tokio::time::sleep(Duration::from_secs(300)).await;
            assert!(!stalled());
            // Second cycle: stalled again from 15m + 10m.
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(stalled());
        };
        tokio::select! {
            () = task => panic!("a repeating scenario never ends"),
            () = check => {}
        }
    }
}
