//! The one place operating-system signals become agent events: SIGTERM (systemd's stop)
//! and SIGINT (Ctrl-C) both mean "drain and exit". Nothing else in the crate installs a
//! signal handler.

/// Why the agent is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: `systemctl stop`, `kill`.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when this is first
/// polled, so call it before starting work that a signal should stop.
pub async fn shutdown() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Signal::Interrupt
}
