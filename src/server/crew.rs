//! The crew: the workers, started as requests need them, up to
//! [`Builder::workers`](super::Builder::workers).
//!
//! A server starts [`FIRST`] workers: one to take a request, one to wait for the next. A
//! worker that takes a request and leaves no other worker waiting for one starts one more,
//! before it runs the handler, until the most are started; a started worker stays until
//! the shutdown. So a server that never had more than a request or two at once holds two
//! threads where it could hold a hundred, and its idle shutdown wakes and joins two: on two
//! cores, each idle worker woken to end is 60–70 µs of CPU (`perf sched`, 32 workers), and
//! an idle exit with 2 workers took 1.7 ms where one with 32 took 4.3 (`benches/NOTES.md`).
//! Under load every worker is started within the first milliseconds, as before.
//!
//! The join takes the pool ([`Crew::close`]); a worker that would start one after that
//! does not (the drain is over by then).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::worker::{self, lock};
use super::Shared;
use crate::error::Error;
use crate::shutdown::pool::Pool;

/// Workers started with the server (fewer if fewer are allowed).
pub(crate) const FIRST: usize = 2;

/// The workers: those started, in a pool, and how many more may be.
pub(crate) struct Crew {
    /// The workers' pool, until the join takes it.
    pool: Mutex<Option<Pool>>,
    /// Workers started. Written under the pool's lock; read without it.
    started: AtomicUsize,
    /// The most that may be started: `Builder::workers`, or as many as were started when
    /// the OS refused one more thread.
    most: AtomicUsize,
}

impl Crew {
    /// A crew of at most `most` workers, none started yet.
    pub(crate) fn new(most: usize) -> Crew {
        Crew {
            pool: Mutex::new(Some(Pool::new())),
            started: AtomicUsize::new(0),
            most: AtomicUsize::new(most),
        }
    }

    /// Workers started so far.
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Whether more workers may still be started.
    pub(crate) fn can_grow(&self) -> bool {
        self.started() < self.most.load(Ordering::Relaxed)
    }

    /// Takes the pool, to join it: no worker is started from now on.
    pub(crate) fn close(&self) -> Pool {
        lock(&self.pool).take().unwrap_or_default()
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

/// Starts one more worker, if more may be: a worker took a request and left none waiting.
/// A thread the OS refuses is logged, and no more are tried.
pub(crate) fn grow(shared: &Arc<Shared>) {
    if let Some(Err(e)) = start_one(shared) {
        let crew = &shared.crew;
        crew.most.store(crew.started(), Ordering::Relaxed);
        shared.live.occupancy.cap(crew.started());
        log::warn!("{e}: serving with the {} workers started", crew.started());
    }
}

/// Starts a worker on the next slot; `None` if all are started, or the pool was taken.
fn start_one(shared: &Arc<Shared>) -> Option<Result<(), Error>> {
    let crew = &shared.crew;
    let mut pool = lock(&crew.pool);
    let pool = pool.as_mut()?;
    let n = crew.started();
    if n >= crew.most.load(Ordering::Relaxed) {
        return None;
    }
    let slot = Arc::clone(shared.live.slots.iter().nth(n)?);
    slot.name(pool.next_name());
    let worker_shared = Arc::clone(shared);
    // Counted before the thread runs: a look at the workers waiting (the idle drain) must
    // not take every worker for inside while this one is on its way.
    crew.started.store(n + 1, Ordering::SeqCst);
    match pool.spawn(move || worker::work(&worker_shared, &slot)) {
        Ok(_) => Some(Ok(())),
        Err(e) => {
            crew.started.store(n, Ordering::SeqCst);
            Some(Err(e))
        }
    }
}
