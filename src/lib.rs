//! rooftop: synthetic monitoring of dealership integrations.
//!
//! Data flows one way: config → runner → `ProbeRun` → (store, telemetry, alerting).

pub mod config;
pub mod probe;
pub mod secrets;
pub mod synthetic;
pub mod template;
pub mod clock;
pub mod runner;
pub mod store;
pub mod cli;
