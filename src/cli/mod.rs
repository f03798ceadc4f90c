//! Command-line interface: argument parsing and the commands. `anyhow` lives only here.
//!
//! Exit codes: 0 ok; 1 a probe run failed (or cleanup left records behind); 2 bad
//! configuration; 3 rooftop could not run (state directory unwritable, listener address
//! taken, ...); 4 stopped, but the stop deadline cut work short (named in the last log
//! line; the cleanup ledger and the outbox keep it for the next start).

mod check;
mod cleanup;
mod demo;
mod incidents;
mod logging;
mod oncall;
mod once;
mod run;
mod sandbox;
mod schema;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::runner::Runner;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_CANNOT_RUN: u8 = 3;
pub const EXIT_STOPPED_SHORT: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "rooftop",
    version,
    about = "Synthetic monitoring for dealership integrations (CRM, DMS, CSI surveys)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by commands that read a config directory.
#[derive(Debug, clap::Args, Clone)]
pub struct ConfigArgs {
    /// Config directory holding rooftop.yaml (optional), probes/ and runbooks/.
    #[arg(
        long,
        short = 'c',
        value_name = "DIR",
        default_value = "/etc/rooftop",
        env = "ROOFTOP_CONFIG"
    )]
    pub config: PathBuf,
    /// Override the state directory (default: rooftop.yaml's state_dir, else /var/lib/rooftop).
    #[arg(long, value_name = "DIR", env = "ROOFTOP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration: every error in every file, with line:column and a hint.
    Check {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// The agent: run every probe on its schedule until SIGTERM / Ctrl-C.
    Run {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Most probe runs in flight at once (overrides rooftop.yaml's
        /// scheduler.max_concurrent; default 16).
        #[arg(long)]
        max_concurrent: Option<usize>,
        /// Keep run history this long (overrides rooftop.yaml's history.keep; default 30d).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        keep_history: Option<std::time::Duration>,
        /// Address of the /metrics listener, or `off` (overrides telemetry.listen;
        /// default 127.0.0.1:9464; port 0 picks a free port).
        #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
        listen: Option<Listen>,
        /// How long a stop may take, for everything: in-flight runs and their cleanup,
        /// the last outbox pass, the telemetry flush (overrides scheduler.stop_deadline;
        /// default 75s, under systemd's 90 s).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, env = "ROOFTOP_STOP_DEADLINE")]
        stop_deadline: Option<std::time::Duration>,
    },
    /// Every probe's schedule, next run, last outcome, success ratio per window, sync
    /// latency p50/p95/p99 and top error classes (read from the store; works while the
    /// agent runs).
    Status {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Incidents the agent opened (newest first), with state, reason and MTTA.
    Incidents {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Only unresolved ones.
        #[arg(long)]
        open: bool,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident (stops escalation; recorded for MTTA).
    Ack {
        /// Incident id (from `rooftop incidents`).
        id: String,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Who acknowledges (default: $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Resolve an incident by hand (a new failure then opens a new one).
    Resolve {
        id: String,
        #[command(flatten)]
        cfg: ConfigArgs,
        #[arg(long)]
        by: Option<String>,
    },
    /// Who is on call and the rotations' shifts (read from rooftop.yaml, as the pager does).
    Oncall {
        #[command(subcommand)]
        command: OncallCommand,
    },
    /// The time windows (change windows, blackouts): active now or not, when that changes,
    /// and what the alerting routes do while they are active.
    Windows {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Another instant than now (see `rooftop oncall who --help`).
        #[arg(long, value_name = "TIME", value_parser = oncall::parse_when)]
        at: Option<oncall::When>,
        #[arg(long)]
        json: bool,
    },
    /// Past runs of one probe.
    History {
        probe: String,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// How far back.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Run one probe now, with live progress; cleans up what it created.
    Once {
        /// Probe name.
        probe: String,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Print the ProbeRun as JSON on stdout (stable field names; see docs/commands.md).
        #[arg(long)]
        json: bool,
    },
    /// Retry the cleanup ledger: delete synthetic records left by interrupted runs.
    Cleanup {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Only this probe's records.
        #[arg(long)]
        probe: Option<String>,
    },
    /// The embedded default: a simulated dealership on loopback, the bundled probes run
    /// against it continuously, live results. Nothing to configure.
    Demo(demo::DemoArgs),
    /// Serve the simulated dealership (CRM, DMS, survey) on loopback until Ctrl-C.
    Sandbox {
        /// Control address; each system gets its own port next to it.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: std::net::SocketAddr,
        /// Sandbox settings (tokens, ports, per-job latency) as YAML.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Fault scenario to play (YAML).
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
    },
    /// Print the JSON Schema of probe files, heartbeat-check files or rooftop.yaml, for editors.
    Schema {
        /// Which file kind.
        #[arg(value_enum, default_value_t = schema::SchemaKind::Probe)]
        kind: schema::SchemaKind,
    },
}

#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Who a page to each rotation reaches now (fallbacks followed), until when, and who
    /// is next.
    Who {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Another instant: `now`, `+DURATION` (`+12h`), RFC 3339
        /// (`2026-12-05T21:00:00-05:00`) or a local `2026-12-05 21:00`, read in each
        /// rotation's own zone.
        #[arg(long, value_name = "TIME", value_parser = oncall::parse_when)]
        at: Option<oncall::When>,
        /// Only this rotation.
        #[arg(long, value_name = "NAME")]
        rotation: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The shifts of a span in each rotation's local time, overrides, fallbacks and gaps
    /// marked.
    Schedule {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Start (default now); the same forms as `who --at`.
        #[arg(long, value_name = "TIME", value_parser = oncall::parse_when)]
        from: Option<oncall::When>,
        /// End (default 7 days after the start).
        #[arg(long, value_name = "TIME", value_parser = oncall::parse_when)]
        to: Option<oncall::When>,
        #[arg(long, value_name = "NAME")]
        rotation: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    if !matches!(
        cli.command,
        Command::Run { .. } | Command::Demo(_) | Command::Sandbox { .. } | Command::Once { .. }
    ) {
        printer_exits_on_a_closed_pipe();
    }
    match cli.command {
        Command::Check { cfg } => check::run(&cfg),
        Command::Once { probe, cfg, json } => once::run(&cfg, &probe, json).await,
        Command::Run {
            cfg,
            max_concurrent,
            keep_history,
            listen,
            stop_deadline,
        } => {
            let overrides = run::Overrides {
                max_concurrent: max_concurrent.filter(|n| *n > 0),
                keep_history,
                listen: listen.map(|l| l.0),
                stop_deadline,
            };
            run::run(&cfg, overrides).await
        }
        Command::Incidents { cfg, open, json } => incidents::list(&cfg, open, json).await,
        Command::Ack { id, cfg, by } => incidents::update(&cfg, &id, by, false).await,
        Command::Resolve { id, cfg, by } => incidents::update(&cfg, &id, by, true).await,
        Command::Status { cfg, json } => status::status(&cfg, json).await,
        Command::History {
            probe,
            cfg,
            since,
            json,
        } => status::history(&cfg, &probe, since, json).await,
        Command::Oncall { command } => match command {
            OncallCommand::Who {
                cfg,
                at,
                rotation,
                json,
            } => oncall::who(&cfg, at, rotation.as_deref(), json),
            OncallCommand::Schedule {
                cfg,
                from,
                to,
                rotation,
                json,
            } => oncall::schedule(&cfg, from, to, rotation.as_deref(), json),
        },
        Command::Windows { cfg, at, json } => oncall::windows(&cfg, at, json),
        Command::Cleanup { cfg, probe } => cleanup::run(&cfg, probe.as_deref()).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sandbox {
            listen,
            config,
            scenario,
        } => sandbox::run(listen, config.as_ref(), scenario.as_ref()).await,
        Command::Schema { kind } => schema::run(kind),
    }
}

/// `rooftop status | head` ends quietly when `head` has read enough, as Unix tools do,
/// instead of panicking in `println!` on the broken pipe: the commands that only print
/// get SIGPIPE's default action back. Not the agent (`run`, `demo`, `sandbox`, `once`):
/// a closed stdout must never stop probing or a cleanup.
fn printer_exits_on_a_closed_pipe() {
    // SAFETY: called once at start, before any thread of ours writes; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Loads the config, printing every error; `Err` carries the exit code.
/// `--listen`: an address, or `off` (`None` inside).
#[derive(Debug, Clone)]
pub struct Listen(pub Option<std::net::SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("`{text}` is not an address and port (e.g. 127.0.0.1:9464) or `off`"))
}

pub fn load_config(dir: &Path) -> Result<Config, ExitCode> {
    let config = config::load(dir).map_err(|errors| {
        logging::config_errors(&errors);
        ExitCode::from(EXIT_CONFIG)
    })?;
    if !config.agent.verify_tls {
        tracing::warn!(
            "TLS certificate verification is OFF (defaults.verify_tls: false in rooftop.yaml); probes send real credentials to whoever answers"
        );
    }
    Ok(config)
}

pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Builds the runner, printing why it cannot be built.
pub fn build_runner(config: &Config, cfg: &ConfigArgs) -> Result<Runner, ExitCode> {
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| config.agent.state_dir.clone());
    Runner::from_config(config, process_env(), &state_dir, Arc::new(SystemClock)).map_err(|e| {
        eprintln!("error: {e}");
        eprintln!("  = help: pass --state-dir DIR (or set state_dir in rooftop.yaml) to a writable directory");
        ExitCode::from(EXIT_CANNOT_RUN)
    })
}

pub use crate::model::fmt_ms;

/// Resolves on Ctrl-C or SIGTERM (see `agent::signals`, the one place signals are handled).
pub async fn shutdown_signal() {
    crate::agent::signals::shutdown().await;
}
