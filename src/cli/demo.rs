//! `rooftop demo`: the embedded default; see `crate::demo`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_CANNOT_RUN, EXIT_CONFIG, EXIT_FAILED};
use crate::demo::{self, DemoOptions};

/// `rooftop demo`'s options (the subcommand's help is the `Command::Demo` doc).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Fault scenario: a built-in name (dms-stall, crm-outage, bad-day) or a YAML file.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Stop after this long (e.g. `90s`, `10m`); default: until Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub run_for: Option<Duration>,
    /// Pause between two runs of the same probe.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Sandbox control address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Folder for the pages the demo would send (.eml e-mails, SMS texts); default
    /// `pages/` in the demo's directory, printed at start and end.
    #[arg(long, value_name = "DIR")]
    pub pages: Option<std::path::PathBuf>,
    /// The demo agent's directory: its state (run history, incidents, outbox,
    /// cleanup ledger) and a copy of the bundled probes, kept afterwards for
    /// `rooftop status`; default a new folder under the system temp directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// The demo agent's listener (`/metrics`; port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub metrics: SocketAddr,
}

pub async fn run(args: DemoArgs) -> ExitCode {
    let DemoArgs {
        scenario,
        run_for,
        pause,
        listen,
        pages,
        dir,
        metrics,
    } = args;
    let scenario = scenario.as_deref();
    let scenario = match scenario {
        None => None,
        Some(name) => match demo::builtin(name) {
            Some(s) => Some((name.to_string(), s)),
            None if std::path::Path::new(name).is_file() => {
                match super::sandbox::load_scenario(std::path::Path::new(name)) {
                    Ok(s) => Some((name.to_string(), s)),
                    Err(code) => return code,
                }
            }
            None => {
                eprintln!("error: no scenario file or built-in scenario named `{name}`");
                for (n, d, _) in demo::BUILTIN {
                    eprintln!("  = built-in: {n:<11} {d}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rooftop-demo-{}", std::process::id()))
    });
    let opts = DemoOptions {
        listen,
        scenario,
        run_for,
        pause,
        live: std::io::stdout().is_terminal(),
        pages: pages.unwrap_or_else(|| dir.join("pages")),
        dir,
        metrics,
    };
    let (opts_pages, opts_dir) = (opts.pages.clone(), opts.dir.clone());
    match demo::run_demo(opts, super::shutdown_signal()).await {
        Ok(report) => {
            println!("\n{}", report.table);
            println!("{} runs, {} succeeded", report.runs, report.successes);
            println!(
                "pages the on-call engineer would have got: {} e-mail(s) (.eml) and {} SMS, in {}",
                report.pages.0,
                report.pages.1,
                opts_pages.display()
            );
            println!(
                "run history: rooftop status --config {0} --state-dir {0}",
                opts_dir.display()
            );
            if report.leftovers == 0 {
                println!(
                    "synthetic leftovers in the sandbox: 0 (everything rooftop created was cleaned up)"
                );
                ExitCode::SUCCESS
            } else {
                println!(
                    "synthetic leftovers in the sandbox: {} — cleanup did not remove everything",
                    report.leftovers
                );
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}
