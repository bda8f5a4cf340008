//! What the workers, the supervisor, the late responder and `run` share: the phase, the
//! generations of tiny_http servers, the workers' slots.
//!
//! A *generation* is one tiny_http server accepting from the listening socket. There is one
//! for the server's life, unless its accept loop dies (tiny_http ends it for good on the
//! first `accept` error, e.g. out of file descriptors): then the supervisor starts a new one
//! on the same socket (`accept.rs`, `probe.rs`). The workers move to it; a dead generation
//! keeps one worker of its own, `lameduck-retired-N`, for the keep-alive connections it still
//! has, until the drain.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use std::panic::{self, AssertUnwindSafe};

use tiny_http::{Header, Method, Request};

use crate::archive::Unserved;
use crate::probe::Peers;
use crate::report::Straggler;
use crate::{respond, Handler, Listener, Pool, Reason, Trigger};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving = 0,
    Draining = 1,
    Overdue = 2,
}

/// The builder's settings the workers apply.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) workers: usize,
    pub(crate) lame_duck: Duration,
    pub(crate) max_waiting: usize,
    pub(crate) retry_after: Duration,
    pub(crate) keep_alive_grace: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_head: usize,
}

/// One tiny_http server on the listening socket.
pub(crate) struct Gen {
    pub(crate) http: tiny_http::Server,
    pub(crate) number: usize,
    /// Receivers that may be blocked in this generation's `recv`.
    in_recv: AtomicUsize,
    /// Threads in [`Gen::wait_no_receivers`]; the last receiver to leave wakes them.
    waiting: AtomicUsize,
    quiet: Mutex<()>,
    left: Condvar,
    /// Its accept loop has ended (seen, or found by the supervisor).
    dead: AtomicBool,
    /// Fired when the end of its accept loop comes out of its queue.
    ended: Trigger,
}

impl Gen {
    fn new(http: tiny_http::Server, number: usize) -> Gen {
        Gen {
            http,
            number,
            in_recv: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            quiet: Mutex::new(()),
            left: Condvar::new(),
            dead: AtomicBool::new(false),
            ended: crate::trigger().0,
        }
    }

    /// Counts the caller as a receiver that may block in `recv`. Done *before* the caller
    /// reads the phase (see [`Gen::wake_receivers`]).
    pub(crate) fn enter(&self) {
        self.in_recv.fetch_add(1, Ordering::SeqCst);
    }

    /// Uncounts the caller; returns how many receivers are still counted.
    pub(crate) fn leave(&self) -> usize {
        let others = self.in_recv.fetch_sub(1, Ordering::SeqCst) - 1;
        // Both SeqCst: either this sees a waiter that came, or the waiter sees this leave.
        if others == 0 && self.waiting.load(Ordering::SeqCst) > 0 {
            let _quiet = lock(&self.quiet);
            self.left.notify_all();
        }
        others
    }

    pub(crate) fn receivers(&self) -> usize {
        self.in_recv.load(Ordering::SeqCst)
    }

    /// Wakes every receiver blocked in this generation's `recv`, after the phase (or the
    /// current generation) has changed.
    ///
    /// `unblock` puts one wake-up entry in tiny_http's queue, which the next receiver takes.
    /// A receiver raises `in_recv` before it reads the phase, and the phase was changed
    /// before `in_recv` is read here; so a receiver not counted here reads the new phase and
    /// does not block, and every counted one finds an entry (or a request) to take. Workers
    /// that go on receiving after the change keep off the queue until `in_recv` is zero, so
    /// they cannot take the entries meant for the others. An entry left over (its worker took
    /// a request instead) is later seen as an empty receive: harmless.
    pub(crate) fn wake_receivers(&self) {
        for _ in 0..self.receivers() {
            self.http.unblock();
        }
    }

    /// Blocks while a receiver may still be blocked in `recv` and `go_on()` holds; wakes
    /// when the last one leaves (checking `go_on` at least every `poll`).
    pub(crate) fn wait_no_receivers(&self, poll: Duration, go_on: impl Fn() -> bool) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut quiet = lock(&self.quiet);
        while self.receivers() > 0 && go_on() {
            quiet = match self.left.wait_timeout(quiet, poll) {
                Ok((quiet, _)) => quiet,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(quiet);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Fires when the end of this generation's accept loop has been seen.
    pub(crate) fn ended(&self) -> Listener {
        self.ended.listener()
    }
}

/// One worker's own corner of the state, on its own cache lines: the hot path writes only
/// here.
#[repr(align(128))]
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) busy: AtomicBool,
    pub(crate) current: Mutex<Option<Current>>,
    pub(crate) served_before: AtomicU64,
    pub(crate) served_during_drain: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) health_checks: AtomicU64,
    /// When this worker last wrote a response that left the connection open, in nanoseconds
    /// since `State::epoch`.
    pub(crate) last_keep_alive: AtomicU64,
}

impl Slot {
    pub(crate) fn new(name: String) -> Slot {
        Slot {
            name,
            busy: AtomicBool::new(false),
            current: Mutex::new(None),
            served_before: AtomicU64::new(0),
            served_during_drain: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            last_keep_alive: AtomicU64::new(0),
        }
    }
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

/// The built-in health endpoints, if configured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    pub(crate) readiness: Option<String>,
    pub(crate) liveness: Option<String>,
}

/// Where unserved requests go (`Builder::on_unserved`).
pub(crate) type Archive = Mutex<Box<dyn FnMut(Unserved) + Send + 'static>>;

/// What the workers, the supervisor, the late responder and `run` share.
pub(crate) struct State {
    gens: Mutex<Vec<Arc<Gen>>>,
    /// The number of the generation new connections go to.
    current: AtomicUsize,
    pub(crate) handler: Box<dyn Handler>,
    pub(crate) listener: Listener,
    /// Set when the socket is about to be closed (after the lame-duck delay).
    stopping: AtomicBool,
    /// Fired once connects to the listening socket are refused. Responses written between
    /// `stopping` and this wait for it before they tell their client to close: a client told
    /// then could reconnect to the closing socket and be reset.
    pub(crate) closed: Trigger,
    pub(crate) health: Health,
    pub(crate) archive: Option<Archive>,
    /// Generations whose accept loop was seen to end while serving, for the supervisor.
    restart_tx: Sender<usize>,
    pub(crate) restart_rx: Receiver<usize>,
    pub(crate) settings: Settings,
    /// The zero of the slots' `last_keep_alive` clocks.
    pub(crate) epoch: Instant,
    phase: AtomicU8,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Workers of dead generations (`lameduck-retired-N`).
    pub(crate) retired: Mutex<Pool>,
    /// Recently seen connections, for the rescue of starved ones (`probe.rs`).
    pub(crate) peers: Arc<Peers>,
    /// Requests answered 503 by the late responder.
    pub(crate) rejected: AtomicU64,
    /// The waiting room: requests taken from tiny_http while every worker was busy, for the
    /// workers to take first (`room.rs`).
    pub(crate) room_tx: Sender<Request>,
    pub(crate) room_rx: Receiver<Request>,
    /// Workers in a handler now.
    busy: AtomicUsize,
    /// Times a worker finished while every worker was busy: the shedder tells a moment of
    /// saturation (a worker frees up within microseconds) from an overload (none does).
    reliefs: AtomicU64,
    /// A worker made every worker busy: the shedder may have work.
    all_busy_tx: Sender<()>,
    pub(crate) all_busy_rx: Receiver<()>,
    /// Requests answered 503 at once because the waiting room was full.
    pub(crate) shed: AtomicU64,
}

impl State {
    pub(crate) fn new(
        http: tiny_http::Server,
        handler: Box<dyn Handler>,
        trigger: Trigger,
        settings: Settings,
        health: Health,
        archive: Option<Archive>,
    ) -> State {
        let (restart_tx, restart_rx) = crossbeam_channel::unbounded();
        let (room_tx, room_rx) = crossbeam_channel::bounded(settings.max_waiting);
        let (all_busy_tx, all_busy_rx) = crossbeam_channel::bounded(1);
        State {
            gens: Mutex::new(vec![Arc::new(Gen::new(http, 1))]),
            current: AtomicUsize::new(1),
            handler,
            listener: trigger.listener(),
            stopping: AtomicBool::new(false),
            closed: crate::trigger().0,
            health,
            archive,
            restart_tx,
            restart_rx,
            settings,
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Serving as u8),
            slots: Mutex::new(Vec::new()),
            retired: Mutex::new(Pool::with_prefix("lameduck-retired")),
            peers: Arc::new(Peers::new()),
            rejected: AtomicU64::new(0),
            room_tx,
            room_rx,
            busy: AtomicUsize::new(0),
            reliefs: AtomicU64::new(0),
            all_busy_tx,
            all_busy_rx,
            shed: AtomicU64::new(0),
        }
    }

    /// A worker starts on a request.
    pub(crate) fn start_work(&self) {
        if self.busy.fetch_add(1, Ordering::SeqCst) + 1 >= self.settings.workers {
            let _ = self.all_busy_tx.try_send(());
        }
    }

    /// A worker is done with a request. It looks in the waiting room next: the fence orders
    /// that look after this write, against the shedder's push-then-look (see `wait_or_shed`).
    pub(crate) fn end_work(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) >= self.settings.workers {
            self.reliefs.fetch_add(1, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
    }

    /// How many times a worker finished while every worker was busy.
    pub(crate) fn reliefs(&self) -> u64 {
        self.reliefs.load(Ordering::Relaxed)
    }

    /// `true` while every worker is in a handler.
    pub(crate) fn all_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) >= self.settings.workers
    }

    /// Puts `request` in the waiting room, or answers it 503 if the room is full. Called by
    /// the shedder, which took it from `gen` while every worker was busy.
    pub(crate) fn wait_or_shed(&self, request: Request, gen: &Gen) {
        match self.room_tx.try_send(request) {
            Ok(()) => {
                // A worker may have just finished and gone back to tiny_http's queue: wake
                // it to look in the room. (If not, it looks there before it goes back.) The
                // two sides each write, then read what the other wrote; the fences (here and
                // in `end_work`) make sure at least one of them sees the other's write.
                fence(Ordering::SeqCst);
                if !self.all_busy() {
                    gen.http.unblock();
                }
            }
            Err(full) => {
                let request = full.into_inner();
                self.answer_503(request, "overloaded");
                self.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Overdue,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.listener.is_triggered()
    }

    /// The generation new connections go to.
    pub(crate) fn current_gen(&self) -> Arc<Gen> {
        let gens = lock(&self.gens);
        Arc::clone(gens.last().expect("a generation"))
    }

    pub(crate) fn current_number(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// Every generation, the dead ones too.
    pub(crate) fn gens(&self) -> Vec<Arc<Gen>> {
        lock(&self.gens).clone()
    }

    /// Makes `http` the current generation, and returns it.
    pub(crate) fn install(&self, http: tiny_http::Server) -> Arc<Gen> {
        let mut gens = lock(&self.gens);
        let number = gens.last().map_or(1, |g| g.number + 1);
        let gen = Arc::new(Gen::new(http, number));
        gens.push(Arc::clone(&gen));
        self.current.store(number, Ordering::SeqCst);
        gen
    }

    /// After the phase has left `Serving`: wakes every receiver of every generation.
    pub(crate) fn wake_serving(&self) {
        for gen in self.gens() {
            gen.wake_receivers();
        }
    }

    /// At the deadline: cuts short the polls of workers waiting in the drain (`count` wake-ups
    /// per generation; one left over is an empty receive for the late responder).
    pub(crate) fn wake_draining(&self, count: usize) {
        for gen in self.gens() {
            for _ in 0..count {
                gen.http.unblock();
            }
        }
    }

    /// A slot for a new worker named `name`.
    pub(crate) fn add_slot(&self, name: String) -> Arc<Slot> {
        let slot = Arc::new(Slot::new(name));
        lock(&self.slots).push(Arc::clone(&slot));
        slot
    }

    pub(crate) fn any_busy(&self) -> bool {
        lock(&self.slots)
            .iter()
            .any(|s| s.busy.load(Ordering::Acquire))
    }

    /// The socket is about to be closed: responses now wait for it (see `closed`).
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether a response written now after the fire must wait for the socket to close:
    /// from the fire on without a lame-duck delay, from the end of the delay with one.
    pub(crate) fn is_stopping(&self) -> bool {
        self.settings.lame_duck.is_zero() || self.stopping.load(Ordering::SeqCst)
    }

    /// Connects to the listening socket are refused from now on.
    pub(crate) fn set_closed(&self) {
        self.closed.fire(Reason::Requested);
    }

    /// How long until the keep-alive grace is over: until no connection that was left open
    /// by a response can still be about to send its next request. Zero once it is over.
    ///
    /// A client that got a keep-alive response just before the fire sends its next request
    /// microseconds later, on that connection; the drain waits for it rather than end under
    /// it. A connection idle for longer than the grace is taken to stay idle.
    pub(crate) fn keep_alive_grace_left(&self) -> Duration {
        let last = lock(&self.slots)
            .iter()
            .map(|s| s.last_keep_alive.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        if last == 0 {
            return Duration::ZERO;
        }
        let until = self.epoch + Duration::from_nanos(last) + self.settings.keep_alive_grace;
        until.saturating_duration_since(Instant::now())
    }

    /// An error came out of `gen`'s queue: its accept loop has ended. During shutdown that
    /// is lameduck's own doing. While serving it means no one accepts new connections any
    /// more (say, the process is out of file descriptors): the supervisor is told to start a
    /// new generation.
    pub(crate) fn accept_ended(&self, gen: &Gen, error: io::Error) {
        gen.ended.fire(Reason::Requested);
        if self.is_shutting_down() {
            log::debug!("accept loop ended ({error}), as asked");
        } else {
            self.accept_died(gen, &error.to_string());
        }
    }

    /// `gen`'s accept loop is dead (`why`): tells the supervisor, once.
    pub(crate) fn accept_died(&self, gen: &Gen, why: &str) {
        if !gen.dead.swap(true, Ordering::SeqCst) {
            log::error!("accept loop ended: {why}; starting a new one");
            let _ = self.restart_tx.send(gen.number);
        }
    }

    /// Requests in a handler now, as unserved requests for the archive.
    pub(crate) fn cut(&self) -> Vec<Unserved> {
        let now = Instant::now();
        lock(&self.slots)
            .iter()
            .filter_map(|slot| {
                lock(&slot.current).as_ref().map(|c| Unserved {
                    method: c.method.clone(),
                    url: c.url.clone(),
                    headers: c.headers.clone(),
                    body: None,
                    peer: c.peer,
                    why: crate::archive::Why::Cut(now.saturating_duration_since(c.started)),
                })
            })
            .collect()
    }

    /// Requests in a handler now, with the worker running each.
    pub(crate) fn stragglers(&self) -> Vec<Straggler> {
        let now = Instant::now();
        lock(&self.slots)
            .iter()
            .filter_map(|slot| {
                lock(&slot.current).as_ref().map(|c| Straggler {
                    method: c.method.clone(),
                    url: c.url.clone(),
                    peer: c.peer,
                    age: now.saturating_duration_since(c.started),
                    worker: slot.name.clone(),
                })
            })
            .collect()
    }

    /// Sums of the workers' counters.
    pub(crate) fn counts(&self) -> Counts {
        lock(&self.slots)
            .iter()
            .fold(Counts::default(), |c, s| Counts {
                served_before: c.served_before + s.served_before.load(Ordering::Relaxed),
                served_during_drain: c.served_during_drain
                    + s.served_during_drain.load(Ordering::Relaxed),
                panics: c.panics + s.panics.load(Ordering::Relaxed),
                health_checks: c.health_checks + s.health_checks.load(Ordering::Relaxed),
            })
    }

    /// Hands `unserved` to the application's archive, if it set one.
    pub(crate) fn archive(&self, unserved: Unserved) {
        if let Some(archive) = &self.archive {
            let mut archive = lock(archive);
            if panic::catch_unwind(AssertUnwindSafe(|| archive(unserved))).is_err() {
                log::error!("the archive of unserved requests panicked");
            }
        }
    }

    /// Answers `request` with 503, `Retry-After` and `Connection: close`, because the
    /// server is shutting down; archives it first if asked to.
    pub(crate) fn reject(&self, mut request: Request) {
        if self.archive.is_some() {
            self.archive(Unserved::rejected(&mut request));
        }
        self.answer_503(request, "shutting down");
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn answer_503(&self, request: Request, why: &str) {
        log::debug!(
            "{} {} from {}: 503, {why}",
            request.method(),
            request.url(),
            peer_text(request.remote_addr())
        );
        let response = respond::unavailable(self.settings.retry_after, why);
        if let Err(e) = respond::send(request, response, true, self.settings.write_timeout) {
            log::debug!("writing a 503: {e}");
        }
    }
}

/// Sums of the workers' counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) served_before: u64,
    pub(crate) served_during_drain: u64,
    pub(crate) panics: u64,
    pub(crate) health_checks: u64,
}

pub(crate) fn peer_text(peer: Option<&SocketAddr>) -> String {
    peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// Locks a mutex; a panic while it was held cannot leave these plain values half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
