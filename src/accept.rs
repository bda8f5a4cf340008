//! Stopping tiny_http's accept loop early, while its queued requests are still received.
//!
//! tiny_http stops accepting only when its `Server` is dropped, and dropping it would lose
//! the requests it has queued. Its accept loop, though, ends on the first error `accept`
//! returns. So lameduck binds the listener itself and keeps a clone of it (both handles are
//! one socket); to stop, it turns the socket non-blocking and connects to it once, which
//! wakes the blocked `accept`. tiny_http's next `accept` fails with `WouldBlock`, its loop
//! ends and drops its handle; lameduck drops the clone; the socket is closed and new
//! connects are refused, on Linux, macOS and Windows alike. Connections already accepted keep
//! working, and requests already queued are still received.
//!
//! tiny_http pushes that `WouldBlock` error into its request queue: whoever receives it
//! learns that the loop has ended (see `State::accept_ended`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::Listener;

/// How long the wake-up connect may take. On loopback it takes microseconds; it can only
/// be slow if the backlog is full, and then tiny_http is about to `accept` anyway.
const WAKE_TIMEOUT: Duration = Duration::from_millis(100);

/// How long `stop` checks that connects are refused before it gives up and says so.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(100);

/// One check. A listening socket completes a loopback handshake in microseconds; a closed
/// one is refused at once (Linux, macOS), or retried by the OS for seconds (Windows), which
/// this timeout turns into an answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(20);

/// The first pause between checks, doubled after each one up to [`MAX_PAUSE`]. A check that
/// connects is itself a connection for tiny_http to accept: checking without pauses could
/// keep a slow accept loop (wine's takes about a millisecond per connection) from ever
/// finding its backlog empty.
const FIRST_PAUSE: Duration = Duration::from_micros(100);
const MAX_PAUSE: Duration = Duration::from_millis(10);

/// Our handle on the listening socket tiny_http accepts from.
pub(crate) struct AcceptStop {
    clone: Option<TcpListener>,
    addr: SocketAddr,
}

impl AcceptStop {
    /// Keeps `clone`, a `try_clone` of the listener given to tiny_http, bound to `addr`.
    pub(crate) fn new(clone: TcpListener, addr: SocketAddr) -> AcceptStop {
        AcceptStop {
            clone: Some(clone),
            addr,
        }
    }

    /// Stops tiny_http's accept loop, closes our handle on the socket, and returns once a
    /// connect to it is refused: from then on no client can reach the socket. Idempotent.
    ///
    /// # Errors
    ///
    /// If the socket could not be made non-blocking (the loop then keeps accepting until the
    /// `Server` is dropped), or connects still succeeded after [`CONFIRM_TIMEOUT`].
    ///
    /// `ended` fires when the end of tiny_http's loop comes out of its queue: a hint to check
    /// at once rather than after the current pause.
    pub(crate) fn stop(&mut self, ended: &Listener) -> io::Result<()> {
        let Some(clone) = self.clone.take() else {
            return Ok(());
        };
        clone.set_nonblocking(true)?;
        let addr = reach(self.addr);
        // Connect, then close at once: tiny_http accepts it (or not: either way its next
        // accept is non-blocking), reads end-of-file and forgets it.
        let _ = TcpStream::connect_timeout(&addr, WAKE_TIMEOUT);
        drop(clone);
        // The socket closes when tiny_http's thread, too, has dropped its handle, moments
        // after its loop ends. Connecting is the one portable way to see that moment.
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            ended.wait_timeout(pause);
            match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
                Err(_) => return Ok(()),
                Ok(probe) => drop(probe),
            }
            if start.elapsed() > CONFIRM_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connects to {addr} still succeed {CONFIRM_TIMEOUT:?} after the stop"),
                ));
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// Where to connect to reach a listener bound to `addr`: an unspecified address (`0.0.0.0`,
/// `[::]`) is reached through loopback, which Windows requires.
pub(crate) fn reach(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
