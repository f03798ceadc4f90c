//! rooftop: synthetic monitoring of dealership integrations.
//!
//! Data flows one way: config → scheduler → runner → `ProbeRun` → (store, telemetry,
//! alerting → notify). Each module uses only the layers below it (`tests/layers.rs`
//! fails on an import that points sideways or up):
//!
//! ```text
//! cli        argument parsing, one function per command
//! demo       sandbox + bundled probes + the same agent `rooftop run` starts
//! agent      build(config) → spawn → drain; the listener; signals; the stop deadline
//! notify     notices, outbox delivery, one file per channel        telemetry  OTLP, instruments, /metrics
//! alerting   rules, incident and grouping state machines, the tracker
//! runner     steps, requests, polls, sync, assertions, cleanup
//! store      SQLite: ledger, runs, incidents, outbox               scheduler  fire times, the loop
//! config     raw serde types, YAML spans, diagnostics, validation
//! template   minijinja rendering                                   oncall     who is on call, time windows (pure)
//! clock      synthetic  secrets
//! model      validated settings, ProbeRun, rule and incident data, channels, units
//! ```
//!
//! `sandbox` is the simulated dealership the demo, tests and benchmarks probe; it uses
//! nothing of the rest. The benchmarks are not part of the agent: they are Cargo bench
//! targets under `benches/` (`cargo bench --bench scheduler`) that use this library.

pub mod model;

pub mod clock;
pub mod sandbox;
pub mod secrets;
pub mod synthetic;

pub mod oncall;
pub mod template;

pub mod config;

pub mod scheduler;
pub mod store;

pub mod runner;

pub mod alerting;

pub mod notify;
pub mod telemetry;

pub mod agent;

pub mod demo;

pub mod cli;
