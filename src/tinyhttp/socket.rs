//! The listening socket: sealing it, stopping tiny_http's accept loop early (while its
//! queued requests are still received), and starting a new one when it has died.
//!
//! **Seal** (Linux). Closing a listening socket resets the connections in its backlog:
//! clients whose handshake completed, who may have sent their request. So the stop first
//! attaches a classic BPF filter to the socket ([`Socket::seal`]) that drops the first
//! packet (a SYN) of every new connection but lameduck's own; the accept loop lives on and
//! takes what the backlog holds, and only then is the socket closed. A client whose SYN was
//! dropped sends it again after a second (TCP's initial retransmission timeout) and is
//! refused, or reaches a restarted server on the same port. The socket stays sealed for a
//! few milliseconds. Before it closes, the connection table shows what the backlog still
//! holds and which connection waits for a thread; a server with no connection at all is
//! told apart without the table (`Table::none_open`: the backlog from one lookup of the
//! listening socket, accepted connections from the process's descriptors), and a handshake
//! still under way then (the client's last ACK not yet in) is not waited for: it is reset as
//! the socket closes, or, if it completes before, its request is answered 503 by the late
//! responder. On loopback a handshake completes within the client's `connect`. Where it cannot be sealed, it is closed once every connection accepted
//! so far has a thread, and the backlog's connections at that instant are reset, as with
//! Go's `Shutdown`.
//!
//! **Stop.** tiny_http stops accepting only when its `Server` is dropped, and dropping it
//! would lose the requests it has queued. Its accept loop, though, ends on the first error
//! `accept` returns. So lameduck binds the listener itself and keeps a clone of it (both
//! handles are one socket); to stop, it turns the socket non-blocking and connects to it
//! once, which wakes the blocked `accept`. tiny_http's next `accept` fails with
//! `WouldBlock`, its loop ends and drops its handle; lameduck drops the clone; the socket is
//! closed and new connects are refused, on Linux, macOS and Windows alike. Connections
//! already accepted keep working, and requests already queued are still received. tiny_http
//! pushes that error into its request queue: whoever receives it fires the generation's
//! `ended` latch. A sealed socket (Linux) is shut down for reading instead: that wakes the
//! blocked `accept` with an error (`EINVAL`) and refuses connects at once, with no
//! connection made, accepted, run by a pool thread and closed for it. At an idle stop that
//! took a quarter of a millisecond of CPU off the exit, of about 2.5 (`benches/NOTES.md`).
//!
//! **Restart.** The same first-error rule ends the loop for good when `accept` fails for
//! another reason, typically when the process is out of file descriptors (EMFILE), and at
//! that point tiny_http can also panic in its accept thread without a word. A new tiny_http
//! server on a fresh clone of the socket accepts again. Until descriptors are free for it,
//! the connections waiting in the kernel's backlog are answered `503` and closed, one at a
//! time, with a descriptor kept in reserve for that ([`Socket::shed_backlog`]), so that no
//! client waits there for nothing.

use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::threads::PoolName;
use crate::shutdown::latch::Latch;

/// How long the wake-up connect may take. On loopback it takes microseconds; it can only
/// be slow if the backlog is full, and then tiny_http is about to `accept` anyway. A bound,
/// not a tuning: a new connection and a whole request take about 0.3 ms beside 1 000 idle
/// connections (`tests/idle.rs`).
const WAKE_TIMEOUT: Duration = Duration::from_millis(100);

/// How long `stop` checks that connects are refused before it gives up and says so. A
/// bound: stopping the accept loop and seeing connects refused took about 1.0 ms (32
/// workers, 30 shutdowns, Linux before the seal; `benches/NOTES.md`).
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(100);

/// One check. A listening socket completes a loopback handshake in microseconds; a closed
/// one is refused at once (Linux, macOS), or retried by the OS for seconds (Windows), which
/// this timeout turns into an answer. A bound, not a tuning: a connect and a whole request
/// take about 0.3 ms beside 1 000 idle connections (`tests/idle.rs`).
const PROBE_TIMEOUT: Duration = Duration::from_millis(20);

/// The first pause between checks, doubled after each one up to [`MAX_PAUSE`]. A check that
/// connects is itself a connection for tiny_http to accept: checking without pauses could
/// keep a slow accept loop (wine's takes about a millisecond per connection) from ever
/// finding its backlog empty: checks every 100 µs did so (`tests/process/hello.rs` under
/// wine, 2026-11-24). Halved to 50 µs with other steps of the shutdown, not measured alone.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
/// The longest pause; not measured: ten times the millisecond wine's accept loop takes per
/// connection.
const MAX_PAUSE: Duration = Duration::from_millis(10);

/// At most this many backlog connections are shed per call.
const SHED_BATCH: usize = 64;

/// Descriptors that must be free before a new accept loop is started: tiny_http needs two
/// per connection, and one it cannot get makes its accept thread panic, which would only
/// start the outage again.
const HEADROOM: usize = 16;

/// Our handle on the listening socket tiny_http accepts from.
pub(crate) struct Socket {
    clone: Option<TcpListener>,
    addr: SocketAddr,
    /// A descriptor held in reserve: closed to make room for one `accept` when the process
    /// is out of them.
    spare: Option<File>,
    /// A connect was seen refused: the stop is complete.
    refused: bool,
    /// The socket drops new connections but lameduck's own (Linux): nothing new gets in,
    /// and the accept loop lives on for the backlog and for kicks (see [`Socket::seal`]).
    sealed: bool,
    /// The connection that woke the accept loop, held open until the loop has ended (an
    /// unsealed socket's).
    wake: Option<TcpStream>,
    /// The name of the threads of every tiny_http server started on it.
    pool_name: PoolName,
}

impl Socket {
    /// Keeps `clone`, a `try_clone` of the listener given to tiny_http, bound to `addr`.
    pub(crate) fn new(clone: TcpListener, addr: SocketAddr, pool_name: PoolName) -> Socket {
        Socket {
            pool_name,
            clone: Some(clone),
            addr,
            spare: open_spare(),
            refused: false,
            sealed: false,
            wake: None,
        }
    }

    /// The socket is another process's now (an upgrade): it stays open, so connects go on
    /// succeeding, and there is nothing to confirm.
    pub(crate) fn handed_over(&mut self) {
        self.refused = true;
    }

    /// A copy of the socket (close-on-exec), while it listens.
    pub(crate) fn listener_copy(&self) -> Option<TcpListener> {
        self.clone.as_ref()?.try_clone().ok()
    }

    /// Begins the stop: makes the socket non-blocking, wakes tiny_http's accept loop so that
    /// it ends, and closes our handle; a sealed socket is shut down instead
    /// ([`shut_down_sealed`]). Idempotent.
    ///
    /// # Errors
    ///
    /// If the socket could not be made non-blocking (the loop then keeps accepting until the
    /// `Server` is dropped).
    pub(crate) fn begin_stop(&mut self) -> io::Result<()> {
        let Some(clone) = self.clone.take() else {
            return Ok(());
        };
        self.spare = None;
        if std::mem::take(&mut self.sealed) {
            match shut_down_sealed(&clone) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    log::debug!(
                        "cannot shut {} down ({e}): waking its accept loop",
                        self.addr
                    );
                    self.refused = false;
                }
            }
        }
        let target = reach(self.addr);
        clone.set_nonblocking(true)?;
        // Connect: tiny_http accepts it (or not: either way its next accept is
        // non-blocking; it takes what is left in the backlog, then ends). The connection is
        // closed only once the loop has ended: the thread tiny_http gives it would otherwise
        // go idle just as the loop drops its thread pool, and tiny_http can then lose the
        // pool's last wake-up and leave that thread waiting for good.
        self.wake = TcpStream::connect_timeout(&target, WAKE_TIMEOUT).ok();
        drop(clone);
        Ok(())
    }

    /// Seals the socket (Linux): from now on a filter of its own drops the first packet of
    /// every new connection but lameduck's own. Nothing new gets in, at once, while the
    /// accept loop lives on: it takes what is left in the backlog (closing the socket would
    /// reset those, losing a request a client sent moments before), and it accepts the
    /// kicks that free connections tiny_http leaves without a thread. [`Socket::begin_stop`]
    /// ends it later. Returns `false` where the socket cannot be sealed: stop it then.
    pub(crate) fn seal(&mut self) -> bool {
        let Some(clone) = &self.clone else {
            return false;
        };
        if self.sealed {
            return true;
        }
        if let Err(e) = filter_new_connections(clone, &[]) {
            log::debug!("cannot seal {}: {e}; closing it instead", self.addr);
            return false;
        }
        self.refused = true; // nothing new can get in: no need to look for a refused connect
        self.sealed = true;
        true
    }

    /// Kicks `count` times through the seal: connections to the socket that close at once,
    /// each of which lets tiny_http's pool run a connection it left without a thread.
    /// Returns the client ends of those that went through.
    pub(crate) fn kick_through_seal(&mut self, count: usize) -> Vec<SocketAddr> {
        let Some(clone) = self.clone.as_ref().filter(|_| self.sealed) else {
            return Vec::new();
        };
        let target = reach(self.addr);
        let kicks: Vec<_> = (0..count)
            .filter_map(|_| bound_socket(target).ok().flatten())
            .collect();
        let ports: Vec<u16> = kicks.iter().map(|(_, port)| *port).collect();
        if filter_new_connections(clone, &ports).is_err() {
            return Vec::new();
        }
        kicks
            .into_iter()
            .filter(|(kick, _)| kick.connect_timeout(&target.into(), WAKE_TIMEOUT).is_ok())
            .map(|(_, port)| SocketAddr::new(target.ip(), port))
            .collect()
    }

    /// The client address of the connection that woke the accept loop, while it is open.
    pub(crate) fn wake_peer(&self) -> Option<SocketAddr> {
        self.wake.as_ref().and_then(|w| w.local_addr().ok())
    }

    /// Ends the stop: returns once a connect to the socket is refused, from when on no client
    /// can reach it. `ended` opens when the end of tiny_http's loop comes out of its queue: a
    /// hint to look at once rather than after the current pause.
    ///
    /// The socket closes when tiny_http's thread, too, has dropped its handle, moments after
    /// its loop ends. Connecting is the one portable way to see that moment.
    ///
    /// # Errors
    ///
    /// If connects still succeeded after [`CONFIRM_TIMEOUT`].
    pub(crate) fn confirm_stopped(&mut self, ended: &Latch) -> io::Result<()> {
        if self.refused {
            return Ok(());
        }
        let confirmed = self.confirm(ended);
        self.wake = None;
        confirmed
    }

    fn confirm(&mut self, ended: &Latch) -> io::Result<()> {
        let addr = reach(self.addr);
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            ended.wait_timeout(pause);
            match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
                Err(_) => {
                    self.refused = true;
                    return Ok(());
                }
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

    /// A new tiny_http server accepting from the socket, after the last one's accept loop
    /// died.
    ///
    /// # Errors
    ///
    /// If fewer than [`HEADROOM`] descriptors are free, or the socket could not be cloned,
    /// or tiny_http could not start, or the socket was already stopped.
    pub(crate) fn new_server(&mut self) -> io::Result<tiny_http::Server> {
        let headroom: io::Result<Vec<File>> = (0..HEADROOM).map(|_| null_file()).collect();
        drop(headroom?);
        let clone = self
            .clone
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the server is stopping"))?;
        let listener = clone.try_clone()?;
        listener.set_nonblocking(false)?;
        let http = self.pool_name.start(listener).map_err(io::Error::other)?;
        if self.spare.is_none() {
            self.spare = open_spare();
        }
        Ok(http)
    }

    /// While no accept loop runs: answers the connections waiting in the backlog with a
    /// `503` (`Retry-After: retry_after`) and closes them, using the reserve descriptor when
    /// the process has none left. Returns how many were answered.
    pub(crate) fn shed_backlog(&mut self, retry_after: Duration) -> usize {
        let Some(clone) = self.clone.as_ref() else {
            return 0;
        };
        if clone.set_nonblocking(true).is_err() {
            return 0;
        }
        let mut shed = 0;
        while shed < SHED_BATCH {
            match clone.accept() {
                Ok((stream, _)) => {
                    refuse(stream, retry_after);
                    shed += 1;
                }
                Err(e) if out_of_descriptors(&e) && self.spare.is_some() => {
                    self.spare = None; // frees one descriptor for the next accept
                }
                Err(_) => break,
            }
        }
        let _ = clone.set_nonblocking(false);
        if self.spare.is_none() {
            self.spare = open_spare();
        }
        shed
    }
}

/// A socket to connect to `target` from, bound first so that its port is known to the seal's
/// filter; `None` where the socket cannot be sealed.
fn bound_socket(target: SocketAddr) -> io::Result<Option<(socket2::Socket, u16)>> {
    if !cfg!(target_os = "linux") {
        return Ok(None);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    let any = SocketAddr::new(target.ip(), 0);
    socket.bind(&any.into())?;
    let port = socket
        .local_addr()?
        .as_socket()
        .map_or(0, |addr| addr.port());
    Ok(Some((socket, port)))
}

/// A filter of the listening socket's own that drops every new connection's first packet
/// (a SYN without ACK) but those from the ports `allowed` (lameduck's own). The client's
/// SYN is retried after a second, and then refused once the socket is closed. A connection
/// whose handshake completed before stays in the backlog, where the accept loop still
/// takes it. Attaching it again replaces it.
///
/// Classic BPF, run on each packet for the socket with the TCP header at offset 0:
/// `flags & (SYN|ACK) == SYN && source port not in allowed` → drop, else keep.
#[cfg(target_os = "linux")]
fn filter_new_connections(listener: &TcpListener, allowed: &[u16]) -> io::Result<()> {
    use socket2::SockFilter;
    const LD_B_ABS: u16 = 0x30; // A = packet[k] (byte)
    const LD_H_ABS: u16 = 0x28; // A = packet[k..k+2] (half word)
    const AND_K: u16 = 0x54; // A &= k
    const JEQ_K: u16 = 0x15; // if A == k goto +jt else goto +jf
    const RET_K: u16 = 0x06; // return k bytes of the packet (0: drop)
    let allowed = &allowed[..allowed.len().min(250)]; // jump offsets are 8 bits
    let n = allowed.len() as u8;
    // 0 flags, 1 SYN|ACK, 2 first packet?, 3 source port, 4.. one test a port, then drop,
    // then keep (at 5 + n).
    let mut program = vec![
        SockFilter::new(LD_B_ABS, 0, 0, 13),
        SockFilter::new(AND_K, 0, 0, 0x12),
        SockFilter::new(JEQ_K, 0, n + 2, 0x02), // not a first packet: keep
        SockFilter::new(LD_H_ABS, 0, 0, 0),
    ];
    for (i, port) in allowed.iter().enumerate() {
        // One of ours: keep; else the next test, after the last of which comes the drop.
        program.push(SockFilter::new(JEQ_K, n - i as u8, 0, u32::from(*port)));
    }
    program.push(SockFilter::new(RET_K, 0, 0, 0));
    program.push(SockFilter::new(RET_K, 0, 0, u32::MAX));
    socket2::SockRef::from(listener).attach_filter(&program)
}

/// Ends the accept loop of a sealed socket, and the socket's listening: shut down for
/// reading, a listening socket wakes a blocked `accept` with an error (`EINVAL`), which
/// ends tiny_http's loop, fails every `accept` after it, and refuses connects from then on,
/// with no connection made to wake it. What is left in its backlog is reset, as by a close:
/// by now only kicks, since the stop has seen every other connection there accepted. On
/// failure the seal is lifted, for a wake-up connect to get through.
#[cfg(target_os = "linux")]
fn shut_down_sealed(listener: &TcpListener) -> io::Result<()> {
    let socket = socket2::SockRef::from(listener);
    let shut = socket.shutdown(Shutdown::Read);
    if shut.is_err() {
        let _ = socket.detach_filter();
    }
    shut
}

#[cfg(not(target_os = "linux"))]
fn shut_down_sealed(_listener: &TcpListener) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "sealing is Linux only",
    ))
}

#[cfg(not(target_os = "linux"))]
fn filter_new_connections(_listener: &TcpListener, _allowed: &[u16]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "sealing is Linux only",
    ))
}

/// Answers a connection lameduck accepted itself with a `503` and closes it.
fn refuse(stream: TcpStream, retry_after: Duration) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n",
        retry_after.as_secs().max(1)
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

fn out_of_descriptors(e: &io::Error) -> bool {
    if cfg!(windows) {
        e.raw_os_error() == Some(10024) // WSAEMFILE
    } else {
        matches!(e.raw_os_error(), Some(23) | Some(24)) // ENFILE, EMFILE
    }
}

fn null_file() -> io::Result<File> {
    File::open(if cfg!(windows) { "NUL" } else { "/dev/null" })
}

fn open_spare() -> Option<File> {
    null_file().ok()
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A sealed socket still hands out a connection made before, takes lameduck's own
    /// connections (kicks), and drops every other new connection's first packet (the
    /// connect times out).
    #[test]
    fn a_sealed_socket_keeps_its_backlog_and_takes_only_lameducks_own() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut before = TcpStream::connect(addr).unwrap();
        before.write_all(b"sent before the seal").unwrap();
        let (wake, port) = bound_socket(addr).unwrap().expect("bound on Linux");
        let (kick, kick_port) = bound_socket(addr).unwrap().expect("bound on Linux");
        filter_new_connections(&listener, &[kick_port, port]).unwrap();

        let refused = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(refused.is_err(), "a new connection got in");
        wake.connect_timeout(&addr.into(), WAKE_TIMEOUT).unwrap();

        let (mut first, _) = listener.accept().unwrap();
        let mut got = [0u8; 20];
        first.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"sent before the seal");
        let (_, from) = listener.accept().unwrap();
        assert_eq!(from.port(), port);
        kick.connect_timeout(&addr.into(), WAKE_TIMEOUT).unwrap();
        let (_, from) = listener.accept().unwrap();
        assert_eq!(from.port(), kick_port);
    }

    /// Shut down, a sealed socket wakes an `accept` blocked on it with an error (which ends
    /// tiny_http's loop), and refuses connects from then on, with no connection made to wake
    /// it.
    #[test]
    fn a_sealed_socket_shut_down_ends_a_blocked_accept_and_refuses_connects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = listener.try_clone().unwrap();
        let name = "sealed-accept";
        let (tx, accepted) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = tx.send(accepting.accept().map(|(_, peer)| peer));
            })
            .unwrap();
        // Blocked in `accept`: asleep, its only wait.
        let until = Instant::now() + Duration::from_secs(5);
        while !asleep(name) {
            assert!(Instant::now() < until, "the thread never blocked in accept");
            std::thread::sleep(Duration::from_millis(1));
        }

        let mut socket = Socket::new(listener, addr, PoolName::new());
        assert!(socket.seal());
        socket.begin_stop().unwrap();
        let accepted = accepted
            .recv_timeout(Duration::from_secs(5))
            .expect("the blocked accept was not woken");
        assert!(accepted.is_err(), "accepted a connection from {accepted:?}");
        assert_eq!(socket.wake_peer(), None, "a connection was made to wake it");
        thread.join().unwrap();
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        socket.confirm_stopped(&Latch::new()).unwrap();
    }

    /// Whether this process's thread named `name` is asleep (`S` in its `stat`).
    fn asleep(name: &str) -> bool {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
            .any(|task| {
                std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                    // `pid (comm) state ...`: the state follows the last `)`.
                    stat.rsplit(')')
                        .next()
                        .map(str::trim_start)
                        .is_some_and(|rest| rest.starts_with('S'))
                })
            })
    }
}
