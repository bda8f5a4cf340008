//! The shutdown trigger and its listeners: one side fires, every clone of the other wakes.

use std::convert::Infallible;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::latch::Latch;

/// Creates a connected pair: a [`Trigger`] that fires shutdown and a [`Listener`] that learns of it.
///
/// Both sides clone freely and are `Send + Sync`. Firing is a one-way, one-time event: once
/// fired, the pair stays fired.
///
/// # Examples
///
/// ```
/// use lameduck::Reason;
///
/// let (trigger, listener) = lameduck::trigger();
/// assert!(!listener.is_triggered());
///
/// assert!(trigger.fire(Reason::Requested)); // the first fire counts...
/// assert!(!trigger.fire(Reason::Requested)); // ...later ones are only counted
/// assert!(listener.is_triggered());
/// assert_eq!(trigger.fire_count(), 2);
/// assert_eq!(*listener.wait().reason(), Reason::Requested);
/// ```
pub fn trigger() -> (Trigger, Listener) {
    let shared = Arc::new(Shared {
        fires: AtomicU64::new(0),
        record: OnceLock::new(),
    });
    let listener = Listener {
        shared,
        latch: Latch::new(),
    };
    (
        Trigger {
            listener: listener.clone(),
        },
        listener,
    )
}

struct Shared {
    /// Every call to `fire`, the first included.
    fires: AtomicU64,
    /// What fired first, and when. Set before the latch opens.
    record: OnceLock<Fired>,
}

/// The side that fires shutdown. Clone it for every place that may decide to stop.
///
/// Firing sets an atomic flag, records the [`Reason`] and the time, and wakes every
/// [`Listener`] at once. It never blocks and is safe to call from any thread, any number of
/// times: only the first call fires, the others are counted ([`Trigger::fire_count`]).
///
/// Dropping every `Trigger` does **not** fire: listeners then wait forever, as a context
/// that is never cancelled would.
#[derive(Clone)]
pub struct Trigger {
    // A trigger is a listener that may also fire: they share one state.
    listener: Listener,
}

impl Trigger {
    /// Fires shutdown for `reason`. Returns `true` if this call fired, `false` if shutdown had
    /// already been fired (the call is still counted).
    ///
    /// After it returns, every listener sees [`Listener::is_triggered`] `== true`, and every
    /// thread blocked in a `wait` or `select!` on [`Listener::receiver`] has been woken.
    pub fn fire(&self, reason: Reason) -> bool {
        let shared = &self.listener.shared;
        shared.fires.fetch_add(1, Ordering::Relaxed);
        self.listener.latch.open_with(|| {
            let _ = shared.record.set(Fired {
                reason,
                at: Instant::now(),
                time: SystemTime::now(),
            });
        })
    }

    /// Returns a new listener for this trigger.
    pub fn listener(&self) -> Listener {
        self.listener.clone()
    }

    /// Returns `true` once shutdown has been fired.
    pub fn is_triggered(&self) -> bool {
        self.listener.is_triggered()
    }

    /// How many times [`Trigger::fire`] was called on this trigger or its clones, the first
    /// call included.
    pub fn fire_count(&self) -> u64 {
        self.listener.shared.fires.load(Ordering::Relaxed)
    }

    /// What fired shutdown and when, or `None` if it has not fired.
    pub fn fired(&self) -> Option<Fired> {
        self.listener.fired()
    }
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("fired", &self.fired())
            .field("fire_count", &self.fire_count())
            .finish()
    }
}

/// The side that learns of shutdown. Clone one for every thread that must stop.
///
/// The calls form one family, as crossbeam's `recv` family does:
///
/// | call | blocks | returns |
/// |---|---|---|
/// | [`is_triggered`](Listener::is_triggered) | never (one atomic load) | `bool` |
/// | [`wait`](Listener::wait) | until fired | [`Fired`] |
/// | [`wait_timeout`](Listener::wait_timeout) | until fired or the time is up | `Option<Fired>` |
/// | [`wait_deadline`](Listener::wait_deadline) | until fired or the instant | `Option<Fired>` |
/// | [`sleep`](Listener::sleep) | for the time, cut short by shutdown | `Result<(), Interrupted>` |
/// | [`receiver`](Listener::receiver) | in your own `select!` | disconnects on fire |
///
/// A listener created or asked after the fire sees it at once.
///
/// # Examples
///
/// A worker that waits for work or for shutdown, whichever comes first, and on shutdown
/// finishes the jobs already queued before it stops (when both are ready, `select!` picks
/// either, so the queue is drained explicitly):
///
/// ```
/// use crossbeam_channel::{select, unbounded};
/// use lameduck::Reason;
///
/// let (trigger, listener) = lameduck::trigger();
/// let (jobs_tx, jobs) = unbounded::<u32>();
///
/// let worker = std::thread::spawn(move || {
///     let mut done = 0;
///     loop {
///         select! {
///             recv(jobs) -> job => if job.is_ok() { done += 1 },
///             recv(listener.receiver()) -> _ => return done + jobs.try_iter().count(),
///         }
///     }
/// });
/// jobs_tx.send(1).unwrap();
/// jobs_tx.send(2).unwrap();
/// trigger.fire(Reason::Requested);
/// assert_eq!(worker.join().unwrap(), 2); // both jobs done, whichever way select! went
/// ```
#[derive(Clone)]
pub struct Listener {
    shared: Arc<Shared>,
    /// The flag and the broadcast.
    latch: Latch,
}

impl Listener {
    /// Whether `other` listens to the same trigger.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn same(&self, other: &Listener) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Returns `true` once shutdown has been fired. One atomic load: cheap enough for a hot loop.
    pub fn is_triggered(&self) -> bool {
        self.latch.is_open()
    }

    /// What fired shutdown and when, or `None` if it has not fired.
    pub fn fired(&self) -> Option<Fired> {
        if self.is_triggered() {
            self.shared.record.get().cloned()
        } else {
            None
        }
    }

    /// Blocks until shutdown is fired, then returns what fired it.
    ///
    /// Returns at once if it has already fired.
    pub fn wait(&self) -> Fired {
        self.latch.wait();
        self.fired().expect("recorded before the latch opened")
    }

    /// Blocks until shutdown is fired or `timeout` has passed. Returns what fired it, or
    /// `None` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Fired> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => Some(self.wait()),
        }
    }

    /// Blocks until shutdown is fired or `deadline` is reached. Returns what fired it, or
    /// `None` at the deadline.
    pub fn wait_deadline(&self, deadline: Instant) -> Option<Fired> {
        self.latch.wait_deadline(deadline);
        self.fired()
    }

    /// Sleeps for `duration`, or less if shutdown fires meanwhile.
    ///
    /// Made for work loops that pause between rounds, so that `?` ends the loop:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), lameduck::Interrupted> {
    /// let (trigger, listener) = lameduck::trigger();
    /// listener.sleep(Duration::from_millis(1))?; // slept the whole time
    /// trigger.fire(lameduck::Reason::Requested);
    /// assert!(listener.sleep(Duration::from_secs(3600)).is_err()); // returns at once
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Interrupted`] if shutdown fired before or during the sleep.
    pub fn sleep(&self, duration: Duration) -> Result<(), Interrupted> {
        match self.wait_timeout(duration) {
            Some(fired) => Err(Interrupted(fired)),
            None => Ok(()),
        }
    }

    /// The channel behind the broadcast, for `crossbeam_channel::select!`.
    ///
    /// No message is ever sent on it: it disconnects when shutdown fires, so a `recv`
    /// operation on it becomes ready (with `Err(RecvError)`) and stays ready.
    pub fn receiver(&self) -> &Receiver<Infallible> {
        self.latch.receiver()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("fired", &self.fired())
            .finish()
    }
}

/// Why shutdown was fired.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A termination signal or console event arrived: SIGINT, SIGTERM or SIGHUP on Unix;
    /// Ctrl+C, Ctrl+Break or a console close on Windows (see [`signal`](crate::signal)).
    ///
    /// The `ctrlc` crate delivers all of them through one handler and does not say which one
    /// it was, so neither can lameduck.
    Signal,
    /// A program asked for it through [`Trigger::fire`].
    Requested,
    /// No heartbeat came within this long ([`watch::Heartbeat`](crate::watch::Heartbeat)).
    Heartbeat {
        /// The watchdog's timeout.
        missed: Duration,
    },
    /// A watched file appeared, or disappeared ([`watch::FileTrigger`](crate::watch::FileTrigger)).
    File {
        /// The watched path.
        path: PathBuf,
        /// `true` if it appeared, `false` if it disappeared.
        appeared: bool,
    },
    /// Windows: the console window was closed, the user is logging off, or the system is
    /// shutting down ([`console`](crate::console)). The OS ends the process about 5 s later:
    /// the drain's deadline is cut to fit.
    Console {
        /// Which event.
        event: crate::console::ConsoleEvent,
    },
    /// The Windows service control manager asked the service to stop
    /// ([`service`](crate::service)).
    Service {
        /// Which request.
        stop: crate::service::ServiceStop,
    },
    /// Standard input reached its end: the parent process is gone
    /// ([`watch::stdin_closed`](crate::watch::stdin_closed)).
    StdinClosed,
    /// The server handed its listening socket to a new copy of the program, which is ready
    /// ([`Handle::upgrade`](crate::Handle::upgrade)): this one stops accepting and drains,
    /// and the new one serves.
    Upgrade {
        /// The new process.
        pid: u32,
    },
    /// Another trigger of the application's own, named by it (say `"config reloaded"`).
    Other(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Signal => f.write_str("signal"),
            Reason::Requested => f.write_str("requested"),
            Reason::Heartbeat { missed } => write!(f, "no heartbeat for {missed:?}"),
            Reason::File { path, appeared } => write!(
                f,
                "file {} {}",
                path.display(),
                if *appeared { "appeared" } else { "disappeared" }
            ),
            Reason::StdinClosed => f.write_str("stdin closed"),
            Reason::Console { event } => write!(f, "{event}"),
            Reason::Service { stop } => write!(f, "{stop}"),
            Reason::Upgrade { pid } => write!(f, "upgrade: pid {pid} serves"),
            Reason::Other(what) => f.write_str(what),
        }
    }
}

/// What fired shutdown, and when: the record kept by the first [`Trigger::fire`].
#[derive(Clone, Debug)]
pub struct Fired {
    reason: Reason,
    at: Instant,
    time: SystemTime,
}

impl Fired {
    /// Why shutdown was fired.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// When it was fired, on the monotonic clock (for measuring).
    pub fn at(&self) -> Instant {
        self.at
    }

    /// When it was fired, on the wall clock (for logs).
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// How long ago it was fired.
    pub fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }
}

/// The error of [`Listener::sleep`]: shutdown fired before the time was up.
#[derive(Clone, Debug)]
pub struct Interrupted(pub Fired);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by shutdown ({})", self.0.reason)
    }
}

impl std::error::Error for Interrupted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_only_once_and_counted() {
        let (trigger, listener) = trigger();
        assert!(trigger.fired().is_none());
        assert!(trigger.fire(Reason::Other("first".into())));
        assert!(!trigger.clone().fire(Reason::Signal));
        assert_eq!(trigger.fire_count(), 2);
        assert_eq!(*listener.wait().reason(), Reason::Other("first".into()));
    }

    #[test]
    fn wait_timeout_times_out_when_not_fired() {
        let (_trigger, listener) = trigger();
        let start = Instant::now();
        assert!(listener.wait_timeout(Duration::from_millis(20)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn dropping_every_trigger_does_not_fire() {
        let (trigger, listener) = trigger();
        drop(trigger);
        assert!(listener.wait_timeout(Duration::from_millis(10)).is_none());
        assert!(!listener.is_triggered());
    }
}
