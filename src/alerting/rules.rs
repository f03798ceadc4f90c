//! Alert rules: when a probe's recent runs amount to a problem worth a page. Pure: the
//! input is the probe's recent history (oldest first) and the instant of evaluation.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::model::rules::{AlertRules, Breach, Fact, FireRule, RatioRule, SyncRule};

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
