//! The workers' slots: one per worker, made with the server, where it counts what it
//! served and notes the request it is in the handler for. A stats snapshot sums the counts
//! without a lock; the report names the requests still in a handler at the deadline
//! (stragglers), and the archive keeps them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method};

use super::archive::{Unserved, Why};
use super::report::Straggler;

/// One worker's own corner of the counts, on its own cache lines: the hot path writes only
/// here.
#[repr(align(128))]
pub(crate) struct Slot {
    /// Its worker's thread name, set before the worker starts.
    name: OnceLock<String>,
    current: Mutex<Option<Current>>,
    served_before: AtomicU64,
    served_during_drain: AtomicU64,
    panics: AtomicU64,
    health_checks: AtomicU64,
    /// When this worker last wrote a response that left the connection open, in nanoseconds
    /// since `epoch` (0: never).
    last_keep_alive: AtomicU64,
    /// The zero of the keep-alive clock, the same in every slot.
    epoch: Instant,
}

/// The request a worker is in the handler for.
pub(crate) struct Current {
    pub(crate) method: Method,
    pub(crate) url: String,
    /// Kept only when unserved requests are archived.
    pub(crate) headers: Vec<Header>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) started: Instant,
}

impl Slot {
    /// Names the slot after its worker's thread, before the worker starts.
    pub(crate) fn name(&self, name: String) {
        let _ = self.name.set(name);
    }

    /// Counts a health check answered.
    pub(crate) fn health_check(&self) {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes the request the worker starts on, for the report should the deadline cut it.
    pub(crate) fn enter(&self, current: Current) {
        *lock(&self.current) = Some(current);
    }

    /// Counts the request the worker is done with: served during the drain or before it,
    /// its response leaving the connection open (`kept_open`) or not, its handler panicked
    /// or not.
    pub(crate) fn done(&self, during_drain: bool, kept_open: bool, panicked: bool) {
        if during_drain {
            self.served_during_drain.fetch_add(1, Ordering::Relaxed);
        } else {
            self.served_before.fetch_add(1, Ordering::Relaxed);
        }
        if kept_open {
            let since_epoch = self.epoch.elapsed().as_nanos().max(1);
            self.last_keep_alive.store(
                u64::try_from(since_epoch).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        if panicked {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.current).take();
    }
}

/// Sums of the workers' counts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) served_before: u64,
    pub(crate) served_during_drain: u64,
    pub(crate) panics: u64,
    pub(crate) health_checks: u64,
}

/// Every worker's slot: one per worker, made with the server, so that summing the counts
/// (a stats snapshot does, as often as it likes) takes no lock.
pub(crate) struct Slots {
    slots: Box<[Arc<Slot>]>,
    /// The zero of the slots' keep-alive clocks.
    epoch: Instant,
}

impl Slots {
    /// A slot for each of `workers` workers.
    pub(crate) fn new(workers: usize) -> Slots {
        let epoch = Instant::now();
        let slot = || {
            Arc::new(Slot {
                name: OnceLock::new(),
                current: Mutex::new(None),
                served_before: AtomicU64::new(0),
                served_during_drain: AtomicU64::new(0),
                panics: AtomicU64::new(0),
                health_checks: AtomicU64::new(0),
                last_keep_alive: AtomicU64::new(0),
                epoch,
            })
        };
        Slots {
            slots: (0..workers).map(|_| slot()).collect(),
            epoch,
        }
    }

    /// Every slot, in the workers' order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.iter()
    }

    /// Sums of the workers' counts: a load of each counter of each slot.
    pub(crate) fn counts(&self) -> Counts {
        self.slots.iter().fold(Counts::default(), |c, s| Counts {
            served_before: c.served_before + s.served_before.load(Ordering::Relaxed),
            served_during_drain: c.served_during_drain
                + s.served_during_drain.load(Ordering::Relaxed),
            panics: c.panics + s.panics.load(Ordering::Relaxed),
            health_checks: c.health_checks + s.health_checks.load(Ordering::Relaxed),
        })
    }

    /// How long until `linger` has passed since the last response that left its connection
    /// open; zero once it has. Where connections cannot be seen, this is what the drain
    /// waits on instead: a client that got a keep-alive response just before the fire sends
    /// its next request microseconds later, on that connection.
    pub(crate) fn keep_alive_linger_left(&self, linger: Duration) -> Duration {
        let last = self
            .slots
            .iter()
            .map(|s| s.last_keep_alive.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        if last == 0 {
            return Duration::ZERO;
        }
        let until = self.epoch + Duration::from_nanos(last) + linger;
        until.saturating_duration_since(Instant::now())
    }

    /// The requests in a handler now, with the worker running each.
    pub(crate) fn stragglers(&self) -> Vec<Straggler> {
        self.in_handlers(|slot, c, age| Straggler {
            method: c.method.clone(),
            url: c.url.clone(),
            peer: c.peer,
            age,
            worker: slot.name.get().cloned().unwrap_or_default(),
        })
    }

    /// The requests in a handler now, as unserved requests for the archive.
    pub(crate) fn cut(&self) -> Vec<Unserved> {
        self.in_handlers(|_, c, age| Unserved {
            method: c.method.clone(),
            url: c.url.clone(),
            headers: c.headers.clone(),
            body: None,
            peer: c.peer,
            why: Why::Cut(age),
        })
    }

    fn in_handlers<T>(&self, each: impl Fn(&Slot, &Current, Duration) -> T) -> Vec<T> {
        let now = Instant::now();
        self.slots
            .iter()
            .filter_map(|slot| {
                let current = lock(&slot.current);
                let c = current.as_ref()?;
                Some(each(slot, c, now.saturating_duration_since(c.started)))
            })
            .collect()
    }
}

/// Locks a mutex; a panic while it was held cannot leave these plain values half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
