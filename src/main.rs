//! The `rooftop` binary: see `rooftop --help`.

use std::process::ExitCode;
use std::time::Duration;

/// Worker threads of the async runtime unless `TOKIO_WORKER_THREADS` says otherwise. The
/// agent's work is waiting on sockets and timers; its SQLite writes have their own thread
/// and blocking pool. One worker spends less CPU per probe run than one per core, which
/// hand tasks to each other and wake each other up (docs/measured.md, "CPU per probe").
const DEFAULT_WORKERS: usize = 1;

/// How long an idle thread of the blocking pool (store reads) is kept. Tokio's default,
/// 10 s, is shorter than the gauges' minute: every refresh started a new thread.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// glibc gives every new thread its own malloc arena (up to 8 per core) and never returns
/// them: with blocking-pool threads coming and going, a week-long agent's memory crept
/// up arena by arena (docs/measured.md, "A WAN outage"). Two are plenty for this load.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

fn main() -> ExitCode {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        bound_malloc_arenas();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_keep_alive(BLOCKING_KEEP_ALIVE);
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(DEFAULT_WORKERS);
    }
    match runtime.build() {
        Ok(rt) => rt.block_on(rooftop::cli::main()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(3)
        }
    }
}
