//! `cargo bench --bench fuzz -- --seconds 300`: a longer config-fuzzing campaign than the
//! test suite's (tests/config_fuzz.rs, whose `engine` this includes): seeded random
//! mutations of every bundled and bad-config file through the real loader, then the
//! hostile special inputs one by one. Prints inputs tried, panics, misplaced diagnostics,
//! the slowest input and peak RSS (VmHWM); exits 1 when a promise broke.

mod common;
#[path = "../tests/config_fuzz.rs"]
mod config_fuzz;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use common::SmokeCheck;
use config_fuzz::engine::{self, Campaign, Options, Special};

/// Config fuzzing: random mutations of the bundled configs and the bad-config corpus, and
/// hostile inputs (10 MB, deep nesting, billion laughs, NUL, invalid UTF-8, huge lines).
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench fuzz --")]
pub struct FuzzOptions {
    /// How long the mutation campaign runs, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Stop after this many inputs instead, if sooner (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub inputs: u64,
    /// The random seed; the same seed and --inputs replay the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Every n-th input goes through `config::load` on a directory, the others through
    /// the in-process text loaders (inputs that are not UTF-8 always take the directory).
    #[arg(long, default_value_t = 10)]
    pub dir_every: u64,
    /// Where inputs that broke a promise (and the slowest) are saved.
    #[arg(long, default_value = "target/config-fuzz/bench")]
    pub save_to: PathBuf,
}

const CHECKS: &[SmokeCheck] = common::checks![
    checks:
    a_short_campaign_finds_nothing,
    peak_rss_is_readable,
    the_report_renders,
];

fn main() -> ExitCode {
    let opts = match common::options_or_smoke::<FuzzOptions>("fuzz", CHECKS) {
        Ok(opts) => opts,
        Err(code) => return code,
    };
    match run(&opts) {
        Ok((report, clean)) => {
            print!("{report}");
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(rooftop::cli::EXIT_CANNOT_RUN)
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The campaign, then the special inputs: the report, and whether no promise broke.
fn run(opts: &FuzzOptions) -> anyhow::Result<(String, bool)> {
    let corpus = engine::corpus(&root());
    anyhow::ensure!(
        !corpus.is_empty(),
        "no config files under {}",
        root().display()
    );
    let scratch = common::tempfile_dir("rooftop-fuzz")?;
    let save_to = if opts.save_to.is_absolute() {
        opts.save_to.clone()
    } else {
        root().join(&opts.save_to)
    };
    let campaign_opts = Options {
        seed: opts.seed,
        max_inputs: if opts.inputs == 0 {
            u64::MAX
        } else {
            opts.inputs
        },
        max_time: Duration::from_secs_f64(opts.seconds.max(0.0)),
        dir_every: opts.dir_every,
        scratch: scratch.join("campaign"),
        save_to: save_to.clone(),
    };
    engine::reset_peak_rss();
    let campaign = engine::run(&corpus, &campaign_opts);
    let campaign_peak = engine::peak_rss_kib();
    std::fs::create_dir_all(&save_to)?;
    let slowest = save_to.join(format!("slowest-seed{}.yaml", opts.seed));
    std::fs::write(&slowest, &campaign.slowest_input)?;

    let probe = std::fs::read(root().join("probes/lead-to-bdc-call-list.yaml"))?;
    let specials = engine::run_special(
        &probe,
        &engine::runbooks(&root()),
        &scratch.join("special"),
        |_| {},
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let clean = campaign.panics.is_empty()
        && campaign.problems.is_empty()
        && specials.iter().all(|s| s.failure.is_none());
    Ok((
        render(opts, &campaign, campaign_peak, &slowest, &specials),
        clean,
    ))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn render(
    opts: &FuzzOptions,
    c: &Campaign,
    peak_kib: Option<u64>,
    slowest: &Path,
    specials: &[Special],
) -> String {
    let mut out = String::new();
    let secs = c.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "config fuzz, seed {}: {} inputs in {:.1} s ({:.0}/s), {} through load(dir)",
        opts.seed,
        c.inputs,
        secs,
        c.inputs as f64 / secs,
        c.via_dir
    );
    let _ = writeln!(
        out,
        "  accepted {}, rejected {} with {} diagnostics",
        c.valid,
        c.inputs - c.valid,
        c.diagnostics
    );
    let _ = writeln!(out, "  panics: {}", c.panics.len());
    for f in c.panics.iter().take(10) {
        let _ = writeln!(out, "    {f}");
    }
    let _ = writeln!(
        out,
        "  diagnostics without a place in their file: {}",
        c.problems.len()
    );
    for f in c.problems.iter().take(10) {
        let _ = writeln!(out, "    {f}");
    }
    let _ = writeln!(
        out,
        "  slowest input: {:.1?} (mutated from {}; saved as {})",
        c.slowest.0,
        c.slowest.1,
        slowest.display()
    );
    let _ = writeln!(
        out,
        "  peak RSS (VmHWM) over the campaign: {}",
        mib(peak_kib)
    );
    let _ = writeln!(
        out,
        "special inputs (time, peak RSS while loading, outcome):"
    );
    for s in specials {
        let _ = writeln!(
            out,
            "  {:<50} {:>10} B  {:>9.1?}  {:>10}  {}",
            s.name,
            s.size,
            s.took,
            mib(s.peak_rss_kib),
            s.outcome
        );
        if let Some(f) = &s.failure {
            let _ = writeln!(out, "    BROKEN: {f}");
        }
    }
    let _ = writeln!(
        out,
        "replay: cargo bench --bench fuzz -- --seed {} --inputs {}",
        opts.seed, c.inputs
    );
    out
}

/// The fast checks `cargo test --all-targets` runs instead of the campaign.
mod checks {
    use super::*;

    pub fn a_short_campaign_finds_nothing() {
        let corpus = engine::corpus(&root());
        let scratch = common::tempfile_dir("rooftop-fuzz-check").expect("a temp dir");
        let c = engine::run(
            &corpus,
            &Options {
                seed: 3,
                max_inputs: 100,
                max_time: Duration::from_secs(60),
                dir_every: 5,
                scratch: scratch.clone(),
                save_to: scratch.join("saved"),
            },
        );
        let _ = std::fs::remove_dir_all(&scratch);
        assert_eq!(c.inputs, 100);
        assert!(c.panics.is_empty(), "{:#?}", c.panics);
        assert!(c.problems.is_empty(), "{:#?}", c.problems);
    }

    pub fn peak_rss_is_readable() {
        let peak = engine::peak_rss_kib().expect("VmHWM in /proc/self/status");
        assert!(peak >= engine::rss_kib().unwrap_or(0) / 2, "{peak}");
    }

    pub fn the_report_renders() {
        let opts = <FuzzOptions as clap::Parser>::parse_from(["fuzz", "--seed", "9"]);
        let c = Campaign {
            inputs: 10,
            valid: 2,
            slowest: (Duration::from_millis(3), "probes/x.yaml".into()),
            elapsed: Duration::from_secs(1),
            ..Campaign::default()
        };
        let text = render(&opts, &c, Some(2048), Path::new("slowest.yaml"), &[]);
        assert!(text.contains("seed 9: 10 inputs"), "{text}");
        assert!(text.contains("panics: 0"), "{text}");
        assert!(
            text.contains("peak RSS (VmHWM) over the campaign: 2.0 MiB"),
            "{text}"
        );
        assert!(text.contains("--seed 9 --inputs 10"), "{text}");
    }
}
