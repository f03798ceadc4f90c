//! `rooftop sandbox`: serve the simulated dealership on loopback, optionally playing a
//! fault scenario, until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CANNOT_RUN, EXIT_CONFIG};
use crate::sandbox::{self, SandboxConfig, Scenario};

/// Reads a YAML file into a JSON value, printing a positioned error.
pub fn read_yaml(path: &Path) -> Result<serde_json::Value, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    crate::config::yaml::parse(&text)
        .map(|d| d.value)
        .map_err(|e| {
            eprintln!(
                "error: {}:{}:{}: YAML syntax: {}",
                path.display(),
                e.loc.line,
                e.loc.col,
                e.message
            );
            ExitCode::from(EXIT_CONFIG)
        })
}

pub fn load_scenario(path: &Path) -> Result<Scenario, ExitCode> {
    let value = read_yaml(path)?;
    sandbox::parse_scenario(value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn load_sandbox_config(path: Option<&PathBuf>) -> Result<SandboxConfig, ExitCode> {
    let Some(path) = path else {
        return Ok(SandboxConfig::default());
    };
    let value = read_yaml(path)?;
    serde_json::from_value(value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

pub async fn run(
    listen: SocketAddr,
    config: Option<&PathBuf>,
    scenario: Option<&PathBuf>,
) -> ExitCode {
    let config = match load_sandbox_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let scenario = match scenario.map(|p| load_scenario(p)).transpose() {
        Ok(s) => s,
        Err(code) => return code,
    };
    match sandbox::run_cli(listen, config, scenario, super::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}
