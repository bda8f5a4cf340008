//! The turnstile in front of tiny_http's queue: at most a few workers wait inside it at
//! once (as many as the machine has cores, two at least); the other idle workers wait in
//! line, the last to come the first let in.
//!
//! tiny_http's queue wakes its receivers first come, first served, so with every idle
//! worker inside it each request goes to the worker that has waited longest: on a machine
//! with fewer cores than workers, every worker in turn, each switched in cold, and a request
//! waits for whichever the queue picked to get a core. With a few inside, the same few
//! workers take request after request, mostly without sleeping in between. Measured with
//! plain tiny_http and 32, 4 and 2 workers (`wrk -t1 --latency`, 2 cores, 8 rounds each):
//! 4 or 2 receivers served 1.12–1.25× the requests of 32 at 16, 64 and 256 connections.
//!
//! No worker waits in line while a request could use it: a receiver that leaves none
//! inside lets in as many more from the line, before it serves, so a burst of slow
//! requests draws the idle workers in as it comes (a few per hand-off, each let in by one
//! that took a request). A worker that leaves without a request comes back at once or
//! ends. Whatever must reach every idle worker (a leader turning them out of tiny_http's
//! queue, the drain, an idle stop) opens the turnstile first: the workers in line are sent
//! back to look at what they must do, and every worker passes until it is closed again
//! ([`Turnstile::close`]), or for good ([`Turnstile::open_for_good`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

/// The turnstile: a count of the workers let in, and the line of those waiting.
pub(crate) struct Turnstile {
    /// The most let in at once while it is closed.
    most: usize,
    state: Mutex<State>,
}

struct State {
    /// Workers let in and not yet left: inside tiny_http's queue, or on their way in.
    inside: usize,
    /// Every worker passes (a leader holds the queue, or the server stops).
    open: bool,
    /// Open for good: [`Turnstile::close`] does nothing any more.
    for_good: bool,
    /// Workers waiting, the last to come at the end.
    line: Vec<Arc<Place>>,
}

/// A worker's place in the line: its thread, to wake it, and how it left the line.
pub(crate) struct Place {
    thread: Thread,
    /// [`WAITING`], [`LET_IN`] or [`RELEASED`].
    left: AtomicU8,
}

const WAITING: u8 = 0;
const LET_IN: u8 = 1;
const RELEASED: u8 = 2;

impl Place {
    /// Ends its wait in line, `how`.
    fn wake(&self, how: u8) {
        self.left.store(how, Ordering::SeqCst);
        self.thread.unpark();
    }

    /// The place of the thread that calls this, for all its waits.
    pub(crate) fn for_this_thread() -> Arc<Place> {
        Arc::new(Place {
            thread: thread::current(),
            left: AtomicU8::new(WAITING),
        })
    }
}

/// How a worker came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passed {
    /// At once: nothing changed since it looked at what it must do.
    AtOnce,
    /// After waiting in line, let in by one that left none inside: it must look again
    /// first.
    AfterWaiting,
    /// Sent away from the line when the turnstile opened: not counted inside (no
    /// [`Turnstile::leave`]); it must look again at what it must do.
    Released,
}

impl Turnstile {
    /// A turnstile for `workers` workers on a machine of `cores` cores.
    pub(crate) fn new(workers: usize, cores: usize) -> Turnstile {
        Turnstile {
            most: cores.max(2).min(workers.max(1)),
            state: Mutex::new(State {
                inside: 0,
                open: false,
                for_good: false,
                line: Vec::new(),
            }),
        }
    }

    /// Comes through for `place`'s thread, the caller: at once if fewer than the most are
    /// inside or it is open, else after waiting in line until let in, or released when the
    /// turnstile opens. Unless released, it is counted inside until [`Turnstile::leave`].
    pub(crate) fn enter(&self, place: &Arc<Place>) -> Passed {
        {
            let mut state = self.lock();
            if state.open || state.inside < self.most {
                state.inside += 1;
                return Passed::AtOnce;
            }
            place.left.store(WAITING, Ordering::SeqCst);
            state.line.push(Arc::clone(place));
        }
        // A wake-up meant for another wait of this thread's (a stray `unpark`) only makes it
        // look again.
        loop {
            match place.left.load(Ordering::SeqCst) {
                WAITING => thread::park(),
                LET_IN => return Passed::AfterWaiting,
                _ => return Passed::Released,
            }
        }
    }

    /// A worker let in leaves. If none is left inside, as many as the most are let in from
    /// the line, so that the next request finds a receiver.
    pub(crate) fn leave(&self) {
        let mut state = self.lock();
        state.inside -= 1;
        if state.inside == 0 {
            for _ in 0..self.most {
                let Some(place) = state.line.pop() else {
                    break;
                };
                state.inside += 1;
                place.wake(LET_IN);
            }
        }
    }

    /// Lets every worker pass until [`Turnstile::close`]; those in line are released.
    pub(crate) fn open(&self) {
        let mut state = self.lock();
        state.open = true;
        for place in state.line.drain(..) {
            place.wake(RELEASED);
        }
    }

    /// Lets every worker pass from now on; those in line are released.
    pub(crate) fn open_for_good(&self) {
        self.lock().for_good = true;
        self.open();
    }

    /// At most the most pass again, unless it is open for good.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if !state.for_good {
            state.open = false;
        }
    }

    /// Idle workers: those inside (or on their way in) and those in line.
    pub(crate) fn idle(&self) -> usize {
        let state = self.lock();
        state.inside + state.line.len()
    }

    /// The most let in at once while closed.
    #[cfg(test)]
    pub(crate) fn most(&self) -> usize {
        self.most
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A worker of the tests: enters, says so, waits for a word to leave.
    fn worker(
        turnstile: &Arc<Turnstile>,
        entered: mpsc::Sender<(usize, Passed)>,
        id: usize,
    ) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
        let (leave_tx, leave_rx) = mpsc::channel::<()>();
        let turnstile = Arc::clone(turnstile);
        let handle = thread::spawn(move || {
            let place = Place::for_this_thread();
            let passed = turnstile.enter(&place);
            entered.send((id, passed)).unwrap();
            leave_rx.recv().unwrap();
            if passed != Passed::Released {
                turnstile.leave();
            }
        });
        (leave_tx, handle)
    }

    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn the_most_is_the_cores_two_at_least_and_never_more_than_the_workers() {
        assert_eq!(Turnstile::new(32, 1).most(), 2);
        assert_eq!(Turnstile::new(32, 8).most(), 8);
        assert_eq!(Turnstile::new(3, 8).most(), 3);
        assert_eq!(Turnstile::new(1, 2).most(), 1);
        assert_eq!(Turnstile::new(0, 2).most(), 1);
    }

    #[test]
    fn beyond_the_most_workers_wait_until_none_is_left_inside() {
        let turnstile = Arc::new(Turnstile::new(8, 2));
        let (tx, rx) = mpsc::channel();
        let a = worker(&turnstile, tx.clone(), 0);
        let b = worker(&turnstile, tx.clone(), 1);
        let mut at_once = [
            rx.recv_timeout(BOUND).unwrap(),
            rx.recv_timeout(BOUND).unwrap(),
        ];
        at_once.sort_unstable_by_key(|e| e.0);
        assert_eq!(at_once, [(0, Passed::AtOnce), (1, Passed::AtOnce)]);
        // Two more, one after the other: both wait.
        let c = worker(&turnstile, tx.clone(), 2);
        while turnstile.idle() < 3 {
            thread::yield_now();
        }
        let d = worker(&turnstile, tx.clone(), 3);
        while turnstile.idle() < 4 {
            thread::yield_now();
        }
        assert!(rx.try_recv().is_err(), "nobody passes while two are inside");
        // One leaves: one is still inside, nobody is let in.
        a.0.send(()).unwrap();
        a.1.join().unwrap();
        assert_eq!(turnstile.idle(), 3);
        assert!(rx.try_recv().is_err());
        // The last leaves: the line is let in, two at most, the last come first.
        b.0.send(()).unwrap();
        b.1.join().unwrap();
        let first = rx.recv_timeout(BOUND).unwrap();
        let second = rx.recv_timeout(BOUND).unwrap();
        let mut both = [first, second];
        both.sort_unstable_by_key(|e| e.0);
        assert_eq!(both, [(2, Passed::AfterWaiting), (3, Passed::AfterWaiting)]);
        for (leave, handle) in [c, d] {
            leave.send(()).unwrap();
            handle.join().unwrap();
        }
        assert_eq!(turnstile.idle(), 0);
    }

    #[test]
    fn the_last_in_line_is_let_in_first() {
        let turnstile = Arc::new(Turnstile::new(8, 1));
        // Hold the two places with this thread's own entries.
        let mine = Place::for_this_thread();
        assert_eq!(turnstile.enter(&mine), Passed::AtOnce);
        assert_eq!(turnstile.enter(&mine), Passed::AtOnce);
        let (tx, rx) = mpsc::channel();
        let mut waiting = Vec::new();
        for id in 0..3 {
            waiting.push(worker(&turnstile, tx.clone(), id));
            while turnstile.idle() < 3 + id {
                thread::yield_now();
            }
        }
        turnstile.leave();
        turnstile.leave();
        let mut order = vec![rx.recv_timeout(BOUND).unwrap().0];
        order.push(rx.recv_timeout(BOUND).unwrap().0);
        order.sort_unstable();
        assert_eq!(order, [1, 2], "the two who came last");
        assert!(rx.try_recv().is_err(), "the first to come still waits");
        // The two let in leave: the first to come is let in, and leaves.
        for (leave, handle) in waiting.into_iter().rev() {
            leave.send(()).unwrap();
            handle.join().unwrap();
        }
    }

    #[test]
    fn open_lets_the_line_in_and_everyone_pass_until_closed() {
        let turnstile = Arc::new(Turnstile::new(8, 2));
        let mine = Place::for_this_thread();
        turnstile.enter(&mine);
        turnstile.enter(&mine);
        let (tx, rx) = mpsc::channel();
        let waiting = worker(&turnstile, tx.clone(), 0);
        while turnstile.idle() < 3 {
            thread::yield_now();
        }
        turnstile.open();
        assert_eq!(rx.recv_timeout(BOUND).unwrap(), (0, Passed::Released));
        assert_eq!(turnstile.idle(), 2, "released, not counted inside");
        assert_eq!(
            turnstile.enter(&mine),
            Passed::AtOnce,
            "open: a third passes"
        );
        turnstile.close();
        let late = worker(&turnstile, tx.clone(), 1);
        while turnstile.idle() < 4 {
            thread::yield_now();
        }
        assert!(rx.try_recv().is_err(), "closed again: the next waits");
        turnstile.open_for_good();
        assert_eq!(rx.recv_timeout(BOUND).unwrap(), (1, Passed::Released));
        turnstile.close();
        assert_eq!(turnstile.enter(&mine), Passed::AtOnce, "open for good");
        for (leave, handle) in [waiting, late] {
            leave.send(()).unwrap();
            handle.join().unwrap();
        }
    }
}
