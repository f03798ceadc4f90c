//! Benchmarks that print figures (`rooftop bench ...`), run against the sandbox on
//! loopback. Figures, not pass/fail: the machine is shared and noisy.

pub mod accuracy;
pub mod page;
pub mod scheduler;
pub mod telemetry;
