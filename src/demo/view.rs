//! What the demo prints: a live table (terminal) or one line per run (pipe).

use std::time::Duration;

use super::Stats;
use crate::model::fmt_ms;

/// The live table.
pub fn table(stats: &Stats, faults: &[serde_json::Value], elapsed: Duration) -> String {
    let mut out = format!(
        "rooftop demo — {} elapsed   (Ctrl-C stops and cleans up)\n",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
    );
    if faults.is_empty() {
        out.push_str("sandbox faults: none\n\n");
    } else {
        let f: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
        out.push_str(&format!("sandbox faults: {}\n\n", f.join(" ")));
    }
    out.push_str(&format!(
        "{:<28} {:>5} {:>7}  {:<13} {:<42}\n",
        "PROBE", "RUNS", "OK %", "LAST", "SYNC LATENCY p50 / p95 (estimates)"
    ));
    let Ok(stats) = stats.lock() else { return out };
    for (name, s) in stats.iter() {
        let ratio = if s.runs == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", 100.0 * s.successes as f64 / s.runs as f64)
        };
        let last = s
            .last
            .as_ref()
            .map(|r| r.outcome.as_str())
            .unwrap_or("running…");
        let mut sync_lines = s.sync_ms.iter().map(|(step, h)| {
            format!(
                "{step}: {} / {}",
                fmt_ms(h.value_at_quantile(0.5) as f64),
                fmt_ms(h.value_at_quantile(0.95) as f64)
            )
        });
        out.push_str(&format!(
            "{:<28} {:>5} {:>7}  {:<13} {}\n",
            name,
            s.runs,
            ratio,
            last,
            sync_lines.next().unwrap_or_default()
        ));
        for l in sync_lines {
            out.push_str(&format!("{:<58}{l}\n", ""));
        }
        if let Some(f) = &s.last_failure {
            out.push_str(&format!(
                "{:<6}last failure {} {} at {} [{}]: {}\n{:<6}runbook: {}\n",
                "",
                f.finished_at.format("%H:%M:%S"),
                f.outcome,
                f.failed_step.as_deref().unwrap_or("-"),
                f.error_class.map(|c| c.as_str()).unwrap_or("-"),
                f.message
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(100)
                    .collect::<String>(),
                "",
                f.runbook.as_deref().unwrap_or("(none)")
            ));
        }
        if s.cleanup_failures > 0 {
            out.push_str(&format!(
                "{:<6}cleanup failed {} time(s); the ledger retries\n",
                "", s.cleanup_failures
            ));
        }
    }
    out
}
