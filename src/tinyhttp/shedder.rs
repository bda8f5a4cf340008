//! The bound on requests waiting for a worker, and `503` at once beyond it.
//!
//! tiny_http queues every request it reads, without limit and without telling how many wait.
//! So while every worker is busy, a shedder thread (`lameduck-shedder-1`) becomes the one
//! receiver of tiny_http's queue (`queue.rs`) and puts what it receives in the waiting room,
//! a channel of [`Builder::max_waiting`](crate::Builder::max_waiting) places; when the room is
//! full it has the request answered `503 Service Unavailable` with `Retry-After` and
//! `Connection: close` at once. Workers take from the room before they receive again, so
//! requests keep their order.
//!
//! The shedder steps in only on overload: every worker busy, and none freed for
//! [`SATURATED`] (50 ms). A loaded server with fast handlers has every worker busy much of
//! the time, but one frees up every few microseconds; relaying its requests would only add a
//! hop. Otherwise the shedder sleeps, and a request costs the workers two counter updates.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use tiny_http::Request;

use super::queue::Queue;
use crate::error::Error;
use crate::shutdown::helper::{Helper, Stop};
use crate::shutdown::trigger::Listener;

/// How long every worker must stay busy, none freed, before the shedder takes requests into
/// the room. Set with `cargo bench --bench shutdown` (2026-11-24), but no figure for it
/// alone was kept. Its other side: 2 held workers, room of 3, 12 requests at once: 7 × 503
/// while both are still held (`tests/library/reliability.rs`).
const SATURATED: Duration = Duration::from_millis(50);

/// How busy the workers are: what the shedder watches.
pub(crate) struct Occupancy {
    /// The most workers there can be.
    workers: AtomicUsize,
    /// Workers in a request now.
    busy: AtomicUsize,
    /// Times a worker finished while every worker was busy: tells a moment of saturation (a
    /// worker frees up within microseconds) from an overload (none does).
    reliefs: AtomicU64,
    /// The receiver (the shedder, the drain) wants to hear when a worker frees up: a worker
    /// that does wakes it.
    wake_on_end: AtomicBool,
    /// A worker made every worker busy.
    all_busy_tx: Sender<()>,
    all_busy_rx: Receiver<()>,
}

impl Occupancy {
    /// The occupancy of `workers` workers.
    pub(crate) fn new(workers: usize) -> Occupancy {
        let (all_busy_tx, all_busy_rx) = crossbeam_channel::bounded(1);
        Occupancy {
            workers: AtomicUsize::new(workers),
            busy: AtomicUsize::new(0),
            reliefs: AtomicU64::new(0),
            wake_on_end: AtomicBool::new(false),
            all_busy_tx,
            all_busy_rx,
        }
    }

    /// A worker starts on a request.
    pub(crate) fn start(&self) {
        if self.busy.fetch_add(1, Ordering::SeqCst) + 1 >= self.workers() {
            let _ = self.all_busy_tx.try_send(());
        }
    }

    /// A worker is done with a request. If the receiver asked ([`Occupancy::wake_on_end`]),
    /// it is woken: each side writes, then reads what the other wrote (SeqCst), so at least
    /// one of them sees the other.
    pub(crate) fn end(&self, queue: &Queue) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) >= self.workers() {
            self.reliefs.fetch_add(1, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        if self.wake_on_end.load(Ordering::SeqCst) {
            queue.interrupt();
        }
    }

    /// Whether the receiver is to be woken each time a worker frees up.
    pub(crate) fn wake_on_end(&self, on: bool) {
        self.wake_on_end.store(on, Ordering::SeqCst);
    }

    /// Workers in a request now.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    fn all_busy(&self) -> bool {
        self.busy() >= self.workers()
    }

    fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    /// No more than `workers` workers can be: the OS refused one more thread.
    pub(crate) fn cap(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
    }
}

/// The running shedder.
pub(crate) struct Shedder {
    helper: Helper,
}

impl Shedder {
    /// Starts the shedder thread, until [`Shedder::stop`], or until `fire` fires if given;
    /// `shed` answers a request the room has no place for.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(
        queue: Arc<Queue>,
        occupancy: Arc<Occupancy>,
        shed: impl Fn(Request) + Send + 'static,
        fire: Option<Listener>,
    ) -> Result<Shedder, Error> {
        let helper = Helper::start_until("lameduck-shedder", fire, move |stop| {
            run(&queue, &occupancy, &shed, stop);
        })?;
        Ok(Shedder { helper })
    }

    /// Asks it to stop; the queue is interrupted if it receives.
    ///
    /// Only while it leads: otherwise the wake-up goes to a worker waiting inside tiny_http's
    /// queue, which wakes for nothing, on the path of every stop (an idle exit's timeline:
    /// the shedder's stop took 184 µs with it). The shedder looks at its stop after it
    /// leads, and this at whether it leads after the stop is open, each behind a fence: one
    /// of the two sees the other.
    ///
    /// It is not waited for here: a shedder that ends leaves tiny_http's queue to whoever
    /// leads next (the drain waits for its lead), and takes nothing more. [`Shedder::join`]
    /// waits for its thread.
    pub(crate) fn ask_to_stop(&self, queue: &Queue) {
        self.helper.ask_to_stop();
        fence(Ordering::SeqCst);
        if queue.is_led() {
            queue.interrupt();
        }
    }

    /// Waits (boundedly) for its thread to end, once asked to stop.
    pub(crate) fn join(self) {
        self.helper.join(Duration::from_secs(1));
    }
}

fn run(queue: &Queue, occupancy: &Occupancy, shed: &dyn Fn(Request), stop: &Stop) {
    let (asked, fire) = stop.receivers();
    loop {
        select! {
            recv(occupancy.all_busy_rx) -> _ => {}
            recv(asked) -> _ => return,
            recv(fire) -> _ => return,
        }
        // Every worker busy for a moment is the normal state of a loaded server; overload is
        // every worker busy, with none freed, for a while.
        let reliefs = occupancy.reliefs.load(Ordering::Relaxed);
        if stop.wait_timeout(SATURATED) {
            return;
        }
        if !occupancy.all_busy() || occupancy.reliefs.load(Ordering::Relaxed) != reliefs {
            continue;
        }
        let lead = queue.lead();
        // Leads, then looks at its stop: see `Shedder::stop`.
        fence(Ordering::SeqCst);
        log::debug!("every worker busy for {SATURATED:?}: bounding the waiting requests");
        occupancy.wake_on_end(true);
        while occupancy.all_busy() && !stop.is_open() {
            if let Some(request) = lead.receive() {
                if let Err(request) = queue.try_put(request) {
                    shed(request);
                }
            }
        }
        occupancy.wake_on_end(false);
    }
}
