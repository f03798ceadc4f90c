//! `rooftop run`: the service. Load and validate, build the agent, spawn it, wait for a
//! signal, drain within the one stop deadline, exit with a code that says what happened.
//! Whatever a cut-off run created stays in the cleanup ledger for the next start; pages
//! not yet delivered stay in the outbox.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, EXIT_STOPPED_SHORT, load_config};
use crate::agent::{self, Agent, AgentError, Parts};
use crate::clock::SystemClock;

/// Command-line overrides of `rooftop.yaml`'s scheduler, history and listener settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub max_concurrent: Option<usize>,
    pub keep_history: Option<Duration>,
    /// `Some(None)`: no listener.
    pub listen: Option<Option<std::net::SocketAddr>>,
    pub stop_deadline: Option<Duration>,
}

/// Hands the heap pages freed after loading the configuration back to the kernel.
/// Parsing thousands of probe files leaves glibc's heap fragmented with free pages it
/// would otherwise keep for the process's lifetime.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Prints why the agent cannot start; returns the exit code for it.
pub fn cannot_start(e: &AgentError) -> ExitCode {
    eprintln!("error: {e}");
    if let Some(help) = e.help() {
        eprintln!("  = help: {help}");
    }
    ExitCode::from(if e.is_config() {
        EXIT_CONFIG
    } else {
        EXIT_CANNOT_RUN
    })
}

pub async fn run(cfg: &ConfigArgs, overrides: Overrides) -> ExitCode {
    // Handlers first: a signal during start-up stops the agent instead of killing it.
    let signal = tokio::spawn(agent::signals::shutdown());
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    release_freed_memory();
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    let parts = Parts {
        max_concurrent: overrides.max_concurrent,
        keep_history: overrides.keep_history,
        stop_deadline: overrides.stop_deadline,
        listen: overrides.listen,
        ..Parts::service(state_dir, Arc::new(SystemClock))
    };
    let mut running = match Agent::build(config, parts).await {
        Ok(agent) => match agent.spawn().await {
            Ok(r) => r,
            Err(e) => return cannot_start(&e),
        },
        Err(e) => return cannot_start(&e),
    };
    if let Some(addr) = running.listen_addr() {
        eprintln!("metrics: http://{addr}/metrics");
    }
    let why = tokio::select! {
        s = signal => s.map(|s| s.name()).unwrap_or("a signal"),
        _ = running.finished() => "no probe has a future fire time",
    };
    let deadline = running.stop_deadline();
    eprintln!(
        "stopping ({why}): interrupting in-flight runs, cleaning up, flushing the outbox and telemetry, within {}",
        humantime::format_duration(deadline)
    );
    let drained = running.drain().await;
    report_drain(&drained, deadline)
}

/// The last line of a stop: done, or what the deadline cut off.
pub fn report_drain(drained: &agent::Drained, deadline: Duration) -> ExitCode {
    if drained.unfinished.is_empty() {
        eprintln!(
            "stopped in {:.1}s: every run cleaned up, outbox flushed",
            drained.took.as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "stopped at the {} deadline; not finished: {}",
            humantime::format_duration(deadline),
            drained.unfinished.join("; ")
        );
        ExitCode::from(EXIT_STOPPED_SHORT)
    }
}
