//! The rescue: finds connections tiny_http has accepted but left without a thread, and gets
//! them one.
//!
//! tiny_http runs each connection as a task in its own thread pool. When connections
//! arrive in a burst, the pool still counts threads it has just woken as idle until they
//! run, queues the next tasks for them, and ends up with tasks queued and no thread left to
//! run them (measured: of 64 keep-alive connections opened at once, 60 waited; with both
//! cores busy a woken thread can take tens of milliseconds to run, and of 256, 112 waited). A queued task runs
//! only when some thread comes back for it: when another connection closes, which for a
//! keep-alive client can be minutes. Its request is not even read, and a shutdown then
//! would lose it.
//!
//! Latency cannot show that state: a new connection arriving when no thread is idle gets a
//! thread of its own at once. But that thread, once its connection ends, takes the next
//! queued task. So a connection to ourselves that closes at once (a *kick*) frees exactly
//! one queued task, whose request then reaches a worker moments later. That is the signal:
//! [`Peers`] notices the first request of a connection it has not seen, and the rescue
//! kicks again for as long as each kick is followed by such a request.
//!
//! The supervisor thread (`supervisor.rs`) starts a rescue when new connections were seen
//! (a burst always gets some served) and now and then anyway: from the OS's connection table
//! where there is one ([`rescue_from_table`]: it kicks for as many connections as it finds
//! accepted beyond tiny_http's threads, counted by `threads.rs`, and for any whose request
//! has waited unread for [`STUCK_AFTER`], whatever the count). Right before the socket
//! closes at shutdown one more runs: from the table where there is one (there it kicks for
//! every connection with bytes left unread: a needless kick then costs nothing),
//! otherwise timed ([`rescue_briefly`]: it kicks even while connections come and go, and
//! takes freed requests from the queue itself). Kicks never reach a handler.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::connections::{Connection, Table};
use super::peers::Peers;
use super::threads::Pool;

/// After a kick, how long a freed connection's first request may take to reach a worker.
/// Microseconds on an idle machine; milliseconds when both cores are busy. Only the last
/// kick of a rescue waits it out. At shutdown the first kick waited 2 ms before: beside two
/// busy loops `tests/burst_shutdown.rs` failed 6 runs of 6; with 10 ms, 1 of 6 (2026-12-01).
/// Its cost: the slowest idle exit, about 17 ms against a median of 5.5 ms, is a kick and
/// this wait (`cargo bench --bench shutdown -- --only exit`; `benches/NOTES.md`).
pub(super) const RESCUE_WAIT: Duration = Duration::from_millis(10);

/// A rescue that freed something runs again at once, at most this many times: a freed
/// request that was slow to reach a worker must not end the rescue early. A bound; no
/// measurement chose 3.
const AGAIN: usize = 3;

/// How often the rescue at shutdown takes what reached tiny_http's queue. Not measured: a
/// wake-up every 100 µs, only for the milliseconds of the rescue's waits.
const PULL_EVERY: Duration = Duration::from_micros(100);

/// The waits of the rescue at shutdown: after the first kick, [`RESCUE_WAIT`] (nothing
/// is known yet of how long a freed request takes to show up); after the others, four
/// times as long as the last one took, within these bounds. On an idle machine a freed
/// request shows up in microseconds; with both cores busy, in milliseconds. Measured as a
/// whole (2026-12-01): `tests/burst_shutdown.rs` 20 of 20 alone, 5 of 6 beside two busy
/// loops; `cargo bench --bench shutdown -- --only lost`: 0 lost in 20 rounds.
const BRIEF_WAIT: Duration = Duration::from_millis(2);
/// The longest of those waits: the same measurements; a fixed 2 ms wait had failed the
/// burst test 6 of 6 beside two busy loops.
const BRIEF_WAIT_MAX: Duration = Duration::from_millis(20);

/// Before a chain: if a new connection shows up this soon without any kick, connections are
/// coming and going anyway, and each one that closes frees a thread for a queued task: a
/// chain would only chase them. The 2 ms is not measured; the churn's harm was: a chain
/// kept kicking through reconnects and let one request be lost in 3 runs (2026-11-24).
const CHURN_WAIT: Duration = Duration::from_millis(2);

/// The most kicks in one rescue. A bound, not a tuning: the biggest burst measured left 60
/// of 64 connections without a thread.
const MAX_KICKS: usize = 1024;

/// Connect timeout for kicks (loopback: microseconds unless the backlog is full). A bound,
/// not a tuning: a new connection and a whole request take about 0.3 ms beside 1 000 idle
/// connections (`tests/idle.rs`).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Kicks for as long as each kick frees a connection, and again while that freed some;
/// returns how many it freed. Stops early when `go_on` says so.
pub(crate) fn rescue(addr: SocketAddr, peers: &Peers, go_on: &dyn Fn() -> bool) -> usize {
    Rescue {
        addr,
        peers,
        churn: Some(CHURN_WAIT),
        wait: RESCUE_WAIT..=RESCUE_WAIT,
        go_on,
        pull: &|| false,
    }
    .run()
}

/// A rescue with short waits, for the shutdown: it holds the stop, and a freed request
/// that is slow to arrive is still answered (by the drain or the late responder).
///
/// It kicks even while connections come and go by themselves: a connection still waiting
/// once the socket is closed and the drain is over would be reset unread. And it does not
/// wait for a worker to take a freed request (every worker may be waiting for the socket
/// to close): `pull` takes one request from tiny_http's queue, if any, notes its peer and
/// hands it to the workers; it returns `false` when the queue is empty.
pub(crate) fn rescue_briefly(addr: SocketAddr, peers: &Peers, pull: &dyn Fn() -> bool) -> usize {
    Rescue {
        addr,
        peers,
        churn: None,
        wait: BRIEF_WAIT..=BRIEF_WAIT_MAX,
        go_on: &|| true,
        pull,
    }
    .run()
}

/// The longest the rescue at shutdown may hold the stop when the connection table shows
/// connections still waiting for a thread (or, in the backlog, for tiny_http's accept
/// loop). An idle machine needs a few milliseconds for a burst of 64; with every core busy,
/// a freed connection's thread can take tens of milliseconds to run. A bound, not a tuning:
/// the rescue waits only for what was unread at its start, and the exit under load (32
/// clients, 50 ms handler) comes 116 ms after the signal, linger included (`--only drain`).
pub(super) const TABLE_RESCUE_BOUND: Duration = Duration::from_millis(500);

/// A connection with bytes waiting unread for this long counts as starved: its thread would
/// have read them in microseconds. (With every core busy, a thread that exists can take a
/// few milliseconds to run: a needless kick only costs a connection that closes at once.)
/// Not measured as such; it is about one look of the rescue (two 0.7 ms dumps and
/// [`TABLE_POLL`]). With it, `tests/burst_shutdown.rs` beside a CPU hog passed 25 of 25.
const STARVED_AFTER: Duration = Duration::from_millis(2);

/// A kick is expected to free one starved connection within this time; until then, and
/// unless the table showed its connection and then no longer did (a thread has ended it),
/// it is not repeated for the same need. Kicks accepted while tiny_http's pool still counts a woken
/// thread as waiting are queued behind the connections they were for, and free nothing
/// until a thread comes back: the bound keeps such kicks from holding back new ones. Not
/// measured for this rescue: the same 20 ms as [`BRIEF_WAIT_MAX`], the timed rescue's
/// longest wait for a freed request beside busy cores.
const KICK_EXPIRY: Duration = Duration::from_millis(20);

/// A client's connection whose first request has waited unread this long, as the OS dates
/// its bytes, is kicked for whatever the count of tiny_http's threads says. The count is an
/// inference (`threads.rs`: threads started since the last listing are taken for
/// tiny_http's; it errs towards more threads, fewer kicks), and one thread too many in it
/// hides one queued connection at every look for as long as the error lasts: in one full
/// bench run, one connection of 64 stayed unread for the whole 2 s run, found only by the
/// stop's rescue (about one run in 500 at 64 connections; `benches/NOTES.md`, 2026-12-06).
/// With both cores busy, threads with a connection of their own waited up to 79 ms to run
/// (256 connections, the same run): this is two and a half times that, and a kick for a
/// thread merely slow to run costs one connection that closes at once. Measured: no such
/// kick in 40 runs of `wrk -t1 -c256 -d2s` on fresh servers, 15 of them beside two busy
/// loops.
const STUCK_AFTER: Duration = Duration::from_millis(200);

/// How often the table is read while a rescue waits for kicks to take effect. Not measured:
/// each read is two dumps, about 1.4 ms, so a look comes every 2 ms or so.
pub(super) const TABLE_POLL: Duration = Duration::from_micros(500);

/// The rescue at shutdown, from the connection table's evidence rather than from timers.
///
/// While some accepted connection has had bytes waiting unread for [`STARVED_AFTER`] (no
/// thread reads it), it kicks once for each, minus the kicks of the last [`KICK_EXPIRY`]
/// still taking effect; it also waits for the connections that were in the listening
/// socket's backlog at the start to be accepted, and for those seen there at two looks in a
/// row (an accept loop behind, in a burst: its connections are the next to be left without
/// a thread; a rescue that ended before they were accepted left them to the next look, 10 ms
/// later). Every connection with bytes unread at the
/// start must be seen read, and it looks for [`STARVED_AFTER`] at least after the last
/// connection it saw newly accepted (only a connection being accepted can be left without a
/// thread); bytes that arrive later on a connection accepted before, and are read within
/// [`STARVED_AFTER`] (a loaded server's ordinary traffic), hold nothing.
/// No kick at all while no connection has bytes unread that long; `kick(n)` kicks `n` times
/// and returns the client ends of those that went through.
///
/// Where `pool` counts tiny_http's pool threads (`threads.rs`), bytes left unread are not
/// enough: it kicks only for the connections accepted beyond the pool's threads, which are
/// queued with no thread (the others' threads have not run yet, and a kick for them would
/// only add a thread to the ones the CPU is already behind with). The accept thread may
/// hold one connection it has not handed on yet, so the last of them is kicked for only
/// when two looks in a row show it, or when `pool` saw the accept thread waiting for the
/// next connection ([`Pool::handed_on`]). Such a rescue ends as soon as no connection is queued
/// and the accept loop has settled. The count is an inference: a client's connection whose
/// bytes have waited unread for [`STUCK_AFTER`] is kicked for whatever it says.
///
/// While serving, connections that come and go (a client's connection seen accepted at one
/// look and gone at a later one) settle the accept loop too: each one that closes frees a
/// thread, which takes whatever tiny_http queued, so a rescue there ends once nothing is
/// starved. Waiting for a pause in the accepts instead held a server with a connection per
/// request in rescues to their bound, one after the other: its supervisor took about half
/// a core (`wrk -H "Connection: close"`, `benches/NOTES.md`).
///
/// Where `pool` counts, a look that finds more pool threads than connections accepted, no
/// connection with bytes unread and the accept loop settled, asks `park` to park the idle
/// ones (`parking.rs`).
///
/// Returns what it saw, or the table's error (the caller then falls back to the timed
/// rescue). Bounded by [`TABLE_RESCUE_BOUND`] and `until`: past them, only the kicks for
/// what is starved then, and one more look to see them taken.
pub(crate) fn rescue_from_table(
    table: &mut Table,
    until: Instant,
    pace: Pace,
    pool: &mut dyn FnMut() -> Option<Pool>,
    kick: &mut dyn FnMut(usize) -> Vec<SocketAddr>,
    park: &mut dyn FnMut(usize),
    parked: &dyn Fn(SocketAddr) -> bool,
) -> io::Result<Rescued> {
    let start = Instant::now();
    let until = until.min(start + TABLE_RESCUE_BOUND);
    // A first look settles the common case, nothing waiting.
    let mut conns = match pace {
        Pace::Stop => table.read_once()?,
        Pace::Serving => table.read_serving()?,
    };
    let spares = take_spares(&mut conns, parked);
    // While serving, the backlog is counted, not listed (`Table::read_serving`).
    let unlisted = |table: &Table| match pace {
        Pace::Stop => 0,
        Pace::Serving => table.unlisted_backlog(),
    };
    let mut backlog = unlisted(table);
    let mut spared = spares.len();
    let open = conns.iter().filter(|c| c.accepted).count();
    if backlog == 0 && !conns.iter().any(|c| unread(c) || in_backlog(c)) {
        return Ok(Rescued {
            none_open: open == 0,
            open,
            quiet: true,
            spares,
        });
    }
    let mut watch = Watch::new(&conns, backlog);
    // When the read of the table each look works from began.
    let mut read_at = start;
    // Kicks not yet taken by a thread, with when each was made and whether the table has
    // shown its connection yet. One the table showed and no longer does has been taken; one
    // it never showed (a table of this process's own connections only, at an upgrade, does
    // not show those still in the backlog) counts until it expires.
    let mut in_flight = HashMap::<SocketAddr, (Instant, bool)>::new();
    let mut kicks = 0usize;
    let mut last_beyond = None;
    let mut last_threads = None;
    // The bound was reached and the kicks for what was starved then made.
    let mut kicked_at_bound = false;
    // While serving: the clients' connections the last look saw accepted, and whether one
    // seen so has closed since (connections come and go). Kicks close too: not counted.
    let mut clients = HashSet::new();
    let mut kicked = HashSet::new();
    let mut churn = false;
    loop {
        let now = Instant::now();
        if pace == Pace::Serving {
            let open: HashSet<SocketAddr> = conns.iter().map(|c| c.peer).collect();
            churn |= clients.iter().any(|peer| !open.contains(peer));
            clients = conns
                .iter()
                .filter(|c| c.accepted && !parked(c.peer) && !kicked.contains(&c.peer))
                .map(|c| c.peer)
                .collect();
        }
        let Some(look) = watch.look(&conns, now, read_at, churn, backlog) else {
            log::trace!(
                "rescue ends after {:?}: {} unread, {} accepted, {} connections",
                now - start,
                watch.waiting_since.len(),
                watch.accepted.len(),
                conns.len()
            );
            break;
        };
        in_flight.retain(|kick, (at, seen)| {
            let shown = conns.iter().any(|c| c.peer == *kick);
            *seen |= shown;
            now - *at < KICK_EXPIRY && (shown || !*seen)
        });
        let mut starved = look.starved;
        let own = pace == Pace::Serving && table.listed_own_only();
        let counted = pool();
        let threads = counted.map(|p| p.threads);
        if let Some(threads) = threads {
            let accepted = conns.iter().filter(|c| c.accepted).count();
            if threads > accepted && look.unread == 0 && look.settled && spared == 0 {
                // Threads beyond the connections: idle ones, which open the window in
                // which tiny_http queues the next connections (`parking.rs`). Not while
                // connections wait or still come: the threads are counted after the table
                // is read, and in a burst those started meanwhile, for connections the
                // table does not show yet, look idle. Parked then, they add connections to
                // the burst (traces: three parked in a burst of 16, then one connection
                // queued; three in a burst of 256, before any was unread).
                park(threads - accepted);
            }
        }
        if let Some(threads) = threads {
            let accepted = conns.iter().filter(|c| c.accepted).count();
            let beyond = accepted.saturating_sub(threads);
            // The accept thread may hold one it has not handed on yet: the last one only
            // when two looks show it, or when the accept thread was seen waiting for the
            // next connection after the count.
            let queued = if counted.is_some_and(|p| p.handed_on) || look.settled {
                // Seen waiting for the next connection, or none accepted for a while: the
                // accept thread holds none. (A queued connection behind a spare that the
                // rule below took for the accept thread's was never kicked for: a trace at
                // 256 connections, one connection unread for the whole 2 s run.)
                beyond
            } else if spared > 0 {
                // A spare still queued: a thread whose connection ends takes it rather than
                // wait, so one connection beyond the threads is the accept thread's, on its
                // way to a thread of its own, however many looks show one (in a burst the
                // accept thread is seldom seen waiting, and two looks in a row found it
                // holding one: a kick for nothing, `parking.rs`). More are queued: a thread
                // waited as the spares were made (a trace at 256 connections: 14 beyond the
                // threads, with spares parked as the burst came).
                beyond.saturating_sub(1)
            } else {
                beyond
                    .saturating_sub(1)
                    .max(beyond.min(last_beyond.unwrap_or(0)))
            };
            last_beyond = Some(beyond);
            // The threads are counted after the table is read: in a burst, those started
            // meanwhile hide connections queued before them (a trace at 256 connections:
            // 49 queued, then "none beyond 213 threads" while they still were, and the
            // rescue ended). Against the last look's count, the accepted ones are at least
            // those queued: none beyond it either, or the rescue looks again.
            let beyond_before = accepted.saturating_sub(last_threads.unwrap_or(threads));
            last_threads = Some(threads);
            if look.unread > 0 || (own && queued > 0) {
                log::trace!(
                    "rescue: {} unread, {queued} queued ({beyond} accepted beyond {threads} pool \
                     threads), {} kicks in flight",
                    look.unread,
                    in_flight.len()
                );
                // A connection tiny_http queued waits for a thread whether or not its first
                // request has come: kicked for at once when the table lists this process's
                // connections only. Otherwise never more than show bytes unread: the count
                // cannot tell this process's connections from those of another sharing the
                // port (an upgrade).
                starved = if own {
                    queued.min(conns.iter().filter(|c| never_read(c, parked)).count())
                } else {
                    look.unread.min(queued)
                };
                let stuck = conns.iter().filter(|c| stuck(c, parked)).count();
                if stuck > starved {
                    log::debug!(
                        "rescue: {stuck} connections unread for {} ms and more, where the \
                         counts show {queued} queued ({accepted} accepted, {threads} pool \
                         threads, {spared} spares, accept thread waiting: {}): kicked for",
                        STUCK_AFTER.as_millis(),
                        counted.is_some_and(|p| p.handed_on)
                    );
                    starved = stuck;
                }
                if starved == 0 && look.settled && beyond == 0 && beyond_before == 0 {
                    // The rest have threads, slow to run: not the rescue's to wait for.
                    break;
                }
            }
        }
        let bounded = now >= until || kicks >= MAX_KICKS;
        // At the bound, what is seen starved still gets its kicks, and one more look sees
        // them taken (a trace at 256 connections: two connections found queued at the
        // bound waited for the next rescue, 152 ms in all).
        if bounded && (starved == 0 || kicked_at_bound) {
            if starved > 0 {
                log::warn!(
                    "rescue: {starved} connections still wait for a thread after {kicks} kicks"
                );
            } else {
                log::debug!("rescue: bounded while the accept loop catches up ({kicks} kicks)");
            }
            break;
        }
        kicked_at_bound = bounded;
        let made = kick(
            starved
                .saturating_sub(in_flight.len())
                .min(MAX_KICKS.saturating_sub(kicks)),
        );
        watch.kicked(made.len(), now);
        kicks += made.len();
        kicked.extend(made.iter().copied());
        in_flight.extend(made.into_iter().map(|kick| (kick, (now, false))));
        match pace {
            Pace::Stop => {
                std::thread::sleep(TABLE_POLL);
                read_at = Instant::now();
                conns = table.read()?;
            }
            Pace::Serving => {
                std::thread::sleep(SERVING_POLL.max(table.took() * SERVING_SHARE));
                read_at = Instant::now();
                conns = table.read_serving()?;
            }
        }
        spared = take_spares(&mut conns, parked).len();
        backlog = unlisted(table);
    }
    if kicks > 0 {
        log::debug!(
            "rescue: {} connections were waiting for a thread (tiny_http), the longest for \
             {:.1} ms (since tiny_http accepted it, at most {:.1} ms; kicked for within {:.1} \
             ms of that, read within {:.1} ms of its kick); {kicks} kicks; {} more were read \
             late (threads slow to run), the last after {:.1} ms",
            watch.freed,
            watch.longest.as_secs_f64() * 1e3,
            watch.longest_queued.as_secs_f64() * 1e3,
            watch.longest_to_kick.as_secs_f64() * 1e3,
            watch.longest_after_kick.as_secs_f64() * 1e3,
            watch.late,
            watch.latest.as_secs_f64() * 1e3
        );
    }
    Ok(Rescued {
        none_open: false,
        open,
        quiet: false,
        spares,
    })
}

/// Takes out of `conns` the parked connections (`parked`) whose byte no thread has read:
/// spares queued in tiny_http's pool, or connections just parked. Neither is a client's to
/// rescue, and neither has a thread to count (a thread about to read one is counted
/// without it: fewer connections seen beyond the threads, no needless kick). Returns their
/// client ends.
fn take_spares(
    conns: &mut Vec<Connection>,
    parked: &dyn Fn(SocketAddr) -> bool,
) -> Vec<SocketAddr> {
    let mut spares = Vec::new();
    conns.retain(|c| {
        let spare = c.accepted && c.unread > 0 && parked(c.peer);
        if spare {
            spares.push(c.peer);
        }
        !spare
    });
    spares
}

/// A connection seen waiting for a thread.
#[derive(Clone, Copy)]
struct Waiting {
    seen: Instant,
    arrived: Instant,
    /// Since when tiny_http has held it, at the earliest: its arrival if an earlier look
    /// saw it accepted, otherwise the start of the last read that did not list it as
    /// accepted, if after its arrival (before, it waited in the backlog for the accept
    /// loop, as it would with plain tiny_http).
    queued: Instant,
    received: Option<u64>,
    /// When a kick was made for it.
    kicked: Option<Instant>,
}

/// What one look of a rescue from the table found.
#[derive(Clone, Copy)]
struct Look {
    /// Connections with bytes unread for [`STARVED_AFTER`].
    starved: usize,
    /// Connections with bytes unread, none ever read.
    unread: usize,
    /// No connection left to accept: what the accept loop took at the last look was all,
    /// and it took none for [`STARVED_AFTER`].
    settled: bool,
}

/// What a rescue from the table keeps from one look to the next.
struct Watch {
    /// In the listening socket's backlog at the first look: the rescue waits until they are
    /// accepted.
    backlog: Vec<SocketAddr>,
    /// Established in the backlog at the last look: one still there at the next shows an
    /// accept loop that is behind (a burst), whose connections the rescue waits for too. (A
    /// handshake under way for that long only shows a distant client.)
    behind: HashSet<SocketAddr>,
    /// Unread at the first look: each must be seen read (or kicked for, then read).
    suspects: HashSet<SocketAddr>,
    /// Every connection seen accepted.
    accepted: HashSet<SocketAddr>,
    /// The connections with bytes unread, none ever read: since when they are seen so, and
    /// how many bytes they had received then (a connection that received more meanwhile is
    /// still being sent its first request: its wait starts again); and when those bytes
    /// arrived, as the OS dates it (to a kernel tick).
    waiting_since: HashMap<SocketAddr, Waiting>,
    /// When a connection was last seen accepted for the first time.
    last_accept: Instant,
    /// Connections kicked for, then seen read (or gone).
    freed: usize,
    /// The longest any of those waited, from its bytes' arrival (as the OS dates it) until
    /// it was seen read.
    longest: Duration,
    /// The longest any of those waited from when tiny_http accepted it, at most
    /// (`Waiting::queued`): the rescue's part of `longest`.
    longest_queued: Duration,
    /// Of those, the longest from when tiny_http accepted one, at most, to its kick: how
    /// long the rescue took to see it and kick.
    longest_to_kick: Duration,
    /// And the longest from a kick to the look that saw its connection read: the freed
    /// thread's time to run, and the look's own pace.
    longest_after_kick: Duration,
    /// When the read of the table the last look worked from began.
    last_read: Option<Instant>,
    /// Connections seen waiting, then read without a kick for them: their threads were
    /// slow to run.
    late: usize,
    /// The longest any of those waited.
    latest: Duration,
    /// How many waited in the backlog, counted, not listed, at the last look.
    last_backlog: usize,
}

impl Watch {
    fn new(first: &[Connection], backlog: usize) -> Watch {
        let peers =
            |keep: fn(&Connection) -> bool| first.iter().filter(move |c| keep(c)).map(|c| c.peer);
        Watch {
            backlog: peers(in_backlog).collect(),
            behind: peers(awaiting_accept).collect(),
            suspects: peers(unread).collect(),
            accepted: peers(|c| c.accepted).collect(),
            waiting_since: HashMap::new(),
            last_accept: Instant::now(),
            freed: 0,
            longest: Duration::ZERO,
            longest_queued: Duration::ZERO,
            longest_to_kick: Duration::ZERO,
            longest_after_kick: Duration::ZERO,
            last_read: None,
            late: 0,
            latest: Duration::ZERO,
            last_backlog: backlog,
        }
    }

    /// `n` kicks were made: they are for the connections waiting longest (tiny_http's pool
    /// runs what it queued first first) not kicked for yet.
    fn kicked(&mut self, n: usize, at: Instant) {
        let mut waiting: Vec<&mut Waiting> = self
            .waiting_since
            .values_mut()
            .filter(|w| w.kicked.is_none())
            .collect();
        waiting.sort_by_key(|w| w.arrived);
        for w in waiting.into_iter().take(n) {
            w.kicked = Some(at);
        }
    }

    /// Takes in one look at the table: how many connections are starved (bytes unread for
    /// [`STARVED_AFTER`]) and whether the accept loop has settled, or `None` once nothing
    /// is left to rescue: none starved, none of
    /// the first look's unread still waiting, the first look's backlog accepted, none left
    /// in the backlog since the last look, and no connection accepted for [`STARVED_AFTER`].
    ///
    /// With `churn` (connections coming and going), the accept loop counts as settled
    /// without a pause in its accepts; `backlog` is how many wait in the listening
    /// socket's backlog without being listed in `conns` (a look while serving counts them).
    fn look(
        &mut self,
        conns: &[Connection],
        now: Instant,
        read_at: Instant,
        churn: bool,
        backlog: usize,
    ) -> Option<Look> {
        // Read, or gone: no longer waiting. (A connection a dump skipped is still waiting.)
        self.waiting_since.retain(|peer, waiting| {
            let waits = conns.iter().find(|c| c.peer == *peer).map_or(true, unread);
            if let (false, Some(kicked)) = (waits, waiting.kicked) {
                self.freed += 1;
                self.longest = self.longest.max(now - waiting.arrived);
                self.longest_queued = self.longest_queued.max(now - waiting.queued);
                self.longest_to_kick = self
                    .longest_to_kick
                    .max(kicked.saturating_duration_since(waiting.queued));
                self.longest_after_kick = self.longest_after_kick.max(now - kicked);
            } else if !waits {
                self.late += 1;
                self.latest = self.latest.max(now - waiting.arrived);
            }
            waits
        });
        for c in conns.iter().filter(|c| unread(c)) {
            let arrived = now
                .checked_sub(c.quiet_for.unwrap_or_default())
                .unwrap_or(now);
            let queued = match self.last_read {
                Some(read) if !self.accepted.contains(&c.peer) => read.max(arrived),
                _ => arrived,
            };
            let seen = Waiting {
                seen: now,
                arrived,
                queued,
                received: c.received,
                kicked: None,
            };
            let waiting = self.waiting_since.entry(c.peer).or_insert(seen);
            if waiting.received != c.received {
                *waiting = Waiting {
                    kicked: waiting.kicked,
                    ..seen
                };
            }
        }
        for c in conns.iter().filter(|c| c.accepted) {
            if self.accepted.insert(c.peer) {
                self.last_accept = now;
            }
        }
        // Counted only (a look while serving): some at two looks in a row.
        let accepting = conns.iter().any(|c| {
            (in_backlog(c) && self.backlog.contains(&c.peer))
                || (awaiting_accept(c) && self.behind.contains(&c.peer))
        }) || (backlog > 0 && self.last_backlog > 0);
        self.last_backlog = backlog;
        self.behind = conns
            .iter()
            .filter(|c| awaiting_accept(c))
            .map(|c| c.peer)
            .collect();
        let starved = self
            .waiting_since
            .values()
            .filter(|w| now - w.seen >= STARVED_AFTER)
            .count();
        let suspected = self.waiting_since.keys().any(|p| self.suspects.contains(p));
        let settled = !accepting && (churn || now - self.last_accept >= STARVED_AFTER);
        self.last_read = Some(read_at);
        if starved == 0 && !suspected && settled {
            None
        } else {
            Some(Look {
                starved,
                unread: self.waiting_since.len(),
                settled,
            })
        }
    }
}

/// How a rescue from the table looks again while its kicks take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Before the socket closes: a connection the rescue misses is reset, so each look is
    /// two dumps ([`Table::read`]), every [`TABLE_POLL`].
    Stop,
    /// While the server serves: a connection one look misses is seen by the next, and the
    /// dumps' CPU is taken from the threads the rescue waits for; one dump per look, every
    /// [`SERVING_POLL`].
    Serving,
}

/// How often a rescue while serving looks again ([`Pace::Serving`]): a dump is about a
/// millisecond of a core here, so at most a fifth of one. Before, a rescue while serving
/// looked as at shutdown, two dumps every 0.5 ms, most of a core, on a 2-core machine where
/// the threads it waits for had to run; with this pace and the wait for an accept loop that
/// is behind (`Watch::behind`), in 15 interleaved `wrk -c256` runs on a fresh server each,
/// the longest a connection waited for its rescue went from 64 (median) and 225 ms (worst)
/// to 37 and 85 ms, and the connections a rescue left waiting at its bound from 581 to 132
/// in all.
const SERVING_POLL: Duration = Duration::from_millis(4);

/// While serving, a rescue sleeps at least this many times as long as its last look took
/// between looks: its looks take at most a fifth of a core, as with [`SERVING_POLL`] and a
/// dump of 1 ms, however slow the dumps get (thousands of connections in `TIME_WAIT`:
/// `Table::took`).
const SERVING_SHARE: u32 = 4;

/// What a rescue from the table saw.
#[derive(Clone, Debug)]
pub(crate) struct Rescued {
    /// No connection was open (or in the backlog) at all.
    pub(crate) none_open: bool,
    /// Connections accepted at its first look.
    pub(crate) open: usize,
    /// Its first look found nothing waiting: no bytes unread, nothing in the backlog.
    pub(crate) quiet: bool,
    /// The parked connections its first look showed with their byte unread, left out of
    /// the rest (`take_spares`).
    pub(crate) spares: Vec<SocketAddr>,
}

/// `n` kicks to `addr`, for a socket that is not sealed; how many went through.
///
/// One after the other: each waits for tiny_http's accept thread, which takes it, and a
/// kick only frees a connection when that thread starts a new pool thread for it, so kicks
/// that came faster would only queue behind it. (Started all at once and waited for
/// together, they left more connections waiting: `--only latency`-like runs at 256
/// connections, 2026-12-02.)
pub(crate) fn kicks(addr: SocketAddr, n: usize) -> Vec<SocketAddr> {
    (0..n).map_while(|_| kick(addr)).collect()
}

/// A connection to ourselves that closes at once: tiny_http gives it a thread, which, once
/// it has read the end of it, takes the next connection queued for a thread. Returns its
/// client end's address, if it went through.
fn kick(addr: SocketAddr) -> Option<SocketAddr> {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(kick) => kick.local_addr().ok().or(Some(addr)),
        Err(e) => {
            log::debug!("rescue: kick to {addr} failed: {e}");
            None
        }
    }
}

/// Established and in the listening socket's backlog: the accept loop's to take.
fn awaiting_accept(c: &Connection) -> bool {
    c.established && !c.accepted
}

/// In the listening socket's backlog, or on its way there (its handshake under way).
fn in_backlog(c: &Connection) -> bool {
    (c.established || c.opening) && !c.accepted
}

/// Accepted, with bytes waiting, none ever read: what a connection tiny_http left without a
/// thread looks like (its thread would have read its first request in microseconds). A
/// connection read before has a thread, however slow it is to run on a loaded machine:
/// tiny_http runs a connection on one thread from its first request to its end. Where the
/// OS does not count the bytes received, any bytes waiting.
fn unread(c: &Connection) -> bool {
    c.accepted && c.unread > 0 && c.received.map_or(true, |r| r == u64::from(c.unread))
}

/// Unread ([`unread`]), a client's, and its bytes have waited [`STUCK_AFTER`] and more as
/// the OS dates them: left without a thread, whatever the counts say. Never where the OS
/// does not date them.
fn stuck(c: &Connection, ours: &dyn Fn(SocketAddr) -> bool) -> bool {
    unread(c) && !ours(c.peer) && c.quiet_for.is_some_and(|q| q >= STUCK_AFTER)
}

/// Accepted, a client's, and none of its bytes ever read, whether or not any came: what a
/// connection tiny_http queued looks like before and after its first request comes. One
/// whose thread has ended while a worker still answers its last request was read.
fn never_read(c: &Connection, ours: &dyn Fn(SocketAddr) -> bool) -> bool {
    c.accepted
        && !ours(c.peer)
        && c.received
            .map_or(c.unread > 0, |r| r == u64::from(c.unread))
}

/// One rescue and how it goes about it.
struct Rescue<'a> {
    addr: SocketAddr,
    peers: &'a Peers,
    /// With a churn wait, no kick at all while connections are coming and going by
    /// themselves (a new one within the wait without a kick).
    churn: Option<Duration>,
    /// How long a freed connection's first request may take to show up: the first wait is
    /// at least [`RESCUE_WAIT`], the others four times what the last one took, within
    /// these bounds.
    wait: std::ops::RangeInclusive<Duration>,
    go_on: &'a dyn Fn() -> bool,
    pull: &'a dyn Fn() -> bool,
}

impl Rescue<'_> {
    fn run(&self) -> usize {
        let mut freed = 0;
        for _ in 0..=AGAIN {
            if !(self.go_on)() {
                break;
            }
            let more = self.chain();
            freed += more;
            if more == 0 {
                break;
            }
        }
        if freed > 0 {
            log::debug!("rescue: {freed} connections were waiting for a thread (tiny_http); freed");
        }
        freed
    }

    /// One chain of kicks: stops at the first that frees nothing (and then the peers are
    /// settled).
    fn chain(&self) -> usize {
        let peers = self.peers;
        while peers.new_seen().try_recv().is_ok() {}
        if self
            .churn
            .is_some_and(|churn| peers.new_seen().recv_timeout(churn).is_ok())
        {
            return 0;
        }
        let mut freed = 0;
        let mut wait = RESCUE_WAIT.clamp(*self.wait.start(), *self.wait.end());
        for _ in 0..MAX_KICKS {
            if !(self.go_on)() {
                return freed;
            }
            let kicked = Instant::now();
            match TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT) {
                Ok(kick) => drop(kick),
                Err(e) => {
                    log::debug!("rescue: kick to {} failed: {e}", self.addr);
                    return freed;
                }
            }
            if !freed_within(peers, wait, self.pull) {
                peers.settle();
                return freed;
            }
            freed += 1;
            wait = (kicked.elapsed() * 4).clamp(*self.wait.start(), *self.wait.end());
        }
        freed
    }
}

/// Whether a new connection's first request shows up within `wait`, taking requests from
/// the queue with `pull` meanwhile.
fn freed_within(peers: &Peers, wait: Duration, pull: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + wait;
    loop {
        while pull() {}
        let left = until.saturating_duration_since(Instant::now());
        if peers.new_seen().recv_timeout(left.min(PULL_EVERY)).is_ok() {
            return true;
        }
        if left <= PULL_EVERY {
            return false;
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

    /// Waits (bounded) until the table shows `peer` accepted with `unread` bytes unread.
    fn shown(table: &mut Table, peer: SocketAddr, unread: u32) {
        let until = Instant::now() + Duration::from_secs(5);
        while !table
            .read()
            .unwrap()
            .iter()
            .any(|c| c.peer == peer && c.accepted && c.unread == unread)
        {
            assert!(
                Instant::now() < until,
                "{peer} never shown with {unread} unread"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The evidence rule: no kick while no accepted connection has bytes unread; kicks while
    /// one has, until its bytes are read (as a thread freed by a kick reads them).
    #[test]
    fn kicks_only_while_an_accepted_connection_has_bytes_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        let until = Instant::now() + Duration::from_secs(5);

        // Served: its request read. Nothing to rescue.
        let mut served = TcpStream::connect(addr).unwrap();
        let (mut reader, _) = listener.accept().unwrap();
        served.write_all(REQUEST).unwrap();
        reader.read_exact(&mut [0; REQUEST.len()]).unwrap();
        shown(&mut table, served.local_addr().unwrap(), 0);
        let mut asked = Vec::new();
        rescue_from_table(
            &mut table,
            until,
            Pace::Stop,
            &mut || None,
            &mut |n| {
                asked.push(n);
                Vec::new()
            },
            &mut |_| {},
            &|_| false,
        )
        .unwrap();
        assert_eq!(
            asked,
            Vec::<usize>::new(),
            "kicks asked with nothing unread"
        );

        // Starved: accepted, its request left unread.
        let mut starved = TcpStream::connect(addr).unwrap();
        let (mut left, _) = listener.accept().unwrap();
        starved.write_all(REQUEST).unwrap();
        shown(
            &mut table,
            starved.local_addr().unwrap(),
            REQUEST.len() as u32,
        );
        let mut kicked = 0;
        rescue_from_table(
            &mut table,
            until,
            Pace::Stop,
            &mut || None,
            &mut |n| {
                if n > 0 && kicked == 0 {
                    left.read_exact(&mut [0; REQUEST.len()]).unwrap();
                }
                kicked += n;
                // Not real connections: never in the table, so never in flight.
                vec![SocketAddr::from(([127, 0, 0, 1], 1)); n]
            },
            &mut |_| {},
            &|_| false,
        )
        .unwrap();
        assert_eq!(kicked, 1, "one kick for one starved connection");
    }

    /// At its bound a rescue still kicks for what it sees queued then, and looks once more
    /// to see it taken, instead of leaving it to the next rescue.
    #[test]
    fn at_its_bound_a_rescue_still_kicks_for_what_it_sees_queued() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        let mut queued = TcpStream::connect(addr).unwrap();
        let (mut left, _) = listener.accept().unwrap();
        queued.write_all(REQUEST).unwrap();
        shown(
            &mut table,
            queued.local_addr().unwrap(),
            REQUEST.len() as u32,
        );
        let mut asked = Vec::new();
        let rescued = rescue_from_table(
            &mut table,
            // The bound, reached at once.
            Instant::now(),
            Pace::Serving,
            // No pool thread, the accept thread waiting: the connection is queued.
            &mut || {
                Some(Pool {
                    threads: 0,
                    handed_on: true,
                })
            },
            &mut |n| {
                asked.push(n);
                if n > 0 {
                    // As the thread a kick frees would.
                    left.read_exact(&mut [0; REQUEST.len()]).unwrap();
                }
                Vec::new()
            },
            &mut |_| {},
            &|_| false,
        )
        .unwrap();
        assert_eq!(
            asked,
            vec![1],
            "one kick for the queued connection, at the bound"
        );
        assert!(!rescued.quiet);
    }

    /// A connection queued behind a spare is kicked for once the accept loop has settled.
    /// While connections come, one beyond the threads with a spare queued is taken for the
    /// accept thread's, on its way to a thread of its own; before, it was so however long
    /// the accept loop had been idle, and such a connection was never kicked for.
    #[test]
    fn a_connection_queued_behind_a_spare_is_kicked_for_once_the_accept_loop_settles() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        // A spare: a parked connection, its byte unread.
        let mut spare = TcpStream::connect(addr).unwrap();
        let (_spare_end, _) = listener.accept().unwrap();
        spare.write_all(b"P").unwrap();
        let spare = spare.local_addr().unwrap();
        shown(&mut table, spare, 1);
        // A client's, its request unread.
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut left, _) = listener.accept().unwrap();
        client.write_all(REQUEST).unwrap();
        shown(
            &mut table,
            client.local_addr().unwrap(),
            REQUEST.len() as u32,
        );
        let mut asked = Vec::new();
        rescue_from_table(
            &mut table,
            Instant::now() + Duration::from_secs(2),
            Pace::Serving,
            // No pool thread for it, the accept thread never seen waiting.
            &mut || {
                Some(Pool {
                    threads: 0,
                    handed_on: false,
                })
            },
            &mut |n| {
                asked.push(n);
                if n > 0 {
                    // As the thread a kick frees would.
                    left.read_exact(&mut [0; REQUEST.len()]).unwrap();
                }
                vec![SocketAddr::from(([127, 0, 0, 1], 1)); n]
            },
            &mut |_| {},
            &|peer| peer == spare,
        )
        .unwrap();
        assert_eq!(
            asked.iter().sum::<usize>(),
            1,
            "one kick for the queued connection: {asked:?}"
        );
    }

    /// A connection whose request stays unread is kicked for once its bytes have waited
    /// [`STUCK_AFTER`], though the count of threads shows one for it; before, not (its
    /// thread may be slow to run).
    #[test]
    fn a_connection_unread_for_long_is_kicked_for_whatever_the_count_says() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut left, _) = listener.accept().unwrap();
        let sent = Instant::now();
        client.write_all(REQUEST).unwrap();
        let peer = client.local_addr().unwrap();
        shown(&mut table, peer, REQUEST.len() as u32);
        // One pool thread for the one connection: by the count, none is queued.
        let rescue = |table: &mut Table, left: &mut TcpStream| {
            let mut asked = Vec::new();
            rescue_from_table(
                table,
                Instant::now() + Duration::from_secs(2),
                Pace::Serving,
                &mut || {
                    Some(Pool {
                        threads: 1,
                        handed_on: true,
                    })
                },
                &mut |n| {
                    asked.push(n);
                    if n > 0 {
                        // As the thread a kick frees would.
                        left.read_exact(&mut [0; REQUEST.len()]).unwrap();
                    }
                    vec![SocketAddr::from(([127, 0, 0, 1], 1)); n]
                },
                &mut |_| {},
                &|_| false,
            )
            .unwrap();
            asked.iter().sum::<usize>()
        };
        let early = rescue(&mut table, &mut left);
        // Only if the machine let that rescue end before the bytes were that old.
        if sent.elapsed() < STUCK_AFTER {
            assert_eq!(early, 0, "a kick for a connection unread for less");
        }
        if early == 0 {
            let until = Instant::now() + Duration::from_secs(5);
            while !table.read().unwrap().iter().any(|c| {
                c.peer == peer && unread(c) && c.quiet_for.is_some_and(|q| q >= STUCK_AFTER)
            }) {
                assert!(Instant::now() < until, "{peer} never shown unread for long");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(rescue(&mut table, &mut left), 1, "one kick for it");
        }
        // Read, by the kick's stand-in: nothing left to rescue.
        assert_eq!(rescue(&mut table, &mut left), 0);
    }

    /// While serving, every connection queued beyond the pool's threads is kicked for at
    /// the first look that counts it, whether its first request has come or not (before,
    /// only as many as showed bytes unread: in a burst of 256, 49 queued and one kick, as
    /// the others' requests had not come yet).
    #[test]
    fn a_rescue_while_serving_kicks_for_every_connection_queued_request_or_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut table = Table::open(addr).unwrap();
        let mut first = TcpStream::connect(addr).unwrap();
        let (mut left, _) = listener.accept().unwrap();
        // Three more, accepted, their requests not sent yet.
        let quiet: Vec<(TcpStream, TcpStream)> = (0..3)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect();
        first.write_all(REQUEST).unwrap();
        shown(
            &mut table,
            first.local_addr().unwrap(),
            REQUEST.len() as u32,
        );
        for (client, _) in &quiet {
            shown(&mut table, client.local_addr().unwrap(), 0);
        }
        // No pool thread until kicks free some: each kick, one thread.
        let freed = std::cell::Cell::new(0);
        let mut asked = Vec::new();
        rescue_from_table(
            &mut table,
            Instant::now() + Duration::from_secs(5),
            Pace::Serving,
            &mut || {
                Some(Pool {
                    threads: freed.get(),
                    handed_on: true,
                })
            },
            &mut |n| {
                asked.push(n);
                if n > 0 && freed.get() == 0 {
                    // As the thread the first kick frees would.
                    left.read_exact(&mut [0; REQUEST.len()]).unwrap();
                }
                freed.set(freed.get() + n);
                vec![SocketAddr::from(([127, 0, 0, 1], 1)); n]
            },
            &mut |_| {},
            &|_| false,
        )
        .unwrap();
        assert_eq!(asked.first(), Some(&4), "kicks asked: {asked:?}");
        assert_eq!(freed.get(), 4, "kicks asked: {asked:?}");
    }

    /// The model the rescue works from: the connections accepted beyond the pool's threads
    /// are the ones no thread will read, and one kick for each gets it read.
    #[test]
    fn connections_beyond_the_pool_threads_are_those_no_thread_reads() {
        use super::super::threads::{PoolName, Threads};
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

        // All at once: tiny_http may leave some without a thread, or none.
        let conns: Vec<TcpStream> = (0..CONNS)
            .map(|_| {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(REQUEST).unwrap();
                c
            })
            .collect();
        // Until every connection is either served or counted beyond the pool's threads.
        let until = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        let beyond = loop {
            while let Ok(Some(request)) = server.try_recv() {
                respond(request);
                served += 1;
            }
            let accepted = table.read().unwrap().iter().filter(|c| c.accepted).count();
            let (named, exact) = threads.count().unwrap();
            let beyond = accepted.saturating_sub(named - 1);
            if exact && accepted == CONNS && served + beyond == CONNS {
                break beyond;
            }
            assert!(
                Instant::now() < until,
                "{served} served, {accepted} accepted, {named} threads named"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        if beyond > 0 {
            // Queued with no thread: nothing reads them.
            assert!(
                server
                    .recv_timeout(Duration::from_millis(200))
                    .unwrap()
                    .is_none(),
                "a connection counted without a thread was read"
            );
        }
        // One kick each, and they are read.
        assert_eq!(kicks(addr, beyond).len(), beyond);
        while served < CONNS {
            let request = server.recv_timeout(Duration::from_secs(10)).unwrap();
            respond(request.expect("kicked for, and still not read"));
            served += 1;
        }
        for mut c in conns {
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 204");
        }
    }
}
