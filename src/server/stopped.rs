//! What [`Server::run`](super::Server::run) leaves: the report, and the thread that answers
//! late requests for as long as it lives.

use std::fmt;
use std::net::SocketAddr;

use super::report::ShutdownReport;

/// A server that has run: its [`ShutdownReport`], and the thread that answers `503` +
/// `Connection: close` to what still arrives (on keep-alive connections that stayed idle
/// through the drain, say), until it is dropped.
///
/// Returned by [`Server::run`](crate::Server::run), or carried by
/// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded). Its `Display` is the
/// report's.
pub struct Stopped {
    report: ShutdownReport,
    addr: SocketAddr,
    /// Stops the late responder (if one was needed) and releases tiny_http's parked
    /// threads when dropped.
    _answering: Box<dyn Send + Sync>,
}

impl Stopped {
    pub(crate) fn new(
        report: ShutdownReport,
        addr: SocketAddr,
        answering: Box<dyn Send + Sync>,
    ) -> Stopped {
        Stopped {
            report,
            addr,
            _answering: answering,
        }
    }

    /// What the shutdown did.
    pub fn report(&self) -> &ShutdownReport {
        &self.report
    }

    /// The address the server listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.report, f)
    }
}

impl fmt::Debug for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("addr", &self.addr)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}
