//! A background thread of lameduck's own (the supervisor, the shedder, the late responder):
//! one way to start it, tell it to stop, and join it within a bound.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::latch::Latch;
use super::pool::Pool;
use super::trigger::Listener;
use crate::error::Error;

/// What tells a helper's work to end: its own latch, which [`Helper::stop`] opens, and, for
/// a helper started with [`Helper::start_until`], the fire of the server's trigger too.
pub(crate) struct Stop {
    asked: Latch,
    fire: Option<Listener>,
    never: Receiver<Infallible>,
    /// [`WORKING`], [`IDLE`] or [`RETIRED`]: see [`Stop::idle_while`].
    state: Arc<AtomicU8>,
}

/// The helper works: a stop waits for its work to return. Where every helper starts.
const WORKING: u8 = 0;
/// The helper waits for something to do ([`Stop::idle_while`]): a stop need not wait.
const IDLE: u8 = 1;
/// A stop found the helper idle and did not wait for it: it does nothing more.
const RETIRED: u8 = 2;

impl Stop {
    /// Whether the work should end now.
    pub(crate) fn is_open(&self) -> bool {
        self.asked.is_open() || self.fire.as_ref().is_some_and(Listener::is_triggered)
    }

    /// The receivers that disconnect when it should end, both for one `select!`.
    pub(crate) fn receivers(&self) -> (&Receiver<Infallible>, &Receiver<Infallible>) {
        let fire = self.fire.as_ref().map_or(&self.never, Listener::receiver);
        (self.asked.receiver(), fire)
    }

    /// Runs `wait`, where the helper waits for something to do, and returns what it
    /// returned; `None` if a stop retired the helper meanwhile: its work must then return
    /// at once, touching nothing it looks after.
    ///
    /// A stop that finds the helper waiting so ([`Helper::stop_working`]) retires it and
    /// goes on at once, instead of waiting for its thread to be woken and to return: on a
    /// busy machine that thread may wait milliseconds for a core, and in an idle exit its
    /// wake-up was on the stop's path. Anywhere else, the stop waits for the work to
    /// return.
    pub(crate) fn idle_while<T>(&self, wait: impl FnOnce() -> T) -> Option<T> {
        self.state.store(IDLE, Ordering::SeqCst);
        let woken = {
            // Working again should `wait` unwind: a stop then waits for the work to return.
            let _working = Working(&self.state);
            wait()
        };
        // Working again, or retired for good: a stop retires only an idle helper.
        (self.state.load(Ordering::SeqCst) == WORKING).then_some(woken)
    }

    /// Blocks until it should end, or `timeout` has passed; returns whether it should.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let (asked, fire) = self.receivers();
        while !self.is_open() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return false;
            }
            let left = left.unwrap_or(Duration::MAX);
            select! {
                recv(asked) -> _ => {}
                recv(fire) -> _ => {}
                default(left) => {}
            }
        }
        true
    }
}

/// A named thread that runs until its stop latch opens (or its work ends).
pub(crate) struct Helper {
    pool: Pool,
    stop: Latch,
    /// Opens as its work returns.
    done: Latch,
    /// Shared with its [`Stop`]: see [`Stop::work`].
    state: Arc<AtomicU8>,
}

impl Helper {
    /// Starts `work` on a thread named `<name>-1`; `work` gets what asks it to stop, and must
    /// return soon after it opens.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(
        name: &str,
        work: impl FnOnce(&Stop) + Send + 'static,
    ) -> Result<Helper, Error> {
        Helper::start_until(name, None, work)
    }

    /// As [`Helper::start`], and `work` is also told to stop when `fire` fires: a helper
    /// that has nothing to do once a server stops serving then ends as the server's thread
    /// wakes, not after it asks (a stop's first step waits for it).
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start_until(
        name: &str,
        fire: Option<Listener>,
        work: impl FnOnce(&Stop) + Send + 'static,
    ) -> Result<Helper, Error> {
        let stop = Latch::new();
        let done = Latch::new();
        let state = Arc::new(AtomicU8::new(WORKING));
        let mut pool = Pool::with_prefix(name);
        let told = Stop {
            asked: stop.clone(),
            fire,
            never: crossbeam_channel::never(),
            state: Arc::clone(&state),
        };
        let returned = OpensWhenDropped(done.clone());
        pool.spawn(move || {
            let _returned = returned;
            work(&told);
        })?;
        Ok(Helper {
            pool,
            stop,
            done,
            state,
        })
    }

    /// Asks it to stop, without waiting.
    pub(crate) fn ask_to_stop(&self) {
        self.stop.open();
    }

    /// Asks it to stop and waits up to `bound` for it to end. Returns `false`, having left
    /// it running, if it did not end in time.
    pub(crate) fn stop(mut self, bound: Duration) -> bool {
        self.ask_to_stop();
        self.pool.join_timeout(bound).is_complete()
    }

    /// Asks it to stop and waits up to `bound` for its work to return (or unwind), not for
    /// its thread to end: [`Helper::join`] waits for that, later. A thread's end is tens of
    /// microseconds more, on the path of a stop that waits for it. Returns `false` if the
    /// work had not returned in time.
    ///
    /// A helper found waiting for something to do ([`Stop::idle_while`]) is not waited for:
    /// it is retired, and its thread ends on its own. (Both sides change the state by one
    /// atomic operation, SeqCst: once this has retired it, the helper does nothing more.)
    pub(crate) fn stop_working(&self, bound: Duration) -> bool {
        self.ask_to_stop();
        let retired = self
            .state
            .compare_exchange(IDLE, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        retired || self.done.wait_timeout(bound)
    }

    /// Asks it to stop and waits up to `bound` for its thread to end; as [`Helper::stop`].
    pub(crate) fn join(self, bound: Duration) -> bool {
        self.stop(bound)
    }
}

/// Sets its helper working again when dropped, unless a stop retired it meanwhile.
struct Working<'a>(&'a AtomicU8);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(IDLE, WORKING, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Opens its latch when dropped: as a helper's work returns, or unwinds.
struct OpensWhenDropped(Latch);

impl Drop for OpensWhenDropped {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::trigger::{trigger, Reason};

    /// A helper's work that waits on its `Stop`, and says when it ended.
    fn waiting(ended: crossbeam_channel::Sender<()>) -> impl FnOnce(&Stop) + Send + 'static {
        move |stop: &Stop| {
            let (asked, fire) = stop.receivers();
            while !stop.is_open() {
                select! {
                    recv(asked) -> _ => {}
                    recv(fire) -> _ => {}
                }
            }
            let _ = ended.send(());
        }
    }

    #[test]
    fn a_helper_started_until_the_fire_ends_at_the_fire() {
        let (trigger, listener) = trigger();
        let (ended_tx, ended) = crossbeam_channel::bounded(1);
        let helper = Helper::start_until("test-until", Some(listener), waiting(ended_tx)).unwrap();
        assert!(ended.recv_timeout(Duration::from_millis(50)).is_err());
        trigger.fire(Reason::Requested);
        ended.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(helper.stop(Duration::from_secs(5)));
    }

    #[test]
    fn a_helper_without_a_fire_ends_when_asked_only() {
        let (trigger, _listener) = trigger();
        let (ended_tx, ended) = crossbeam_channel::bounded(1);
        let helper = Helper::start("test-asked", waiting(ended_tx)).unwrap();
        trigger.fire(Reason::Requested);
        assert!(ended.recv_timeout(Duration::from_millis(50)).is_err());
        assert!(helper.stop(Duration::from_secs(5)));
        ended.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    /// A helper that says when it waits, then blocks on `gate` (not on its stop) inside
    /// `idle_while` if `idle`, or outside it; it says what `idle_while` returned.
    fn gated(
        idle: bool,
        waiting: crossbeam_channel::Sender<()>,
        gate: crossbeam_channel::Receiver<()>,
        woke: crossbeam_channel::Sender<Option<()>>,
    ) -> impl FnOnce(&Stop) + Send + 'static {
        move |stop: &Stop| {
            let wait = || {
                let _ = waiting.send(());
                let _ = gate.recv();
            };
            let woken = if idle {
                stop.idle_while(wait)
            } else {
                wait();
                Some(())
            };
            let _ = woke.send(woken);
        }
    }

    #[test]
    fn a_stop_does_not_wait_for_an_idle_helper_and_retires_it() {
        let (waiting_tx, waiting) = crossbeam_channel::bounded(1);
        let (gate_tx, gate) = crossbeam_channel::bounded(1);
        let (woke_tx, woke) = crossbeam_channel::bounded(1);
        let helper = Helper::start("test-idle", gated(true, waiting_tx, gate, woke_tx)).unwrap();
        waiting.recv_timeout(Duration::from_secs(5)).unwrap();
        // Its thread stays blocked on the gate: the stop returns without it.
        assert!(helper.stop_working(Duration::from_secs(30)));
        gate_tx.send(()).unwrap();
        assert_eq!(
            woke.recv_timeout(Duration::from_secs(5)).unwrap(),
            None,
            "not retired"
        );
        assert!(helper.join(Duration::from_secs(5)));
    }

    #[test]
    fn a_stop_waits_for_a_working_helper() {
        let (waiting_tx, waiting) = crossbeam_channel::bounded(1);
        let (gate_tx, gate) = crossbeam_channel::bounded(1);
        let (woke_tx, woke) = crossbeam_channel::bounded(1);
        let helper =
            Helper::start("test-working", gated(false, waiting_tx, gate, woke_tx)).unwrap();
        waiting.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            !helper.stop_working(Duration::from_millis(20)),
            "did not wait"
        );
        gate_tx.send(()).unwrap();
        assert_eq!(woke.recv_timeout(Duration::from_secs(5)).unwrap(), Some(()));
        assert!(helper.stop_working(Duration::from_secs(5)));
        assert!(helper.join(Duration::from_secs(5)));
    }

    #[test]
    fn an_idle_helper_woken_before_a_stop_works_on() {
        let (waiting_tx, waiting) = crossbeam_channel::bounded(1);
        let (gate_tx, gate) = crossbeam_channel::bounded(1);
        let (woke_tx, woke) = crossbeam_channel::bounded(1);
        let helper = Helper::start("test-woken", gated(true, waiting_tx, gate, woke_tx)).unwrap();
        waiting.recv_timeout(Duration::from_secs(5)).unwrap();
        gate_tx.send(()).unwrap();
        assert_eq!(woke.recv_timeout(Duration::from_secs(5)).unwrap(), Some(()));
        assert!(helper.join(Duration::from_secs(5)));
    }

    #[test]
    fn wait_timeout_returns_at_the_fire_or_the_timeout() {
        let (trigger, listener) = trigger();
        let stop = Stop {
            asked: Latch::new(),
            fire: Some(listener),
            never: crossbeam_channel::never(),
            state: Arc::new(AtomicU8::new(WORKING)),
        };
        assert!(!stop.wait_timeout(Duration::from_millis(5)));
        trigger.fire(Reason::Requested);
        assert!(stop.wait_timeout(Duration::from_secs(5)));
        assert!(stop.is_open());
    }
}
