//! Alert rules: when a probe's recent runs amount to a problem worth a page. Pure: the
//! input is the probe's recent history (oldest first) and the instant of evaluation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runner::{CleanupOutcome, Outcome, ProbeRun};

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
        let ms = crate::runner::fmt_ms;
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

/// The rules that hold over `history` (oldest first) at `now`.
pub fn breaches(rules: &AlertRules, history: &[Fact], now: DateTime<Utc>) -> Vec<Breach> {
    let mut out = Vec::new();
    match rules.fire {
        FireRule::Consecutive(n) => {
            let streak = history.iter().rev().take_while(|f| !f.success).count() as u32;
            if n > 0 && streak >= n {
                out.push(Breach::Failures {
                    failed: streak,
                    of: streak,
                });
            }
        }
        FireRule::KOfM { k, m } => {
            let last: Vec<&Fact> = history.iter().rev().take(m as usize).collect();
            let failed = last.iter().filter(|f| !f.success).count() as u32;
            // Only while the latest run failed: a success ends the trouble's evidence.
            if k > 0 && failed >= k && last.first().is_some_and(|f| !f.success) {
                out.push(Breach::Failures { failed, of: m });
            }
        }
    }
    let within = |w: Duration| {
        let from = now - chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX);
        history.iter().filter(move |f| f.at >= from)
    };
    if let Some(r) = rules.ratio {
        let runs: Vec<&Fact> = within(r.window).collect();
        let ok = runs.iter().filter(|f| f.success).count();
        if runs.len() as u32 >= r.min_runs.max(1) {
            let ratio = ok as f64 / runs.len() as f64;
            if ratio < r.below && history.last().is_some_and(|f| !f.success) {
                out.push(Breach::SuccessRatio {
                    ratio,
                    runs: runs.len() as u32,
                    window_s: r.window.as_secs(),
                });
            }
        }
    }
    if let Some(s) = rules.sync {
        if let (Some(limit), Some(last)) = (s.hard_limit, history.last()) {
            let limit_ms = limit.as_secs_f64() * 1000.0;
            if let Some((step, ms)) = last.syncs.iter().find(|(_, ms)| *ms > limit_ms) {
                out.push(Breach::SyncHardLimit {
                    step: step.clone(),
                    ms: *ms,
                    limit_ms,
                });
            }
        }
        if let Some(slo) = s.p95_over {
            let slo_ms = slo.as_secs_f64() * 1000.0;
            let mut per_step: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
            for f in within(s.window) {
                for (step, ms) in &f.syncs {
                    per_step.entry(step).or_default().push(*ms);
                }
            }
            for (step, mut v) in per_step {
                if (v.len() as u32) < s.min_measurements.max(1) {
                    continue;
                }
                v.sort_by(f64::total_cmp);
                let i = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
                if v[i] > slo_ms {
                    out.push(Breach::SyncP95 {
                        step: step.to_string(),
                        p95_ms: v[i],
                        slo_ms,
                    });
                }
            }
        }
    }
    if rules.cleanup_failing && history.last().is_some_and(|f| f.cleanup_failed) {
        out.push(Breach::CleanupFailing);
    }
    out
}
