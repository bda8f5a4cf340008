//! tiny_http's threads, counted: how the rescue tells a connection left without a thread
//! from one whose thread has not run yet.
//!
//! tiny_http runs each connection on a thread of its pool, from its first byte to its end;
//! a connection that arrives while no pool thread waits gets a new one at once. In a burst
//! the pool miscounts its waiting threads and queues some connections with no thread to
//! run them (`rescue.rs`). Bytes left unread cannot tell those apart from connections whose
//! new thread has not been scheduled yet: with 256 connections opened at once on two cores,
//! half of them had bytes unread for 2 ms and more, and a rescue that kicked for each (119
//! kicks, one connection and one more thread each) took the CPU from the very threads it
//! waited for.
//!
//! The count can. A thread's name is inherited by the threads it starts, so tiny_http's
//! accept thread, started by a thread named for the server ([`PoolName::start`]), and every
//! pool thread it starts bear that name, and no other thread does. Every open connection
//! tiny_http accepted is held by a pool thread or queued; a thread holds one connection at
//! most, or waits; and while a connection is queued, no thread waits (the one woken takes
//! it). So the connections queued are exactly those accepted beyond the pool's threads,
//! once the accept thread has handed on the one it took:
//!
//! ```text
//! queued = accepted connections still open − (threads with the name − 1 accept thread)
//! ```
//!
//! The accept thread may hold one connection it has not handed on yet. Where it is seen
//! waiting in `accept` after the count (its system call, `/proc/self/task/<tid>/syscall`),
//! it holds none, and the count is exact at once; otherwise the rescue waits for a second
//! look (`rescue.rs`).
//!
//! Read from `/proc/self/task` (Linux: the name of each thread, read once per thread).
//! Elsewhere there is no connection table either, and the rescue is timed.
//!
//! **Between listings.** A listing of `/proc/self/task` costs about a microsecond of CPU
//! per thread, and the rescue counts in a burst, among hundreds of new threads, where its
//! CPU is what makes it late. So the supervisor's quiet looks list ([`Threads::pool`]), and
//! a rescue's counts ([`Threads::pool_now`]) take the process's number of threads, one
//! read, and count every thread started since the last listing as tiny_http's unless it
//! said otherwise ([`OwnThreads`]): in a burst nearly all are. lameduck's own threads
//! (its workers, started as requests need them, in a burst too) are announced twice: by the
//! thread that starts one, as soon as it is started, and by the thread itself, with its id,
//! as it runs. Counted as tiny_http's until it ran, a worker started in a burst hid one
//! queued connection for as long as it waited to run (tens of milliseconds among hundreds of
//! new threads). A thread of the program's own started meanwhile counts as tiny_http's
//! until the next listing (one connection queued hidden: no needless kick); one that ended,
//! as one of tiny_http's ended (one kick that frees nothing). A listing older than
//! [`LISTING_KEPT`] is taken again.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// The most thread names one count reads. A read is about 10 µs here, and a burst of 256
/// connections brings 256 new threads: read all at once, with the CPU taken by those
/// threads, the first count took 40 ms (`wrk -c256` on a fresh server, 2026-12-03). The
/// threads not read yet are nearly all tiny_http's in a burst, and counting them as its
/// errs on the safe side: fewer connections seen queued, no needless kick.
#[cfg(target_os = "linux")]
const NAMES_PER_COUNT: usize = 32;

/// How long a listing of the threads serves the counts after it ([`Threads::pool_now`]).
/// The supervisor lists at each quiet look, at least once a second; a rescue counts for a
/// tenth of a second at most.
#[cfg(target_os = "linux")]
const LISTING_KEPT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many of the oldest threads bearing the name are looked at for the accept thread.
#[cfg(target_os = "linux")]
const ACCEPT_CANDIDATES: usize = 4;

/// Whether thread `tid` of this process is in `accept4` (what std's `TcpListener::accept`
/// calls on Linux) now: `None` if its system call cannot be read (the thread is gone, or
/// the kernel does not show it).
#[cfg(target_os = "linux")]
fn in_accept(tid: u32) -> Option<bool> {
    Some(syscall(tid)? == libc::SYS_accept4)
}

/// The system call thread `tid` of this process is in now (-1 if none: it runs, or is
/// between calls); `None` if it cannot be read (the thread is gone, or the kernel does not
/// show it).
#[cfg(target_os = "linux")]
fn syscall(tid: u32) -> Option<libc::c_long> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    // `<number> <arguments...>` while in a system call; `running`, or `-1 ...` otherwise.
    Some(
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse::<libc::c_long>().ok())
            .unwrap_or(-1),
    )
}

/// The process's number of threads (`Threads:` in `/proc/self/status`: one read, whatever
/// their number); `None` if it cannot be read.
#[cfg(target_os = "linux")]
fn process_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// The calling thread's id (`/proc/thread-self` links to `<pid>/task/<tid>`).
#[cfg(target_os = "linux")]
pub(crate) fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Servers started in this process, for the names of their threads.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// The name the threads of one server's tiny_http bear, every generation of it.
#[derive(Clone, Debug)]
pub(crate) struct PoolName(String);

impl PoolName {
    /// A name of its own: `tiny_http-` and a number, within Linux's 15 bytes. (Not
    /// `lameduck-`: these threads are tiny_http's, and outlive the server by up to 5 s.)
    pub(crate) fn new() -> PoolName {
        let n = STARTED.fetch_add(1, Ordering::Relaxed) % 100_000;
        PoolName(format!("tiny_http-{n}"))
    }

    /// Starts a tiny_http server on `listener` from a thread that bears the name, so that
    /// its accept thread and pool threads bear it too.
    ///
    /// # Errors
    ///
    /// tiny_http's, or the thread's if it could not be started (or panicked).
    pub(crate) fn start(
        &self,
        listener: TcpListener,
    ) -> Result<tiny_http::Server, Box<dyn std::error::Error + Send + Sync>> {
        std::thread::Builder::new()
            .name(self.0.clone())
            .spawn(move || tiny_http::Server::from_listener(listener, None))?
            .join()
            .map_err(|_| io::Error::other("the thread starting tiny_http panicked"))?
    }
}

/// Counts the threads that bear one [`PoolName`].
pub(crate) struct Threads {
    name: PoolName,
    /// Threads seen, by id: whether each bears the name (read once: names do not change).
    #[cfg(target_os = "linux")]
    known: std::collections::HashMap<u32, bool>,
    /// tiny_http's accept thread, once seen waiting in `accept`.
    #[cfg(target_os = "linux")]
    accept_thread: Option<u32>,
    /// The last listing, for the counts between listings.
    #[cfg(target_os = "linux")]
    listed: Option<Listed>,
    /// Threads of lameduck's that said so as they started (a worker started in a burst),
    /// by id: known not to bear the name without a read of theirs.
    #[cfg(target_os = "linux")]
    strangers: (
        crossbeam_channel::Sender<u32>,
        crossbeam_channel::Receiver<u32>,
    ),
    /// Threads of lameduck's started, as their starters counted them ([`OwnThreads`]).
    spawned: Arc<AtomicUsize>,
}

/// Where lameduck's own threads are announced, so that the counts between listings do not
/// take them for tiny_http's ([`Threads`]): [`OwnThreads::spawned`] by the thread that
/// starts one, once it is started, [`OwnThreads::started`] by the new thread as it runs.
#[derive(Clone)]
pub(crate) struct OwnThreads {
    #[cfg(target_os = "linux")]
    tids: crossbeam_channel::Sender<u32>,
    spawned: Arc<AtomicUsize>,
}

impl OwnThreads {
    /// One thread of lameduck's was started (called after the start returned: counted
    /// before it exists, it would be taken for a thread of tiny_http's that ended).
    pub(crate) fn spawned(&self) {
        self.spawned.fetch_add(1, Ordering::SeqCst);
    }

    /// The calling thread, just started, is lameduck's: no read of its name is needed.
    pub(crate) fn started(&self) {
        #[cfg(target_os = "linux")]
        if let Some(tid) = own_tid() {
            let _ = self.tids.send(tid);
        }
    }
}

/// What a listing of the threads found, and when.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug)]
struct Listed {
    at: std::time::Instant,
    /// The process's threads, read right after the listing.
    all: usize,
    /// Those bearing the name (or not read yet), the accept thread among them.
    named: usize,
    /// lameduck's threads started before it, as [`OwnThreads::spawned`] counted them.
    spawned: usize,
    /// lameduck's threads that said so since ([`OwnThreads::started`]), not listed.
    strangers: usize,
}

#[cfg(target_os = "linux")]
impl Listed {
    /// The threads bearing the name now, `all` threads in the process, of which
    /// lameduck's own started since are `spawned` as counted by their starters, and some
    /// have said so themselves ([`Listed::strangers`]): every other thread started since
    /// bears it, and every thread ended since bore it. `None` if more ended than there
    /// were. (A thread that said so was counted by its starter too, but the count may come
    /// a moment later: the larger of the two.)
    fn named_now(&self, all: usize, spawned: usize) -> Option<usize> {
        (self.named + all).checked_sub(self.all + self.strangers.max(spawned))
    }
}

/// tiny_http's pool threads, counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    /// Its threads (the accept thread left out), at most (see [`Threads::count`]).
    pub(crate) threads: usize,
    /// The accept thread was waiting in `accept` when looked at, after the count: every
    /// connection it accepted before had been handed on (to a thread, or queued), so none
    /// is in its hands. `false` when not seen so.
    pub(crate) handed_on: bool,
}

impl Threads {
    pub(crate) fn new(name: PoolName) -> Threads {
        Threads {
            name,
            #[cfg(target_os = "linux")]
            known: std::collections::HashMap::new(),
            #[cfg(target_os = "linux")]
            accept_thread: None,
            #[cfg(target_os = "linux")]
            listed: None,
            #[cfg(target_os = "linux")]
            strangers: crossbeam_channel::unbounded(),
            spawned: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Where lameduck's threads are announced: a count then needs no read of their names.
    /// Workers start in a burst, as requests need them; counted as tiny_http's until their
    /// names were read (a few a count), they hid connections left without a thread from
    /// the rescue.
    pub(crate) fn own_threads(&self) -> OwnThreads {
        OwnThreads {
            #[cfg(target_os = "linux")]
            tids: self.strangers.0.clone(),
            spawned: Arc::clone(&self.spawned),
        }
    }

    /// tiny_http's pool threads (its accept thread left out), at most (see [`Threads::count`]),
    /// or `None` where they cannot be counted.
    #[cfg(target_os = "linux")]
    pub(crate) fn pool(&mut self) -> Option<usize> {
        let (named, _) = self.count().map_err(|e| log::debug!("threads: {e}")).ok()?;
        Some(named.saturating_sub(1))
    }

    /// The pool's threads, and whether the accept thread was waiting in `accept` after
    /// they were counted; `None` where they cannot be counted. From the last listing and
    /// the process's number of threads, if the listing is recent (the module's doc), or
    /// from a new listing.
    #[cfg(target_os = "linux")]
    pub(crate) fn pool_now(&mut self) -> Option<Pool> {
        let threads = match self.pool_since_listed() {
            Some(threads) => threads,
            None => self.pool()?,
        };
        Some(Pool {
            threads,
            handed_on: self.accept_waiting(),
        })
    }

    /// The pool's threads from the last listing, if it is recent: the threads started since
    /// are tiny_http's, but for those that said they are not.
    #[cfg(target_os = "linux")]
    fn pool_since_listed(&mut self) -> Option<usize> {
        self.pool_since_listed_of(process_threads)
    }

    /// [`Threads::pool_since_listed`], the process's number of threads from `all` (read
    /// after the strangers' word: one that said so after it is counted as tiny_http's,
    /// never the other way round).
    #[cfg(target_os = "linux")]
    fn pool_since_listed_of(&mut self, all: impl FnOnce() -> Option<usize>) -> Option<usize> {
        let mut listed = self.listed.filter(|l| l.at.elapsed() < LISTING_KEPT)?;
        // A stranger the listing saw is counted already (as not bearing the name).
        for tid in self.strangers.1.try_iter() {
            if self.known.insert(tid, false).is_none() {
                listed.strangers += 1;
            }
        }
        self.listed = Some(listed);
        let all = all()?;
        let spawned = self.spawned.load(Ordering::SeqCst) - listed.spawned;
        let named = listed.named_now(all, spawned)?;
        Some(named.saturating_sub(1))
    }

    /// Lists the threads again if the last listing is half as old as [`LISTING_KEPT`]: for
    /// a quiet look that needs no count, so that a burst's counts have a recent listing to
    /// go from.
    #[cfg(target_os = "linux")]
    pub(crate) fn keep_listed(&mut self) {
        if self
            .listed
            .map_or(true, |l| l.at.elapsed() >= LISTING_KEPT / 2)
        {
            if let Err(e) = self.count() {
                log::debug!("threads: {e}");
            }
        }
    }

    /// Nothing to list here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn keep_listed(&mut self) {}

    /// Never counted here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn pool_now(&mut self) -> Option<Pool> {
        None
    }

    /// Whether tiny_http's accept thread is waiting in `accept` now, from the system call
    /// it is in (`/proc/self/task/<tid>/syscall`, a read of about 10 µs): then it holds no
    /// connection it has not handed on. The thread is found among those bearing the name,
    /// oldest first (the accept thread starts the others), the first time it is seen
    /// waiting, and remembered; `false` while it is busy, or where that file cannot be read.
    #[cfg(target_os = "linux")]
    fn accept_waiting(&mut self) -> bool {
        if let Some(tid) = self.accept_thread {
            match in_accept(tid) {
                Some(waiting) => return waiting,
                // Gone: another generation's accept thread is found anew.
                None => self.accept_thread = None,
            }
        }
        let mut named: Vec<u32> = self
            .known
            .iter()
            .filter_map(|(&tid, &named)| named.then_some(tid))
            .collect();
        named.sort_unstable();
        // Bounded: the accept thread is the oldest, unless a thread id wrapped around.
        for tid in named.into_iter().take(ACCEPT_CANDIDATES) {
            if in_accept(tid) == Some(true) {
                self.accept_thread = Some(tid);
                return true;
            }
        }
        false
    }

    /// How many of the threads bearing the name wait in `futex` now (a pool thread waiting
    /// for a connection to run; at the start nothing else is), from each one's system call;
    /// `None` if they cannot be read.
    #[cfg(target_os = "linux")]
    pub(crate) fn waiting(&mut self) -> Option<usize> {
        let mut waiting = 0;
        for (&tid, _) in self.known.iter().filter(|(_, &named)| named) {
            if syscall(tid)? == libc::SYS_futex {
                waiting += 1;
            }
        }
        Some(waiting)
    }

    /// Whether tiny_http's accept thread is still there, if it has been found: a loop that
    /// died (a panic, out of descriptors) leaves no thread behind. `None` while it has not
    /// been found, or where threads cannot be read.
    #[cfg(target_os = "linux")]
    pub(crate) fn accept_alive(&mut self) -> Option<bool> {
        if self.accept_thread.is_none() && !self.accept_waiting() {
            return None;
        }
        let tid = self.accept_thread?;
        let alive = std::path::Path::new(&format!("/proc/self/task/{tid}")).exists();
        if !alive {
            self.accept_thread = None;
        }
        Some(alive)
    }

    /// A new accept loop started (a generation after a dead one): its thread is another.
    pub(crate) fn forget_accept_thread(&mut self) {
        #[cfg(target_os = "linux")]
        {
            self.accept_thread = None;
        }
    }

    /// Never known here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn accept_alive(&mut self) -> Option<bool> {
        None
    }

    /// Reads the names of all the threads there are now, so that the counts of a burst
    /// read only the threads that came with it.
    #[cfg(target_os = "linux")]
    pub(crate) fn warm(&mut self) {
        // Bounded: a process starting threads without end would keep it going.
        for _ in 0..64 {
            match self.count() {
                Ok((_, false)) => {}
                Ok((_, true)) | Err(_) => break,
            }
        }
        // And find the accept thread while it waits, as it does at rest: in a burst it is
        // seldom caught waiting.
        self.accept_waiting();
    }

    /// Nothing to read here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn warm(&mut self) {}

    /// Never counted here.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn pool(&mut self) -> Option<usize> {
        let _ = &self.name;
        None
    }

    /// Threads that bear the name, at most, and whether exactly: one directory listing, and
    /// a read of the name of at most [`NAMES_PER_COUNT`] threads not seen before; the others
    /// count as bearing it until read.
    #[cfg(target_os = "linux")]
    pub(super) fn count(&mut self) -> io::Result<(usize, bool)> {
        for tid in self.strangers.1.try_iter() {
            self.known.insert(tid, false);
        }
        let mut alive = std::collections::HashMap::with_capacity(self.known.len() + 16);
        let mut unread = 0;
        let mut reads = 0;
        for entry in std::fs::read_dir("/proc/self/task")? {
            let entry = entry?;
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let named = match self.known.get(&tid) {
                Some(&named) => named,
                None if reads == NAMES_PER_COUNT => {
                    unread += 1;
                    continue;
                }
                None => {
                    reads += 1;
                    match std::fs::read(entry.path().join("comm")) {
                        Ok(comm) => {
                            comm.strip_suffix(b"\n").unwrap_or(&comm) == self.name.0.as_bytes()
                        }
                        // Gone meanwhile (ENOENT, or ESRCH while it exits).
                        Err(_) => continue,
                    }
                }
            };
            alive.insert(tid, named);
        }
        self.known = alive;
        let named = self.known.values().filter(|&&named| named).count() + unread;
        // After the listing: a thread of lameduck's started in between, not listed, is counted
        // as listed (as tiny_http's, until the next listing: no needless kick).
        let spawned = self.spawned.load(Ordering::SeqCst);
        self.listed = process_threads().map(|all| Listed {
            at: std::time::Instant::now(),
            all,
            named,
            spawned,
            strangers: 0,
        });
        Ok((named, unread == 0))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    #[test]
    fn counts_a_pool_thread_per_connection_held() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let name = PoolName::new();
        let server = name.start(listener).unwrap();
        let mut threads = Threads::new(name);
        let until = Instant::now() + Duration::from_secs(5);
        // The test harness starts threads too: count until every name is read.
        let settle = |threads: &mut Threads, want: &dyn Fn(usize) -> bool| loop {
            let (named, exact) = threads.count().unwrap();
            let pool = named - 1;
            if (exact && want(pool)) || Instant::now() >= until {
                return pool;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // tiny_http 0.12 keeps 4 threads waiting.
        let resident = settle(&mut threads, &|n| n >= 4);
        assert_eq!(resident, 4);
        // 8 connections held, each served before the next opens (opened at once, some
        // would be queued with no thread: the miscount this module is for).
        let held: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let request = server
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap()
                    .unwrap();
                request.respond(tiny_http::Response::empty(204)).unwrap();
                c
            })
            .collect();
        // One thread for each; a resident thread still starting when a connection came
        // (a loaded machine) made the pool start another, and waits on, idle.
        let pool = settle(&mut threads, &|n| n >= 8);
        assert!(
            (8..=12).contains(&pool),
            "{pool} pool threads for 8 connections held"
        );
        for mut c in held {
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 204");
        }
    }

    #[test]
    fn a_count_between_listings_takes_new_threads_for_the_pools_but_strangers() {
        let listed = |strangers| Listed {
            at: Instant::now(),
            all: 10,
            named: 5,
            spawned: 0,
            strangers,
        };
        // 10 threads started since, 3 of them said they are not tiny_http's, and their
        // starters too.
        assert_eq!(listed(3).named_now(20, 3), Some(12));
        // The same 3 counted by their starters, not run yet: not tiny_http's either.
        assert_eq!(listed(0).named_now(20, 3), Some(12));
        // One of them ran and said so before its starter counted it.
        assert_eq!(listed(1).named_now(20, 0), Some(14));
        // 2 ended since (tiny_http's pool ends its idle threads after 5 s).
        assert_eq!(listed(0).named_now(8, 0), Some(3));
        // More ended than bore the name: no count (a listing then).
        assert_eq!(listed(0).named_now(4, 0), None);
    }

    /// A thread of lameduck's started between listings is not counted as tiny_http's
    /// while it has not run yet, nor once it said so itself (not twice either).
    #[test]
    fn a_thread_announced_by_its_starter_is_not_counted_before_it_runs() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let name = PoolName::new();
        let _server = name.start(listener).unwrap();
        let mut threads = Threads::new(name);
        let own = threads.own_threads();
        let until = Instant::now() + Duration::from_secs(5);
        // Other tests start and end threads beside this one: try until a round sees none.
        loop {
            let (_, exact) = threads.count().unwrap();
            let before = threads.pool_since_listed();
            let (go, wait) = crossbeam_channel::bounded::<()>(0);
            let (ran, said) = crossbeam_channel::bounded::<()>(0);
            let announce = own.clone();
            let thread = std::thread::spawn(move || {
                // Held before it says so: a thread not run yet, as far as the count goes.
                let _ = wait.recv();
                announce.started();
                let _ = ran.send(());
            });
            own.spawned();
            let not_run = threads.pool_since_listed();
            go.send(()).unwrap();
            said.recv().unwrap();
            let said_so = threads.pool_since_listed();
            thread.join().unwrap();
            if exact && before.is_some() && before == not_run && not_run == said_so {
                break;
            }
            assert!(
                Instant::now() < until,
                "counts never agreed: {before:?} {not_run:?} {said_so:?}"
            );
        }
    }

    #[test]
    fn a_count_between_listings_follows_the_pool_of_a_server() {
        // A count between listings agrees with a listing while only tiny_http starts
        // threads.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let name = PoolName::new();
        let server = name.start(listener).unwrap();
        let mut threads = Threads::new(name);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let (named, exact) = threads.count().unwrap();
            if exact && named > 4 {
                break;
            }
            assert!(Instant::now() < until, "tiny_http's threads never listed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The threads not bearing the name, by id, at a listing; `None` unless every
        // thread listed was read and the process had as many when its number was read
        // (none started or ended meanwhile).
        let others = |threads: &Threads, exact: bool| {
            let listed = threads.listed?;
            if !exact || threads.known.len() != listed.all {
                return None;
            }
            let mut others: Vec<u32> = (threads.known.iter())
                .filter_map(|(&tid, &named)| (!named).then_some(tid))
                .collect();
            others.sort_unstable();
            Some(others)
        };
        let mut exact = true;
        let mut agreed = 0;
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        // Each round holds one more connection: one more pool thread, started between
        // listings.
        while agreed < 4 {
            assert!(
                Instant::now() < until,
                "counted both with the same threads {agreed} times in {} rounds",
                held.len()
            );
            let others_last = others(&threads, exact);
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let request = server
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .unwrap();
            request.respond(tiny_http::Response::empty(204)).unwrap();
            held.push(c);
            let mut all_between = None;
            let between = threads.pool_since_listed_of(|| {
                all_between = process_threads();
                all_between
            });
            let (named, exact_now) = threads.count().unwrap();
            let listing = Some(named - 1);
            exact = exact_now;
            let now = threads.listed.unwrap();
            // Other tests start and end threads beside this one. When the same threads
            // not bearing the name were there at both listings (each read whole), and the
            // process had as many threads at the count between listings as at the second
            // listing, every thread counted since the first listing is the pool's, and the
            // two counts agree. (Equal numbers of others at both listings are not enough:
            // a test's thread started after the first and ended before the second was
            // counted between them as the pool's.)
            let others_now = others(&threads, exact);
            if others_last.is_some() && others_last == others_now && all_between == Some(now.all) {
                assert_eq!(between, listing, "between listings against a listing");
                agreed += 1;
            }
        }
        // A listing is not kept past its age.
        threads.listed.as_mut().unwrap().at -= LISTING_KEPT;
        assert_eq!(threads.pool_since_listed(), None);
    }

    #[test]
    fn sees_the_accept_thread_waiting_and_not_once_it_ended() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let name = PoolName::new();
        let server = name.start(listener).unwrap();
        let mut threads = Threads::new(name);
        let until = Instant::now() + Duration::from_secs(5);
        // An idle server's accept thread waits in `accept` (once it has started).
        loop {
            threads.warm();
            if threads.pool_now().is_some_and(|p| p.handed_on) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the accept thread never seen waiting"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let tid = threads.accept_thread.expect("remembered");
        assert_eq!(in_accept(tid), Some(true));
        // tiny_http's `Drop` ends its accept loop: its thread is gone, and no other thread
        // bearing the name is in `accept`.
        drop(server);
        loop {
            let handed_on = threads.pool_now().is_some_and(|p| p.handed_on);
            if !handed_on && threads.accept_thread.is_none() {
                break;
            }
            assert!(
                Instant::now() < until,
                "an ended accept thread still seen waiting, or remembered"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
