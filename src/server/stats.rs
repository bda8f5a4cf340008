//! What a server shows while it runs: [`Stats`], a snapshot of its counters and gauges, read
//! from [`Live`], which the server, its workers and every [`Handle`](super::Handle) share.
//!
//! Each number is kept where it is counted anyway: the phase in `phase.rs`, the requests
//! served and the handler panics in each worker's slot (`worker.rs`), the requests in
//! handlers in the occupancy the shedder watches, the requests waiting and the connections
//! last seen in the seam's gauges (`tinyhttp/gauges.rs`), the 503s here. A snapshot loads
//! them: no lock, no allocation, and never a look at the OS's table of connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::phase::{Phase, Phases};
use super::slots::Slots;
use crate::tinyhttp::{Gauges, Occupancy};

/// A snapshot of a server's counters and gauges: where it is in its life, what it holds,
/// what it has done. From [`Handle::stats`](crate::Handle::stats), at any time, from any
/// thread.
///
/// Taking one loads a few atomics per worker: no lock, no allocation, cheap enough for
/// every request. Each number is exact as of its own load; together they are not one
/// atomic picture (a request can be counted served in one and still in its handler in
/// another).
///
/// ```
/// use lameduck::tiny_http::{Request, Response};
///
/// let server = lameduck::Server::bind("127.0.0.1:0")
///     .build(|_: &mut Request| Response::from_string("hi").boxed())?;
/// let stats = server.handle().stats();
/// assert_eq!(stats.phase(), lameduck::Phase::Serving);
/// assert_eq!((stats.in_handlers(), stats.served()), (0, 0));
/// assert_eq!(stats.deadline_left(), None); // no shutdown under way
/// # Ok::<(), lameduck::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    phase: Phase,
    waiting: usize,
    in_handlers: usize,
    served: u64,
    rejected: u64,
    shed: u64,
    handler_panics: u64,
    connections_open: Option<usize>,
    deadline_left: Option<Duration>,
    drain_time: Option<Duration>,
}

impl Stats {
    /// Where the server is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Requests read and waiting for a worker in lameduck's waiting room: while every
    /// worker is busy ([`Builder::max_waiting`](crate::Builder::max_waiting)), and during
    /// the drain. (A request tiny_http has read while a worker is free goes to that worker
    /// at once, and is not counted here.)
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Requests in a handler now (or having their response written).
    pub fn in_handlers(&self) -> usize {
        self.in_handlers
    }

    /// Requests answered by the handler so far, before and during the drain (a handler that
    /// panicked counts too; health checks and metrics do not).
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Requests answered `503` because the server was shutting down: queued at the
    /// deadline, or arriving after the drain.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Requests answered `503` at once because every worker was busy and the waiting room
    /// full.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Requests whose handler panicked (each was answered `500`).
    pub fn handler_panics(&self) -> u64 {
        self.handler_panics
    }

    /// Connections open on the server's port at the last look at the OS's table (Linux):
    /// at most about a second old while the server serves, fresh at each look of the
    /// drain. `None` where there is no table, or before the first look. Counts every
    /// connection the server has accepted and not yet closed: idle keep-alive connections
    /// too.
    pub fn connections_open(&self) -> Option<usize> {
        self.connections_open
    }

    /// Time left to the shutdown deadline, from the moment the timeline has seen the fire
    /// (zero once it has passed); `None` before.
    pub fn deadline_left(&self) -> Option<Duration> {
        self.deadline_left
    }

    /// How long the drain took, counted from the fire (as
    /// [`ShutdownReport::drain_time`](crate::ShutdownReport::drain_time)), once it is over
    /// ([`Phase::Done`]); `None` before.
    pub fn drain_time(&self) -> Option<Duration> {
        self.drain_time
    }
}

/// What a [`Stats`] snapshot reads: the server's phase, counters and gauges. Shared by the
/// server, its workers and every handle; it holds no connection nor request.
pub(crate) struct Live {
    pub(crate) phases: Phases,
    pub(crate) slots: Slots,
    /// Shared with the shedder.
    pub(crate) occupancy: Arc<Occupancy>,
    /// The seam's: the waiting room's count, the connections last seen.
    gauges: Arc<Gauges>,
    /// Requests answered 503 because the server is shutting down.
    rejected: AtomicU64,
    /// Requests answered 503 at once because every worker was busy and the room full.
    shed: AtomicU64,
    /// The zero of the clocks below.
    epoch: Instant,
    /// The deadline, in nanoseconds after `epoch` (at least 1); 0 until the fire is seen.
    deadline: AtomicU64,
    /// How long the drain took, in nanoseconds (at least 1); 0 until it is over.
    drained: AtomicU64,
}

impl Live {
    pub(crate) fn new(
        phases: Phases,
        workers: usize,
        occupancy: Arc<Occupancy>,
        gauges: Arc<Gauges>,
    ) -> Live {
        Live {
            phases,
            slots: Slots::new(workers),
            occupancy,
            gauges,
            rejected: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            epoch: Instant::now(),
            deadline: AtomicU64::new(0),
            drained: AtomicU64::new(0),
        }
    }

    /// A snapshot.
    pub(crate) fn stats(&self) -> Stats {
        let counts = self.slots.counts();
        let deadline = match self.deadline.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        };
        Stats {
            phase: self.phases.now(),
            waiting: self.gauges.waiting(),
            in_handlers: self.occupancy.busy(),
            served: counts.served_before + counts.served_during_drain,
            rejected: self.rejected(),
            shed: self.shed(),
            handler_panics: counts.panics,
            connections_open: self.gauges.connections_open(),
            deadline_left: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            drain_time: match self.drained.load(Ordering::Relaxed) {
                0 => None,
                nanos => Some(Duration::from_nanos(nanos)),
            },
        }
    }

    /// The seam's gauges.
    pub(crate) fn gauges(&self) -> &Gauges {
        &self.gauges
    }

    /// Counts a request answered 503 because the server is shutting down.
    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request answered 503 because every worker was busy and the room full.
    pub(crate) fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// The timeline has seen the fire: the deadline is `deadline`.
    pub(crate) fn set_deadline(&self, deadline: Instant) {
        let after = deadline.saturating_duration_since(self.epoch);
        self.deadline.store(nanos(after), Ordering::Relaxed);
    }

    /// The drain is over: it took `took`, from the fire.
    pub(crate) fn set_drain_time(&self, took: Duration) {
        self.drained.store(nanos(took), Ordering::Relaxed);
    }
}

/// `duration` in nanoseconds, at least 1 (0 means unset), at most `u64::MAX` (584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}
