//! Parking: tiny_http's idle pool threads, each held on a connection of lameduck's own, so
//! that its pool never counts a thread as waiting, and a burst never meets the bug that
//! leaves connections without a thread.
//!
//! tiny_http's pool queues a new connection instead of starting a thread for it whenever
//! it counts a thread as waiting, and it counts a thread it has already woken as waiting
//! until that thread runs (`rescue.rs`). One waiting thread is enough: every connection of a
//! burst that arrives before the woken thread runs is queued, and all but one stay queued,
//! unread, until the rescue kicks for them. A fresh server always has such threads (its 4
//! resident ones), and every connection that closes leaves one for 5 s.
//!
//! A thread that holds a connection is not waiting. So the supervisor connects to the
//! server once for every idle pool thread it counts (pool threads beyond the connections
//! accepted, `threads.rs`), and sends one byte: tiny_http gives each such connection to a
//! waiting thread, which reads it and blocks reading the rest of a request that never
//! comes. With no thread waiting,
//! tiny_http starts a thread for each connection of a burst, as it is meant to. Measured on
//! plain tiny_http 0.12 (a request on a closed connection, then 256 keep-alive connections
//! at once, one request each, 8 runs): without parking, 0, 1, 0, 0, 65, 1, 57 and 1 of 256
//! were left without a thread; with its 5 idle threads parked, none in 14 runs, 6 of them
//! beside two busy loops.
//!
//! A thread goes idle whenever its connection closes, and is parked at the supervisor's
//! next look: a millisecond after a new connection's first request (for one that closes
//! that soon: a probe), within 10 ms while connections come, within a second otherwise
//! (`supervisor.rs`). A burst that comes in between meets it, and so does one that comes
//! before the thread woken for its parked connection has run (milliseconds on a busy
//! machine): the rescue frees what tiny_http queued then.
//!
//! A parked thread is also the fastest rescue there is: closing its connection lets the
//! thread take the next queued connection at once (it is woken, not started, and no
//! accept is needed), so the rescue releases parked threads before it kicks. At a stop,
//! every parked connection is released first; the drain, the stats and the stop's look at
//! the table leave them out ([`Parking::is_ours`]).
//!
//! Only where the pool's threads can be counted (Linux); the parked threads never end by
//! themselves (tiny_http has no read timeout), so at most [`MOST_PARKED`] are held, and
//! tiny_http's pool shrinks only beyond those.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
use super::connections::Table;
#[cfg(target_os = "linux")]
use super::threads::Threads;

/// The most pool threads held parked at once. A fresh server has 4 idle (tiny_http's
/// resident threads), one more for each connection that closed in the last 5 s, and one
/// for the supervisor's ping (`supervisor.rs`). Each parked thread holds a thread (which
/// tiny_http would have kept for 5 s at least) and two descriptors, for as long as the
/// server serves. Not measured beyond that the 5 of a fresh server after one request are
/// all parked.
pub(crate) const MOST_PARKED: usize = 8;

/// What a parked connection sends: the first byte of a request line that never ends. The
/// thread that holds it reads it and waits for the rest, so the connection table shows
/// which parked connections a thread holds (their byte read); released, tiny_http takes
/// the end of the connection in the middle of a request line as a client gone, and
/// answers nothing.
///
/// A parked connection is closed with a reset (`SO_LINGER` 0, set as it is made): its
/// thread's read fails at once and tiny_http drops the connection without sending a `FIN`
/// back, and neither end lingers in the kernel. Closed with a `FIN`, the stop's release of
/// the parked threads was the largest piece of an idle exit's extra CPU (`perf`, README).
const PARKED: &[u8] = b"P";

/// How long a connect to park a thread may take: the server's own accept loop, on the same
/// machine.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// The threads tiny_http 0.12's pool starts with (its `MIN_THREADS`), from its accept
/// thread once that runs; they wait from then on.
#[cfg(target_os = "linux")]
const RESIDENT: usize = 4;

/// How often [`Parking::park_idle_now`] looks again while it waits for parked connections
/// to be held: a look is a lookup of each connection accepted (`Table::read_serving`; a
/// dump of the whole table, about 1.2 ms, while the backlog holds some) and a count of the
/// threads.
#[cfg(target_os = "linux")]
const SETTLE_POLL: Duration = Duration::from_micros(200);

/// How many addresses of released connections are remembered as this process's own, for
/// the looks that may still find their server ends open for a moment.
const RELEASED_KEPT: usize = 64;

/// The parked connections of one server.
pub(crate) struct Parking {
    addr: SocketAddr,
    inner: Mutex<Inner>,
}

/// One parked connection: its client end, and that end's address (what the server's side
/// of the connection table shows as its peer).
struct Parked {
    stream: TcpStream,
    addr: SocketAddr,
}

struct Inner {
    /// Oldest first.
    parked: VecDeque<Parked>,
    /// Client addresses of connections released lately, newest last.
    released: VecDeque<SocketAddr>,
    /// Released for good: the server stops.
    closed: bool,
}

impl Parking {
    /// Nothing parked yet; connections go to `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Parking {
        Parking {
            addr,
            inner: Mutex::new(Inner {
                parked: VecDeque::new(),
                released: VecDeque::new(),
                closed: false,
            }),
        }
    }

    /// Connections parked now.
    pub(crate) fn len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Parks up to `idle` more idle threads, within [`MOST_PARKED`]; returns how many
    /// connections went through. Nothing once [`Parking::release_all`] was called.
    pub(crate) fn park(&self, idle: usize) -> usize {
        let want = {
            let inner = self.lock();
            if inner.closed {
                return 0;
            }
            idle.min(MOST_PARKED.saturating_sub(inner.parked.len()))
        };
        let mut parked = 0;
        for _ in 0..want {
            let connected = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
                .and_then(|stream| Ok((stream.local_addr()?, stream)))
                .and_then(|(addr, mut stream)| {
                    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                    stream.write_all(PARKED)?;
                    Ok(Parked { stream, addr })
                });
            match connected {
                Ok(one) => {
                    let mut inner = self.lock();
                    if inner.closed {
                        // Released for good meanwhile: this one too (it is still ours).
                        inner.remember(one.addr);
                        break;
                    }
                    inner.parked.push_back(one);
                    parked += 1;
                }
                Err(e) => {
                    log::debug!("parking: connect to {} failed: {e}", self.addr);
                    break;
                }
            }
        }
        if parked > 0 {
            log::trace!("parking: {parked} more idle threads parked");
        }
        parked
    }

    /// Parks tiny_http's idle threads and waits until each holds its parked connection
    /// (its byte read), before the server says it is ready: a burst at once (clients of a
    /// server just restarted) must not meet a thread still waiting. At most `bound`, and
    /// no wait once a client's connection is there; returns how many are parked and held.
    ///
    /// # Errors
    ///
    /// If the table or the threads cannot be read.
    #[cfg(target_os = "linux")]
    pub(crate) fn park_idle_now(
        &self,
        table: &mut Table,
        threads: &mut Threads,
        bound: Duration,
    ) -> io::Result<usize> {
        let until = Instant::now() + bound;
        loop {
            let conns = table.read_serving()?;
            let (named, exact) = threads.count()?;
            // Its accept thread aside.
            let pool = named.saturating_sub(1);
            let open = conns.iter().filter(|c| c.accepted).count();
            let held = conns
                .iter()
                .filter(|c| c.accepted && c.unread == 0 && c.received != Some(0))
                .filter(|c| self.is_ours(c.peer))
                .count();
            if exact && pool >= RESIDENT && pool <= open && held == self.len() {
                return Ok(held);
            }
            // Clients already: the accept loop serves them, and what it leaves without a
            // thread is the supervisor's, which starts once this returns. No wait then.
            let clients = conns.iter().any(|c| !self.is_ours(c.peer));
            if clients || Instant::now() >= until {
                if exact && pool > open {
                    self.park(pool - open);
                }
                log::debug!(
                    "parking at the start: {held} of {} parked held, {pool} pool threads, \
                     {open} connections open{}",
                    self.len(),
                    if clients {
                        ", clients among them"
                    } else {
                        ", bound reached"
                    }
                );
                return Ok(held);
            }
            // Every connection so far is a parked one (a client's ends the wait above), and
            // each parked one takes a thread, accepted yet or not: one still in the backlog
            // is not open yet, and counting only the open ones parked more than the idle
            // threads (a test beside a busy loop on each core: 8 parked on 4 threads, 4 of
            // them left without one; looks a millisecond apart had hidden it).
            let taken = open.max(self.len());
            if exact && pool > taken {
                self.park(pool - taken);
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// Nothing to park where tiny_http's threads cannot be counted.
    ///
    /// # Errors
    ///
    /// None.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn park_idle_now(
        &self,
        _: &mut super::connections::Table,
        _: &mut super::threads::Threads,
        _: Duration,
    ) -> io::Result<usize> {
        Ok(0)
    }

    /// Releases up to `n` parked threads, the newest first, each to take the next
    /// connection tiny_http queued (or to wait); returns the client addresses of their
    /// connections.
    pub(crate) fn release(&self, n: usize) -> Vec<SocketAddr> {
        let mut inner = self.lock();
        let mut released = Vec::new();
        for _ in 0..n {
            let Some(one) = inner.parked.pop_back() else {
                break;
            };
            inner.remember(one.addr);
            released.push(one.addr);
        }
        released
    }

    /// Releases one parked thread and waits, at most `wait`, until its connection has
    /// ended (the thread then takes the next queued connection, or waits for one); `true`
    /// if one was released and seen ended.
    pub(crate) fn release_one_and_wait(&self, wait: Duration) -> bool {
        let one = {
            let mut inner = self.lock();
            let Some(one) = inner.parked.pop_back() else {
                return false;
            };
            inner.remember(one.addr);
            one
        };
        ended_within(one.stream, wait).unwrap_or(false)
    }

    /// Releases every parked thread, for good: the server stops.
    pub(crate) fn release_all(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        while let Some(one) = inner.parked.pop_front() {
            inner.remember(one.addr);
        }
    }

    /// Whether `peer` is the client end of a connection parked now or released lately:
    /// lameduck's own, holding no request.
    pub(crate) fn is_ours(&self, peer: SocketAddr) -> bool {
        let inner = self.lock();
        inner.released.contains(&peer) || inner.parked.iter().any(|one| one.addr == peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn remember(&mut self, addr: SocketAddr) {
        if self.released.len() == RELEASED_KEPT {
            self.released.pop_front();
        }
        self.released.push_back(addr);
    }
}

/// Ends `stream`'s sending side and waits, at most `wait`, for the server to close its
/// end: then the thread that held it is done with it.
fn ended_within(mut stream: TcpStream, wait: Duration) -> io::Result<bool> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(wait.max(Duration::from_micros(1))))?;
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A server that answers nothing: each accepted connection is held until the client
    /// closes it, then closed.
    fn holder() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16];
                    while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
                    let _ = stream.flush();
                });
            }
        });
        addr
    }

    /// What parking is for: with every idle pool thread of tiny_http parked, a burst of
    /// connections gets a thread each. Without it, tiny_http left 13, 3, 7, 24, 0 and 0 of
    /// 32 without one in six runs of the same burst (`threads.rs`).
    #[cfg(target_os = "linux")]
    #[test]
    fn with_every_idle_thread_parked_a_burst_gets_a_thread_for_each_connection() {
        use super::super::threads::PoolName;
        const CONNS: usize = 32;
        const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let name = PoolName::new();
        let server = name.start(listener).unwrap();
        let mut threads = Threads::new(name);
        threads.warm();
        let mut table = Table::open(addr).unwrap();
        let respond = |request: tiny_http::Request| {
            request.respond(tiny_http::Response::empty(204)).unwrap();
        };
        // Every pool thread holds a parked connection, its byte read.
        let parking = Parking::new(addr);
        let held = parking
            .park_idle_now(&mut table, &mut threads, Duration::from_secs(10))
            .unwrap();
        // tiny_http 0.12 starts 4 threads that wait from its start (and one still starting
        // when a parked connection came makes the pool start another for it).
        assert!(
            held >= 4 && held == parking.len(),
            "{held} of {} held",
            parking.len()
        );

        let conns: Vec<TcpStream> = (0..CONNS)
            .map(|_| {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(REQUEST).unwrap();
                c
            })
            .collect();
        // No kick: each is read by a thread of its own.
        for served in 0..CONNS {
            let request = server.recv_timeout(Duration::from_secs(10)).unwrap();
            respond(request.unwrap_or_else(|| panic!("{served} of {CONNS} read, then none")));
        }
        for mut c in conns {
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 204");
        }
        parking.release_all();
    }

    #[test]
    fn parks_within_its_bound_releases_and_remembers_its_own() {
        let parking = Parking::new(holder());
        assert_eq!(parking.park(MOST_PARKED + 3), MOST_PARKED);
        assert_eq!(parking.park(1), 0, "no more than the bound");
        let released = parking.release(2);
        assert_eq!(released.len(), 2);
        assert!(released.iter().all(|&a| parking.is_ours(a)));
        assert_eq!(parking.len(), MOST_PARKED - 2);
        assert!(
            parking.release_one_and_wait(Duration::from_secs(5)),
            "the server end closes once the client's does"
        );
        parking.release_all();
        assert_eq!(parking.len(), 0);
        assert_eq!(parking.park(1), 0, "nothing parks once released for good");
        assert!(!parking.is_ours("127.0.0.1:1".parse().unwrap()));
    }

    /// A released parked connection ends with a reset: the thread that held it reads an
    /// error at once, and sends nothing back. Linux, where threads are parked (wine closes
    /// such a socket gracefully: the held end reads the end of stream).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_released_connection_is_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let parking = Parking::new(listener.local_addr().unwrap());
        assert_eq!(parking.park(1), 1);
        let (mut held, _) = listener.accept().unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        held.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, PARKED);

        parking.release_all();
        let end = held.read(&mut byte);
        assert_eq!(
            end.as_ref().map_err(io::Error::kind).err(),
            Some(io::ErrorKind::ConnectionReset),
            "the held end read {end:?}"
        );
    }
}
