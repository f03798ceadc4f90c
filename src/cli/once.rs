//! `rooftop once PROBE`: run one probe now. Live progress on a terminal (stderr), a summary
//! table (stdout) or the `ProbeRun` as JSON (`--json`). Ctrl-C stops the run and replays
//! the cleanup ledger, so an interrupted run leaves nothing behind.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use super::{
    ConfigArgs, EXIT_CANNOT_RUN, EXIT_CONFIG, EXIT_FAILED, build_runner, fmt_ms, load_config,
};
use crate::config::diagnostic::did_you_mean;
use crate::runner::{CleanupOutcome, Outcome, ProbeRun, Progress, ProgressFn};

pub async fn run(cfg: &ConfigArgs, name: &str, json: bool) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(probe) = config.probe(name) else {
        eprintln!("error: no probe named `{name}` in {}", config.dir.display());
        if let Some(h) = did_you_mean(name, config.probes.iter().map(|p| p.name.as_str())) {
            eprintln!("  = help: {h}");
        }
        return ExitCode::from(EXIT_CONFIG);
    };
    let runner = match build_runner(&config, cfg) {
        Ok(r) => r,
        Err(code) => return code,
    };

    // Leftovers of an earlier, interrupted run of this probe go first.
    match runner.replay_ledger(&config.probes, Some(name)).await {
        Ok(replays) => {
            for r in replays {
                match r.result {
                    Ok(c) if c.success => eprintln!(
                        "cleaned up a leftover from {}: {} ({})",
                        r.entry.record.run_id, c.name, r.entry.record.created_by
                    ),
                    Ok(c) => eprintln!(
                        "warning: leftover from {} still not cleaned up: {} ({})",
                        r.entry.record.run_id,
                        c.name,
                        c.error.unwrap_or_default()
                    ),
                    Err(m) => eprintln!("warning: leftover from {}: {m}", r.entry.record.run_id),
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    }

    let live = std::io::stderr().is_terminal();
    let progress: ProgressFn = Arc::new(move |p: &Progress| {
        if !live {
            return;
        }
        match p {
            Progress::StepStarted { step } => eprintln!("▶ {step}"),
            Progress::PollAttempt {
                attempt,
                elapsed,
                status,
                hit,
                ..
            } => eprintln!(
                "    poll {attempt:>3}  +{:<8} {}  {}",
                fmt_ms(elapsed.as_secs_f64() * 1000.0),
                status.map_or("---".to_string(), |s| s.to_string()),
                if *hit { "found" } else { "not yet" }
            ),
            Progress::StepFinished { step } => eprintln!(
                "  {} {} in {}{}",
                if step.outcome == Outcome::Success {
                    "✓"
                } else {
                    "✗"
                },
                step.outcome,
                fmt_ms(step.duration_ms),
                step.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            Progress::CleanupFinished { item } => eprintln!(
                "  cleanup {} {}",
                item.name,
                if item.success {
                    "✓".to_string()
                } else {
                    format!("✗ {}", item.error.clone().unwrap_or_default())
                }
            ),
        }
    });

    let run = tokio::select! {
        run = runner.run(probe, Some(&progress)) => run,
        _ = super::shutdown_signal() => {
            eprintln!("interrupted: cleaning up what this run created");
            if let Ok(replays) = runner.replay_ledger(&config.probes, Some(name)).await {
                for r in replays.iter().filter(|r| !matches!(&r.result, Ok(c) if c.success)) {
                    eprintln!("warning: {} from {} is still in the cleanup ledger; run `rooftop cleanup`", r.entry.record.cleanup, r.entry.record.run_id);
                }
            }
            return ExitCode::from(130);
        }
    };

    if json {
        match serde_json::to_string_pretty(&run) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CANNOT_RUN);
            }
        }
    } else {
        print!("{}", summary(&run));
    }
    if run.outcome == Outcome::Success && run.cleanup.outcome != CleanupOutcome::Failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The final table a person reads.
pub fn summary(run: &ProbeRun) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "probe {}  run {}  trace {}\n",
        run.probe, run.run_id, run.trace_id
    ));
    out.push_str(&format!(
        "{:<28} {:<13} {:>6} {:>9} {:>6}  {}\n",
        "STEP", "OUTCOME", "STATUS", "TIME", "POLLS", "SYNC LATENCY"
    ));
    for s in &run.steps {
        let status = s
            .request
            .as_ref()
            .and_then(|r| r.status)
            .map_or("-".to_string(), |c| c.to_string());
        let sync = s
            .sync
            .as_ref()
            .map(|m| {
                format!(
                    "{} (between {} and {}){}",
                    fmt_ms(m.estimate_ms),
                    fmt_ms(m.lower_ms),
                    fmt_ms(m.upper_ms),
                    if m.slo_breached { "  SLO BREACHED" } else { "" }
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<28} {:<13} {:>6} {:>9} {:>6}  {}\n",
            s.name,
            s.outcome.as_str(),
            status,
            fmt_ms(s.duration_ms),
            s.attempts,
            sync
        ));
    }
    let cleanup = match run.cleanup.outcome {
        CleanupOutcome::NotNeeded => "nothing to clean up".to_string(),
        CleanupOutcome::Success => format!(
            "cleanup ok ({})",
            run.cleanup
                .items
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CleanupOutcome::Failed => format!(
            "CLEANUP FAILED: {} (left in the ledger; `rooftop cleanup` retries)",
            run.cleanup
                .items
                .iter()
                .filter(|i| !i.success)
                .map(|i| format!("{}: {}", i.name, i.error.clone().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    out.push_str(&format!("{cleanup}\n"));
    match run.outcome {
        Outcome::Success => {
            out.push_str(&format!("result: success in {}\n", fmt_ms(run.duration_ms)))
        }
        o => {
            out.push_str(&format!(
                "result: {o} at step {} [{}] after {}\n",
                run.failed_step.as_deref().unwrap_or("-"),
                run.error_class.map(|c| c.as_str()).unwrap_or("-"),
                fmt_ms(run.duration_ms)
            ));
            if let Some(m) = &run.message {
                out.push_str(&format!("  {m}\n"));
            }
            if let Some(r) = &run.runbook {
                out.push_str(&format!("  runbook: {r}\n"));
            }
        }
    }
    out
}
