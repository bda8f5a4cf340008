//! Named worker threads that report their own exit, and a join that never blocks past its deadline.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::join::{panic_message, JoinReport, Panicked};
use crate::error::Error;

/// How long a join waits past its deadline for a thread that has reported its exit (and so
/// is microseconds from its end) to end. A bound, not measured alone: waking and joining
/// all 32 workers of an idle shutdown takes about 2.3 ms on 2 cores (`benches/NOTES.md`).
const ENDING_GRACE: Duration = Duration::from_millis(5);

/// A set of named worker threads that can be joined with a deadline.
///
/// `std` has no timed join: [`JoinHandle::join`] blocks until the thread ends, so one worker
/// that never returns would hold the whole shutdown. Here every worker carries a guard that
/// reports its exit over a channel when the worker's closure returns or panics; joining waits
/// on that channel until a deadline and then says, by name, who finished, who panicked (with
/// the message) and who is still running.
///
/// Threads are named `<prefix>-<n>`, from `lameduck-worker-1` up by default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (trigger, listener) = lameduck::trigger();
/// let mut pool = lameduck::Pool::new();
/// for _ in 0..2 {
///     let listener = listener.clone();
///     pool.spawn(move || { listener.wait(); })?;
/// }
/// pool.spawn(|| panic!("boom"))?;
///
/// trigger.fire(lameduck::Reason::Requested);
/// let report = pool.join_timeout(Duration::from_secs(5));
/// assert_eq!(report.finished().len(), 2);
/// assert_eq!(report.panicked()[0].message(), "boom");
/// assert!(report.running().is_empty());
/// # Ok::<(), lameduck::Error>(())
/// ```
pub struct Pool {
    prefix: String,
    spawned: usize,
    workers: Vec<Worker>,
    /// Panics of workers already joined by [`Pool::reap`], for the next join's report.
    reaped_panics: Vec<Panicked>,
    exits: Receiver<Exit>,
    exits_tx: Sender<Exit>,
}

struct Worker {
    id: usize,
    name: String,
    handle: JoinHandle<()>,
}

/// Sent by a worker's guard when its closure has returned or panicked.
struct Exit {
    id: usize,
    panic: Option<String>,
}

/// Reports the exit of its worker when dropped: after the closure returns, and during
/// unwinding if anything between here and the closure panics.
struct ExitGuard {
    id: usize,
    panic: Option<String>,
    exits: Sender<Exit>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let panic = self.panic.take().or_else(|| {
            thread::panicking().then(|| "panicked outside the worker's closure".to_owned())
        });
        // The pool may be gone (detached workers): nobody to tell, nothing to do.
        let _ = self.exits.send(Exit { id: self.id, panic });
    }
}

impl Pool {
    /// An empty pool whose threads are named `lameduck-worker-1`, `lameduck-worker-2`, …
    pub fn new() -> Pool {
        Pool::with_prefix("lameduck-worker")
    }

    /// An empty pool whose threads are named `<prefix>-1`, `<prefix>-2`, …
    pub fn with_prefix(prefix: impl Into<String>) -> Pool {
        let (exits_tx, exits) = crossbeam_channel::unbounded();
        Pool {
            prefix: prefix.into(),
            spawned: 0,
            workers: Vec::new(),
            reaped_panics: Vec::new(),
            exits,
            exits_tx,
        }
    }

    /// Starts a worker thread running `work`, and returns its name.
    ///
    /// A panic in `work` ends only that worker; it is reported by the next join, with its
    /// message.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the operating system refuses a new thread.
    pub fn spawn<F>(&mut self, work: F) -> Result<&str, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let name = self.next_name();
        self.spawn_named(name, work)
    }

    /// Starts a worker thread named `name` running `work` (see [`Pool::spawn`]).
    pub(crate) fn spawn_named<F>(&mut self, name: String, work: F) -> Result<&str, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.spawned += 1;
        let id = self.spawned;
        let exits = self.exits_tx.clone();
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let mut guard = ExitGuard {
                    id,
                    panic: None,
                    exits,
                };
                if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(work)) {
                    guard.panic = Some(panic_message(payload.as_ref()));
                }
            })
            .map_err(|source| Error::Spawn {
                name: name.clone(),
                source,
            })?;
        self.workers.push(Worker { id, name, handle });
        Ok(&self.workers[self.workers.len() - 1].name)
    }

    /// Joins the workers that have reported their exit, without waiting for any other (a
    /// thread that reported is microseconds from its end; one not ended within
    /// [`ENDING_GRACE`] is detached). A panic among them goes in the next join's report.
    pub(crate) fn reap(&mut self) {
        let until = Instant::now() + ENDING_GRACE;
        while let Ok(exit) = self.exits.try_recv() {
            let Some(index) = self.workers.iter().position(|w| w.id == exit.id) else {
                continue;
            };
            let worker = self.workers.swap_remove(index);
            finish(worker.handle, until);
            if let Some(message) = exit.panic {
                self.reaped_panics.push(Panicked {
                    name: worker.name,
                    message,
                });
            }
        }
    }

    /// The name the next worker will have.
    pub(crate) fn next_name(&self) -> String {
        format!("{}-{}", self.prefix, self.spawned + 1)
    }

    /// Number of workers not yet reported as ended by a join.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// `true` if no worker is left to join.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Names of the workers not yet reported as ended by a join.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.name.as_str())
    }

    /// Waits for every worker to end, but not past `timeout`. See [`Pool::join_deadline`].
    pub fn join_timeout(&mut self, timeout: Duration) -> JoinReport {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.join_deadline(deadline),
            None => self.join_deadline(Instant::now() + Duration::from_secs(u32::MAX.into())),
        }
    }

    /// Waits for every worker to end, but not past `deadline`, and says who ended how.
    ///
    /// Returns as soon as every worker has ended, or at the deadline (never later than the
    /// time it takes to read the exit reports already sent, plus at most 5 ms for
    /// threads that reported their exit to end). Workers that ended are removed
    /// from the pool and their threads joined; workers still running stay in the pool, so a
    /// later join can wait for them again. Dropping the pool detaches them: they run on and
    /// are never joined.
    pub fn join_deadline(&mut self, deadline: Instant) -> JoinReport {
        let mut report = JoinReport {
            panicked: std::mem::take(&mut self.reaped_panics),
            ..JoinReport::default()
        };
        let mut ended = Vec::with_capacity(self.workers.len());
        while !self.workers.is_empty() {
            let exit = match self.exits.try_recv() {
                Ok(exit) => exit,
                Err(_) => match self.exits.recv_deadline(deadline) {
                    Ok(exit) => exit,
                    Err(RecvTimeoutError::Timeout) => break,
                    // Unreachable: the pool holds a sender itself.
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let Some(index) = self.workers.iter().position(|w| w.id == exit.id) else {
                continue;
            };
            let worker = self.workers.swap_remove(index);
            ended.push(worker.handle);
            match exit.panic {
                None => report.finished.push(worker.name),
                Some(message) => report.panicked.push(Panicked {
                    name: worker.name,
                    message,
                }),
            }
        }
        // The exit report is sent just before the thread ends; joining after all the
        // reports are in finds most threads already gone, where joining each one as its
        // report came would wait for them one by one. A thread that reported its exit right
        // at the deadline is given a moment to end, so that "finished" means joined.
        let until = deadline.max(Instant::now() + ENDING_GRACE);
        for handle in ended {
            finish(handle, until);
        }
        self.workers.sort_by_key(|w| w.id);
        report.running = self.workers.iter().map(|w| w.name.clone()).collect();
        report.finished.sort_by_key(|name| worker_number(name));
        report.panicked.sort_by_key(|p| worker_number(&p.name));
        report
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("prefix", &self.prefix)
            .field("running", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

/// Joins a thread that has reported its exit. Its guard has sent the report, so only the
/// thread's own teardown is left; if that has not ended by the deadline the thread is
/// detached instead, so that the join never blocks past it.
fn finish(handle: JoinHandle<()>, deadline: Instant) {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return;
        }
        thread::yield_now();
    }
    let _ = handle.join();
}

fn worker_number(name: &str) -> usize {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
