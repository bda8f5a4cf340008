//! The supervisor thread, `lameduck-supervisor-1`: it parks tiny_http's idle threads
//! (`parking.rs`), rescues connections tiny_http leaves without a thread (`rescue.rs`),
//! checks that tiny_http's accept loop is alive, and starts a new one when it has died.
//!
//! **Parking.** Each look that finds nothing waiting counts tiny_http's pool threads
//! beyond the connections open, idle ones, and parks them, with spares behind them when
//! fewer than [`SPARES`](super::parking) are left; so does each look of a rescue. One that
//! finds no spare and no thread idle renews the spares. A fresh server's are parked at once.
//!
//! **Rescue.** Where the OS's connection table can be read, from its evidence: a look
//! [`FIRST_LOOK`] after a new connection shows up (only a connection being accepted can be
//! left without a thread, and a burst always gets some served), at most one every
//! [`TABLE_INTERVAL`], and one every [`QUIET_LOOK`] anyway. If some connection has bytes
//! unread, the rescue watches it for a few milliseconds and kicks for each whose bytes stay
//! unread (`rescue.rs`). No kick while none waits. Elsewhere, timed: every [`INTERVAL`] when
//! new connections were seen, and every tenth round anyway.
//!
//! **A live accept loop.** Every [`PING_INTERVAL`] it checks that tiny_http's accept
//! thread is still there (Linux, once the thread is known: `threads.rs`), or else sends a
//! bad request line, which tiny_http answers `400` at once; a loop that died without a word
//! (tiny_http's accept thread can panic when the process is out of descriptors) leaves no
//! thread and answers nothing, even after a rescue. A ping is a connection that closes,
//! and the pool thread it took would take a spare after it (`parking.rs`): where the thread
//! can be checked, no ping. A dead loop, found so or reported by the error it left in the
//! queue, is replaced
//! by a new tiny_http server on the same socket (`socket.rs`); until one can start, the
//! connections waiting in the backlog are answered `503`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::connections::Table;
use super::gauges::Gauges;
use super::parking::Parking;
use super::peers::Peers;
use super::queue::Queue;
use super::rescue::{self, CONNECT_TIMEOUT, RESCUE_WAIT};
use super::socket::Socket;
use super::threads::Threads;
use crate::error::Error;
use crate::shutdown::helper::{Helper, Stop};
use crate::shutdown::trigger::Listener;

/// While connections come, how often the supervisor looks at the connection table, at most:
/// after a look that found another number of connections open than the one before, or a new
/// connection's first request, the next comes this long after. A look is one lookup per
/// connection not seen read before (about 0.1 ms for 16), a system call per descriptor
/// (about 0.8 ms in all with 256 connections, each on two), and one lookup of the listening
/// socket (its backlog, counted); a dump of the kernel's table, which walks all 262 144
/// buckets of its table on this 24 GiB machine (about 1.2 ms whatever the connections),
/// only past 4 096 descriptors (see `Table::read_serving`): looking only while connections
/// arrive keeps a server with steady keep-alive clients, or none, from paying it. A connection left
/// without a thread while a burst goes on is found within about this: measured as the
/// slowest request at 256 connections opened at once (`--only latency`; `benches/NOTES.md`).
const TABLE_INTERVAL: Duration = Duration::from_millis(10);

/// After a new connection is seen (its first request came out), how long until the first
/// look. Short, for the connection that closes right after its request (a probe, `curl`):
/// its pool thread is idle from then on, and a burst that comes before the look parks it is
/// queued without threads (`parking.rs`). The rescue such a look may start watches the
/// bytes left unread for [`STARVED_AFTER`](super::rescue) itself before it kicks, so the
/// look need not wait for the burst's threads to read. Measured with [`PARK_CHECK`] and
/// the rescue's parking left out while connections wait (2026-12-03, `wrk -t1 -d1s` right
/// after one `curl` request on a fresh server, 28 runs each): runs that needed a rescue at
/// 16 connections 12 against 19 with the look at 4 ms, at 64 connections 10 against 22; at
/// 256, 10 of 16 either way (`benches/NOTES.md`).
const FIRST_LOOK: Duration = Duration::from_millis(1);

/// The least time from one look to the next, in times the last look's read of the table
/// took: looks take at most a tenth of a core. With a dump of 1.2 ms, as
/// [`TABLE_INTERVAL`]; with thousands of connections in `TIME_WAIT` (a client per
/// request), dumps took 30–50 ms here, and looks 10 ms apart took half a core
/// (`benches/NOTES.md`).
const LOOK_SHARE: u32 = 10;

/// After a quiet look (nothing changed, nothing parked), how soon a new connection's look
/// may come: a client per connection, each new one coming right after a quiet look, is
/// looked at every few milliseconds at most. Not measured beyond the cost of a look (about
/// 0.1 ms for 16 connections, 1.2 ms when it is a dump); [`TABLE_INTERVAL`] after any look,
/// as before, kept the first request after a fresh start from being looked at until 10 ms
/// after the start's own look: a probe's thread, idle after it, met the burst that came
/// next (wrk's, in the bench).
const QUIET_GAP: Duration = Duration::from_millis(2);

/// After a look that parked threads, how soon the next one checks that no idle thread is
/// left: a thread whose connection had closed but which was not yet waiting for the next
/// one when the parked connection came leaves tiny_http to start a new thread for it, and
/// is idle itself a moment later. Not tuned: a look is about a millisecond of CPU, and
/// threads are parked only after connections close.
const PARK_CHECK: Duration = Duration::from_millis(1);

/// With a table and no new connection, how often the supervisor looks anyway (a burst
/// whose connections were all left without a thread gives no other sign). Not measured: it
/// costs one look a second, and such a burst waits up to about this long.
const QUIET_LOOK: Duration = Duration::from_secs(1);

/// Without a table: how often the timed rescue may run. Measured on Linux before the table
/// was used (`tests/burst.rs`, 2026-11-24): a cold burst of 64, slowest of 10 rounds
/// answered in about 120 ms. Not measured on Windows or macOS, which use it now.
const INTERVAL: Duration = Duration::from_millis(100);

/// Without a table, a rescue runs even without new connections seen every this many
/// rounds (a burst whose served connections have not sent anything yet gives no sign).
/// With [`INTERVAL`], once a second, as [`QUIET_LOOK`] with a table; not measured.
const UNCONDITIONAL_EVERY: u64 = 10;

/// How often the supervisor checks that the accept loop is alive. Not measured: a loop
/// that died in silence (out of descriptors) is found in about this (plus [`PING_WAIT`]
/// with a ping); each check is a look for its thread, or a ping: one connection and one
/// `400`.
const PING_INTERVAL: Duration = Duration::from_millis(300);

/// While connections come, how long a ping may be put off: a loop that died in silence
/// during a burst is found about this late.
const PING_DEFERRED: Duration = Duration::from_secs(1);

/// How long a ping waits for the parked thread it releases to be done with its connection
/// (microseconds when that thread runs at once). Short: a parked connection still queued
/// without a thread (parked in a burst) is not ended until some thread comes for it, and
/// the supervisor rescues nothing while it waits (one wait of 300 ms held connections of
/// an upgrade's new process that long, `cargo bench --bench restart`). Past it, the ping
/// goes on, and may start a thread of its own.
const PING_RELEASE_WAIT: Duration = Duration::from_millis(5);

/// How long a ping may wait for its `400`. A live loop answers in microseconds. A bound:
/// a new connection and a whole request take about 0.3 ms beside 1 000 idle connections
/// (`tests/idle.rs`); under wine a millisecond or more, 11.4 ms once in a loaded CI run.
const PING_WAIT: Duration = Duration::from_millis(300);

/// The longest a background rescue from the table runs. A bound: a rescue ends once what
/// it saw waiting is read, and a cold burst of 64 is answered within 76 ms in all
/// (`tests/burst.rs`, 2026-12-02).
const RESCUE_BOUND: Duration = Duration::from_millis(100);

/// While the accept loop cannot be restarted, how often to try again. Not tuned: `hello`
/// under `ulimit -n 64` (`tests/process/emfile.rs`) served again 20 ms after descriptors
/// were freed; each try opens 16 descriptors and answers the backlog 503.
const RESTART_RETRY: Duration = Duration::from_millis(20);

/// What the supervisor looks after.
pub(crate) struct Watched {
    pub(crate) queue: Arc<Queue>,
    pub(crate) socket: Arc<Mutex<Socket>>,
    pub(crate) peers: Arc<Peers>,
    /// The OS's table of the connections on the port, where there is one.
    pub(crate) table: Arc<Mutex<Option<Table>>>,
    /// tiny_http's threads, counted for the rescue.
    pub(crate) threads: Arc<Mutex<Threads>>,
    /// tiny_http's idle threads, held on connections of lameduck's own (`parking.rs`).
    pub(crate) parking: Arc<Parking>,
    /// Where the connections each look finds open are noted, for stats.
    pub(crate) gauges: Arc<Gauges>,
    /// Where to connect to reach the listening socket.
    pub(crate) addr: SocketAddr,
    /// The `Retry-After` of the 503s for the backlog while no accept loop runs.
    pub(crate) retry_after: Duration,
}

/// The running supervisor.
pub(crate) struct Supervisor {
    helper: Helper,
}

impl Supervisor {
    /// Starts supervising until [`Supervisor::stop`], or until `fire` fires if given.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(watched: Watched, fire: Option<Listener>) -> Result<Supervisor, Error> {
        let helper = Helper::start_until("lameduck-supervisor", fire, move |stop| {
            supervise(&watched, stop);
        })?;
        Ok(Supervisor { helper })
    }

    /// Asks it to stop, without waiting: [`Supervisor::stop`] waits.
    pub(crate) fn ask_to_stop(&self) {
        self.helper.ask_to_stop();
    }

    /// Stops it and waits (boundedly) until it has stopped looking after tiny_http: not at
    /// all if it waits for something to do (it is retired then: `Stop::idle_while`), or
    /// until a rescue, ping or restart under way is over. Its thread ends meanwhile:
    /// [`Supervisor::join`] waits for that. The parked connections are left to the stop,
    /// which releases them (`Http::stop_accepting`, `Http::hand_off`).
    pub(crate) fn stop_working(&self) {
        let bound = (RESCUE_WAIT + CONNECT_TIMEOUT) * 4 + PING_WAIT * 2 + Duration::from_secs(1);
        self.helper.stop_working(bound);
    }

    /// Waits (boundedly) for its thread to end, once [`Supervisor::stop_working`] returned.
    pub(crate) fn join(self) {
        self.helper.join(JOIN_BOUND);
    }
}

/// How long a helper whose work has returned may take to end its thread.
const JOIN_BOUND: Duration = Duration::from_secs(1);

/// What woke the supervisor.
enum Woken {
    /// Its stop, or the fire.
    Stop,
    /// A death of an accept loop: the current one's, or an older one's.
    Death(bool),
    /// A new connection was seen.
    Arrival,
    /// A look or a ping is due.
    Due,
}

fn supervise(w: &Watched, stop: &Stop) {
    let (asked, fire) = stop.receivers();
    let with_table = lock(&w.table).is_some();
    let never = crossbeam_channel::never();
    let mut pinged = Instant::now();
    let mut looked = Instant::now();
    // With a table: when the next look is due, once a new connection was seen.
    let mut look_at: Option<Instant> = None;
    if with_table {
        lock(&w.threads).warm();
        // tiny_http's resident threads wait from its start: park them before a burst, and
        // look again (they may not all have started yet).
        look_at = Some(Instant::now());
    }
    // Connections the last look found open.
    let mut last_open = None;
    // The least time from one look to the next, after the last look's read of the table.
    let mut spacing = Duration::ZERO;
    for round in 1u64.. {
        let now = Instant::now();
        let wake = if with_table {
            look_at
                .unwrap_or(looked + QUIET_LOOK)
                .min(pinged + PING_INTERVAL)
        } else {
            now + INTERVAL
        };
        // Only while no look is due: a connection per request would wake it per request.
        let arrivals = if with_table && look_at.is_none() {
            w.peers.new_seen()
        } else {
            &never
        };
        // Waiting here, it is idle: a stop need not wait for it (`Stop::idle_while`).
        let woken = stop.idle_while(|| {
            select! {
                recv(asked) -> _ => Woken::Stop,
                recv(fire) -> _ => Woken::Stop,
                recv(w.queue.deaths()) -> dead => {
                    Woken::Death(dead.is_ok_and(|n| n == w.queue.current().number()))
                }
                recv(arrivals) -> _ => Woken::Arrival,
                default(wake.saturating_duration_since(now)) => Woken::Due,
            }
        });
        match woken {
            None | Some(Woken::Stop) => return,
            Some(Woken::Death(current)) => {
                if current {
                    restart(w, stop);
                }
            }
            Some(Woken::Arrival) => {
                // The last look found nothing changing: this is the first connection since.
                look_at = Some((Instant::now() + FIRST_LOOK).max(looked + QUIET_GAP.max(spacing)));
                continue;
            }
            Some(Woken::Due) => {}
        }
        if stop.is_open() {
            return;
        }
        if with_table {
            if look_at.is_some_and(|at| Instant::now() >= at) || looked.elapsed() >= QUIET_LOOK {
                looked = Instant::now();
                let seen = rescue_on_evidence(w);
                let open = seen.as_ref().map(|(rescued, _)| rescued.open);
                // Connections still coming, or some were waiting, or threads were just
                // parked: look again (one left without a thread sends no sign; a parked
                // connection may have got a new thread while an idle one still waits).
                let parked = seen.as_ref().is_some_and(|(_, parked)| *parked > 0);
                // (The first look, at the start, has nothing to compare with.)
                let changed = last_open.is_some() && open != last_open;
                let busy = changed || parked || seen.is_some_and(|(r, _)| !r.quiet);
                // Looks take at most a tenth of a core, however slow the table is to read
                // (`Table::took`).
                spacing = lock(&w.table)
                    .as_ref()
                    .map_or(Duration::ZERO, |t| t.took() * LOOK_SHARE);
                look_at = if parked {
                    Some(Instant::now() + PARK_CHECK.max(spacing))
                } else {
                    busy.then(|| looked + TABLE_INTERVAL.max(spacing))
                };
                last_open = open;
            }
        } else if w.peers.take_seen_new() || round % UNCONDITIONAL_EVERY == 0 {
            rescue::rescue(w.addr, &w.peers, &|| !stop.is_open());
        }
        // Not while connections come (for up to `PING_DEFERRED`): the thread a ping takes
        // is left idle after it, and one idle thread is all it takes for tiny_http to queue
        // the connections of a burst without a thread (`parking.rs`).
        let due = if look_at.is_some() {
            PING_DEFERRED
        } else {
            PING_INTERVAL
        };
        if pinged.elapsed() >= due {
            pinged = Instant::now();
            if !accept_loop_answers(w) {
                let gen = w.queue.current();
                w.queue
                    .report_death(&gen, "it stopped answering (tiny_http gave no error)");
            }
        }
    }
}

/// One look at the table; if a connection has bytes unread, the rescue watches it and kicks
/// for the ones whose bytes stay unread ([`rescue::rescue_from_table`]). Returns what it
/// saw, if the table could be read.
fn rescue_on_evidence(w: &Watched) -> Option<(rescue::Rescued, usize)> {
    let mut table = lock(&w.table);
    let table = table.as_mut()?;
    let until = Instant::now() + RESCUE_BOUND;
    let mut threads = lock(&w.threads);
    let rescued = rescue::rescue_from_table(
        table,
        until,
        rescue::Pace::Serving,
        &mut || threads.pool_now(),
        &mut |n| release_then_kick(w, n),
        &mut |idle| {
            w.parking.park(idle);
        },
        &|peer| w.parking.is_ours(peer),
    )
    .ok()?;
    w.parking.saw_unread(&rescued.spares);
    // The connections open beside the parked ones the look counted (the spares it left out).
    let held = w.parking.len().saturating_sub(rescued.spares.len());
    let mut parked = 0;
    if rescued.quiet && rescued.spares.is_empty() {
        // Nothing waits for a thread: every pool thread beyond the connections open is
        // idle (or about to be: a connection closing still counts as open). With a spare
        // queued, none is: a thread whose connection ends takes the spare. With none idle
        // either, the next connection to end leaves its thread waiting: spares now.
        if let Some(pool) = threads.pool() {
            parked = match pool.saturating_sub(rescued.open) {
                0 => w.parking.renew_spares(),
                idle => w.parking.park_with_spares(idle, 0),
            };
            log::trace!(
                "look: {pool} pool threads, {} open, {} parked",
                rescued.open,
                w.parking.len()
            );
        }
    } else if rescued.quiet {
        // Not counted: the count a burst's rescue makes goes from a listing this recent.
        threads.keep_listed();
        log::trace!(
            "look: {} open, {} parked, {} of them spares",
            rescued.open,
            w.parking.len(),
            rescued.spares.len()
        );
    }
    w.gauges.saw_open(rescued.open.saturating_sub(held));
    Some((rescued, parked))
}

/// `n` connections to free: parked threads first (each takes a queued connection at once),
/// then kicks. Returns the client ends of both.
fn release_then_kick(w: &Watched, n: usize) -> Vec<SocketAddr> {
    if n > 0 {
        let spares = w.parking.release_spares();
        if spares > 0 {
            log::trace!("rescue: {spares} spares released, which may be queued ahead");
        }
    }
    let mut freed = w.parking.release(n);
    if freed.len() < n {
        freed.extend(rescue::kicks(w.addr, n - freed.len()));
    }
    freed
}

/// Starts a new generation after the current one's accept loop died; sheds the backlog with
/// 503s until it can (descriptors free again), or until stopped.
fn restart(w: &Watched, stop: &Stop) {
    let mut shed = 0;
    let mut reported = false;
    while !stop.is_open() {
        let attempt = lock(&w.socket).new_server();
        match attempt {
            Ok(http) => {
                lock(&w.threads).forget_accept_thread();
                match w.queue.install(http) {
                    Ok(number) => log::warn!(
                        "accepting again (tiny_http server {number}); {shed} connections were \
                         answered 503 meanwhile"
                    ),
                    Err(e) => log::warn!("{e}: the old connections wait until shutdown"),
                }
                return;
            }
            Err(e) => {
                if !reported {
                    log::warn!("cannot start a new accept loop yet ({e}); answering 503 meanwhile");
                    reported = true;
                }
                shed += lock(&w.socket).shed_backlog(w.retry_after);
                stop.wait_timeout(RESTART_RETRY);
            }
        }
    }
}

/// Sends a bad request line, which tiny_http answers `400` as soon as a thread reads it.
/// `Ok(true)` if answered within [`PING_WAIT`].
///
/// # Errors
///
/// If the ping could not connect or write (say, this process is out of descriptors too):
/// no answer either way.
fn ping(addr: SocketAddr) -> io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.write_all(b"\r\n")?;
    stream.set_read_timeout(Some(PING_WAIT))?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `false` if tiny_http's accept loop is gone: its thread is no longer there, or, where
/// that cannot be seen, a ping goes unanswered, and still does after a rescue (a starved
/// pool answers once rescued).
fn accept_loop_answers(w: &Watched) -> bool {
    // Where tiny_http's accept thread is known (Linux), it answers while it is there: a
    // ping would be a connection that closes, and the thread it took would take a spare
    // (`parking.rs`) after it.
    if let Some(alive) = lock(&w.threads).accept_alive() {
        return alive;
    }
    // With every idle thread parked, a ping would start a thread of its own, idle after
    // it: one parked thread takes the ping instead, and is parked again after.
    let released = w.parking.release_one_and_wait(PING_RELEASE_WAIT);
    let answers = ping_answers(w);
    if released {
        w.parking.park(1);
    }
    answers
}

fn ping_answers(w: &Watched) -> bool {
    match ping(w.addr) {
        Ok(false) => {
            let mut table = lock(&w.table);
            match table.as_mut() {
                Some(table) => {
                    let until = Instant::now() + RESCUE_BOUND;
                    let mut threads = lock(&w.threads);
                    let _ = rescue::rescue_from_table(
                        table,
                        until,
                        rescue::Pace::Serving,
                        &mut || threads.pool_now(),
                        &mut |n| release_then_kick(w, n),
                        &mut |idle| {
                            w.parking.park(idle);
                        },
                        &|peer| w.parking.is_ours(peer),
                    );
                }
                None => {
                    rescue::rescue(w.addr, &w.peers, &|| true);
                }
            }
            drop(table);
            !matches!(ping(w.addr), Ok(false))
        }
        _ => true,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
