//! rooftop: synthetic monitoring of dealership integrations.
//!
//! Data flows one way: config → runner → `ProbeRun` → (store, telemetry, alerting).
//! `sandbox` is the simulated dealership the demo, tests and benchmarks probe.

pub mod alerting;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod listener;
pub mod notify;
pub mod probe;
pub mod runner;
pub mod sandbox;
pub mod scheduler;
pub mod secrets;
pub mod store;
pub mod synthetic;
pub mod telemetry;
pub mod template;
