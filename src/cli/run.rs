//! `rooftop run`: the agent. Retries leftovers of interrupted runs, then runs every probe
//! on its schedule (no self-overlap, a global concurrency limit) and prints one line per
//! run. SIGTERM / Ctrl-C: stop firing, let in-flight runs finish with their cleanup (up
//! to a grace period), and exit; whatever a cut-off run created stays in the ledger for
//! the next start.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ConfigArgs, EXIT_CANNOT_RUN, build_runner, load_config};
use crate::clock::{Clock, SystemClock};
use crate::scheduler::{self, Event};
use crate::store::RunStore;

/// How long in-flight runs get to finish (cleanup included) after a stop signal.
const GRACE: Duration = Duration::from_secs(60);

pub async fn run(cfg: &ConfigArgs, max_concurrent: usize, keep_history: Duration) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runner = match build_runner(&config, cfg) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runner.replay_ledger(&config.probes, None).await {
        Ok(replays) => {
            for r in replays {
                match r.result {
                    Ok(c) if c.success => eprintln!(
                        "cleaned up a leftover of {} ({}): {}",
                        r.entry.probe, r.entry.run_id, c.name
                    ),
                    Ok(c) => eprintln!(
                        "warning: leftover of {} ({}) still not cleaned up: {} ({})",
                        r.entry.probe,
                        r.entry.run_id,
                        c.name,
                        c.error.unwrap_or_default()
                    ),
                    Err(m) => eprintln!(
                        "warning: leftover of {} ({}): {m}",
                        r.entry.probe, r.entry.run_id
                    ),
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    }

    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    let history = match RunStore::open_in(&state_dir) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    match history.prune(now, keep_history).await {
        Ok(n) if n > 0 => eprintln!(
            "history: removed {n} runs older than {}",
            humantime::format_duration(keep_history)
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: history retention: {e}"),
    }
    let schedules: Vec<_> = config
        .probes
        .iter()
        .map(|p| (p.schedule.clone(), scheduler::spread(&p.name, &p.schedule)))
        .collect();
    eprintln!(
        "rooftop {}: {} probes from {}",
        env!("CARGO_PKG_VERSION"),
        config.probes.len(),
        config.dir.display()
    );
    for (p, (s, offset)) in config.probes.iter().zip(&schedules) {
        let next = scheduler::next_fire(s, *offset, now)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into());
        eprintln!(
            "  {:<32} {:<36} next {next}",
            p.name,
            p.schedule.to_string()
        );
    }

    let probes = Arc::new(config.probes.clone());
    let names: Vec<String> = probes.iter().map(|p| p.name.clone()).collect();
    let execute = {
        let (runner, probes, history) = (runner.clone(), probes.clone(), history.clone());
        move |i: usize| {
            let (runner, probes, history) = (runner.clone(), probes.clone(), history.clone());
            async move {
                let run = runner.run(&probes[i], None).await;
                // Stored first: a run that was reported is a run that was kept.
                if let Err(e) = history.record(&run).await {
                    eprintln!("warning: run {} not stored in the history: {e}", run.run_id);
                }
                println!("{}  {}", run.summary_line(), run.run_id);
            }
        }
    };
    let on_event = Arc::new(move |e: &Event| match e {
        Event::SkippedOverlap { probe, scheduled } => println!(
            "{} {:<28} skipped: overlap (the run scheduled before {} is still going)",
            scheduled.format("%H:%M:%S"),
            names[*probe],
            scheduled.to_rfc3339()
        ),
        Event::Exhausted { probe } => eprintln!(
            "warning: {} has no future fire time; it will not run again",
            names[*probe]
        ),
        Event::Started { .. } => {}
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agent = tokio::spawn(scheduler::run_schedules(
        schedules,
        clock,
        max_concurrent,
        execute,
        on_event,
        stop_rx,
    ));
    tokio::select! {
        _ = super::shutdown_signal() => {}
        _ = &mut agent => return ExitCode::SUCCESS,
    }
    eprintln!(
        "stopping: waiting up to {} for in-flight runs to finish and clean up",
        humantime::format_duration(GRACE)
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(GRACE, &mut agent).await.is_err() {
        agent.abort();
        eprintln!(
            "warning: runs still going after {}; their records stay in the cleanup ledger for the next start",
            humantime::format_duration(GRACE)
        );
    }
    ExitCode::SUCCESS
}
