//! The one place operating-system signals become agent events: SIGTERM (systemd's stop)
//! and SIGINT (Ctrl-C) mean "drain and exit", SIGHUP (`systemctl reload`) means "re-read
//! the configuration". Nothing else in the crate installs a signal handler.
//!
//! The handlers are installed by `Signals::install`, synchronously, before the agent
//! loads its configuration: a SIGHUP that arrives during start-up is then an event (and
//! ignored: the configuration being loaded is already the newest), never the default
//! action, which would kill the process.

/// What a signal asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: `systemctl stop`, `kill`.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGHUP: `systemctl reload`, `kill -HUP`.
    Reload,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
            Signal::Reload => "SIGHUP",
        }
    }

    /// Whether the signal asks the agent to stop.
    pub fn is_stop(self) -> bool {
        !matches!(self, Signal::Reload)
    }
}

/// The installed handlers. Signals that arrive between `install` and the first `next`
/// are kept (one of each kind), not lost.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the SIGTERM, SIGINT and SIGHUP handlers now. Must be called inside the
    /// tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Signal::Interrupt,
                _ = self.term.recv() => Signal::Terminate,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }

    /// The next signal that asks the agent to stop; reloads are passed to `on_reload`.
    pub async fn next_stop(&mut self, mut on_reload: impl FnMut()) -> Signal {
        loop {
            let s = self.next().await;
            if s.is_stop() {
                return s;
            }
            on_reload();
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT (SIGHUP is ignored: commands other than
/// `rooftop run` have nothing to reload). The handlers are installed when this is first
/// polled, so call it before starting work that a signal should stop.
pub async fn shutdown() -> Signal {
    match Signals::install() {
        Ok(mut s) => s.next_stop(|| {}).await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hangup_before_anyone_waits_is_kept_and_does_not_kill_the_process() {
        let mut s = Signals::install().unwrap();
        // SAFETY: raising a signal at our own process, whose handler is installed.
        unsafe {
            libc::raise(libc::SIGHUP);
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
            .await
            .expect("the SIGHUP arrives as an event");
        assert_eq!(got, Signal::Reload);
        assert!(!got.is_stop());
    }
}
