//! The crew: the workers, started as requests need them, up to
//! [`Builder::workers`](super::Builder::workers), and retired when the server is idle.
//!
//! A server starts [`FIRST`] workers: one to take a request, one to wait for the next. A
//! worker that takes a request when every other worker holds one too (none waits for a
//! request, none is on its way back to wait) starts one more, before it runs the handler,
//! until the most are started. So a server that has no more than a request or two at once
//! holds two threads where it could hold a hundred, and its idle shutdown wakes and joins
//! two: on two cores, each idle worker woken to end is 60–70 µs of CPU (`perf sched`, 32
//! workers), and an idle exit with 2 workers took 1.7 ms where one with 32 took 4.3
//! (`benches/NOTES.md`). Requests held in handlers start a worker each, as they come.
//!
//! A worker on its way back from a request is not a reason for one more: it takes the next
//! request within microseconds. Counting it as one (as the crew did before) started 16 to
//! 32 workers under `wrk -t1` with a 0 ms handler, where this rule starts 5 to 18 for the
//! same requests at 16 and 64 connections (the burst at the start decides how many): on two
//! cores, every worker beyond those is one more thread for tiny_http's queue to wake in
//! turn, the one that has waited longest, cold. 16 interleaved rounds (`benches/NOTES.md`, 2026-12-06,
//! midday): 1.13× and 1.08× the requests per second at 16 and 64 connections, 13 % and 11 %
//! less CPU per request.
//!
//! Even so, under wrk one or two of them hold a request at any moment; the others wait. A
//! worker back from a request that retired itself when more than half of the others waited
//! kept two to five under wrk, with a third less CPU per request and the same requests per
//! second, but lost 5 to 15 % under a client of blocking threads sharing the cores, which
//! keeps more of them busy: so the crew does not shrink under load (`benches/NOTES.md`,
//! 2026-12-06, afternoon).
//!
//! The first worker waits for a request with a bound, [`RETIRE_AFTER`], while more than the
//! first two run; when no request reached it that long (tiny_http wakes the receiver that
//! has waited longest, so the whole server was close to idle), it asks the workers beyond
//! the first two to retire, and wakes those waiting. A worker woken so ends; its thread is joined
//! by the next worker to start or retire, or at the shutdown. Only the first waits with a
//! bound: a timed wait is a timer armed and cancelled in the kernel each time, and every
//! worker under load waits for requests many times a second.
//!
//! Worker `n` always runs on slot `n - 1` and its thread is named `lameduck-worker-n`: a
//! worker started after one retired takes the lowest slot free, and its name. The join
//! takes the pool ([`Crew::close`]); no worker starts or retires after that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::worker::{self, lock};
use super::Shared;
use crate::error::Error;
use crate::shutdown::pool::Pool;

/// Workers started with the server (fewer if fewer are allowed), and never retired.
pub(crate) const FIRST: usize = 2;

/// How long the first worker waits for a request before the workers beyond the first two
/// are asked to retire: tiny_http's pool's figure for its idle threads. Not measured for
/// lameduck's workers.
pub(crate) const RETIRE_AFTER: Duration = Duration::from_secs(5);

/// How long the first two workers, woken while others are asked to retire, keep out of
/// tiny_http's queue so that the wake-ups go to those: at most once per idle bound. A
/// bound, not measured: a worker woken on a busy core may take longer, and is asked again
/// after the next idle bound.
const STAND_ASIDE: Duration = Duration::from_millis(5);

/// The workers: those started, in a pool, and how many more may be.
pub(crate) struct Crew {
    /// The workers' pool and the slots in use, until the join takes the pool.
    inner: Mutex<Inner>,
    /// Told when the last worker asked to retire has.
    all_retired: Condvar,
    /// Workers started and not retired. Written under the lock; read without it.
    started: AtomicUsize,
    /// The most that may be started: `Builder::workers`, or as many as were started when
    /// the OS refused one more thread.
    most: AtomicUsize,
    /// Workers asked to retire: each woken worker beyond the first two takes one and ends.
    to_retire: AtomicUsize,
    /// Workers holding a request: from the moment one took it until its response is written.
    holding: AtomicUsize,
}

struct Inner {
    /// `None` once the join took it.
    pool: Option<Pool>,
    /// Which slots a worker runs on.
    in_use: Vec<bool>,
}

impl Crew {
    /// A crew of at most `most` workers, none started yet.
    pub(crate) fn new(most: usize) -> Crew {
        Crew {
            inner: Mutex::new(Inner {
                pool: Some(Pool::new()),
                in_use: vec![false; most],
            }),
            all_retired: Condvar::new(),
            started: AtomicUsize::new(0),
            most: AtomicUsize::new(most),
            to_retire: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
        }
    }

    /// A worker took a request: whether every started worker now holds one, the taker
    /// included. Each call is matched by one of [`Crew::done`].
    pub(crate) fn took(&self) -> bool {
        self.holding.fetch_add(1, Ordering::SeqCst) + 1 >= self.started()
    }

    /// A worker is done with the request it took.
    pub(crate) fn done(&self) {
        self.holding.fetch_sub(1, Ordering::SeqCst);
    }

    /// Workers started and not retired.
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Whether more workers may still be started.
    pub(crate) fn can_grow(&self) -> bool {
        self.started() < self.most.load(Ordering::Relaxed)
    }

    /// How long the first worker waits for a request before it asks the others beyond the
    /// first two to retire: `None` while no more than two run.
    pub(crate) fn idle_bound(&self) -> Option<Duration> {
        (self.started() > FIRST).then_some(RETIRE_AFTER)
    }

    /// Takes the pool, to join it: no worker is started or retired from now on.
    pub(crate) fn close(&self) -> Pool {
        lock(&self.inner).pool.take().unwrap_or_default()
    }
}

/// Starts the first workers of `shared`'s crew.
///
/// # Errors
///
/// [`Error::Spawn`] if a thread could not be started; the workers started before it run.
pub(crate) fn start(shared: &Arc<Shared>) -> Result<(), Error> {
    for _ in 0..FIRST {
        if let Some(Err(e)) = start_one(shared) {
            return Err(e);
        }
    }
    Ok(())
}

/// Starts one more worker, if more may be: a worker took a request while every other one
/// held one.
/// A thread the OS refuses is logged, and no more are tried.
pub(crate) fn grow(shared: &Arc<Shared>) {
    if let Some(Err(e)) = start_one(shared) {
        let crew = &shared.crew;
        crew.most.store(crew.started(), Ordering::Relaxed);
        shared.live.occupancy.cap(crew.started());
        log::warn!("{e}: serving with the {} workers started", crew.started());
    }
}

/// The first worker waited out its idle bound: asks every worker beyond the first two to
/// retire, and wakes every worker waiting inside tiny_http's queue (the second goes back to
/// waiting; one in a request sees the ask when next woken, or a worker started meanwhile
/// cancels it).
pub(crate) fn retire_idle(shared: &Shared) {
    let crew = &shared.crew;
    let beyond = {
        let inner = lock(&crew.inner);
        if inner.pool.is_none() {
            return;
        }
        let beyond = crew.started().saturating_sub(FIRST);
        crew.to_retire.store(beyond, Ordering::SeqCst);
        beyond
    };
    if beyond > 0 {
        log::debug!("idle for {RETIRE_AFTER:?}: {beyond} workers asked to retire");
        shared.http.queue().wake_workers();
        retire(shared, 0);
    }
}

/// The worker on slot `index` was woken: whether it ends, asked to retire. Only a worker
/// beyond the first two does, while the join has not taken the pool; its slot is then
/// free, and the workers that ended before it are joined. One of the first two stands
/// aside instead (up to [`STAND_ASIDE`]), so that it does not take the wake-ups meant for
/// the others.
pub(crate) fn retire(shared: &Shared, index: usize) -> bool {
    let crew = &shared.crew;
    if crew.to_retire.load(Ordering::SeqCst) == 0 {
        return false;
    }
    let mut inner = lock(&crew.inner);
    if index < FIRST {
        let _ = crew
            .all_retired
            .wait_timeout_while(inner, STAND_ASIDE, |_| {
                crew.to_retire.load(Ordering::SeqCst) > 0
            });
        return false;
    }
    let Inner { pool, in_use } = &mut *inner;
    let Some(pool) = pool.as_mut() else {
        return false;
    };
    let asked = crew.to_retire.load(Ordering::SeqCst);
    let n = crew.started();
    if asked == 0 || n <= FIRST {
        return false;
    }
    crew.to_retire.store(asked - 1, Ordering::SeqCst);
    crew.started.store(n - 1, Ordering::SeqCst);
    if asked == 1 || n - 1 == FIRST {
        crew.to_retire.store(0, Ordering::SeqCst);
        crew.all_retired.notify_all();
    }
    in_use[index] = false;
    pool.reap();
    log::debug!("worker {} retired", index + 1);
    true
}

/// Starts a worker on the lowest free slot; `None` if all are started, or the pool was
/// taken.
fn start_one(shared: &Arc<Shared>) -> Option<Result<(), Error>> {
    let crew = &shared.crew;
    let mut inner = lock(&crew.inner);
    let Inner { pool, in_use } = &mut *inner;
    let pool = pool.as_mut()?;
    let n = crew.started();
    if n >= crew.most.load(Ordering::Relaxed) {
        return None;
    }
    pool.reap();
    // A server busy again keeps its workers.
    if crew.to_retire.swap(0, Ordering::SeqCst) > 0 {
        crew.all_retired.notify_all();
    }
    let index = in_use.iter().position(|used| !used)?;
    let slot = Arc::clone(shared.live.slots.iter().nth(index)?);
    let name = format!("lameduck-worker-{}", index + 1);
    slot.name(name.clone());
    let worker_shared = Arc::clone(shared);
    // Counted before the thread runs: a look at the workers waiting (the idle drain) must
    // not take every worker for inside while this one is on its way.
    crew.started.store(n + 1, Ordering::SeqCst);
    in_use[index] = true;
    match pool.spawn_named(name, move || worker::work(&worker_shared, index)) {
        Ok(_) => {
            // Not one of tiny_http's, for the rescue's count, from now on rather than from
            // when it runs: in a burst, tens of milliseconds later (`tinyhttp/threads.rs`).
            shared.http.own_thread_spawned();
            Some(Ok(()))
        }
        Err(e) => {
            crew.started.store(n, Ordering::SeqCst);
            in_use[index] = false;
            Some(Err(e))
        }
    }
}
