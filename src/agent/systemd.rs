//! The service manager's side of the lifecycle: systemd's notification protocol
//! (`sd_notify(3)`), spoken over the datagram socket in `$NOTIFY_SOCKET`. `READY=1` once
//! the agent runs, `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` when it
//! drains, `STATUS=` a one-line summary, and `WATCHDOG=1` while the scheduler loop
//! ticks (`WatchdogSec=` in the unit: a wedged scheduler stops the pings and systemd
//! restarts the service). Without `$NOTIFY_SOCKET` (a terminal, the demo, the tests
//! that do not ask for it) every call is a no-op.

use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go, from `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` / `$WATCHDOG_PID`.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<std::os::unix::net::UnixDatagram>,
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace (`@name`).
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads the protocol's environment variables of this process.
    pub fn from_env() -> Notifier {
        let get = |k: &str| std::env::var(k).ok();
        Notifier::from_vars(
            get("NOTIFY_SOCKET").as_deref(),
            get("WATCHDOG_USEC").as_deref(),
            get("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// As `from_env`, from given values (testable without touching the environment).
    pub fn from_vars(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let target = socket
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix('@') {
                #[cfg(target_os = "linux")]
                Some(name) => Target::Abstract(name.as_bytes().to_vec()),
                _ => Target::Path(PathBuf::from(s)),
            });
        // The watchdog is for this process only when WATCHDOG_PID is absent or ours.
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours && target.is_some())
            .map(Duration::from_micros);
        let socket = target
            .as_ref()
            .and_then(|_| std::os::unix::net::UnixDatagram::unbound().ok());
        Notifier {
            socket,
            target,
            watchdog,
        }
    }

    /// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `WatchdogSec=` of the unit, when it is set for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (newline-separated `KEY=value` lines). Errors are ignored
    /// by design: the service manager going away must not stop the agent.
    pub fn send(&self, state: &str) {
        let (Some(sock), Some(target)) = (&self.socket, &self.target) else {
            return;
        };
        let _ = match target {
            Target::Path(p) => sock.send_to(state.as_bytes(), p),
            #[cfg(target_os = "linux")]
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
            }
        };
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading the configuration");
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }
}

/// `STATUS=` is one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn listen() -> (tempfile::TempDir, PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, path, sock)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_there_is_no_watchdog() {
        let n = Notifier::from_vars(None, Some("30000000"), None, 1);
        assert!(!n.enabled());
        assert_eq!(n.watchdog(), None);
        n.ready("x"); // a no-op, not an error
    }

    #[test]
    fn notifications_reach_the_socket_one_line_each() {
        let (_d, path, sock) = listen();
        let n = Notifier::from_vars(path.to_str(), Some("30000000"), None, 7);
        assert_eq!(n.watchdog(), Some(Duration::from_secs(30)));
        n.ready("5 probes,\n0 failing");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=5 probes, 0 failing");
        n.watchdog_ping();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.stopping("draining");
        assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=draining");
    }

    #[test]
    fn the_watchdog_is_for_the_process_that_watchdog_pid_names() {
        let (_d, path, _sock) = listen();
        let p = path.to_str();
        assert_eq!(
            Notifier::from_vars(p, Some("1000000"), Some("42"), 42).watchdog(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            Notifier::from_vars(p, Some("1000000"), Some("43"), 42).watchdog(),
            None
        );
        assert_eq!(Notifier::from_vars(p, Some("0"), None, 42).watchdog(), None);
        assert_eq!(Notifier::from_vars(p, Some("x"), None, 42).watchdog(), None);
    }
}
