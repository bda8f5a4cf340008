//! The requests tiny_http has read, handed to lameduck's threads.
//!
//! While the server serves, every idle worker blocks in tiny_http's own queue: a request
//! wakes exactly one of them, the cheapest hand-off there is. (Letting one worker at a time
//! receive, passing a token on after each request, costs a wake-up per request more: 0.70 to
//! 0.85× the throughput of this in the benchmark, 1.3× the CPU per request.) tiny_http's
//! queue has traps for more than one receiver: its `unblock` wakes *one* of them, whichever
//! takes the wake-up first, and its timed receive can take the wake-up of a push and leave
//! the request for nobody. So when a thread of lameduck's must take the queue over — the
//! shedder while every worker is busy, the drain (for good: [`Queue::pump_from_now_on`]),
//! the late responder — it [leads](Queue::lead): workers are turned away from tiny_http's
//! queue, each worker still inside is woken by an `unblock` of its own (lameduck counts the
//! threads inside), and the leader receives only once none is left inside, as the one
//! receiver. What it takes for the workers it puts in the waiting room ([`Queue::put`]),
//! which idle workers then watch.
//!
//! **Generations.** tiny_http's accept loop ends for good on its first error (out of file
//! descriptors, say); lameduck then starts another tiny_http server on the same socket
//! (`socket.rs`, `supervisor.rs`). Each is a [`Generation`]; workers receive from the current
//! one, and a dead one keeps a thread of its own that moves what its old connections still
//! send into the waiting room.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use tiny_http::Request;

use super::gauges::Gauges;
use super::peers::Peers;
use crate::error::Error;
use crate::shutdown::helper::{Helper, Stop};
use crate::shutdown::latch::Latch;

/// How long a thread moving a dead generation's requests into a full waiting room waits
/// before it looks whether it must stop. A bound, not measured: it only delays that
/// thread's stop, and only while the room is full after an accept loop died.
const RETIRED_POLL: Duration = Duration::from_millis(100);

/// While a thread of lameduck's leads, how often an idle worker looks whether it has let go
/// (a shedder lets go as soon as a worker frees up). Only while overloaded or shutting down.
/// Not measured: each idle worker wakes once a millisecond, and goes back to tiny_http's
/// queue up to that late once let go.
const LED_POLL: Duration = Duration::from_millis(1);

/// How long a leader waits for the workers inside tiny_http's queue to leave before it
/// wakes them again. One wake-up each is enough; this only bounds the wait if a worker was
/// slow to count itself. A bound; how long workers take to leave is not measured alone
/// (waking and joining 32 idle workers at shutdown: about 2.3 ms on 2 cores, README).
const LEAVE_WAIT: Duration = Duration::from_millis(1);

/// One tiny_http server accepting from the listening socket.
pub(crate) struct Generation {
    http: tiny_http::Server,
    number: usize,
    /// Opens when the end of its accept loop comes out of its queue.
    ended: Latch,
    /// Its accept loop is known dead (reported once).
    dead: AtomicBool,
    /// Workers inside its `recv`, or about to enter: counted before they look whether they
    /// may, so that a leader that turned them away after that sees them and wakes them.
    inside: AtomicUsize,
    /// `unblock`s lameduck put in its queue that no receiver is known to have taken (counted
    /// after each is put in, so never fewer than are there, barring one being put in now).
    /// tiny_http's queue is first in, first out, and an `unblock` a worker did not take
    /// stays there, ahead of the requests read after it; tiny_http's `try_recv` and
    /// `recv_timeout` return "nothing" for it, as for an empty queue. A leader skips these
    /// ([`Lead::try_receive`]): seen, a drain that took one per look (a look is a census of
    /// the connections, milliseconds) had requests wait 1.3 s behind a thousand of them.
    unblocks: AtomicUsize,
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

    /// Puts an `unblock` in its queue, which wakes one receiver, and counts it.
    fn unblock(&self) {
        self.http.unblock();
        self.unblocks.fetch_add(1, Ordering::SeqCst);
    }

    /// An `unblock` was taken from its queue, or may have been: `false` if none was
    /// counted.
    fn took_unblock(&self) -> bool {
        self.unblocks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The requests tiny_http has read.
pub(crate) struct Queue {
    gens: Mutex<Vec<Arc<Generation>>>,
    current: AtomicUsize,
    /// What the rescue and the drain know of each client: noted as its requests come out.
    peers: Arc<Peers>,
    /// A thread of lameduck's leads: workers keep out of tiny_http's queue.
    led: AtomicBool,
    /// One leader at a time.
    leader: Mutex<()>,
    /// Leaders waiting for the workers inside tiny_http's queue to leave; the last to leave
    /// tells them.
    waiting: AtomicUsize,
    quiet: Mutex<()>,
    left: Condvar,
    /// [`LEAVE_WAIT`] (longer in a test that must not reach it).
    leave_wait: Duration,
    /// Requests taken from tiny_http by a thread of lameduck's, for the workers.
    room: Room,
    /// Opens when workers must no longer receive from tiny_http themselves: the drain takes
    /// over for good.
    pumped: Latch,
    /// Once open, an accept loop's end is lameduck's own doing, not a failure.
    stopping: Latch,
    /// Numbers of generations whose accept loop died while serving, for the supervisor.
    died_tx: Sender<usize>,
    died_rx: Receiver<usize>,
    /// The threads moving dead generations' requests into the room.
    retired: Mutex<Vec<Helper>>,
}

/// A worker's side of the queue. It keeps the current generation between requests, so that
/// taking one costs no lock: the generations' list is locked only when a new one was
/// installed (an accept loop died).
pub(crate) struct Taker<'a> {
    queue: &'a Queue,
    gen: Arc<Generation>,
}

/// What [`Taker::take`] got.
pub(crate) enum Taken {
    /// A request to serve.
    Request(Request),
    /// The stop is open and the room empty: the worker ends.
    Stop,
    /// No request came within the idle bound.
    Idle,
    /// An `unblock` woke the worker (or the accept loop's end came out): it looks at what
    /// it must do, and takes again.
    Woken,
}

impl Taker<'_> {
    /// Whether no worker waits inside tiny_http's queue for the next request (as last seen
    /// by this worker: a generation installed since is not looked at).
    pub(crate) fn none_waiting(&self) -> bool {
        self.gen.inside.load(Ordering::SeqCst) == 0
    }

    /// The next request for a worker: one from the waiting room, or, unless a thread of
    /// lameduck's leads, one from tiny_http. [`Taken::Stop`] once `stop` is open and the
    /// room is empty; [`Taken::Idle`] if `idle_bound` is given and that long passed in
    /// tiny_http's queue with no request (the room and the stop looked at first);
    /// [`Taken::Woken`] if an `unblock` woke it there.
    pub(crate) fn take(&mut self, stop: &Latch, idle_bound: Option<Duration>) -> Taken {
        let queue = self.queue;
        let mut idle = false;
        loop {
            if let Some(request) = queue.room.try_take() {
                return Taken::Request(request);
            }
            if stop.is_open() {
                return Taken::Stop;
            }
            if idle {
                return Taken::Idle;
            }
            if queue.pumped.is_open() {
                select! {
                    recv(queue.room.rx) -> request => if let Some(r) = queue.room.took(request) {
                        return Taken::Request(r);
                    },
                    recv(stop.receiver()) -> _ => {}
                }
                continue;
            }
            if queue.led.load(Ordering::SeqCst) {
                select! {
                    recv(queue.room.rx) -> request => if let Some(r) = queue.room.took(request) {
                        return Taken::Request(r);
                    },
                    recv(stop.receiver()) -> _ => {}
                    default(LED_POLL) => {}
                }
                continue;
            }
            if !queue.is_current(&self.gen) {
                self.gen = queue.current();
            }
            let gen = &self.gen;
            gen.inside.fetch_add(1, Ordering::SeqCst);
            if !queue.workers_receive() || !queue.is_current(gen) {
                queue.leave(gen);
                continue;
            }
            let Some(bound) = idle_bound else {
                let received = gen.http.recv();
                queue.leave(gen);
                return match queue.received(gen, received) {
                    Some(request) => Taken::Request(request),
                    None => Taken::Woken,
                };
            };
            let asked = Instant::now();
            let received = gen.http.recv_timeout(bound);
            queue.leave(gen);
            match received {
                // tiny_http says "nothing" for an `unblock` too, but at once (and for a
                // wait within a millisecond of its end): one taken.
                Ok(None) if asked.elapsed() + Duration::from_millis(1) < bound => {
                    gen.took_unblock();
                    return Taken::Woken;
                }
                Ok(None) => idle = true,
                received => {
                    return match queue.received_timed(gen, received) {
                        Some(request) => Taken::Request(request),
                        None => Taken::Woken,
                    };
                }
            }
        }
    }
}

/// The waiting room: a bounded channel of requests for the workers, whose length the
/// gauges follow (a stats snapshot reads it there, without the channel).
struct Room {
    tx: Sender<Request>,
    rx: Receiver<Request>,
    gauges: Arc<Gauges>,
}

impl Room {
    /// Puts `request` in, waiting up to `timeout` for a place (`None`: not at all); gives it
    /// back if the room stayed full.
    #[allow(clippy::result_large_err)] // the request handed back, as crossbeam's `SendError`
    fn put(&self, request: Request, timeout: Option<Duration>) -> Result<(), Request> {
        self.gauges.entering();
        let sent = match timeout {
            Some(timeout) => self
                .tx
                .send_timeout(request, timeout)
                .map_err(|e| e.into_inner()),
            None => self.tx.try_send(request).map_err(|e| e.into_inner()),
        };
        if sent.is_err() {
            self.gauges.left();
        }
        sent
    }

    /// Takes a request out, if one waits.
    fn try_take(&self) -> Option<Request> {
        self.took(self.rx.try_recv())
    }

    /// Counts a request received from the room (by a `select!` on its receiver).
    fn took<E>(&self, received: Result<Request, E>) -> Option<Request> {
        let request = received.ok()?;
        self.gauges.left();
        Some(request)
    }
}

impl Queue {
    /// A queue over `http`, the first generation, with a waiting room of `room` places; the
    /// client of every request that comes out is noted in `peers`; the room's count is kept
    /// in `gauges`.
    pub(crate) fn new(
        http: tiny_http::Server,
        room: usize,
        peers: Arc<Peers>,
        gauges: Arc<Gauges>,
    ) -> Queue {
        let (room_tx, room_rx) = crossbeam_channel::bounded(room);
        let (died_tx, died_rx) = crossbeam_channel::unbounded();
        Queue {
            gens: Mutex::new(vec![Arc::new(generation(http, 1))]),
            current: AtomicUsize::new(0),
            peers,
            led: AtomicBool::new(false),
            leader: Mutex::new(()),
            waiting: AtomicUsize::new(0),
            quiet: Mutex::new(()),
            left: Condvar::new(),
            leave_wait: LEAVE_WAIT,
            room: Room {
                tx: room_tx,
                rx: room_rx,
                gauges,
            },
            pumped: Latch::new(),
            stopping: Latch::new(),
            died_tx,
            died_rx,
            retired: Mutex::new(Vec::new()),
        }
    }

    /// A worker's way to take requests ([`Taker::take`]).
    pub(crate) fn taker(&self) -> Taker<'_> {
        Taker {
            queue: self,
            gen: self.current(),
        }
    }

    /// Becomes the one receiver, for a thread that takes requests for the workers: turns
    /// the workers away and waits until none is left inside tiny_http's queue. The workers
    /// receive again when the [`Lead`] is dropped, unless the drain pumps.
    pub(crate) fn lead(&self) -> Lead<'_> {
        let one = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        self.led.store(true, Ordering::SeqCst);
        self.turn_out(&self.current());
        Lead {
            queue: self,
            _one: one,
        }
    }

    /// Whether a [`Lead`] is held: one thread receives for the workers.
    pub(crate) fn is_led(&self) -> bool {
        self.led.load(Ordering::SeqCst)
    }

    /// How many workers wait inside the current generation's queue. When that is every
    /// worker and none is in a request, the queue is empty (each would have taken one).
    pub(crate) fn waiting_workers(&self) -> usize {
        self.current().inside.load(Ordering::SeqCst)
    }

    /// Wakes every worker waiting inside the current generation's queue, once each (they
    /// then look at what they must do), without waiting for them.
    pub(crate) fn wake_workers(&self) {
        let gen = self.current();
        for _ in 0..gen.inside.load(Ordering::SeqCst) {
            gen.unblock();
        }
    }

    /// From now on only the waiting room feeds the workers, for good: the drain leads and
    /// puts what it receives there.
    pub(crate) fn pump_from_now_on(&self) {
        self.pumped.open();
    }

    /// Puts `request` in the waiting room for the workers, waiting up to `timeout` for a
    /// place. Gives it back if the room stayed full.
    #[allow(clippy::result_large_err)] // the request handed back, as crossbeam's `SendError`
    pub(crate) fn put(&self, request: Request, timeout: Duration) -> Result<(), Request> {
        self.room.put(request, Some(timeout))
    }

    /// Puts `request` in the waiting room if there is a place now; gives it back if not.
    #[allow(clippy::result_large_err)] // the request handed back, as crossbeam's `SendError`
    pub(crate) fn try_put(&self, request: Request) -> Result<(), Request> {
        self.room.put(request, None)
    }

    /// Takes a request from the waiting room, if one waits.
    pub(crate) fn try_take_waiting(&self) -> Option<Request> {
        self.room.try_take()
    }

    /// Whether no request waits in the room.
    pub(crate) fn room_is_empty(&self) -> bool {
        self.room.rx.is_empty()
    }

    /// Wakes the leader if it is receiving, to look again at what it must do. For a leader
    /// only: a worker inside tiny_http's queue could take the wake-up instead. One wake-up
    /// too many is harmless: the leader finds it and looks again.
    pub(crate) fn interrupt(&self) {
        self.current().unblock();
    }

    /// From now on an accept loop that ends was ended by lameduck (no restart).
    pub(crate) fn stopping(&self) {
        self.stopping.open();
    }

    /// Whether `gen` is the current generation: one atomic load.
    fn is_current(&self, gen: &Generation) -> bool {
        self.current.load(Ordering::SeqCst) + 1 == gen.number
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

    /// Makes `http` the current generation. The workers inside the dead one's queue are woken
    /// (they move to the new one), and a thread of its own, `lameduck-retired-N`, moves the
    /// requests its remaining connections send into the waiting room.
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
        // The thread that takes the dead generation over receives only once no worker is
        // left inside its queue.
        self.turn_out(&old);
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
            gen.unblock();
        }
        for helper in retired {
            helper.stop(Duration::from_secs(1));
        }
    }

    /// Every generation, the dead ones too.
    pub(crate) fn generations(&self) -> Vec<Arc<Generation>> {
        self.gens.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn workers_receive(&self) -> bool {
        !self.led.load(Ordering::SeqCst) && !self.pumped.is_open()
    }

    /// A worker leaves `gen`'s queue; the last one tells a leader waiting for that.
    fn leave(&self, gen: &Generation) {
        // Both SeqCst: either this sees the leader waiting, or the leader sees this leave.
        let last = gen.inside.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && self.waiting.load(Ordering::SeqCst) > 0 {
            let _quiet = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
            self.left.notify_all();
        }
    }

    /// Wakes every worker inside `gen`'s queue (workers are turned away already) and waits
    /// until none is left inside: one `unblock` for each worker counted inside, which wakes
    /// one, or, if a request came first, is left for the leader, who finds it harmless.
    ///
    /// `unblock`s already on their way count: after an idle drain woke every worker to
    /// end ([`Queue::wake_workers`]), the late responder, leading next, found them all
    /// still inside (on two cores they had not run yet) and put in as many again, each
    /// one more message and wake-up for tiny_http's queue, and one more for the leader to
    /// skip later.
    fn turn_out(&self, gen: &Generation) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut quiet = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let inside = gen.inside.load(Ordering::SeqCst);
            if inside == 0 {
                break;
            }
            let coming = gen.unblocks.load(Ordering::SeqCst);
            for _ in coming..inside {
                gen.unblock();
            }
            let (guard, waited) = self
                .left
                .wait_timeout(quiet, self.leave_wait)
                .unwrap_or_else(|p| p.into_inner());
            quiet = guard;
            if waited.timed_out() {
                // Slow to leave. A worker whose wake-up a request took (it received the
                // request, another the wake-up's `unblock`) leaves that one blocked with an
                // `unblock` waiting for it: one more wakes one such. Workers merely slow to
                // run (a busy machine) need none: more would pile up ahead of the requests.
                gen.unblock();
            }
        }
        drop(quiet);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// What a receive from `gen` gave: a request (its client noted), or nothing (woken by
    /// `unblock`, or the end of the accept loop, which is noted).
    fn received(&self, gen: &Generation, received: io::Result<Request>) -> Option<Request> {
        match received {
            Ok(request) => {
                self.peers.note(request.remote_addr());
                Some(request)
            }
            Err(e) if is_unblock(&e) => {
                gen.took_unblock();
                None
            }
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
            Ok(request) => {
                if let Some(request) = &request {
                    self.peers.note(request.remote_addr());
                }
                request
            }
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
    fn move_into_room(&self, gen: &Generation, stop: &Stop) {
        while !stop.is_open() {
            let received = gen.http.recv();
            let Some(mut request) = self.received(gen, received) else {
                continue;
            };
            loop {
                match self.room.put(request, Some(RETIRED_POLL)) {
                    Ok(()) => {
                        // A worker blocked in the current generation's queue does not watch
                        // the room: wake one to look.
                        self.interrupt();
                        break;
                    }
                    Err(back) if stop.is_open() => {
                        drop(back); // tiny_http answers a dropped request 500
                        return;
                    }
                    Err(back) => request = back,
                }
            }
        }
    }
}

/// The right to receive from tiny_http, held by one thread; the workers may receive again
/// when it is dropped (unless the drain pumps).
pub(crate) struct Lead<'a> {
    queue: &'a Queue,
    _one: MutexGuard<'a, ()>,
}

impl Lead<'_> {
    /// Blocks for the next request; `None` if woken ([`Queue::interrupt`]) or if the accept
    /// loop's end came out instead.
    pub(crate) fn receive(&self) -> Option<Request> {
        let gen = self.queue.current();
        let received = gen.http.recv();
        self.queue.received(&gen, received)
    }

    /// Waits up to `timeout` for the next request; `None` at once if `unblock`s were queued
    /// (a wake-up: all of them are taken). With one receiver only, tiny_http's timed
    /// receive cannot lose a request: one it missed is there the next time.
    pub(crate) fn receive_timeout(&self, timeout: Duration) -> Option<Request> {
        let gen = self.queue.current();
        // The `unblock`s queued now wake it as one: all are taken, and it looks again.
        let (request, woken) = self.take_queued(&gen);
        if request.is_some() || woken {
            return request;
        }
        let received = gen.http.recv_timeout(timeout);
        self.queue.received_timed(&gen, received)
    }

    /// The next request if one is queued now, past any `unblock` no one took
    /// ([`Generation::unblocks`]).
    pub(crate) fn try_receive(&self) -> Option<Request> {
        self.take_queued(&self.queue.current()).0
    }

    /// The first request queued now, past the counted `unblock`s ahead of it; and whether it
    /// took one.
    fn take_queued(&self, gen: &Generation) -> (Option<Request>, bool) {
        let mut woken = false;
        loop {
            match gen.http.try_recv() {
                // An `unblock`, or an empty queue while one is counted that was taken
                // unseen: either way one fewer; the count bounds the loop.
                Ok(None) if gen.took_unblock() => woken = true,
                received => return (self.queue.received_timed(gen, received), woken),
            }
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.queue.led.store(false, Ordering::SeqCst);
    }
}

fn generation(http: tiny_http::Server, number: usize) -> Generation {
    Generation {
        http,
        number,
        ended: Latch::new(),
        dead: AtomicBool::new(false),
        inside: AtomicUsize::new(0),
        unblocks: AtomicUsize::new(0),
    }
}

/// tiny_http's `recv` returns this error when `unblock` woke it.
fn is_unblock(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string() == "thread unblocked"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Instant;

    /// A thousand `unblock`s no worker took, then a request: a leader's receive, then its
    /// timed one, get the request, not the first two of the `unblock`s. (Before, each receive took one
    /// `unblock` and said "nothing": a drain looking between receives had requests wait
    /// behind them for over a second.)
    #[test]
    fn a_leader_gets_past_unblocks_no_worker_took() {
        let http = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = http.server_addr().to_ip().unwrap();
        let queue = Queue::new(http, 4, Arc::new(Peers::new()), Arc::new(Gauges::new()));
        for _ in 0..1000 {
            queue.interrupt();
        }
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /after HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let lead = queue.lead();
        let request = lead
            .try_receive()
            .or_else(|| lead.receive_timeout(Duration::from_secs(5)));
        assert_eq!(
            request.map(|r| r.url().to_owned()).as_deref(),
            Some("/after")
        );
        assert_eq!(queue.current().unblocks.load(Ordering::SeqCst), 0);
    }

    /// Workers already woken to end (an idle drain's [`Queue::wake_workers`]) need no
    /// second `unblock` from a leader that comes next (the late responder): every one put
    /// in is taken. (Before, the leader put in one more for each worker still inside.)
    #[test]
    fn a_leader_adds_no_unblock_for_workers_already_woken() {
        const WORKERS: usize = 3;
        let http = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let mut queue = Queue::new(http, 4, Arc::new(Peers::new()), Arc::new(Gauges::new()));
        // Workers slow to run (a busy machine) get one more `unblock` per wait that times
        // out: none here, so that what is counted is the leader's first look.
        queue.leave_wait = Duration::from_secs(60);
        let queue = Arc::new(queue);
        let gen = queue.current();
        // Workers inside tiny_http's queue, woken to end, and not run yet.
        gen.inside.store(WORKERS, Ordering::SeqCst);
        queue.wake_workers();
        // They run once a leader waits for them to leave (past its wake-ups: it holds
        // `quiet` until it waits): each takes one `unblock` and leaves.
        let workers = {
            let (queue, gen) = (Arc::clone(&queue), Arc::clone(&gen));
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(5);
                while queue.waiting.load(Ordering::SeqCst) == 0 {
                    assert!(Instant::now() < until, "no leader came");
                    std::thread::yield_now();
                }
                drop(queue.quiet.lock().unwrap());
                for _ in 0..WORKERS {
                    let got = gen.http.recv_timeout(Duration::from_secs(5)).unwrap();
                    assert!(got.is_none(), "a request, not an unblock");
                    assert!(gen.took_unblock(), "an unblock nobody counted");
                    queue.leave(&gen);
                }
            })
        };
        let lead = queue.lead();
        workers.join().unwrap();
        drop(lead);
        assert_eq!(
            gen.unblocks.load(Ordering::SeqCst),
            0,
            "unblocks put in beyond the workers' wake-ups"
        );
    }
}
