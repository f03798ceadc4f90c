//! A system's own TCP listener, switchable by the `connector_down` fault in `refuse`
//! mode: while refused the socket is closed (connections are refused for real) and
//! open connections are reset; when the fault clears the same port is bound again.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::faults::{ActiveFaults, System};

/// Pause before retrying a failed accept or re-bind.
const RETRY: Duration = Duration::from_millis(25);

/// `axum::serve` listener that closes and re-opens its port as faults come and go.
pub struct SwitchListener {
    system: System,
    addr: SocketAddr,
    inner: Option<TcpListener>,
    faults: watch::Receiver<ActiveFaults>,
    /// Bumped each time the port is closed; streams from older epochs are reset.
    epoch: Arc<AtomicU64>,
    /// The fault board was dropped: no more changes will come.
    board_gone: bool,
}

impl SwitchListener {
    /// Wraps a bound listener; `addr` must be its concrete local address.
    pub fn new(
        system: System,
        listener: TcpListener,
        addr: SocketAddr,
        faults: watch::Receiver<ActiveFaults>,
    ) -> Self {
        SwitchListener {
            system,
            addr,
            inner: Some(listener),
            faults,
            epoch: Arc::new(AtomicU64::new(0)),
            board_gone: false,
        }
    }

    async fn wait_for_change(&mut self) {
        if self.board_gone || self.faults.changed().await.is_err() {
            self.board_gone = true;
            std::future::pending::<()>().await;
        }
    }
}

impl axum::serve::Listener for SwitchListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let refuse = self
                .faults
                .borrow_and_update()
                .refuses(self.system, Instant::now());
            if refuse {
                if self.inner.take().is_some() {
                    self.epoch.fetch_add(1, Ordering::SeqCst);
                }
            } else if self.inner.is_none() {
                match TcpListener::bind(self.addr).await {
                    Ok(listener) => self.inner = Some(listener),
                    Err(_) => {
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            }
            let Some(listener) = &self.inner else {
                self.wait_for_change().await;
                continue;
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let epoch = self.epoch.load(Ordering::SeqCst);
                        return (KillableStream { inner: stream, epoch, current: self.epoch.clone() }, peer);
                    }
                    Err(_) => tokio::time::sleep(RETRY).await,
                },
                changed = self.faults.changed(), if !self.board_gone => {
                    // When the board is gone, keep serving as we are.
                    self.board_gone = changed.is_err();
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A TCP stream that fails once its listener has been closed by a refuse fault.
pub struct KillableStream {
    inner: TcpStream,
    epoch: u64,
    current: Arc<AtomicU64>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.current.load(Ordering::SeqCst) == self.epoch {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connector down (refuse)",
            ))
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
