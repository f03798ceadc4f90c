//! `rooftop schema`: JSON Schema of probe files, heartbeat-check files and `rooftop.yaml`,
//! generated from the raw config types and their doc comments.

use std::process::ExitCode;

use crate::config::raw::{AgentConfig, HeartbeatCheckConfig, ProbeConfig};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// A file under probes/.
    Probe,
    /// A file under heartbeats/.
    Heartbeat,
    /// rooftop.yaml.
    Agent,
}

pub fn run(kind: SchemaKind) -> ExitCode {
    let schema = match kind {
        SchemaKind::Probe => schemars::schema_for!(ProbeConfig),
        SchemaKind::Heartbeat => schemars::schema_for!(HeartbeatCheckConfig),
        SchemaKind::Agent => schemars::schema_for!(AgentConfig),
    };
    match serde_json::to_string_pretty(&schema) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(super::EXIT_CANNOT_RUN)
        }
    }
}
