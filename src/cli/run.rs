//! `rooftop run`: the service. Load and validate, build the agent, spawn it, tell systemd
//! it is ready, reload on SIGHUP, drain within the one stop deadline on SIGTERM/SIGINT,
//! exit with a code that says what happened.
//! Whatever a cut-off run created stays in the cleanup ledger for the next start; pages
//! not yet delivered stay in the outbox.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::logging;
use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, EXIT_STOPPED_SHORT, load_config};
use crate::agent::systemd::Notifier;
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
    // Handlers first, synchronously: a signal during start-up (a reload's SIGHUP among
    // them) is then an event, never the default action that kills the process.
    let mut signals = match agent::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let notifier = Arc::new(Notifier::from_env());
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
        notifier: notifier.clone(),
        stall_scheduler_after: stall_hook(),
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
        tracing::info!(target: crate::model::NOTE, "metrics: http://{addr}/metrics  (readiness: http://{addr}/readyz)");
    }
    // Config, store, listener and signal handlers are all in place.
    notifier.ready(&running.status_line());
    let why = loop {
        tokio::select! {
            s = signals.next() => {
                if s.is_stop() {
                    break s.name();
                }
                reload(&cfg.config, &mut running, &notifier).await;
            }
            _ = running.finished() => break "the scheduler ended unexpectedly",
        }
    };
    let deadline = running.stop_deadline();
    let line = format!(
        "stopping ({why}): interrupting in-flight runs, cleaning up, flushing the outbox and telemetry, within {}",
        humantime::format_duration(deadline)
    );
    notifier.stopping(&line);
    tracing::info!(target: crate::model::NOTE, "{line}");
    let drained = running.drain().await;
    report_drain(&drained, deadline)
}

/// SIGHUP: re-reads and validates the configuration directory. Invalid: every error is
/// printed (file:line:col) and the agent goes on with what it runs. Valid: the running
/// agent moves to it (`Running::reload`).
async fn reload(dir: &std::path::Path, running: &mut agent::Running, notifier: &Notifier) {
    notifier.reloading();
    tracing::info!(target: crate::model::NOTE, "reload (SIGHUP): reading {}", dir.display());
    let note = match crate::config::load(dir) {
        Err(errors) => {
            logging::config_errors(&errors);
            tracing::info!(target: crate::model::NOTE,
                "reload rejected: the configuration above has {} problem(s); still running the previous one",
                errors.diagnostics.len()
            );
            Some(format!(
                "last reload rejected ({} problems, see the log)",
                errors.diagnostics.len()
            ))
        }
        Ok(config) => match running.reload(config).await {
            Ok(r) => {
                tracing::info!(target: crate::model::NOTE, "reloaded: {}", r.summary());
                for note in &r.notes {
                    tracing::info!(target: crate::model::NOTE, "  note: {note}");
                }
                None
            }
            Err(e) => {
                tracing::info!(target: crate::model::NOTE, "reload not applied: {e}; still running the previous configuration");
                Some(format!("last reload failed: {e}"))
            }
        },
    };
    // Kept on the status line until the next reload that works.
    running.set_status_note(note);
    release_freed_memory();
    notifier.ready(&running.status_line());
}

/// `ROOFTOP_TEST_STALL_SCHEDULER=DURATION`: in debug builds only, wedges the scheduler
/// loop that long after start (the watchdog test). Release builds ignore it.
fn stall_hook() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("ROOFTOP_TEST_STALL_SCHEDULER")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
}

/// The last line of a stop: done, or what the deadline cut off.
pub fn report_drain(drained: &agent::Drained, deadline: Duration) -> ExitCode {
    if drained.unfinished.is_empty() {
        tracing::info!(target: crate::model::NOTE,
            "stopped in {:.1}s: every run cleaned up, outbox flushed",
            drained.took.as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        tracing::info!(target: crate::model::NOTE,
            "stopped at the {} deadline; not finished: {}",
            humantime::format_duration(deadline),
            drained.unfinished.join("; ")
        );
        ExitCode::from(EXIT_STOPPED_SHORT)
    }
}
