//! `cargo bench --bench soak -- --minutes N [--kills K]`: the agent against the sandbox
//! for N minutes under randomized faults, loopback only: sandbox faults (the CRM or the
//! DMS answering 503), SIGKILLs at random points (at least K), the SMTP relay down and
//! up, its state directory's disk (a tmpfs) filled and freed, and its OTLP collector gone
//! for the whole run. It prints what issue 16 promises: store corruptions, pages
//! expected / delivered / lost, duplicates per page, synthetic leftovers, disk-full
//! detection, paging and recovery, peak RSS and runs completed. Beside it, two agents run
//! the same probes without faults, one exporting OTLP to a closed port and one with OTLP
//! off, for the cost of a collector that is gone.
//!
//! The parts are `tests/common/fault.rs`, which `tests/fault_injection.rs` runs for a
//! few iterations.

mod common;
#[path = "../tests/common/fault.rs"]
mod fault;
#[path = "../tests/common/tools.rs"]
mod tools;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use common::SmokeCheck;
use common::agent::proc_usage;
use fault::{Agent, DiskFull, Iteration, KillStats, PageTally, Rig, SandboxFault, Tmpfs};

/// Randomized faults on the real agent for a bounded time.
#[derive(Debug, Clone, clap::Parser)]
#[command(bin_name = "cargo bench --bench soak --")]
pub struct SoakOptions {
    /// How long the faults go on, in minutes (the last start's cleanup and paging come
    /// after).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// SIGKILLs at least (spread over the minutes; more time is taken if needed).
    #[arg(long, default_value_t = 50)]
    pub kills: usize,
    /// Disk-full episodes (0: none).
    #[arg(long, default_value_t = 3)]
    pub disk_full: usize,
    /// The random seed (default: from the clock); printed, to replay a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Size of the tmpfs holding the agent's state directory.
    #[arg(long, default_value = "64m")]
    pub tmpfs: String,
}

const CHECKS: &[SmokeCheck] = common::checks![
    checks:
    the_default_options_are_valid,
    the_soak_config_validates,
    the_report_renders,
];

fn main() -> ExitCode {
    match common::options_or_smoke::<SoakOptions>("soak", CHECKS) {
        Ok(opts) => common::run_to_figures(async move { Ok(render(&run(&opts).await?)) }),
        Err(code) => code,
    }
}

/// The OTLP export of the faulted agent and of the side agent without a collector: a
/// port nothing listens on.
fn otlp_yaml(port: u16) -> String {
    format!(
        "telemetry:\n  interval: 1s\n  otlp: {{endpoint: 'http://127.0.0.1:{port}', protocol: http/protobuf, timeout: 2s}}\n"
    )
}

/// One side agent (no faults): its runs and memory.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub runs: u64,
    pub rss_first_mb: f64,
    pub rss_last_mb: f64,
    pub peak_mb: f64,
}

/// Everything the soak measured.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub minutes: f64,
    pub seed: u64,
    pub elapsed_s: f64,
    pub kills: KillStats,
    pub final_integrity: String,
    pub last_exit: Option<i32>,
    pub pages: PageTally,
    /// Synthetic records left after the last cleanup: `kind id`, with the kill they were
    /// first seen at.
    pub leftovers: Vec<String>,
    /// The iterations that were disk-full episodes.
    pub disk_iterations: Vec<usize>,
    pub ledger_left: i64,
    pub disk: Vec<DiskFull>,
    pub runs: u64,
    pub smtp_down_iterations: usize,
    pub fault_iterations: usize,
    pub otlp_gone: Side,
    pub otlp_off: Side,
}

/// Runs the soak.
pub async fn run(opts: &SoakOptions) -> anyhow::Result<SoakReport> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let work = common::tempfile_dir("rooftop-bench-soak")?;
    let disk = Tmpfs::mount(&work.join("state"), &opts.tmpfs).map_err(anyhow::Error::msg)?;
    let closed = common::free_port()?;
    let mut rig = Rig::start(&work, &disk.dir, &otlp_yaml(closed)).await;

    // The side agents: the same probes, no faults, their own sandbox.
    let side_sb = fault::sandbox().await;
    let nobody = common::free_port()?;
    let mut sides = Vec::new();
    for (name, extra) in [
        ("otlp-gone", otlp_yaml(closed)),
        ("otlp-off", String::new()),
    ] {
        let config = work.join(format!("{name}-config"));
        let state = work.join(format!("{name}-state"));
        fault::write_config(&config, nobody, &extra);
        sides.push((
            Agent::spawn(side_sb.env(), &config, &state, "off"),
            state,
            Side::default(),
        ));
    }

    let length = Duration::from_secs_f64(opts.minutes * 60.0);
    let pace = length.as_secs_f64() / (opts.kills.max(1) + 3 * opts.disk_full) as f64;
    let episode_every = length.as_secs_f64() / (opts.disk_full + 1) as f64;
    eprintln!(
        "bench soak: seed {seed}, {} min, at least {} kills, {} disk-full episodes",
        opts.minutes, opts.kills, opts.disk_full
    );
    let started = Instant::now();
    let mut it = Iteration {
        fault: SandboxFault::None,
        smtp_up: true,
        after_record: None,
        after: Duration::from_secs(1),
    };
    let mut report = SoakReport {
        minutes: opts.minutes,
        seed,
        ..SoakReport::default()
    };
    let mut last_sample = Instant::now() - Duration::from_secs(60);
    while started.elapsed() < length || rig.stats.iterations < opts.kills {
        if last_sample.elapsed() >= Duration::from_secs(5) {
            sample(&mut sides);
            last_sample = Instant::now();
        }
        let due = (report.disk.len() + 1) as f64 * episode_every;
        if report.disk.len() < opts.disk_full && started.elapsed().as_secs_f64() >= due {
            // SMTP up and the faults as they were; the agent is killed after it.
            rig.gate.set_up(true);
            let agent = rig.spawn();
            let listen = rig.listen.clone();
            fault::wait_ready(&listen, Duration::from_secs(20)).await;
            let episode =
                fault::disk_full_episode(&rig, &agent, &disk, Duration::from_secs(60)).await;
            eprintln!(
                "bench soak: disk-full episode {}: {episode:?}",
                report.disk.len() + 1
            );
            report.disk.push(episode);
            rig.kill_and_check(agent).await;
            report.disk_iterations.push(rig.stats.iterations);
            continue;
        }
        it = Iteration::random(&mut rng, &it);
        it.after = Duration::from_secs_f64(rng.random_range(0.3..(2.0 * pace).max(0.6)));
        report.smtp_down_iterations += usize::from(!it.smtp_up);
        report.fault_iterations += usize::from(it.fault != SandboxFault::None);
        rig.kill_iteration(&it).await;
        if rig.stats.iterations % 10 == 0 {
            eprintln!(
                "bench soak: {} kills, {:.0} s",
                rig.stats.iterations,
                started.elapsed().as_secs_f64()
            );
        }
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    sample(&mut sides);
    eprintln!(
        "bench soak: the last start: faults cleared, SMTP up, until everything is delivered and cleaned"
    );
    report.last_exit = rig.settle(Duration::from_secs(420)).await;
    report.kills = rig.stats.clone();
    report.final_integrity = fault::integrity(&disk.dir);
    report.pages = rig.pages();
    report.leftovers = rig
        .sb
        .leftovers()
        .iter()
        .map(|l| {
            let key = format!("{} {}", l.kind, l.id);
            match report.kills.records_seen.get(&key) {
                Some((it, ledger)) => {
                    format!("{key} (first seen at kill {it}, {ledger} ledger entries then)")
                }
                None => format!("{key} (not seen at any kill)"),
            }
        })
        .collect();
    report.ledger_left = fault::count(&disk.dir, "SELECT count(*) FROM cleanup_ledger");
    report.runs = finished_runs(&disk.dir);
    for (agent, state, mut side) in sides {
        agent.sigterm(Duration::from_secs(80)).await;
        side.runs = finished_runs(&state);
        if side.rss_first_mb == 0.0 {
            side.rss_first_mb = side.rss_last_mb;
        }
        if state.ends_with("otlp-gone-state") {
            report.otlp_gone = side;
        } else {
            report.otlp_off = side;
        }
    }
    drop(rig);
    drop(disk);
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

/// VmRSS and VmHWM of each side agent.
fn sample(sides: &mut [(Agent, std::path::PathBuf, Side)]) {
    for (agent, _, side) in sides.iter_mut() {
        // Before its first run the child may not even have exec'ed the agent yet.
        if agent.run_lines.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            continue;
        }
        if let Ok((_, rss, peak)) = proc_usage(agent.pid) {
            if side.rss_first_mb == 0.0 {
                side.rss_first_mb = rss;
            }
            side.rss_last_mb = rss;
            side.peak_mb = peak;
        }
    }
}

/// Runs stored (skipped fires left out).
fn finished_runs(state: &Path) -> u64 {
    u64::try_from(fault::count(
        state,
        "SELECT count(*) FROM runs WHERE outcome != 'skipped'",
    ))
    .unwrap_or(0)
}

pub fn render(r: &SoakReport) -> String {
    let k = &r.kills;
    let p = &r.pages;
    let of = |f: fn(&DiskFull) -> bool| r.disk.iter().filter(|d| f(d)).count();
    let n = r.disk.len();
    let mut s = format!(
        "bench soak: {:.1} min of randomized faults (seed {}; {:.0} s with the kills), the lead flow every 1 s and \
         the appointment flow every 2 s, OTLP to a closed port throughout\n\n",
        r.minutes, r.seed, r.elapsed_s
    );
    let mut row = |name: &str, value: String| s.push_str(&format!("  {name:<44} {value}\n"));
    row(
        "SIGKILL iterations",
        format!(
            "{} ({} with a synthetic record in flight, {} with a page pending; {} under a sandbox fault, {} with SMTP down)",
            k.iterations,
            k.with_records,
            k.with_pages_pending,
            r.fault_iterations,
            r.smtp_down_iterations
        ),
    );
    row(
        "store corruptions (PRAGMA integrity_check)",
        format!(
            "{} (after the last stop: {})",
            k.corruptions.len(),
            r.final_integrity
        ),
    );
    row(
        "pages expected / delivered / lost",
        format!(
            "{} / {} / {}  ({} incidents; {} e-mails, {} of them resolves)",
            p.expected,
            p.delivered,
            p.lost.len(),
            p.incidents,
            p.mails,
            p.resolves
        ),
    );
    row("max duplicates per page", p.max_duplicates.to_string());
    row(
        "synthetic leftovers after the last cleanup",
        format!(
            "{} (cleanup ledger entries left: {})",
            r.leftovers.len(),
            r.ledger_left
        ),
    );
    row(
        "disk full: detected / paged / recovered",
        format!(
            "{}/{n} / {}/{n} / {}/{n}  (kept probing {}/{n})",
            of(|d| d.detected),
            of(|d| d.paged),
            of(|d| d.recovered),
            of(|d| d.kept_probing)
        ),
    );
    row(
        "peak RSS of the faulted agent (VmHWM)",
        format!("{:.1} MB", k.peak_rss_mb),
    );
    row("runs completed by the faulted agent", r.runs.to_string());
    row(
        "last agent's exit code",
        r.last_exit
            .map_or("killed at the limit".into(), |c| c.to_string()),
    );
    s.push_str(
        "\n  side by side, no faults:                        OTLP to a closed port   OTLP off\n",
    );
    let side = |s: &mut String, name: &str, f: &dyn Fn(&Side) -> String| {
        s.push_str(&format!(
            "  {name:<44} {:>22} {:>10}\n",
            f(&r.otlp_gone),
            f(&r.otlp_off)
        ));
    };
    side(&mut s, "runs completed", &|x| x.runs.to_string());
    side(&mut s, "RSS at the first sample", &|x| {
        format!("{:.1} MB", x.rss_first_mb)
    });
    side(&mut s, "RSS at the end", &|x| {
        format!("{:.1} MB", x.rss_last_mb)
    });
    side(&mut s, "peak RSS (VmHWM)", &|x| {
        format!("{:.1} MB", x.peak_mb)
    });
    for (i, d) in r.disk.iter().enumerate() {
        if !d.missing.is_empty() {
            s.push_str(&format!(
                "\n  disk-full episode {}: {}",
                i + 1,
                d.missing.join("; ")
            ));
        }
    }
    for c in &k.corruptions {
        s.push_str(&format!("\n  corruption: {c}"));
    }
    for l in &r.leftovers {
        s.push_str(&format!("\n  leftover: {l}"));
    }
    if !r.disk_iterations.is_empty() {
        s.push_str(&format!(
            "\n  disk-full episodes ended with kills {:?}",
            r.disk_iterations
        ));
    }
    if !p.lost.is_empty() {
        s.push_str(&format!("\n  lost pages: {}", p.lost.join(", ")));
    }
    s.push('\n');
    s
}

mod checks {
    use clap::Parser;

    use super::*;

    pub fn the_default_options_are_valid() {
        let o = SoakOptions::parse_from(["soak"]);
        assert!(o.minutes > 0.0 && o.kills >= 50, "{o:?}");
        let o = SoakOptions::parse_from(["soak", "--minutes", "2", "--kills", "60"]);
        assert_eq!((o.minutes, o.kills), (2.0, 60));
    }

    pub fn the_soak_config_validates() {
        for extra in [otlp_yaml(1), String::new()] {
            let dir = tempfile::tempdir().expect("a temp dir");
            fault::write_config(dir.path(), 2525, &extra);
            let config = rooftop::config::load(dir.path()).unwrap_or_else(|errors| {
                panic!("the soak config is invalid:\n{}", errors.render())
            });
            assert_eq!(config.probes.len(), 2);
        }
    }

    pub fn the_report_renders() {
        let text = render(&SoakReport {
            minutes: 10.0,
            kills: KillStats {
                iterations: 60,
                with_records: 20,
                ..KillStats::default()
            },
            final_integrity: "ok".into(),
            last_exit: Some(0),
            disk: vec![DiskFull {
                detected: true,
                paged: true,
                recovered: true,
                kept_probing: true,
                missing: Vec::new(),
            }],
            ..SoakReport::default()
        });
        for needle in [
            "SIGKILL iterations                           60 (20 with",
            "disk full: detected / paged / recovered      1/1 / 1/1 / 1/1",
            "OTLP to a closed port",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }
}
