//! Benchmarks that print figures (`rooftop bench ...`), run against the sandbox on
//! loopback. Figures, not pass/fail: the machine is shared and noisy.

pub mod accuracy;
pub mod page;
pub mod scheduler;
pub mod telemetry;

/// SIGKILL to the child when the bench process dies, even by SIGKILL, which no handler
/// sees (Linux). It fires when the spawning thread exits: these are tokio's worker
/// threads, which live as long as the runtime.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
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
