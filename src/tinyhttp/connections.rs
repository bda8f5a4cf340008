//! The operating system's table of the TCP connections on the server's port: lameduck's one
//! window on the connections tiny_http holds and does not show.
//!
//! tiny_http hands over a request once it has read it whole; of a connection it shows
//! nothing. The kernel keeps, for every connection on the listening port, its peer, its TCP
//! state and the bytes it has received and not yet handed to a reader. From that lameduck
//! sees what the request queue cannot:
//!
//! | what the table shows | what it means |
//! |---|---|
//! | bytes waiting unread, and they stay | a connection tiny_http left without a thread (its thread pool miscounts in a burst): it needs a rescue |
//! | established, not yet accepted (no socket of the process's) | in the listening socket's backlog: tiny_http's accept loop is about to take it |
//!
//! With whether a request of each client came out of tiny_http's queue (`peers.rs`), it also
//! gives the states Go's `net/http` keeps for the connections it owns ([`Census`]), which the
//! drain waits on:
//!
//! | state | Go | what the table shows | the drain |
//! |---|---|---|---|
//! | new | `StateNew` | nothing received yet | waits for it up to the idle linger |
//! | active | `StateActive` | data received, and no request came out yet, or data received after the last data sent (the last response): a request on its way, its head or small body not yet whole | waits for it (up to the deadline) |
//! | idle | `StateIdle` | nothing received since the last response went out | waits up to the idle linger: a request sent by then is served |
//! | unread | — | bytes waiting that no thread has read for a tick (fresher ones count as active) | waits for it (up to the deadline) |
//! | stalled | — | a request began and nothing more came for a second | waits up to the idle linger; named in the report |
//!
//! The kernel gives the times of the last data received and sent in ticks of its own clock
//! (4 ms here): both come from one look and are compared with each other, never with this
//! process's clock, which the kernel's can trail by tens of milliseconds on a busy virtual
//! machine. Data received in the tick the last response went out counts as idle.
//!
//! Where it comes from, per OS:
//!
//! - **Linux**: `sock_diag` over netlink (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`), one
//!   dump per look, filtered by port in the kernel; through `socket2`, without `unsafe`.
//!   A dump walks the kernel's whole table (1.2 ms of CPU here, whatever the connections),
//!   so a look while serving ([`Table::read_serving`]) looks up the connections of the
//!   process's own descriptors one by one instead (0.1 ms for 16), those not seen read
//!   before only, and counts the backlog.
//! - **Windows**: not read. `GetExtendedTcpTable` (iphlpapi) lists each connection's state,
//!   endpoints and owner, and works under wine 8 (`bash .ci/windows tcptable` shows it;
//!   wine reports owner pid 0 for the server's sockets), but not the bytes unread nor the
//!   time of the last data: it cannot tell idle from active or find unread bytes.
//!   `GetPerTcpConnectionEStats` has bytes received, once enabled with administrator
//!   rights; wine 8 does not implement it.
//! - **Elsewhere** (macOS: `proc_pidfdinfo` has no time of last data either): not read.
//!
//! Without a table, lameduck falls back to what it did before it had one (see each user):
//! the drain waits the idle linger after the last response that left a connection open,
//! and the supervisor rescues on timers.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

/// One TCP connection on the server's port, as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Established.
    pub(crate) established: bool,
    /// Still in its handshake: the client's SYN came and was answered. (Neither this nor
    /// established: the client has closed its side, `CLOSE_WAIT`.)
    pub(crate) opening: bool,
    /// Accepted: the process has a socket for it. `false` while it waits in the backlog.
    pub(crate) accepted: bool,
    /// The socket's inode once accepted (0 before), where the OS says: which process's it
    /// is.
    pub(crate) inode: u32,
    /// Bytes received and not yet read by the process.
    pub(crate) unread: u32,
    /// Bytes received since the connection opened, where the OS says.
    pub(crate) received: Option<u64>,
    /// How long ago data last arrived (or, if none ever did, the connection opened), in
    /// whole milliseconds counted in the kernel's ticks, where the OS says.
    pub(crate) quiet_for: Option<Duration>,
    /// How long ago data was last sent (or, if none ever was, the connection opened), on the
    /// same clock as `quiet_for`, where the OS says.
    pub(crate) sent_for: Option<Duration>,
}

/// The kernel's clock for the time of a connection's last data: 4 ms here (HZ=250), 10 ms
/// at the coarsest (HZ=100). Measured by reading a connection's `tcpi_last_data_recv`
/// every few microseconds for 60 ms: it steps by 4 ms. The coarsest is taken: bytes unread
/// for a tick have no thread, on any kernel; and where the OS gives no time of the last data
/// sent, data within a tick of a request counts as that request's.
const TICK: Duration = Duration::from_millis(10);

/// A request that began and got nothing more for this long is stalled: it no longer holds
/// the drain past the idle linger. Slow clients send a head or a small body in pieces a few
/// milliseconds to a few hundred apart; a connection that tiny_http deadlocked (a request
/// line with HTTP/2.0) stays so forever. Not measured: the slowest senders tested pause
/// 100 ms (a head in two writes) and 50 ms (a body byte by byte, `cargo bench --bench
/// versus_go`); a deadlocked connection holds the drain this long at most.
const STALL: Duration = Duration::from_secs(1);

/// The connections on the port, counted by state (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Connections seen at all (accepted, open).
    pub(crate) seen: usize,
    /// Connections in the listening socket's backlog, not yet accepted.
    pub(crate) backlog: usize,
    pub(crate) new: usize,
    pub(crate) active: Vec<SocketAddr>,
    pub(crate) idle: usize,
    pub(crate) unread: Vec<SocketAddr>,
    /// Stalled connections, and whether a request of theirs ever came out.
    pub(crate) stalled: Vec<(SocketAddr, bool)>,
    /// Every connection open is in it: none can come any more, and it lists every one
    /// the reads before it listed ([`Shrinking`]). Otherwise a dump may have skipped one
    /// ([`Table::read`]).
    pub(crate) complete: bool,
}

impl Census {
    /// Counts `connections`, given when the last request of each came out (`last_request`).
    pub(crate) fn take(
        connections: &[Connection],
        last_request: impl Fn(&SocketAddr) -> Option<Instant>,
        now: Instant,
    ) -> Census {
        let mut census = Census {
            backlog: connections
                .iter()
                .filter(|c| (c.established || c.opening) && !c.accepted)
                .count(),
            ..Census::default()
        };
        for c in connections.iter().filter(|c| c.accepted) {
            census.seen += 1;
            if c.unread > 0 {
                // A thread that exists reads its bytes in microseconds: bytes unread for a
                // tick have none. Fresher ones are a request on its way whose thread has not
                // run yet (a busy machine); both hold the drain.
                match c.quiet_for {
                    Some(quiet) if quiet < TICK => census.active.push(c.peer),
                    _ => census.unread.push(c.peer),
                }
                continue;
            }
            if !c.established {
                continue; // the client closed: nothing more can come
            }
            let (Some(received), Some(quiet)) = (c.received, c.quiet_for) else {
                census.idle += 1; // no clock: only the linger holds it
                continue;
            };
            let last = last_request(&c.peer);
            let on_its_way = match (last, c.sent_for) {
                // No request came out: whatever came is the first one, on its way.
                (None, _) => received > 0,
                // Data received after the last data sent (a response) is the next request.
                // Both times come from the kernel's one clock, in the same look: compared
                // with each other, not with this process's clock, which the kernel's can
                // trail by tens of milliseconds on a busy virtual machine (seen: idle
                // connections taken for requests on their way, holding the drain a second).
                (Some(_), Some(sent)) => quiet < sent,
                // The last data came no earlier than this (the clock is a tick coarse).
                (Some(last), None) => now
                    .checked_sub(quiet + TICK)
                    .is_some_and(|data| data > last),
            };
            if !on_its_way {
                if received == 0 {
                    census.new += 1;
                } else {
                    census.idle += 1;
                }
            } else if quiet >= STALL {
                census.stalled.push((c.peer, last.is_some()));
            } else {
                census.active.push(c.peer);
            }
        }
        census
    }

    /// Whether nothing holds the drain beyond the idle linger: nothing on its way, nothing
    /// unread.
    pub(crate) fn only_waiting(&self) -> bool {
        self.active.is_empty() && self.unread.is_empty()
    }

    /// Whether no connection is left that the idle linger would wait for.
    pub(crate) fn is_empty(&self) -> bool {
        self.only_waiting() && self.new == 0 && self.idle == 0 && self.stalled.is_empty()
    }
}

/// The connections listed by the reads of the table once the server accepts no more.
///
/// A dump of the table can skip a connection (see [`Table::read`]), so a drain that would
/// end on what one dump shows reads again to confirm it. But once the accept loop has
/// ended, no connection can come: the set only shrinks. A read then lists every connection
/// open if it lists every one the two reads before it listed (one missed by both of those
/// is as unlikely as one missed by two dumps back to back), and needs no confirmation.
/// With 1 000 idle connections a dump is about 3 ms of CPU (`benches/NOTES.md`).
#[derive(Debug, Default)]
pub(crate) struct Shrinking {
    /// The clients the last two reads listed, the older first.
    last: [Option<HashSet<SocketAddr>>; 2],
}

impl Shrinking {
    /// Notes the clients one read listed, read after the accept loop had ended; returns
    /// whether it lists every connection open.
    pub(crate) fn note(&mut self, listed: HashSet<SocketAddr>) -> bool {
        let complete = match &self.last {
            [Some(older), Some(newer)] => older.iter().chain(newer).all(|p| listed.contains(p)),
            _ => false,
        };
        self.last = [self.last[1].take(), Some(listed)];
        complete
    }
}

/// A reader of the connection table for one listening address.
pub(crate) struct Table {
    #[cfg(target_os = "linux")]
    os: os::SockDiag,
    /// Only the connections this process has accepted, not those of another process
    /// sharing the socket (the new process of an upgrade), nor the backlog it takes.
    own_only: bool,
    /// How much CPU the last [`Table::read_serving`] took.
    took: Duration,
    /// [`Table::unlisted_backlog`].
    backlog: usize,
    /// [`Table::listed_own_only`].
    own_listed: bool,
}

impl Table {
    /// A reader for the connections whose local end is `local` (the listening address).
    ///
    /// # Errors
    ///
    /// `Unsupported` where lameduck cannot read the table on this OS; the OS's error where
    /// it refuses (a sandbox without netlink, say).
    pub(crate) fn open(local: SocketAddr) -> io::Result<Table> {
        #[cfg(target_os = "linux")]
        return Ok(Table {
            os: os::SockDiag::open(local)?,
            own_only: false,
            took: Duration::ZERO,
            backlog: 0,
            own_listed: false,
        });
        #[cfg(not(target_os = "linux"))]
        {
            let _ = local;
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the connection table is read on Linux only",
            ))
        }
    }

    /// The connections on the port now, from one dump of the kernel's table, which may
    /// skip a connection (see [`Table::read`]).
    ///
    /// # Errors
    ///
    /// If the OS did not answer (within a second).
    pub(crate) fn read_once(&mut self) -> io::Result<Vec<Connection>> {
        #[cfg(target_os = "linux")]
        return self.os.read().map(|read| self.keep(read));
        #[cfg(not(target_os = "linux"))]
        Ok(Vec::new())
    }

    /// The connections on the port now, for a look while the server serves: those this
    /// process has accepted, each looked up alone (about 0.1 ms for a few dozen), and the
    /// number waiting in the listening socket's backlog, counted, not listed
    /// ([`Table::unlisted_backlog`]). A dump ([`Table::read_once`]) lists the backlog too,
    /// but walks the kernel's whole table: 1.2 ms of CPU here whatever the number of
    /// connections, and tens of milliseconds with a hundred thousand sockets in
    /// `TIME_WAIT`, as a port serving a connection per request leaves them (whose backlog
    /// is seldom empty), taken from the threads serving requests (`benches/NOTES.md`).
    ///
    /// Left out where the dump is not made: a handshake under way, which the next look sees
    /// accepted, as it sees a connection that comes just after this one. A connection seen
    /// read before is not looked up again (a thread has it to its end): each look reads
    /// the process's descriptors (one system call each) and looks up the new ones, about
    /// 0.8 ms of CPU at 256 connections, where a dump and the listing that found too many
    /// descriptors for lookups took 2.0–2.5 (`benches/NOTES.md`). With more than 4 096
    /// descriptors open, a dump.
    ///
    /// # Errors
    ///
    /// If the OS did not answer (within a second).
    pub(crate) fn read_serving(&mut self) -> io::Result<Vec<Connection>> {
        #[cfg(target_os = "linux")]
        {
            let start = crate::os::unix::thread_cpu_time();
            let read = self.read_serving_now();
            if let (Some(start), Some(end)) = (start, crate::os::unix::thread_cpu_time()) {
                self.took = end.saturating_sub(start);
            }
            read
        }
        #[cfg(not(target_os = "linux"))]
        self.read_serving_now()
    }

    fn read_serving_now(&mut self) -> io::Result<Vec<Connection>> {
        self.backlog = 0;
        self.own_listed = self.own_only;
        #[cfg(target_os = "linux")]
        if let Some((accepted, backlog)) = self.os.read_accepted(!self.own_only)? {
            self.backlog = backlog as usize;
            self.own_listed = true;
            return Ok(accepted);
        }
        self.read_once()
    }

    /// Whether the last [`Table::read_serving`] listed this process's connections only:
    /// looked up by its own descriptors, or kept to them ([`Table::own_only`]). A dump
    /// lists another process's too, on a socket the two share (an upgrade).
    pub(crate) fn listed_own_only(&self) -> bool {
        self.own_listed
    }

    /// How many connections waited in the listening socket's backlog at the last
    /// [`Table::read_serving`] without being listed (0 when it made a dump, which lists
    /// them).
    pub(crate) fn unlisted_backlog(&self) -> usize {
        self.backlog
    }

    /// How much CPU the last [`Table::read_serving`] took (the thread's own time, not the
    /// time it waited for a core among hundreds of threads in a burst): what the looks
    /// while serving pace themselves by. A dump walks every socket in the kernel's table,
    /// those in `TIME_WAIT` too: with a client per request the port leaves thousands
    /// behind, and with 131 000 of them a dump took 30–50 ms of system time here, against
    /// 1.2 ms.
    pub(crate) fn took(&self) -> Duration {
        self.took
    }

    /// Whether no connection is on the port at all, nor in the listening socket's backlog,
    /// shown in 0.1–0.2 ms where a dump of the table takes a millisecond (the kernel walks
    /// its whole table): one lookup of the listening socket gives its backlog, and the
    /// process's own descriptors the connections it has accepted. `false` where that cannot
    /// be shown (more than 4 096 descriptors open, and on other OSes): then
    /// [`Table::read_once`] tells.
    ///
    /// A handshake still under way (the client's SYN answered, its last ACK not yet in)
    /// is in neither, only in the table: call this only once new connections cannot come
    /// (the socket sealed), and know that such a connection is not seen. On loopback a
    /// handshake completes within the client's `connect`. Nor is an accept under way at the
    /// instant of the lookup (the connection taken from the backlog, its descriptor not yet
    /// made: microseconds of the kernel's, unless the machine stops the thread there).
    ///
    /// A connection whose peer is `ours` (lameduck's own, holding no request) does not
    /// count.
    ///
    /// # Errors
    ///
    /// If the OS did not answer the lookup (within a second).
    pub(crate) fn none_open(&mut self, ours: &dyn Fn(SocketAddr) -> bool) -> io::Result<bool> {
        #[cfg(target_os = "linux")]
        return self.os.none_open(ours);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = ours;
            Ok(false)
        }
    }

    /// From now on, only the connections this process has accepted: not those of another
    /// process sharing the socket, nor the backlog, which that process takes.
    pub(crate) fn own_only(&mut self) {
        self.own_only = true;
    }

    /// `read`, without the connections that are not this process's when it should see its
    /// own only.
    #[cfg(target_os = "linux")]
    fn keep(&self, mut read: Vec<Connection>) -> Vec<Connection> {
        if self.own_only {
            let own = os::own_socket_inodes();
            read.retain(|c| c.accepted && own.contains(&c.inode));
        }
        read
    }

    /// The connections on the port now.
    ///
    /// A dump of the kernel's table is not atomic: it comes in parts, and a connection can
    /// be skipped when others in its hash bucket come or go between two parts (seen here
    /// while kicks come and go: three of 64 connections missing from one dump). So this
    /// reads the table twice, back to back, and keeps every connection either read saw, as
    /// the later one saw it.
    ///
    /// # Errors
    ///
    /// If the OS did not answer (within a second).
    pub(crate) fn read(&mut self) -> io::Result<Vec<Connection>> {
        #[cfg(target_os = "linux")]
        {
            let first = self.os.read()?;
            let mut second = self.os.read()?;
            let seen: std::collections::HashSet<SocketAddr> =
                second.iter().map(|c| c.peer).collect();
            second.extend(first.into_iter().filter(|c| !seen.contains(&c.peer)));
            Ok(self.keep(second))
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod shrinking_tests {
    use super::*;

    fn peers(ports: &[u16]) -> HashSet<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    #[test]
    fn a_read_is_complete_once_it_lists_all_the_two_before_it_listed() {
        let mut shrinking = Shrinking::default();
        assert!(
            !shrinking.note(peers(&[1, 2, 3])),
            "nothing to hold it against"
        );
        assert!(
            !shrinking.note(peers(&[1, 2, 3])),
            "one read to hold it against"
        );
        assert!(shrinking.note(peers(&[1, 2, 3])));
        // 2 closed, or this read skipped it: not known complete until two reads agree.
        assert!(!shrinking.note(peers(&[1, 3])));
        assert!(!shrinking.note(peers(&[1, 3])));
        assert!(shrinking.note(peers(&[1, 3])));
        // One missed by the read before: the one before that still names it.
        assert!(!shrinking.note(peers(&[3])));
        assert!(!shrinking.note(peers(&[1])));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::tinyhttp::socket;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn find(table: &mut Table, peer: SocketAddr, ok: impl Fn(&Connection) -> bool) -> Connection {
        find_in(table, Table::read, peer, ok)
    }

    /// An IPv4-mapped address as the IPv4 one it is.
    fn canonical(addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V6(v6) => v6
                .ip()
                .to_ipv4_mapped()
                .map_or(addr, |ip| SocketAddr::new(ip.into(), v6.port())),
            v4 => v4,
        }
    }

    fn find_in(
        table: &mut Table,
        read: fn(&mut Table) -> io::Result<Vec<Connection>>,
        peer: SocketAddr,
        ok: impl Fn(&Connection) -> bool,
    ) -> Connection {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let all = read(table).unwrap();
            if let Some(c) = all
                .iter()
                .find(|c| canonical(c.peer) == canonical(peer) && ok(c))
            {
                return *c;
            }
            assert!(
                Instant::now() < until,
                "{peer} never as expected in {all:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn none_open_sees_the_backlog_and_accepted_connections() {
        for local in ["127.0.0.1:0", "[::1]:0", "0.0.0.0:0"] {
            let Ok(listener) = TcpListener::bind(local) else {
                continue; // no IPv6 here
            };
            let addr = listener.local_addr().unwrap();
            let mut table = Table::open(addr).unwrap();
            assert!(
                table.none_open(&|_| false).unwrap(),
                "{addr}: nothing open yet"
            );

            // In the backlog: the listening socket's lookup shows it (once the kernel has
            // the client's last ACK, which on loopback is before `connect` returns, unless
            // a busy machine defers it).
            let client = TcpStream::connect(socket::reach(addr)).unwrap();
            let until = Instant::now() + Duration::from_secs(5);
            while table.none_open(&|_| false).unwrap() {
                assert!(Instant::now() < until, "{addr}: the backlog never showed");
                std::thread::sleep(Duration::from_millis(1));
            }

            // Accepted: a socket of this process on the port.
            let (server, _) = listener.accept().unwrap();
            assert!(
                !table.none_open(&|_| false).unwrap(),
                "{addr}: one accepted"
            );

            drop(server);
            drop(client);
            assert!(table.none_open(&|_| false).unwrap(), "{addr}: closed again");
        }
    }

    /// Past the most descriptors a look reads, it is unsure (and a dump tells). The bound
    /// is 4 096, more than a test may open beside the others (which expect a look): shown
    /// with a bound of 3, below what any process holds (its standard streams, the listing's
    /// own descriptor).
    #[cfg(target_os = "linux")]
    #[test]
    fn past_the_most_descriptors_a_look_is_unsure() {
        assert!(os::own_descriptors_at_most(3).is_none());
        let all = os::own_descriptors_at_most(usize::MAX).unwrap();
        assert!(all.len() > 3, "{all:?}");
    }

    #[test]
    fn none_open_is_false_for_a_socket_not_this_processs() {
        // A table for a port nothing listens on: no listening socket to find.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut table = Table::open(addr).unwrap();
        assert!(!table.none_open(&|_| false).unwrap());
    }

    #[test]
    fn the_table_shows_the_backlog_then_unread_bytes_then_none() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(local) else {
                continue; // no IPv6 here
            };
            let addr = listener.local_addr().unwrap();
            let mut table = Table::open(addr).unwrap();
            let mut client = TcpStream::connect(addr).unwrap();
            let peer = client.local_addr().unwrap();

            let waiting = find(&mut table, peer, |_| true);
            assert!(waiting.established && !waiting.accepted, "{waiting:?}");

            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            let unread = find(&mut table, peer, |c| c.unread > 0);
            assert!(unread.accepted && unread.established, "{unread:?}");
            assert_eq!(unread.unread, 16);

            let mut buf = [0u8; 16];
            std::io::Read::read_exact(&mut server, &mut buf).unwrap();
            let read = find(&mut table, peer, |c| c.unread == 0);
            assert_eq!(read.received, Some(16));
            let quiet = read.quiet_for.unwrap();
            let later = find(&mut table, peer, |c| {
                c.quiet_for.unwrap() >= quiet + Duration::from_millis(20)
            });
            assert_eq!(later.received, Some(16));
            eprintln!("quiet_for steps: {:?} then {:?}", quiet, later.quiet_for);

            // Another port's connections are not in the table.
            let other = TcpListener::bind(local).unwrap();
            let _o = TcpStream::connect(other.local_addr().unwrap()).unwrap();
            assert!(table
                .read()
                .unwrap()
                .iter()
                .all(|c| c.peer != _o.local_addr().unwrap()));
        }
    }

    #[test]
    fn a_look_while_serving_shows_accepted_connections_as_a_dump_does() {
        // The last: an IPv4 client of a dual-stack socket, its addresses IPv4-mapped.
        for (local, to) in [
            ("127.0.0.1:0", None),
            ("[::1]:0", None),
            ("[::]:0", Some("127.0.0.1")),
        ] {
            let Ok(listener) = TcpListener::bind(local) else {
                continue; // no IPv6 here
            };
            let addr = listener.local_addr().unwrap();
            let to = to.map_or(socket::reach(addr), |ip: &str| {
                SocketAddr::new(ip.parse().unwrap(), addr.port())
            });
            let mut table = Table::open(addr).unwrap();
            let mut client = TcpStream::connect(to).unwrap();
            let peer = client.local_addr().unwrap();

            // In the backlog: a dump lists it, a look while serving counts it.
            let waiting = find_in(&mut table, Table::read_once, peer, |c| !c.accepted);
            assert!(waiting.established, "{local}: {waiting:?}");
            let (looked, backlog) = table.os.read_accepted(true).unwrap().unwrap_or_default();
            assert!(
                looked.iter().all(|c| c.peer != peer) && backlog == 1,
                "{local}: {looked:?}, {backlog} in the backlog"
            );

            // Accepted, its first bytes unread: the look sees what a dump sees, once
            // (tiny_http holds a connection on two descriptors, as here).
            let (mut server, _) = listener.accept().unwrap();
            let _writer = server.try_clone().unwrap();
            client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            // Looked up alone (`None` only while the tests hold over 4 096 descriptors).
            let alone = |t: &mut Table| Ok(t.os.read_accepted(true)?.unwrap_or_default().0);
            let looked = find_in(&mut table, alone, waiting.peer, |c| c.unread == 16);
            let dumped = find(&mut table, waiting.peer, |c| c.unread == 16);
            assert!(looked.accepted && looked.established, "{local}: {looked:?}");
            let alike = alone(&mut table)
                .unwrap()
                .into_iter()
                .filter(|c| c.peer == waiting.peer)
                .count();
            assert!(alike <= 1, "{local}: seen {alike} times");
            assert_eq!(looked.inode, dumped.inode, "{local}");
            assert_eq!(looked.received, Some(16), "{local}");
            assert_eq!(dumped.received, Some(16), "{local}");

            // Read: nothing unread, 16 bytes received.
            let mut buf = [0u8; 16];
            std::io::Read::read_exact(&mut server, &mut buf).unwrap();
            let read = find_in(&mut table, alone, waiting.peer, |c| c.unread == 0);
            assert_eq!(read.received, Some(16), "{local}");

            // Gone: no longer seen (a lookup of a closed connection finds the listening
            // socket instead, which is not a connection).
            drop(server);
            drop(_writer);
            drop(client);
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let all = table.read_serving().unwrap();
                assert!(all.iter().all(|c| c.peer.port() != 0), "{local}: {all:?}");
                if all.iter().all(|c| c.peer != waiting.peer || !c.established) {
                    break;
                }
                assert!(Instant::now() < until, "{local}: never gone: {all:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    #[test]
    fn a_look_while_serving_knows_a_connection_read_before_and_not_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        let alone = |t: &mut Table| Ok(t.os.read_accepted(true)?.unwrap_or_default().0);

        // Read once: known from then on, and still listed as it was.
        let mut first = TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        first.write_all(b"GET").unwrap();
        let mut buf = [0u8; 3];
        std::io::Read::read_exact(&mut server, &mut buf).unwrap();
        let peer = first.local_addr().unwrap();
        let read = find_in(&mut table, alone, peer, |c| c.received == Some(3));
        assert_eq!(read.unread, 0);
        // Known by its cookie (`SO_COOKIE` and the table's agree), not looked up again.
        assert_eq!(table.os.known_read(), 1);
        assert!(alone(&mut table).unwrap().iter().any(|c| c.peer == peer));

        // Closed, and a new connection accepted, likely on the same descriptor: the new one
        // is looked up (its bytes unread, none read), the old one gone.
        drop(server);
        drop(first);
        let mut second = TcpStream::connect(addr).unwrap();
        let (_server, _) = listener.accept().unwrap();
        second.write_all(b"GET /").unwrap();
        let new = second.local_addr().unwrap();
        let unread = find_in(&mut table, alone, new, |c| c.unread == 5);
        assert_eq!(unread.received, Some(5));
        let until = Instant::now() + Duration::from_secs(5);
        while alone(&mut table).unwrap().iter().any(|c| c.peer == peer) {
            assert!(
                Instant::now() < until,
                "the closed connection is still listed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }

        // Past the few hundred descriptors a lookup each once cost as much as a dump:
        // still looked up, not dumped (each connection on two descriptors here, as
        // tiny_http holds them, and a client end beside).
        let mut held = Vec::new();
        for _ in 0..150 {
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            let writer = server.try_clone().unwrap();
            held.push((client, server, writer));
        }
        let looked = table.read_serving().unwrap();
        assert!(
            table.listed_own_only(),
            "a dump, with {} open",
            looked.len()
        );
        for (client, _, _) in &held {
            let peer = client.local_addr().unwrap();
            assert!(
                looked.iter().any(|c| c.peer == peer && c.accepted),
                "{peer} missing"
            );
        }
    }
}
