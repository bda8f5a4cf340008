//! The one error type.

use std::fmt;
use std::io;

use crate::restart::inherited::InheritError;
use crate::server::report::ShutdownReport;
use crate::server::stopped::Stopped;

/// Everything that can go wrong in lameduck, each variant with the context to act on it.
///
/// Messages are lowercase and name what failed (`spawn thread lameduck-worker-3: ...`);
/// [`std::error::Error::source`] gives the underlying error where there is one.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A signal handler was already installed in this process, by lameduck or by the
    /// application through `ctrlc`, which allows one per process.
    SignalHandlerExists,
    /// The operating system refused to install the signal handler.
    SignalInstall(io::Error),
    /// The operating system refused to start a thread.
    Spawn {
        /// The name the thread would have had.
        name: String,
        /// Why it was refused.
        source: io::Error,
    },
    /// No address given to [`Server::bind`](crate::Server::bind) could be bound (or resolved).
    Bind {
        /// The address that was tried last.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The listening sockets the environment announces (systemd's `LISTEN_FDS`) could not
    /// be taken, or [`Server::inherited`](crate::Server::inherited) found none.
    Inherit(InheritError),
    /// The listening socket could not be set up; the text says what was being done.
    Listener(&'static str, io::Error),
    /// tiny_http could not start on the listener.
    Start(Box<dyn std::error::Error + Send + Sync>),
    /// The process could not run as a Windows service
    /// ([`service::run`](crate::service)): it was not started by the service control
    /// manager, or could not register with it.
    Service(Box<dyn std::error::Error + Send + Sync>),
    /// The shutdown deadline passed before the drain was over. The report names what was
    /// cut; the stopped server goes on answering late requests `503` while this error lives.
    DeadlineExceeded(Box<Stopped>),
}

impl Error {
    /// The shutdown report, if this is [`Error::DeadlineExceeded`].
    pub fn report(&self) -> Option<&ShutdownReport> {
        match self {
            Error::DeadlineExceeded(stopped) => Some(stopped.report()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SignalHandlerExists => f.write_str(
                "install signal handler: one is already installed in this process (ctrlc allows one)",
            ),
            Error::SignalInstall(source) => write!(f, "install signal handler: {source}"),
            Error::Spawn { name, source } => write!(f, "spawn thread {name}: {source}"),
            Error::Bind { addr, source } => write!(f, "bind {addr}: {source}"),
            Error::Inherit(source) => write!(f, "take the inherited socket: {source}"),
            Error::Listener(what, source) => write!(f, "{what}: {source}"),
            Error::Start(source) => write!(f, "start tiny_http: {source}"),
            Error::Service(source) => write!(f, "run as a Windows service: {source}"),
            Error::DeadlineExceeded(stopped) => write!(
                f,
                "shutdown deadline of {:?} exceeded: {} unfinished",
                stopped.report().deadline(),
                stopped.report().unfinished()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::SignalInstall(source)
            | Error::Spawn { source, .. }
            | Error::Bind { source, .. }
            | Error::Listener(_, source) => Some(source),
            Error::Start(source) | Error::Service(source) => Some(source.as_ref()),
            Error::Inherit(source) => Some(source),
            Error::SignalHandlerExists | Error::DeadlineExceeded(_) => None,
        }
    }
}
