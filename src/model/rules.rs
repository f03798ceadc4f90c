//! Alert-rule data: the rules a probe is judged by, the facts a run contributes and the
//! breaches that open an incident. The evaluation lives in `alerting::rules`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::run::{CleanupOutcome, Outcome, ProbeRun};

/// When failures open an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireRule {
    /// N failed runs in a row.
    Consecutive(u32),
    /// K failed runs among the last M.
    KOfM { k: u32, m: u32 },
}

/// Success ratio under `below` over `window`, once the window holds `min_runs` runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioRule {
    pub below: f64,
    pub window: Duration,
    pub min_runs: u32,
}

/// Sync-latency SLO: p95 over `window` above `p95_over` (with `min_measurements`), or
/// any single measurement above `hard_limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRule {
    pub p95_over: Option<Duration>,
    pub window: Duration,
    pub min_measurements: u32,
    pub hard_limit: Option<Duration>,
}

/// A probe's alert rules (defaults from `rooftop.yaml`, overridable per probe).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub fire: FireRule,
    /// Consecutive successes that resolve an open incident.
    pub resolve_after: u32,
    pub ratio: Option<RatioRule>,
    pub sync: Option<SyncRule>,
    /// A run whose cleanup left synthetic records behind opens an incident.
    pub cleanup_failing: bool,
    /// This many success/failure flips within `flap_window` make an open incident
    /// "flapping": held open, not re-paged, resolved only once the flips stop.
    pub flap_changes: u32,
    pub flap_window: Duration,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            fire: FireRule::Consecutive(2),
            resolve_after: 2,
            ratio: None,
            sync: None,
            cleanup_failing: true,
            flap_changes: 4,
            flap_window: Duration::from_secs(3600),
        }
    }
}

impl AlertRules {
    /// How far back the rules look: facts older than this can be forgotten.
    pub fn horizon(&self) -> Duration {
        [
            Some(self.flap_window),
            self.ratio.map(|r| r.window),
            self.sync.map(|s| s.window),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(self.flap_window)
    }

    /// How many facts the rules need at least, whatever their age.
    pub fn depth(&self) -> usize {
        let fire = match self.fire {
            FireRule::Consecutive(n) => n,
            FireRule::KOfM { m, .. } => m,
        };
        fire.max(self.resolve_after) as usize
    }
}

/// What the alerting needs to know of one finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub at: DateTime<Utc>,
    pub run_id: String,
    pub success: bool,
    pub error_class: Option<String>,
    pub failed_step: Option<String>,
    pub message: Option<String>,
    /// (sync step, estimate in ms).
    pub syncs: Vec<(String, f64)>,
    pub cleanup_failed: bool,
}

impl Fact {
    /// The fact as a rule window keeps it: what only the newest run's page needs (error
    /// class, failed step, message) dropped.
    pub fn for_window(mut self) -> Fact {
        self.error_class = None;
        self.failed_step = None;
        self.message = None;
        self
    }

    pub fn from_run(run: &ProbeRun) -> Fact {
        Fact {
            at: run.finished_at,
            run_id: run.run_id.clone(),
            success: run.outcome == Outcome::Success,
            error_class: run.error_class.map(|c| c.as_str().to_string()),
            failed_step: run.failed_step.clone(),
            message: run.message.clone(),
            syncs: run
                .steps
                .iter()
                .filter_map(|s| s.sync.as_ref().map(|m| (s.name.clone(), m.estimate_ms)))
                .collect(),
            cleanup_failed: run.cleanup.outcome == CleanupOutcome::Failed,
        }
    }
}

/// Why a rule holds, in words for a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Breach {
    Failures {
        failed: u32,
        of: u32,
    },
    SuccessRatio {
        ratio: f64,
        runs: u32,
        window_s: u64,
    },
    SyncP95 {
        step: String,
        p95_ms: f64,
        slo_ms: f64,
    },
    SyncHardLimit {
        step: String,
        ms: f64,
        limit_ms: f64,
    },
    CleanupFailing,
}

impl Breach {
    pub fn describe(&self) -> String {
        let ms = super::units::fmt_ms;
        match self {
            Breach::Failures { failed, of } if failed == of => {
                format!("{failed} failed runs in a row")
            }
            Breach::Failures { failed, of } => format!("{failed} of the last {of} runs failed"),
            Breach::SuccessRatio {
                ratio,
                runs,
                window_s,
            } => format!(
                "success ratio {:.0}% over {} ({runs} runs)",
                ratio * 100.0,
                humantime::format_duration(Duration::from_secs(*window_s))
            ),
            Breach::SyncP95 {
                step,
                p95_ms,
                slo_ms,
            } => {
                format!(
                    "{step}: sync p95 {} over the {} SLO",
                    ms(*p95_ms),
                    ms(*slo_ms)
                )
            }
            Breach::SyncHardLimit {
                step,
                ms: v,
                limit_ms,
            } => {
                format!("{step}: a sync took {} (limit {})", ms(*v), ms(*limit_ms))
            }
            Breach::CleanupFailing => "cleanup left synthetic records behind".into(),
        }
    }
}
