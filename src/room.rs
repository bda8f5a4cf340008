//! The waiting room: a bound on the requests waiting for a worker, and `503` at once beyond
//! it.
//!
//! tiny_http queues every request it reads, without limit and without telling how many wait.
//! So while every worker is busy, a shedder thread (`lameduck-queue-1`) takes requests from
//! tiny_http's queue itself and puts them in the room, a channel of
//! [`Builder::max_waiting`](crate::Builder::max_waiting) places; when the room is full it
//! answers the request `503 Service Unavailable` with `Retry-After` and `Connection: close`
//! at once. Workers take from the room before they go back to tiny_http's queue, so requests
//! keep their order.
//!
//! The shedder steps in only on overload: every worker busy, and none freed for
//! [`SATURATED`] (50 ms). A loaded server with fast handlers has every worker busy much of
//! the time, but one frees up every few microseconds; relaying its requests would only add a
//! hop. Otherwise the shedder sleeps, and a request costs the workers one counter and one
//! look at an empty channel.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;

use crate::state::{Phase, State};
use crate::worker::is_unblock;
use crate::{Error, Listener, Pool, Trigger};

/// How long every worker must stay busy, none freed, before the shedder takes requests into
/// the room.
const SATURATED: Duration = Duration::from_millis(50);

/// The running shedder.
pub(crate) struct Shedder {
    pool: Pool,
    stop: Trigger,
}

impl Shedder {
    /// Starts the shedder thread.
    pub(crate) fn start(state: Arc<State>) -> Result<Shedder, Error> {
        let (stop, stopped) = crate::trigger();
        let mut pool = Pool::with_prefix("lameduck-queue");
        pool.spawn(move || shed(&state, &stopped))?;
        Ok(Shedder { pool, stop })
    }

    /// Tells the shedder to stop, without waiting (if it is receiving, the change of phase
    /// wakes it).
    pub(crate) fn begin_stop(&self) {
        self.stop.fire(crate::Reason::Requested);
    }

    /// Stops the shedder and waits (boundedly) for it.
    pub(crate) fn stop(mut self) {
        self.begin_stop();
        let _ = self.pool.join_timeout(Duration::from_secs(1));
    }
}

fn shed(state: &State, stopped: &Listener) {
    loop {
        select! {
            recv(state.all_busy_rx) -> _ => {}
            recv(stopped.receiver()) -> _ => return,
        }
        // Every worker busy for a moment is the normal state of a loaded server (with fast
        // handlers one frees up within microseconds); relaying then would only add a hop.
        // Overload is every worker busy, with none freed, for a while.
        let reliefs = state.reliefs();
        if stopped.sleep(SATURATED).is_err() {
            return;
        }
        if !state.all_busy() || state.reliefs() != reliefs {
            continue;
        }
        log::debug!("every worker busy for {SATURATED:?}: bounding the waiting requests");
        let mut gen = state.current_gen();
        while state.all_busy() && !stopped.is_triggered() {
            if state.current_number() != gen.number {
                gen = state.current_gen();
            }
            // Counted as a receiver, so that a change of phase wakes it too. A blocking
            // receive, like the workers': tiny_http's `recv_timeout` can take the wake-up of
            // a push and time out without the element, leaving a worker asleep beside a
            // request. After one request it looks again whether every worker is still busy.
            gen.enter();
            if state.phase() != Phase::Serving {
                gen.leave();
                break;
            }
            let received = gen.http.recv();
            gen.leave();
            match received {
                Ok(request) => state.wait_or_shed(request, &gen),
                Err(e) if is_unblock(&e) => {}
                Err(e) => state.accept_ended(&gen, e),
            }
        }
    }
}
