//! The requests tiny_http has read, handed to lameduck's threads one receiver at a time.
//!
//! tiny_http puts every request it reads in one queue, which many threads may block on; its
//! `unblock` wakes one of them, whichever comes first, and its timed receive can take the
//! wake-up of a push and leave the request for nobody. Rather than live with that, lameduck
//! lets **one thread at a time** receive from tiny_http: whoever holds the *baton* (a token
//! in a channel of one place). A worker that gets the baton receives one request, passes the
//! baton on at once, and serves the request while the next worker receives (the
//! leader/follower pattern). So:
//!
//! - one `unblock` always wakes the one receiver there is ([`Queue::interrupt`]);
//! - the receiver can be a worker (while serving), or one thread of lameduck's that takes
//!   requests for the workers: the shedder when every worker is busy, the drain, the late
//!   responder ([`Queue::lead`]);
//! - the other workers wait on the baton *and* on the waiting room, a bounded channel where
//!   such a thread puts what it took ([`Queue::put`]); waking them all is a broadcast.
//!
//! Measured against workers that all block in tiny_http's queue (16 workers, hello world,
//! keep-alive, wrk, 5 interleaved runs): 1.07× the throughput at 1 connection, 1.3× at 16,
//! 1.6× at 64 — one receiver on tiny_http's lock instead of sixteen.
//!
//! **Generations.** tiny_http's accept loop ends for good on its first error (out of file
//! descriptors, say); lameduck then starts another tiny_http server on the same socket
//! (`socket.rs`, `supervisor.rs`). Each is a [`Generation`]; receivers take from the current
//! one, and a dead one keeps a thread of its own that moves what its old connections still
//! send into the waiting room.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use tiny_http::Request;

use crate::error::Error;
use crate::shutdown::helper::Helper;
use crate::shutdown::latch::Latch;

/// How long a thread moving a dead generation's requests into a full waiting room waits
/// before it looks whether it must stop.
const RETIRED_POLL: Duration = Duration::from_millis(100);

/// One tiny_http server accepting from the listening socket.
pub(crate) struct Generation {
    http: tiny_http::Server,
    number: usize,
    /// Opens when the end of its accept loop comes out of its queue.
    ended: Latch,
    /// Its accept loop is known dead (reported once).
    dead: AtomicBool,
}

impl Generation {
    /// Opens when the end of this generation's accept loop has come out of its queue.
    pub(crate) fn ended(&self) -> &Latch {
        &self.ended
    }

    /// Its number, from 1.
    pub(crate) fn number(&self) -> usize {
        self.number
    }
}

/// The requests tiny_http has read.
pub(crate) struct Queue {
    gens: Mutex<Vec<Arc<Generation>>>,
    current: AtomicUsize,
    /// The one token: who holds it may receive from tiny_http.
    baton_tx: Sender<()>,
    baton_rx: Receiver<()>,
    /// Requests taken from tiny_http by a thread of lameduck's, for the workers.
    room_tx: Sender<Request>,
    room_rx: Receiver<Request>,
    /// Opens when workers must no longer receive from tiny_http themselves (the drain takes
    /// over): it wakes the workers waiting for the baton.
    pumped: Latch,
    /// Once open, an accept loop's end is lameduck's own doing, not a failure.
    stopping: Latch,
    /// Numbers of generations whose accept loop died while serving, for the supervisor.
    died_tx: Sender<usize>,
    died_rx: Receiver<usize>,
    /// The threads moving dead generations' requests into the room.
    retired: Mutex<Vec<Helper>>,
}

impl Queue {
    /// A queue over `http`, the first generation, with a waiting room of `room` places.
    pub(crate) fn new(http: tiny_http::Server, room: usize) -> Queue {
        let (baton_tx, baton_rx) = crossbeam_channel::bounded(1);
        baton_tx.send(()).expect("an empty channel of one place");
        let (room_tx, room_rx) = crossbeam_channel::bounded(room);
        let (died_tx, died_rx) = crossbeam_channel::unbounded();
        Queue {
            gens: Mutex::new(vec![Arc::new(generation(http, 1))]),
            current: AtomicUsize::new(0),
            baton_tx,
            baton_rx,
            room_tx,
            room_rx,
            pumped: Latch::new(),
            stopping: Latch::new(),
            died_tx,
            died_rx,
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The next request for a worker: one from the waiting room, or, while workers may
    /// receive, one from tiny_http. `None` once `stop` is open and the room is empty.
    pub(crate) fn take(&self, stop: &Latch) -> Option<Request> {
        loop {
            if let Ok(request) = self.room_rx.try_recv() {
                return Some(request);
            }
            if stop.is_open() {
                return None;
            }
            if self.pumped.is_open() {
                select! {
                    recv(self.room_rx) -> request => if let Ok(r) = request { return Some(r) },
                    recv(stop.receiver()) -> _ => {}
                }
                continue;
            }
            select! {
                recv(self.room_rx) -> request => if let Ok(r) = request { return Some(r) },
                recv(self.baton_rx) -> _ => {
                    let received = if self.pumped.is_open() { None } else { self.receive_once() };
                    self.pass_baton();
                    if received.is_some() {
                        return received;
                    }
                },
                recv(stop.receiver()) -> _ => {}
                recv(self.pumped.receiver()) -> _ => {}
            }
        }
    }

    /// Becomes the one receiver, for a thread that takes requests for the workers; waits for
    /// the baton until `give_up` opens. The baton goes back when the [`Lead`] is dropped.
    pub(crate) fn lead(&self, give_up: &Latch) -> Option<Lead<'_>> {
        select! {
            recv(self.baton_rx) -> _ => Some(Lead { queue: self }),
            recv(give_up.receiver()) -> _ => None,
        }
    }

    /// Like [`Queue::lead`], giving up at `deadline`.
    pub(crate) fn lead_until(&self, deadline: Instant) -> Option<Lead<'_>> {
        self.baton_rx
            .recv_deadline(deadline)
            .ok()
            .map(|()| Lead { queue: self })
    }

    /// From now on only the waiting room feeds the workers: the thread that leads puts what
    /// it receives there. Wakes the workers waiting for the baton, and the one receiving.
    pub(crate) fn pump_from_now_on(&self) {
        if self.pumped.open() {
            self.interrupt();
        }
    }

    /// Puts `request` in the waiting room for the workers, waiting up to `timeout` for a
    /// place. Gives it back if the room stayed full.
    #[allow(clippy::result_large_err)] // the request handed back, as crossbeam's `SendError`
    pub(crate) fn put(&self, request: Request, timeout: Duration) -> Result<(), Request> {
        self.room_tx
            .send_timeout(request, timeout)
            .map_err(|e| e.into_inner())
    }

    /// Puts `request` in the waiting room if there is a place now; gives it back if not.
    #[allow(clippy::result_large_err)] // the request handed back, as crossbeam's `SendError`
    pub(crate) fn try_put(&self, request: Request) -> Result<(), Request> {
        self.room_tx.try_send(request).map_err(|e| e.into_inner())
    }

    /// Takes a request from the waiting room, if one waits.
    pub(crate) fn try_take_waiting(&self) -> Option<Request> {
        self.room_rx.try_recv().ok()
    }

    /// Whether no request waits in the room.
    pub(crate) fn room_is_empty(&self) -> bool {
        self.room_rx.is_empty()
    }

    /// Wakes the thread receiving from tiny_http, if one is: it passes the baton on, or looks
    /// again at what it must do. One wake-up too many is harmless: its receiver finds it and
    /// looks again.
    pub(crate) fn interrupt(&self) {
        self.current().http.unblock();
    }

    /// From now on an accept loop that ends was ended by lameduck (no restart).
    pub(crate) fn stopping(&self) {
        self.stopping.open();
    }

    /// The generation new connections go to.
    pub(crate) fn current(&self) -> Arc<Generation> {
        let gens = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&gens[self.current.load(Ordering::SeqCst)])
    }

    /// Numbers of generations whose accept loop died while serving.
    pub(crate) fn deaths(&self) -> &Receiver<usize> {
        &self.died_rx
    }

    /// Reports that `gen`'s accept loop is dead (`why`), once.
    pub(crate) fn report_death(&self, gen: &Generation, why: &str) {
        if !gen.dead.swap(true, Ordering::SeqCst) {
            log::error!("accept loop ended: {why}; starting a new one");
            let _ = self.died_tx.send(gen.number);
        }
    }

    /// Makes `http` the current generation. The dead one's receiver is woken (it moves to the
    /// new one) and a thread of its own, `lameduck-retired-N`, moves the requests its
    /// remaining connections send into the waiting room.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if that thread could not be started: the old connections' requests
    /// then wait until the shutdown's late responder answers them.
    pub(crate) fn install(self: &Arc<Queue>, http: tiny_http::Server) -> Result<usize, Error> {
        let old = self.current();
        let number = {
            let mut gens = self.gens.lock().unwrap_or_else(|p| p.into_inner());
            let number = gens.len() + 1;
            gens.push(Arc::new(generation(http, number)));
            self.current.store(gens.len() - 1, Ordering::SeqCst);
            number
        };
        old.http.unblock();
        let queue = Arc::clone(self);
        let helper = Helper::start("lameduck-retired", move |stop| {
            queue.move_into_room(&old, stop);
        })?;
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(helper);
        Ok(number)
    }

    /// Stops the threads of dead generations (at the end of the `Server`).
    pub(crate) fn stop_retired(&self) {
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        for helper in &retired {
            helper.ask_to_stop();
        }
        for gen in self.generations() {
            gen.http.unblock();
        }
        for helper in retired {
            helper.stop(Duration::from_secs(1));
        }
    }

    /// Every generation, the dead ones too.
    pub(crate) fn generations(&self) -> Vec<Arc<Generation>> {
        self.gens.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One receive from the current generation, by the baton's holder.
    fn receive_once(&self) -> Option<Request> {
        let gen = self.current();
        let received = gen.http.recv();
        self.received(&gen, received)
    }

    fn pass_baton(&self) {
        // Never blocks: the channel's one place was emptied when the baton was taken.
        let _ = self.baton_tx.try_send(());
    }

    /// What a receive from `gen` gave: a request, or nothing (woken by `unblock`, or the end
    /// of the accept loop, which is noted).
    fn received(&self, gen: &Generation, received: io::Result<Request>) -> Option<Request> {
        match received {
            Ok(request) => Some(request),
            Err(e) if is_unblock(&e) => None,
            Err(e) => {
                self.accept_loop_ended(gen, e);
                None
            }
        }
    }

    fn received_timed(
        &self,
        gen: &Generation,
        received: io::Result<Option<Request>>,
    ) -> Option<Request> {
        match received {
            Ok(request) => request,
            Err(e) => {
                self.accept_loop_ended(gen, e);
                None
            }
        }
    }

    /// An error came out of `gen`'s queue: its accept loop has ended. When lameduck is
    /// stopping it, as asked; otherwise no one accepts new connections any more (out of file
    /// descriptors, say) and the supervisor is told.
    fn accept_loop_ended(&self, gen: &Generation, error: io::Error) {
        gen.ended.open();
        if self.stopping.is_open() {
            log::debug!("accept loop ended ({error}), as asked");
        } else {
            self.report_death(gen, &error.to_string());
        }
    }

    /// A dead generation's thread: moves what its connections still send into the room.
    fn move_into_room(&self, gen: &Generation, stop: &Latch) {
        while !stop.is_open() {
            let received = gen.http.recv();
            let Some(mut request) = self.received(gen, received) else {
                continue;
            };
            loop {
                match self.room_tx.send_timeout(request, RETIRED_POLL) {
                    Ok(()) => {
                        self.interrupt();
                        break;
                    }
                    Err(e) if stop.is_open() => {
                        drop(e.into_inner()); // tiny_http answers a dropped request 500
                        return;
                    }
                    Err(e) => request = e.into_inner(),
                }
            }
        }
    }
}

/// The right to receive from tiny_http, held by one thread; given back when dropped.
pub(crate) struct Lead<'a> {
    queue: &'a Queue,
}

impl Lead<'_> {
    /// Blocks for the next request; `None` if woken ([`Queue::interrupt`]) or if the accept
    /// loop's end came out instead.
    pub(crate) fn receive(&self) -> Option<Request> {
        self.queue.receive_once()
    }

    /// Waits up to `timeout` for the next request. With one receiver only, tiny_http's
    /// timed receive cannot lose a request: one it missed is there the next time.
    pub(crate) fn receive_timeout(&self, timeout: Duration) -> Option<Request> {
        let gen = self.queue.current();
        let received = gen.http.recv_timeout(timeout);
        self.queue.received_timed(&gen, received)
    }

    /// The next request if one is queued now.
    pub(crate) fn try_receive(&self) -> Option<Request> {
        let gen = self.queue.current();
        let received = gen.http.try_recv();
        self.queue.received_timed(&gen, received)
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.queue.pass_baton();
    }
}

fn generation(http: tiny_http::Server, number: usize) -> Generation {
    Generation {
        http,
        number,
        ended: Latch::new(),
        dead: AtomicBool::new(false),
    }
}

/// tiny_http's `recv` returns this error when `unblock` woke it.
fn is_unblock(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string() == "thread unblocked"
}
