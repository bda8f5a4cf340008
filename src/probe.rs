//! The pool probe: finds connections tiny_http has accepted but left without a thread, and
//! gets them one.
//!
//! tiny_http gives each connection a task in its own thread pool. When connections arrive in
//! a burst, the pool counts threads it has just woken as still idle, queues new tasks for
//! them, and may end up with tasks queued and no thread left to run them. Such a task waits
//! until some other connection closes, which for a keep-alive client can be minutes; its
//! request is not even read, and a shutdown then would lose it.
//!
//! Any task that ends lets its thread take the next queued one, and a new connection makes
//! the pool either wake a thread or start one. So a connection to ourselves that closes at
//! once frees exactly one queued task. The probe tells whether any task is queued: it sends
//! a bad request line, which tiny_http answers `400` the moment a thread reads it; if the
//! answer is late, tasks are queued ahead of it, and the probe "kicks" (connects and closes)
//! until its own `400` arrives, which means every task queued before it is running.
//!
//! A background thread, `lameduck-probe-1`, does this every [`INTERVAL`] while the server
//! serves, and [`Server::run`](crate::Server::run) does it once more right before it stops
//! accepting. The probe's connections never reach a handler.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{Error, Listener, Pool};

/// How often the background probe runs.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// How long the probe waits for its `400` before it kicks. A pool with a free thread answers
/// in tens of microseconds; a late answer only costs a needless kick.
const ANSWER_WAIT: Duration = Duration::from_millis(5);

/// The most a rescue keeps kicking.
const RESCUE_LIMIT: Duration = Duration::from_secs(1);

/// Connect timeout for probes and kicks (loopback: microseconds unless the backlog is full).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Runs one probe: returns how many kicks it took for the probe to be answered.
///
/// # Errors
///
/// If the probe could not connect or write (the server no longer accepts, say).
pub(crate) fn rescue(addr: SocketAddr) -> io::Result<usize> {
    let mut probe = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    probe.set_nodelay(true)?;
    probe.write_all(b"\r\n")?;
    probe.set_read_timeout(Some(ANSWER_WAIT))?;
    let start = Instant::now();
    let mut kicks = 0;
    let mut buf = [0u8; 256];
    loop {
        match probe.read(&mut buf) {
            // The 400, or the close that follows it: a thread has read the probe.
            Ok(_) => return Ok(kicks),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if start.elapsed() > RESCUE_LIMIT {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("probe not answered after {kicks} kicks"),
                    ));
                }
                if let Ok(kick) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    drop(kick);
                    kicks += 1;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one probe and logs what it found.
pub(crate) fn rescue_logged(addr: SocketAddr) {
    match rescue(addr) {
        Ok(0) => {}
        Ok(kicks) => log::debug!(
            "pool probe: connections were waiting for a thread; {kicks} kicks freed them"
        ),
        Err(e) => log::debug!("pool probe on {addr}: {e}"),
    }
}

/// The background probe thread.
pub(crate) struct Prober {
    pool: Pool,
    stop: crate::Trigger,
}

impl Prober {
    /// Starts probing `addr` every [`INTERVAL`] until `shutdown` fires or [`Prober::stop`].
    pub(crate) fn start(addr: SocketAddr, shutdown: Listener) -> Result<Prober, Error> {
        let (stop, stopped) = crate::trigger();
        let mut pool = Pool::with_prefix("lameduck-probe");
        pool.spawn(move || loop {
            if stopped.sleep(INTERVAL).is_err() || shutdown.is_triggered() {
                return;
            }
            rescue_logged(addr);
        })?;
        Ok(Prober { pool, stop })
    }

    /// Stops probing; waits (boundedly) for a probe under way to end.
    pub(crate) fn stop(mut self) {
        self.stop.fire(crate::Reason::Requested);
        let _ = self.pool.join_timeout(RESCUE_LIMIT + CONNECT_TIMEOUT);
    }
}
