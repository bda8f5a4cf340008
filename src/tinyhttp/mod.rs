//! The seam: everything lameduck does because it serves with tiny_http, and the only place
//! that touches tiny_http's `Server`. The rest of the crate sees a [`Queue`] of requests, a
//! listening socket it can close, helper threads it can start and stop, and functions that
//! write responses; handlers see tiny_http's `Request` and `Response`, which lameduck
//! re-exports.
//!
//! # tiny_http 0.12's quirks, and what lameduck does about each
//!
//! | quirk | what lameduck does | where |
//! |---|---|---|
//! | Many threads blocking in its one queue; `unblock` wakes one of them, whichever; a timed receive can take the wake-up of a push and leave the request for nobody. | Idle workers block in its queue while the server serves (a request wakes one); a thread of lameduck's that must take the queue over turns the workers out first, waking each still inside with an `unblock` of its own, and then receives alone. | `queue.rs` |
//! | Its accept loop stops only when its `Server` is dropped, which loses the queued requests. | lameduck keeps a clone of the listening socket, makes it non-blocking and connects once: the loop ends on `WouldBlock`, the socket closes, the queue is still served. Before that (Linux) the socket is sealed, so that what its backlog holds is accepted, not reset; a sealed socket is then shut down for reading instead (the loop ends on `EINVAL`, and no connection is made). | `socket.rs` |
//! | The accept loop ends for good on its first error, or panics silently when out of file descriptors. | Noticed (its error in the queue; every 300 ms, on Linux its thread gone, elsewhere a ping that goes unanswered); the backlog is answered 503 with a reserve descriptor; a new tiny_http server is started on the same socket once 16 descriptors are free. | `supervisor.rs`, `socket.rs` |
//! | In a burst of connections its thread pool miscounts idle threads: some connections get no thread, unread, until another connection closes. It happens only while some pool thread waits. | Where its threads can be counted (Linux), none waits: each idle one is parked, held on a connection of lameduck's own, and a few more such connections (spares) are queued for the next threads whose connections end, so a burst gets a new thread for every connection. Those left without one anyway (a thread went idle just before) are freed by releasing parked threads, then by kicks (connections to itself that close at once): in the background when new connections were seen, as many as the OS's connection table shows accepted beyond tiny_http's threads (counted by the name they inherit), and before the socket closes at shutdown, from the table where there is one. | `parking.rs`, `rescue.rs`, `threads.rs`, `connections.rs` |
//! | An `unblock` no receiver takes stays in its queue, first in first out, ahead of the requests read after it; its `try_recv` and `recv_timeout` say "nothing" for it, as for an empty queue. | Each `unblock` lameduck puts in is counted, and each one a receiver takes; a leader skips those left before it receives. Turning workers out of the queue adds one more per millisecond they are slow, not one each. | `queue.rs` |
//! | Its queue is unbounded and shows nothing of its length. | While every worker is busy, the shedder becomes the receiver and bounds the waiting requests; 503 beyond. | `shedder.rs` |
//! | It shows nothing of its connections: a request on its way, an idle keep-alive connection and a deadlocked one look alike (nothing in the queue). | The OS's table of the connections on the port (Linux), held against when each client's last request came out: the drain waits for requests on their way, lingers for idle connections, gives up on stuck ones. | `connections.rs`, `peers.rs` |
//! | No idle or read timeout: an idle keep-alive connection cannot be closed, and holds a thread. | Every response after the fire says `Connection: close`; the drain waits the idle linger for a request on an idle connection; after the drain, requests still arriving get `503` + `Connection: close` while the value `run` returned lives. | `late_responder.rs` |
//! | It reads a body as chunked whenever `Transfer-Encoding` is there, whatever its value, and ignores `Content-Length` then: a proxy that reads the bytes another way sees another request (smuggling). | An unknown coding is answered `501`, `Transfer-Encoding` with `Content-Length` `400`, and the connection is refused from then on. | `framing.rs` |
//! | A `Connection` header a response sets is dropped. | Responses are written on the request's raw writer with `Connection: close` inserted after the status line. | `response.rs` |
//! | After a write times out, its chunked encoder writes twice more while dropped, each waiting out the timeout. | The writer fails every write after the first failure at once. | `response.rs` |
//! | A header value holding CR or LF is written as is (response splitting). | Such a response is refused: 500 instead. | `response.rs` |
//! | No limit on the size of a request head while it is read. | Heads over the limit are answered 431 once read; the memory is freed after. | `response.rs` |
//! | A body shorter than its `Content-Length` (client gone) reads as a short `Ok`. | [`Body`](crate::Body) and [`read_body`](crate::read_body) return `UnexpectedEof`. | `body.rs` |
//! | A request line with a version above 1.1 (`PRI * HTTP/2.0`, an h2c prior-knowledge preface) deadlocks its connection's thread writing its own 505; the thread and two descriptors stay until the process exits. Any client can cause it. | Nothing inside tiny_http's API frees them; the drain names such a connection stuck after a second of silence and does not wait for it. Shield the server behind a proxy that speaks HTTP/1.1 upstream (nginx). | `connections.rs` |
//! | It logs `Error accepting new client` when its accept loop ends, which lameduck makes it do at every shutdown. | Filter it: `RUST_LOG=info,tiny_http=off`, as the examples do. | — |
//! | One thread per connection. | Nothing to do without replacing tiny_http; size for it. | — |

mod body;
mod connections;
mod framing;
mod gauges;
mod late_responder;
mod parking;
mod peers;
mod queue;
mod rescue;
pub(crate) mod response;
mod shedder;
mod socket;
mod supervisor;
mod threads;

pub use body::{read_body, Body};
pub(crate) use gauges::Gauges;
pub(crate) use late_responder::LateResponder;
pub(crate) use queue::{Queue, Taken};
pub(crate) use response::{
    head_size, head_too_large, internal_error, plain, send, splitting_header, unavailable,
};
pub(crate) use shedder::{Occupancy, Shedder};
pub(crate) use supervisor::Supervisor;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::{Request, ResponseBox};

pub(crate) use connections::Census;
use connections::{Shrinking, Table};
use parking::Parking;
use peers::Peers;
use socket::{reach, Socket};
use supervisor::Watched;
use threads::{OwnThreads, PoolName, Threads};

use crate::error::Error;
use crate::restart::baton::Baton;
use crate::shutdown::latch::Latch;
use crate::shutdown::trigger::Listener;

/// The tiny_http side of one server: its queue, its listening socket, what the rescue
/// knows of its connections.
pub(crate) struct Http {
    queue: Arc<Queue>,
    socket: Arc<Mutex<Socket>>,
    peers: Arc<Peers>,
    /// The OS's table of the connections on the port, where there is one.
    table: Arc<Mutex<Option<Table>>>,
    /// What the reads of the table listed once the accept loop had ended.
    shrinking: Mutex<Shrinking>,
    /// The stop found no connection, and none can come (but what its look cannot see: see
    /// `Table::none_open`): the drain need not look.
    none_left: std::sync::atomic::AtomicBool,
    /// Set by a hand-off: opens when tiny_http's accept loop has ended. Until then it may
    /// still accept a connection from the socket's backlog, which the drain must wait for.
    handing_off: std::sync::OnceLock<Latch>,
    /// Another process holds the socket too (see [`Http::start`]).
    keep_open: bool,
    /// The room's count and the connections last seen, for stats.
    gauges: Arc<Gauges>,
    addr: SocketAddr,
    /// tiny_http's idle threads, held on connections of lameduck's own (`parking.rs`).
    parking: Arc<Parking>,
    /// tiny_http's threads, counted (`threads.rs`).
    threads: Arc<Mutex<Threads>>,
    /// Where lameduck's own threads are announced (`threads.rs`).
    own: OwnThreads,
}

/// The longest the start waits for tiny_http's idle threads to be parked (`parking.rs`).
/// A bound: on an idle machine it takes a few milliseconds.
const PARK_BOUND: Duration = Duration::from_millis(100);

impl Http {
    /// Starts tiny_http accepting from `listener`, with a waiting room of `max_waiting`
    /// places; writes to clients block at most `write_timeout` (zero: no limit).
    ///
    /// `keep_open`: another process holds the socket too and hands it to the next server
    /// (systemd's socket activation). The stop then leaves it as it is ([`Http::hand_off`]
    /// without a baton): no seal, whose filter would drop every new connection of the next
    /// server, and no wait for connects to be refused, since they never are.
    ///
    /// # Errors
    ///
    /// [`Error::Listener`] if the listener could not be set up, [`Error::Start`] if tiny_http
    /// could not start.
    pub(crate) fn start(
        listener: TcpListener,
        max_waiting: usize,
        write_timeout: Duration,
        keep_open: bool,
    ) -> Result<Http, Error> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Listener("read the listener's address", e))?;
        // tiny_http's accept loop ends on the first error: a non-blocking listener (say, one
        // from socket activation) would end it at once.
        listener
            .set_nonblocking(false)
            .map_err(|e| Error::Listener("make the listener blocking", e))?;
        if !write_timeout.is_zero() {
            // Accepted connections inherit it (Linux, and Windows under wine, checked).
            socket2::SockRef::from(&listener)
                .set_write_timeout(Some(write_timeout))
                .map_err(|e| Error::Listener("set the write timeout", e))?;
        }
        let clone = listener
            .try_clone()
            .map_err(|e| Error::Listener("clone the listener", e))?;
        let pool_name = PoolName::new();
        let http = pool_name.start(listener).map_err(Error::Start)?;
        let mut table = match Table::open(addr) {
            Ok(table) => Some(table),
            Err(e) => {
                log::debug!("no connection table for {addr} ({e}): rescues are timed");
                None
            }
        };
        let parking = Arc::new(Parking::new(reach(addr)));
        let mut threads = Threads::new(pool_name.clone());
        if let Some(table) = table.as_mut() {
            threads.warm();
            if let Err(e) = parking.park_idle_now(table, &mut threads, PARK_BOUND) {
                log::debug!("parking: {e}");
            }
        }
        let peers = Arc::new(Peers::new());
        let gauges = Arc::new(Gauges::new());
        Ok(Http {
            queue: Arc::new(Queue::new(
                http,
                max_waiting,
                Arc::clone(&peers),
                Arc::clone(&gauges),
            )),
            socket: Arc::new(Mutex::new(Socket::new(clone, addr, pool_name.clone()))),
            parking,
            own: threads.own_threads(),
            threads: Arc::new(Mutex::new(threads)),
            peers,
            table: Arc::new(Mutex::new(table)),
            shrinking: Mutex::new(Shrinking::default()),
            none_left: std::sync::atomic::AtomicBool::new(false),
            handing_off: std::sync::OnceLock::new(),
            keep_open,
            gauges,
            addr,
        })
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The queue of requests.
    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// What the seam shows a stats snapshot: the room's count, the connections last seen.
    pub(crate) fn gauges(&self) -> &Arc<Gauges> {
        &self.gauges
    }

    /// Starts the supervisor (`supervisor.rs`), until stopped, or until `fire` fires if
    /// given.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if its thread could not be started.
    pub(crate) fn supervise(
        &self,
        retry_after: Duration,
        fire: Option<Listener>,
    ) -> Result<Supervisor, Error> {
        Supervisor::start(
            Watched {
                queue: Arc::clone(&self.queue),
                socket: Arc::clone(&self.socket),
                peers: Arc::clone(&self.peers),
                table: Arc::clone(&self.table),
                threads: Arc::clone(&self.threads),
                parking: Arc::clone(&self.parking),
                gauges: Arc::clone(&self.gauges),
                addr: reach(self.addr),
                retry_after,
            },
            fire,
        )
    }

    /// Stops accepting, and returns once no new connection can get in; `between` runs once
    /// the accept loop has been told to end, while the socket closes.
    ///
    /// Where the socket can be sealed (Linux), that is at once: a connection in its backlog
    /// is still accepted (served, not reset as closing the socket would), and one left
    /// without a thread is kicked for through the seal; then the accept loop ends and the
    /// socket closes, or, if no connection is open at all ([`Http::none_left`]), stays
    /// sealed until [`Http::end_accept_loop`]. Elsewhere: every connection accepted so far first gets a thread
    /// (from the connection table's evidence where there is one, otherwise timed, unless no
    /// connection arrived since a rescue last found nothing to free; freed requests the timed
    /// rescue takes from the queue go to the waiting room, or to `shed` if it is full); then
    /// the socket closes, and this returns once a connect to it is refused.
    ///
    /// # Errors
    ///
    /// If the socket could not be made non-blocking, or connects still succeeded after
    /// 100 ms.
    pub(crate) fn stop_accepting(
        &self,
        deadline: Instant,
        shed: &dyn Fn(Request),
        between: impl FnOnce(),
    ) -> io::Result<()> {
        self.queue.stopping();
        // No more parking; the parked threads are released by the rescue that follows
        // (each takes a queued connection), or once the server is dropped if no connection
        // is open at all.
        self.parking.close();
        if lock(&self.socket).seal() {
            between();
            self.rescue_sealed(deadline);
            // With no connection at all, nothing waits for the close: it is left to
            // `end_accept_loop`, called as the workers end (`Shutdown::join`).
            if !self.none_left() {
                self.end_accept_loop();
            }
            return Ok(());
        }
        self.parking.release_all();
        self.rescue_before_stop(deadline, shed);
        let ended = self.queue.current().ended().clone();
        let mut socket = lock(&self.socket);
        socket.begin_stop()?;
        between();
        socket.confirm_stopped(&ended)
    }

    /// Whether another process holds the socket too (see [`Http::start`]).
    pub(crate) fn keeps_socket_open(&self) -> bool {
        self.keep_open
    }

    /// A copy of the listening socket (close-on-exec), while it listens: for the new
    /// process of an upgrade.
    pub(crate) fn listener_copy(&self) -> Option<TcpListener> {
        lock(&self.socket).listener_copy()
    }

    /// Stops accepting without closing the socket, which another process holds too: the
    /// new process of an upgrade, or systemd, which hands it to the next server. `baton`,
    /// if there is one (an upgrade), is released once tiny_http's accept loop has ended:
    /// only then may the new process make the socket blocking again and accept
    /// (`restart/baton.rs`). `between` runs as in [`Http::stop_accepting`]. From now on the
    /// connection table shows this process's own connections only: the backlog and the
    /// new process's connections are none of the drain's business.
    ///
    /// # Errors
    ///
    /// If the socket could not be made non-blocking: the baton is then released at once,
    /// and both processes accept until this one exits.
    pub(crate) fn hand_off(
        &self,
        deadline: Instant,
        shed: &dyn Fn(Request),
        between: impl FnOnce(),
        baton: Option<Baton>,
    ) -> io::Result<()> {
        self.queue.stopping();
        self.parking.release_all();
        if let Some(table) = lock(&self.table).as_mut() {
            table.own_only();
        }
        self.rescue_before_stop(deadline, shed);
        let ended = self.queue.current().ended().clone();
        let _ = self.handing_off.set(ended.clone());
        let begun = lock(&self.socket).begin_stop();
        let began = begun.is_ok();
        lock(&self.socket).handed_over();
        between();
        if let Some(baton) = baton {
            release_when_ended(baton, ended, began, deadline);
        }
        begun
    }

    /// After a hand-off ([`Http::hand_off`]): tiny_http's accept loop has not ended yet, so
    /// a connection may still come in. The drain reads tiny_http's queue, where its end
    /// comes out.
    pub(crate) fn still_accepting(&self) -> bool {
        self.handing_off.get().is_some_and(|ended| !ended.is_open())
    }

    /// Ends tiny_http's accept loop for good, and closes the socket (idempotent).
    pub(crate) fn end_accept_loop(&self) {
        let ended = self.queue.current().ended().clone();
        let mut socket = lock(&self.socket);
        if let Err(e) = socket
            .begin_stop()
            .and_then(|()| socket.confirm_stopped(&ended))
        {
            log::warn!("stop accepting on {}: {e}", self.addr);
        }
    }

    fn rescue_before_stop(&self, deadline: Instant, shed: &dyn Fn(Request)) {
        let addr = reach(self.addr);
        let from_table = lock(&self.table).as_mut().map(|table| {
            rescue::rescue_from_table(
                table,
                deadline,
                rescue::Pace::Stop,
                &mut || None,
                &mut |n| rescue::kicks(addr, n),
                &mut |_| {},
                &|peer| self.parking.is_ours(peer),
            )
        });
        match from_table {
            Some(Ok(_)) => return,
            Some(Err(e)) => log::debug!("connection table unreadable ({e}): timed rescue"),
            None => {}
        }
        if !(self.peers.take_seen_new() || self.peers.is_unsure()) {
            return;
        }
        let lead = self.queue.lead();
        let pull = || match lead.try_receive() {
            Some(request) => {
                if let Err(request) = self.queue.try_put(request) {
                    shed(request);
                }
                true
            }
            None => false,
        };
        rescue::rescue_briefly(addr, &self.peers, &pull);
    }

    /// The answer to a request lameduck refuses to serve, if it does: a framing that could
    /// smuggle a second request past a proxy (`framing.rs`), and from then on anything else
    /// on that connection.
    pub(crate) fn refusal(&self, request: &Request) -> Option<ResponseBox> {
        let peer = request.remote_addr();
        if self.peers.is_refused(peer) {
            return Some(response::plain(
                400,
                "400 Bad Request: this connection sent a request that was refused\n",
            ));
        }
        let refusal = framing::refusal(request)?;
        self.peers.refuse(peer);
        Some(refusal)
    }

    /// The connections on the port by state, from the OS's table and what is known of each
    /// client (`connections.rs`); `None` where there is no table to read. One dump of the
    /// table, which may skip a connection: act on two in a row.
    ///
    /// Where the stop found no connection at all, none can come any more (the socket was
    /// sealed, its backlog empty): nothing is read then.
    /// The connections it counts open are noted in the gauges.
    pub(crate) fn census(&self) -> Option<Census> {
        let census = if self.none_left() {
            Some(Census::default())
        } else {
            self.read_census()
        };
        match &census {
            Some(census) => self.gauges.saw_open(census.seen),
            None => self.gauges.lost_sight(),
        }
        census
    }

    /// The stop found no connection open, and none can come: the server holds nothing but
    /// what is already in tiny_http's queue.
    pub(crate) fn none_left(&self) -> bool {
        self.none_left.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn read_census(&self) -> Option<Census> {
        // Before the read: a connection accepted meanwhile is in it.
        let accepts_no_more = self.queue.current().ended().is_open();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let connections = match table.as_mut()?.read_once() {
            Ok(connections) => connections,
            Err(e) => {
                log::warn!("connection table unreadable ({e}): the drain goes on without it");
                *table = None;
                return None;
            }
        };
        drop(table);
        // The connection that woke the accept loop is lameduck's own.
        let wake = self
            .socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wake_peer();
        let connections: Vec<_> = connections
            .into_iter()
            .filter(|c| Some(c.peer) != wake && !self.parking.is_ours(c.peer))
            .collect();
        self.peers
            .forget_all_but(connections.iter().map(|c| c.peer));
        let now = Instant::now();
        let mut census = Census::take(&connections, |peer| self.peers.last_request(peer), now);
        if accepts_no_more {
            census.complete =
                lock(&self.shrinking).note(connections.iter().map(|c| c.peer).collect());
        }
        Some(census)
    }

    /// After the seal, before the accept loop ends: lets the loop take the backlog, and
    /// kicks through the seal for every connection left without a thread (`rescue.rs`).
    /// Notes whether no connection is open at all: then none can come any more.
    ///
    /// A server with no connection at all, the common case of a stop, is told apart first
    /// without a dump of the table ([`Table::none_open`]): an idle server stops as fast
    /// as one without a drain. Its parked threads are left parked: released now, each
    /// would wake on the idle stop's way for nothing (12 threads, on the path of the
    /// workers' end). They are released when the server is dropped.
    fn rescue_sealed(&self, deadline: Instant) {
        let mut table = lock(&self.table);
        let Some(table) = table.as_mut() else {
            self.parking.release_all();
            return;
        };
        if table
            .none_open(&|peer| self.parking.is_ours(peer))
            .unwrap_or(false)
        {
            self.none_left
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.gauges.saw_open(0);
            return;
        }
        // A released thread takes the next connection tiny_http queued.
        self.parking.release_all();
        let mut kick = |n| lock(&self.socket).kick_through_seal(n);
        if let Ok(rescued) = rescue::rescue_from_table(
            table,
            deadline,
            rescue::Pace::Stop,
            &mut || None,
            &mut kick,
            &mut |_| {},
            &|peer| self.parking.is_ours(peer),
        ) {
            self.none_left
                .store(rescued.none_open, std::sync::atomic::Ordering::SeqCst);
            if rescued.none_open {
                self.gauges.saw_open(0);
            }
        }
    }
}

/// Releases `baton` to the new process of an upgrade once `ended` opens: the end of
/// tiny_http's accept loop comes out of its queue, which the drain reads, so this waits on
/// a thread of its own. The bound is the deadline: a loop that has not ended by then never
/// will, and the process exits (which closes the baton too).
#[cfg(not(any(unix, windows)))]
fn release_when_ended(baton: Baton, _: Latch, _: bool, _: Instant) {
    match baton {}
}

#[cfg(any(unix, windows))]
fn release_when_ended(baton: Baton, ended: Latch, began: bool, deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    let release = move || {
        if began && !ended.wait_timeout(wait) {
            log::warn!("upgrade: the accept loop did not end: releasing the socket anyway");
        }
        match baton.release() {
            Ok(()) => log::debug!("upgrade: socket released to the new process"),
            Err(e) => log::warn!("upgrade: could not release the socket: {e}"),
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("lameduck-release".to_owned())
        .spawn(release)
    {
        log::warn!("upgrade: could not start the thread that releases the socket: {e}");
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.queue.stopping();
        self.parking.release_all();
        self.end_accept_loop();
        self.queue.stop_retired();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Http {
    /// Says that a thread of lameduck's was started (by the caller, which started it): the
    /// rescue's count of tiny_http's threads leaves it out from then on, before it runs
    /// (`threads.rs`).
    pub(crate) fn own_thread_spawned(&self) {
        self.own.spawned();
    }

    /// Says that the calling thread, just started, is lameduck's, not tiny_http's: the
    /// rescue's count of tiny_http's threads need not read its name (`threads.rs`).
    pub(crate) fn own_thread_started(&self) {
        self.own.started();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle stop leaves the parked threads parked (released, each would wake on the
    /// stop's way for nothing), and the server's drop releases them.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_idle_stop_leaves_the_parked_threads_parked_until_the_server_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let http = Http::start(listener, 8, Duration::from_secs(5), false).unwrap();
        let parked = http.parking.len();
        assert!(parked > 0, "nothing parked at the start");
        let deadline = Instant::now() + Duration::from_secs(5);
        // A spare counts as parked once connected; until tiny_http's accept thread has
        // taken it from the backlog (with the tests beside this one, it may be slow to
        // run), the port is not idle, and a stop then rightly releases the parked threads.
        let idle = || {
            let mut table = lock(&http.table);
            let table = table.as_mut().expect("a table on Linux");
            table.none_open(&|peer| http.parking.is_ours(peer))
        };
        while !idle().unwrap() {
            assert!(Instant::now() < deadline, "the spares never accepted");
            std::thread::sleep(Duration::from_millis(1));
        }
        http.stop_accepting(deadline, &|_| {}, || {}).unwrap();
        assert!(http.none_left(), "no connection was open");
        assert_eq!(http.parking.len(), parked, "released at an idle stop");
        assert_eq!(http.parking.park(1), 0, "parked after the stop");
        let parking = Arc::clone(&http.parking);
        drop(http);
        assert_eq!(parking.len(), 0, "still parked after the drop");
    }
}
