//! `rooftop cleanup`: run the cleanup ledger by hand and say what is left.

use std::process::ExitCode;

use super::{ConfigArgs, EXIT_CANNOT_RUN, EXIT_FAILED, build_runner, load_config};

pub async fn run(cfg: &ConfigArgs, probe: Option<&str>) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runner = match build_runner(&config, cfg) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let replays = match runner.replay_ledger(&config.probes, probe).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let now = runner.clock.now();
    let left_alone = runner
        .ledger
        .pending(probe.map(str::to_string))
        .await
        .unwrap_or_default();
    let in_progress = left_alone
        .iter()
        .filter(|e| e.owned_by_a_live_run())
        .count();
    if in_progress > 0 {
        println!(
            "{in_progress} record(s) belong to a run still in progress in another rooftop process; not touched"
        );
    }
    // Swept once already, with nothing found: swept again when due, not earlier (the
    // downstream record a sync job creates may not exist yet).
    let resweeps: Vec<_> = left_alone
        .iter()
        .filter(|e| !e.owned_by_a_live_run() && e.resweep_not_due(now))
        .collect();
    let replayed: std::collections::BTreeSet<i64> = replays.iter().map(|r| r.entry.id).collect();
    for e in resweeps.iter().filter(|e| !replayed.contains(&e.id)) {
        println!(
            "later    {} / {} (created by {} in {}): swept again after {} (its sweep found nothing)",
            e.record.probe,
            e.record.cleanup,
            e.record.created_by,
            e.record.run_id,
            e.resweep_after.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
    }
    if replays.is_empty() {
        if in_progress == 0 && resweeps.is_empty() {
            println!("cleanup ledger is empty: nothing to do");
        }
        return ExitCode::SUCCESS;
    }
    let mut left = 0;
    for r in &replays {
        let e = &r.entry;
        match &r.result {
            Ok(c) if c.success && resweeps.iter().any(|w| w.id == e.id) => println!(
                "swept    {} / {} (created by {} in {}): found nothing; swept again after {}",
                e.record.probe,
                c.name,
                e.record.created_by,
                e.record.run_id,
                resweeps
                    .iter()
                    .find(|w| w.id == e.id)
                    .and_then(|w| w.resweep_after)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
            Ok(c) if c.success => println!(
                "deleted  {} / {} (created by {} in {} at {})",
                e.record.probe,
                c.name,
                e.record.created_by,
                e.record.run_id,
                e.record.created_at.to_rfc3339()
            ),
            Ok(c) => {
                left += 1;
                println!(
                    "FAILED   {} / {} (created by {} in {}): {} after {} attempts ({} in total)",
                    e.record.probe,
                    c.name,
                    e.record.created_by,
                    e.record.run_id,
                    c.error.clone().unwrap_or_default(),
                    c.attempts,
                    e.attempts + c.attempts
                );
            }
            Err(m) => {
                left += 1;
                println!(
                    "KEPT     {} / {} (created by {} in {}): {m}",
                    e.record.probe, e.record.cleanup, e.record.created_by, e.record.run_id
                );
            }
        }
    }
    if left > 0 {
        println!("{left} record(s) remain in the ledger; see runbooks/cleanup-failing.md");
        ExitCode::from(EXIT_FAILED)
    } else {
        println!("all {} record(s) cleaned up", replays.len());
        ExitCode::SUCCESS
    }
}
