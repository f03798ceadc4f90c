//! What the benches share: how a bench tells `cargo bench` from `cargo test`, how it runs
//! and prints, and the agent child process (`agent`). Benches print figures, not
//! pass/fail: they run against the sandbox on loopback, and the machine is shared and
//! noisy. Nothing here is part of the `rooftop` binary.
#![allow(
    dead_code,
    reason = "each bench uses its own part of the shared helpers"
)]

pub mod agent;

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;

use rooftop::cli::{EXIT_CANNOT_RUN, shutdown_signal};

/// A fast check a bench runs under `cargo test` instead of the benchmark: panics on failure,
/// like a test.
pub type SmokeCheck = (&'static str, fn());

/// `checks![module: a, b]`: the `SmokeCheck`s `module::a` and `module::b`, each under its
/// function's name. A function left out of the list is dead code, which clippy rejects.
#[allow(unused_macros, reason = "only the benches with many checks use it")]
macro_rules! checks {
    ($module:ident: $($check:ident),* $(,)?) => {
        &[$((stringify!($check), $module::$check as fn())),*]
    };
}
#[allow(unused_imports, reason = "only the benches with many checks use it")]
pub(crate) use checks;

/// The bench's options, or the exit code when there is nothing to benchmark. `cargo bench`
/// starts a bench with `--bench` among its arguments: that flag is stripped and the rest
/// parsed as `O`. `cargo test` (`--all-targets`, `--benches`) starts it without: then the
/// default options must parse, each of `checks` runs, and the bench says how to run it for
/// real.
pub fn options_or_smoke<O: clap::Parser>(
    bench: &str,
    checks: &[SmokeCheck],
) -> Result<O, ExitCode> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    if benchmarking {
        args.retain(|a| a != "--bench");
        return Ok(O::parse_from(args));
    }
    if let Err(e) = O::try_parse_from([bench]) {
        eprintln!("bench {bench}: the default options do not parse: {e}");
        return Err(ExitCode::FAILURE);
    }
    for (name, check) in checks {
        check();
        println!("bench {bench}: check {name} ok");
    }
    println!("bench {bench}: run with cargo bench --bench {bench}");
    Err(ExitCode::SUCCESS)
}

/// Runs a bench to its figures and prints them; an error goes to stderr with exit code 3
/// (could not run). Ctrl-C or SIGTERM drops the bench, which kills every process it
/// started (they are spawned `kill_on_drop`), and exits 130.
pub fn run_to_figures(bench: impl Future<Output = anyhow::Result<String>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    runtime.block_on(async {
        let result = tokio::select! {
            r = bench => r,
            () = shutdown_signal() => {
                eprintln!("bench: interrupted; the processes it started are stopped");
                return ExitCode::from(130);
            }
        };
        match result {
            Ok(figures) => {
                print!("{figures}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_CANNOT_RUN)
            }
        }
    })
}

/// SIGKILL to the child when the bench process dies, even by SIGKILL, which no handler
/// sees (Linux). It fires when the spawning thread exits: these are tokio's worker
/// threads and the runtime's main thread, which live as long as the runtime.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: runs in the child between fork and exec; prctl is async-signal-safe and
    // touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A port that was free on 127.0.0.1 a moment ago (nothing listens on it now).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh directory under the system temp dir.
pub fn tempfile_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
