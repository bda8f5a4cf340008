//! The one error type.

use std::fmt;
use std::io;

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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SignalHandlerExists => f.write_str(
                "install signal handler: one is already installed in this process (ctrlc allows one)",
            ),
            Error::SignalInstall(source) => write!(f, "install signal handler: {source}"),
            Error::Spawn { name, source } => write!(f, "spawn thread {name}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::SignalHandlerExists => None,
            Error::SignalInstall(source) | Error::Spawn { source, .. } => Some(source),
        }
    }
}
