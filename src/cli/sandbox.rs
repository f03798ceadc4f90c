//! `rooftop sandbox`: serve the simulated dealership on loopback, optionally playing a
//! fault scenario, until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_CANNOT_RUN, EXIT_CONFIG};
use crate::sandbox::{self, SandboxConfig, Scenario};

/// Reads and types a YAML file, printing every error with its line and column.
fn read_typed<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    crate::config::load_typed(path, &text).map_err(|e| {
        eprint!("{}", e.render());
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn load_scenario(path: &Path) -> Result<Scenario, ExitCode> {
    // Typed first for positioned errors, then the sandbox's own checks.
    let value: serde_json::Value = read_typed::<Scenario>(path).and_then(|s| {
        serde_json::to_value(&s).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        })
    })?;
    sandbox::parse_scenario(value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn load_sandbox_config(path: Option<&PathBuf>) -> Result<SandboxConfig, ExitCode> {
    match path {
        None => Ok(SandboxConfig::default()),
        Some(p) => read_typed(p),
    }
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
