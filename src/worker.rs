//! The worker loop: serve, then drain, then stop; and the state the workers share with the
//! thread that runs the shutdown.
//!
//! Phases, set by [`Server::run`](crate::Server::run):
//!
//! - **Serving.** Workers block in tiny_http's `recv`. Responses keep the connection open
//!   if the client asked for it.
//! - **Draining** (from the fire). Every worker is woken (`State::wake_serving`); each takes
//!   what is queued and
//!   answers it with `Connection: close`, and stops once the queue is empty and no other
//!   worker is in a handler (a request in a handler may still be followed by one on the
//!   same connection, so the others wait for it, polling every [`DRAIN_POLL`]).
//! - **Overdue** (from the deadline). Workers stop taking requests; a worker still in a
//!   handler finishes it (lameduck cannot stop a running thread) and then stops. What is
//!   queued is answered 503 by the late responder (`late.rs`).

use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tiny_http::{Method, Request, ResponseBox};

use crate::pool::panic_message;
use crate::probe::Peers;
use crate::report::Straggler;
use crate::{respond, Handler, Listener, Reason, Trigger};

/// How often a draining worker with nothing to do looks again while another one is still in a
/// handler, or while the keep-alive grace runs.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(5);

/// The longest a response written after the fire waits for the listening socket to be
/// closed (it normally takes microseconds; see `State::closed`).
const CLOSED_WAIT: Duration = Duration::from_millis(200);

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
    pub(crate) retry_after: Duration,
    pub(crate) keep_alive_grace: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_head: usize,
}

/// What the workers, the late responder and `run` share.
pub(crate) struct State {
    pub(crate) http: tiny_http::Server,
    handler: Box<dyn Handler>,
    trigger: Trigger,
    listener: Listener,
    /// Fired once connects to the listening socket are refused. Responses written after the
    /// shutdown fired wait for it before they tell their client to close: a client told
    /// earlier could reconnect to the closing socket and be reset.
    closed: Trigger,
    /// Fired when the end of tiny_http's accept loop comes out of its queue.
    accept_ended: Trigger,
    pub(crate) retry_after: Duration,
    keep_alive_grace: Duration,
    write_timeout: Duration,
    max_head: usize,
    /// The zero of the slots' `last_keep_alive` clocks.
    epoch: Instant,
    phase: AtomicU8,
    /// Workers that may be blocked in tiny_http's `recv` while serving.
    in_recv: AtomicUsize,
    pub(crate) slots: Box<[Slot]>,
    /// Recently seen connections, for the rescue of starved ones (`probe.rs`).
    pub(crate) peers: Arc<Peers>,
    /// Requests answered 503 by the late responder.
    pub(crate) rejected: AtomicU64,
}

/// One worker's own corner of the state, on its own cache lines: the hot path writes only
/// here.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Slot {
    busy: AtomicBool,
    current: Mutex<Option<Current>>,
    served_before: AtomicU64,
    served_during_drain: AtomicU64,
    panics: AtomicU64,
    /// When this worker last wrote a response that left the connection open, in nanoseconds
    /// since `State::epoch`.
    last_keep_alive: AtomicU64,
}

/// The request a worker is in the handler for.
struct Current {
    method: Method,
    url: String,
    peer: Option<SocketAddr>,
    started: Instant,
}

impl State {
    pub(crate) fn new(
        http: tiny_http::Server,
        handler: Box<dyn Handler>,
        trigger: Trigger,
        settings: &Settings,
    ) -> State {
        let Settings {
            workers,
            retry_after,
            keep_alive_grace,
            write_timeout,
            max_head,
        } = *settings;
        State {
            http,
            handler,
            listener: trigger.listener(),
            trigger,
            closed: crate::trigger().0,
            accept_ended: crate::trigger().0,
            retry_after,
            keep_alive_grace,
            write_timeout,
            max_head,
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Serving as u8),
            in_recv: AtomicUsize::new(0),
            slots: (0..workers).map(|_| Slot::default()).collect(),
            peers: Arc::new(Peers::new()),
            rejected: AtomicU64::new(0),
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

    /// After the phase has left `Serving`: wakes every worker blocked in tiny_http's `recv`.
    ///
    /// `unblock` puts one wake-up entry in tiny_http's queue, which the next receiver takes.
    /// A worker raises `in_recv` before it reads the phase, and the phase was changed before
    /// `in_recv` is read here; so a worker not counted here reads the new phase and does not
    /// block, and every counted one finds an entry (or a request) to take. Draining workers
    /// keep off the queue until `in_recv` is zero, so they cannot take the entries meant for
    /// the others. An entry left over (its worker took a request instead) is later seen as an
    /// empty receive: harmless.
    pub(crate) fn wake_serving(&self) {
        for _ in 0..self.in_recv.load(Ordering::SeqCst) {
            self.http.unblock();
        }
    }

    fn any_busy(&self) -> bool {
        self.slots.iter().any(|s| s.busy.load(Ordering::Acquire))
    }

    /// Fires when the end of tiny_http's accept loop has been seen.
    pub(crate) fn accept_ended_listener(&self) -> Listener {
        self.accept_ended.listener()
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
    fn keep_alive_grace_left(&self) -> Duration {
        let last = self
            .slots
            .iter()
            .map(|s| s.last_keep_alive.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        if last == 0 {
            return Duration::ZERO;
        }
        let until = self.epoch + Duration::from_nanos(last) + self.keep_alive_grace;
        until.saturating_duration_since(Instant::now())
    }

    /// An error came out of tiny_http's queue: its accept loop has ended. During shutdown
    /// that is lameduck's own doing; while serving it means the server can no longer accept
    /// connections (say, out of file descriptors), so shutdown is fired rather than leave
    /// clients waiting on a socket nobody accepts from.
    pub(crate) fn accept_ended(&self, error: io::Error) {
        self.accept_ended.fire(Reason::Requested);
        if !self.listener.is_triggered() {
            log::error!("accept loop ended: {error}; shutting down");
            self.trigger
                .fire(Reason::Other(format!("accept loop ended: {error}")));
        } else {
            log::debug!("accept loop ended ({error}), as asked");
        }
    }

    /// Requests in a handler now, with the name of the worker running each.
    pub(crate) fn stragglers(&self, names: &[String]) -> Vec<Straggler> {
        let now = Instant::now();
        self.slots
            .iter()
            .zip(names)
            .filter_map(|(slot, name)| {
                lock(&slot.current).as_ref().map(|c| Straggler {
                    method: c.method.clone(),
                    url: c.url.clone(),
                    peer: c.peer,
                    age: now.saturating_duration_since(c.started),
                    worker: name.clone(),
                })
            })
            .collect()
    }

    /// Sums of the workers' counters: served before the fire, during the drain, panics.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        self.slots.iter().fold((0, 0, 0), |(b, d, p), s| {
            (
                b + s.served_before.load(Ordering::Relaxed),
                d + s.served_during_drain.load(Ordering::Relaxed),
                p + s.panics.load(Ordering::Relaxed),
            )
        })
    }

    /// Answers `request` with 503, `Retry-After` and `Connection: close`.
    pub(crate) fn reject(&self, request: Request) {
        log::debug!(
            "{} {} from {}: 503, shutting down",
            request.method(),
            request.url(),
            peer_text(request.remote_addr())
        );
        let response = respond::unavailable(self.retry_after);
        if let Err(e) = respond::send(request, response, true, self.write_timeout) {
            log::debug!("writing a 503: {e}");
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// The loop of worker `index` (its slot in `state.slots`).
pub(crate) fn work(state: &State, index: usize) {
    let slot = &state.slots[index];

    // Serving: block in tiny_http's queue. `in_recv` counts the workers that may be blocked
    // there, so that `wake_serving` can wake each of them: it is raised *before* the phase is
    // read (see `wake_serving` for why that order matters).
    loop {
        state.in_recv.fetch_add(1, Ordering::SeqCst);
        if state.phase() != Phase::Serving {
            state.in_recv.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        let received = state.http.recv();
        state.in_recv.fetch_sub(1, Ordering::SeqCst);
        match received {
            Ok(request) => serve(state, slot, request),
            // Woken by `unblock`: the phase has changed.
            Err(e) if is_unblock(&e) => {}
            Err(e) => state.accept_ended(e),
        }
    }

    // The wake-up calls are queue entries any receiver can take: keep off the queue until
    // every worker still blocked in it has taken one. This lasts microseconds.
    while state.in_recv.load(Ordering::SeqCst) > 0 && state.phase() == Phase::Draining {
        std::thread::yield_now();
    }

    // Draining: take what is queued; stop when it is empty, no one is in a handler, and the
    // keep-alive grace is over.
    while state.phase() == Phase::Draining {
        match state.http.try_recv() {
            Ok(Some(request)) => serve(state, slot, request),
            Ok(None) if !state.any_busy() && state.keep_alive_grace_left().is_zero() => return,
            Ok(None) => match state.http.recv_timeout(
                state
                    .keep_alive_grace_left()
                    .clamp(Duration::from_millis(1), DRAIN_POLL),
            ) {
                Ok(Some(request)) => serve(state, slot, request),
                Ok(None) => {}
                Err(e) => state.accept_ended(e),
            },
            Err(e) => state.accept_ended(e),
        }
    }
}

/// tiny_http's `recv` returns this error when `unblock` woke it.
pub(crate) fn is_unblock(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string() == "thread unblocked"
}

fn serve(state: &State, slot: &Slot, mut request: Request) {
    slot.busy.store(true, Ordering::Release);
    state.peers.note(request.remote_addr());
    log::trace!(
        "{} {} from {}: received",
        request.method(),
        request.url(),
        peer_text(request.remote_addr())
    );
    let started = Instant::now();
    *lock(&slot.current) = Some(Current {
        method: request.method().clone(),
        url: request.url().to_owned(),
        peer: request.remote_addr().copied(),
        started,
    });

    let (response, panicked) = handle(state, &mut request);
    // Decided when the response is written: a request that started before the fire and
    // ends after it still tells its client to close.
    let close = state.listener.is_triggered();
    if close {
        state.closed.listener().wait_timeout(CLOSED_WAIT);
    }
    let status = response.status_code().0;
    if let Err(e) = respond::send(request, response, close, state.write_timeout) {
        log::debug!("writing a response: {e}");
    }
    if !close {
        let since_epoch = state.epoch.elapsed().as_nanos().max(1);
        slot.last_keep_alive.store(
            u64::try_from(since_epoch).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    let current = lock(&slot.current).take();
    if close {
        slot.served_during_drain.fetch_add(1, Ordering::Relaxed);
    } else {
        slot.served_before.fetch_add(1, Ordering::Relaxed);
    }
    if panicked {
        slot.panics.fetch_add(1, Ordering::Relaxed);
    }
    slot.busy.store(false, Ordering::Release);
    if log::log_enabled!(log::Level::Debug) {
        if let Some(c) = current {
            log::debug!(
                "{} {} from {}: {status} in {:.1?}{}",
                c.method,
                c.url,
                peer_text(c.peer.as_ref()),
                started.elapsed(),
                if close { ", connection closed" } else { "" }
            );
        }
    }
}

/// Runs the handler, or answers in its place: 431 for a head over the limit, 500 for a
/// panic or a response header that would split the response. Returns whether it panicked.
fn handle(state: &State, request: &mut Request) -> (ResponseBox, bool) {
    let head = respond::head_size(request);
    if head > state.max_head {
        log::debug!(
            "{} {}...: request head of {head} bytes over the limit of {}; answered 431",
            request.method(),
            request.url().chars().take(64).collect::<String>(),
            state.max_head
        );
        return (respond::head_too_large(state.max_head), false);
    }
    match panic::catch_unwind(AssertUnwindSafe(|| state.handler.handle(request))) {
        Ok(response) => match respond::splitting_header(&response) {
            None => (response, false),
            Some(bad) => {
                log::error!(
                    "handler for {} {} returned header {:?} holding CR or LF \
                     (response splitting); answered 500",
                    request.method(),
                    request.url(),
                    bad.field.as_str().as_str()
                );
                (respond::internal_error(), false)
            }
        },
        Err(payload) => {
            log::error!(
                "handler panicked on {} {}: {}; answered 500",
                request.method(),
                request.url(),
                panic_message(payload.as_ref())
            );
            (respond::internal_error(), true)
        }
    }
}

fn peer_text(peer: Option<&SocketAddr>) -> String {
    peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// Locks a mutex; a panic while it was held cannot leave these plain values half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
