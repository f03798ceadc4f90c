//! `rooftop bench`: print benchmark figures.

use std::process::ExitCode;

use super::EXIT_CANNOT_RUN;
use crate::bench::accuracy::{self, AccuracyOptions};
use crate::bench::page::{self, PageOptions};
use crate::bench::{scheduler, telemetry};

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
    /// The agent under load: start lag, CPU per 1,000 runs, peak RSS, store writes, and
    /// the RSS of an idle agent. Runs the real `rooftop run` against the sandbox.
    Scheduler {
        /// Probes to schedule.
        #[arg(long, default_value_t = 10_000)]
        probes: usize,
        /// Every probe's period.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        period: std::time::Duration,
        /// Wait this long after the first run before measuring.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        warmup: std::time::Duration,
        /// Measurement window.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        measure: std::time::Duration,
        /// Every n-th probe is a full lead flow (create, polled sync, cleanup); 0: none.
        #[arg(long, default_value_t = 10)]
        flow_every: usize,
        /// The agent's scheduler.max_concurrent.
        #[arg(long, default_value_t = 64)]
        max_concurrent: usize,
        /// Probes of the idle-agent measurement.
        #[arg(long, default_value_t = 50)]
        idle_probes: usize,
    },
    /// What telemetry export costs: the same probes with OTLP export off and on, side by
    /// side (CPU per 1,000 runs, peak RSS, bytes exported).
    Telemetry {
        #[arg(long, default_value_t = 1000)]
        probes: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        period: std::time::Duration,
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        warmup: std::time::Duration,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        measure: std::time::Duration,
    },
    /// Time from a CRM outage to the e-mail page: rooftop against blackbox exporter +
    /// Prometheus + Alertmanager configured alike, both watching the same sandbox, side by
    /// side. Needs the tools of tests/tools/install (run from the repository root).
    Page {
        /// Trials per period (the default run takes about 13 minutes, most of it at 30s).
        #[arg(long, default_value_t = 6)]
        trials: usize,
        /// Probe periods (= scrape and evaluation intervals), whole seconds, comma-separated.
        #[arg(long, value_delimiter = ',', default_values = ["5s", "30s"], value_parser = humantime::parse_duration)]
        periods: Vec<std::time::Duration>,
        /// Seed of the random fault phases.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> ExitCode {
    match cmd {
        BenchCommand::Page {
            trials,
            periods,
            seed,
        } => {
            let opts = PageOptions {
                trials,
                periods,
                seed,
            };
            // Returning on a signal drops the bench, which kills every process it started.
            let result = tokio::select! {
                r = page::run(&opts) => r,
                () = super::shutdown_signal() => {
                    eprintln!("bench: interrupted; the processes it started are stopped");
                    return ExitCode::from(130);
                }
            };
            match result {
                Ok(r) => {
                    print!("{}", page::render(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CANNOT_RUN)
                }
            }
        }
        BenchCommand::Telemetry {
            probes,
            period,
            warmup,
            measure,
        } => {
            let opts = telemetry::TelemetryOptions {
                probes,
                period,
                warmup,
                measure,
            };
            match telemetry::run(&opts).await {
                Ok(r) => {
                    print!("{}", telemetry::render(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CANNOT_RUN)
                }
            }
        }
        BenchCommand::Scheduler {
            probes,
            period,
            warmup,
            measure,
            flow_every,
            max_concurrent,
            idle_probes,
        } => {
            let opts = scheduler::SchedulerOptions {
                probes,
                period,
                measure,
                warmup,
                flow_every,
                max_concurrent,
                idle_probes,
            };
            match scheduler::run(&opts).await {
                Ok(r) => {
                    print!("{}", scheduler::render(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_CANNOT_RUN)
                }
            }
        }
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
