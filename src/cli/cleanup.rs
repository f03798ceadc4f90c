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
    let in_progress = runner
        .ledger
        .pending(probe.map(str::to_string))
        .await
        .map(|v| v.into_iter().filter(|e| e.owned_by_a_live_run()).count())
        .unwrap_or(0);
    if in_progress > 0 {
        println!(
            "{in_progress} record(s) belong to a run still in progress in another rooftop process; not touched"
        );
    }
    if replays.is_empty() {
        if in_progress == 0 {
            println!("cleanup ledger is empty: nothing to do");
        }
        return ExitCode::SUCCESS;
    }
    let mut left = 0;
    for r in &replays {
        let e = &r.entry;
        match &r.result {
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
