//! `rooftop bench`: print benchmark figures.

use std::process::ExitCode;

use super::EXIT_CANNOT_RUN;
use crate::bench::accuracy::{self, AccuracyOptions};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Sync-latency accuracy against the sandbox's ground truth, per poll plan.
    Accuracy {
        /// Flows per poll plan.
        #[arg(long, default_value_t = 60)]
        flows: usize,
        /// Flows in flight at once.
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// Sandbox RNG seed (the same latency draws for every plan).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> ExitCode {
    match cmd {
        BenchCommand::Accuracy {
            flows,
            concurrency,
            seed,
        } => {
            let opts = AccuracyOptions {
                flows,
                concurrency,
                seed,
            };
            match accuracy::run(&opts).await {
                Ok(rows) => {
                    print!("{}", accuracy::render(&opts, &rows));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CANNOT_RUN)
                }
            }
        }
    }
}
