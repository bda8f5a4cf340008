//! The baton: the line between the process that hands its listening socket over and the new
//! one that takes it. Two messages, one each way:
//!
//! ```text
//!  old                                    new
//!   │ spawn, socket as fd 3, baton as fd 4 │
//!   │ ───────────────────────────────────► │ builds its server on fd 3, accepts nothing yet
//!   │ ◄──────────────── "ready <pid>"      │
//!   │ stops accepting (its accept loop     │
//!   │ ends), drains what it holds          │
//!   │ "released" ────────────────────────► │ accepts: connections that came meanwhile
//!   │                                      │ waited in the kernel's backlog, none refused
//! ```
//!
//! Why the new process waits: the socket is one open file shared by both, its blocking mode
//! too; the old one ends its accept loop by making the socket non-blocking, which would end
//! the new one's as well. So the new one accepts only once the old one's loop has ended, and
//! then makes the socket blocking again. The gap is the old one's stop, milliseconds, during
//! which connections wait in the backlog, as they wait for any busy server.
//!
//! A closed baton says the other side is gone: the new process exited (the upgrade fails),
//! or the old one did (the new one accepts at once).
//!
//! **The line itself.** On Unix, a socket pair: one end is the new process's descriptor 4.
//! On Windows, where a child inherits no socket, a loopback TCP connection the new process
//! opens to the old one (`LAMEDUCK_UPGRADE_BATON`), saying first the token it was given
//! (`LAMEDUCK_UPGRADE_TOKEN`); the old one answers with the listening socket, duplicated for
//! the new process (`WSADuplicateSocketW`, in `os/windows.rs`), before the two messages above.

use std::io::{self, BufRead, BufReader, Write};
use std::time::Duration;

/// The line: a socket pair's end on Unix, a loopback connection on Windows.
#[cfg(unix)]
pub(crate) type Line = std::os::unix::net::UnixStream;
/// The line: a socket pair's end on Unix, a loopback connection on Windows.
#[cfg(windows)]
pub(crate) type Line = std::net::TcpStream;

/// What the new process says when its server is built.
const READY: &str = "ready";
/// What the old process says when its accept loop has ended.
const RELEASED: &str = "released";

/// One end of the baton.
#[derive(Debug)]
pub(crate) struct Baton {
    stream: Line,
}

/// What came over the baton instead of the message waited for.
#[derive(Debug)]
pub(crate) enum Broken {
    /// The other side closed it.
    Closed,
    /// Nothing came in time.
    TimedOut,
    /// Something else came, or the read failed.
    Other(String),
}

impl Baton {
    pub(crate) fn new(stream: Line) -> Baton {
        Baton { stream }
    }

    /// A line of the handshake (Windows), sent.
    #[cfg(windows)]
    pub(crate) fn say(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.stream, "{line}")
    }

    /// A line of the handshake (Windows), waited for up to `timeout`.
    #[cfg(windows)]
    pub(crate) fn hear(&mut self, timeout: Duration) -> Result<String, Broken> {
        self.read_line(timeout)
    }

    /// A copy of the line, to shut it from another thread (which ends a wait on it).
    #[cfg(unix)]
    pub(crate) fn try_clone_line(&self) -> io::Result<Line> {
        self.stream.try_clone()
    }

    /// The new process: its server is built.
    pub(crate) fn say_ready(&mut self) -> io::Result<()> {
        writeln!(self.stream, "{READY} {}", std::process::id())
    }

    /// The old process: waits up to `timeout` for the new one's ready.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<(), Broken> {
        let line = self.read_line(timeout)?;
        match line.split_once(' ') {
            Some((READY, _pid)) => Ok(()),
            _ => Err(Broken::Other(format!("unexpected {line:?}"))),
        }
    }

    /// The old process: its accept loop has ended; the new one may accept.
    pub(crate) fn release(mut self) -> io::Result<()> {
        writeln!(self.stream, "{RELEASED}")
    }

    /// The new process: waits up to `timeout` for the old one to release the socket.
    pub(crate) fn wait_released(&mut self, timeout: Duration) -> Result<(), Broken> {
        let line = self.read_line(timeout)?;
        if line == RELEASED {
            Ok(())
        } else {
            Err(Broken::Other(format!("unexpected {line:?}")))
        }
    }

    fn read_line(&mut self, timeout: Duration) -> Result<String, Broken> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| Broken::Other(e.to_string()))?;
        // One byte at a time: nothing past the line may be read away.
        let mut line = String::new();
        match BufReader::with_capacity(1, &self.stream).read_line(&mut line) {
            Ok(0) => Err(Broken::Closed),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Broken::TimedOut)
            }
            Err(e) => Err(Broken::Other(e.to_string())),
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Closed => f.write_str("the other side closed the baton"),
            Broken::TimedOut => f.write_str("nothing came in time"),
            Broken::Other(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn ready_then_released_and_a_closed_end_is_seen() {
        let (old, new) = Line::pair().unwrap();
        let (mut old, mut new) = (Baton::new(old), Baton::new(new));
        assert!(matches!(
            old.wait_ready(Duration::from_millis(10)),
            Err(Broken::TimedOut)
        ));
        new.say_ready().unwrap();
        old.wait_ready(Duration::from_secs(5)).unwrap();
        old.release().unwrap();
        new.wait_released(Duration::from_secs(5)).unwrap();
        assert!(matches!(
            new.wait_released(Duration::from_secs(5)),
            Err(Broken::Closed)
        ));
    }
}
