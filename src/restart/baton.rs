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

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What the new process says when its server is built.
const READY: &str = "ready";
/// What the old process says when its accept loop has ended.
const RELEASED: &str = "released";

/// One end of the baton.
#[derive(Debug)]
pub(crate) struct Baton {
    stream: UnixStream,
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
    pub(crate) fn new(stream: UnixStream) -> Baton {
        Baton { stream }
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

    #[test]
    fn ready_then_released_and_a_closed_end_is_seen() {
        let (old, new) = UnixStream::pair().unwrap();
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
