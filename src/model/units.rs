//! Shared formatting of measured quantities for tables, log lines and pages.

/// `1.234s`, `56ms`, `2m05s`: compact durations for tables and log lines.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 60_000.0 {
        format!(
            "{}m{:02.0}s",
            (ms / 60_000.0).floor(),
            (ms % 60_000.0) / 1000.0
        )
    } else if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.0}ms")
    }
}
