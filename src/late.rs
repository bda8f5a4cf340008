//! The late responder: after the drain, whatever still reaches tiny_http's queues is answered
//! `503` + `Retry-After` + `Connection: close`, so that no client hangs.
//!
//! Requests can still arrive after the workers have stopped: on keep-alive connections that
//! were idle when shutdown fired (tiny_http gives no way to close them), on connections
//! accepted in the instant before the accept loop ended, and, after a deadline, the requests
//! that were still queued. One thread per generation (`lameduck-late-N`, normally just one)
//! answers them for as long as the [`Server`](crate::Server) lives; dropping the `Server`
//! stops them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::state::State;
use crate::worker::is_unblock;
use crate::{Error, Pool};

/// How long dropping the `Server` waits for the late responders to end. It only waits longer
/// than an instant if one is writing a 503 to a client that does not read.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The running late responders.
pub(crate) struct Late {
    pool: Pool,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
}

impl Late {
    /// Starts answering, one thread per generation. The receiver gets one message per thread
    /// once the requests queued at the start have been answered (or, at worst, once its queue
    /// looked empty).
    pub(crate) fn start(state: Arc<State>) -> Result<(Late, Receiver<()>), Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (backlog_done, backlog) = crossbeam_channel::unbounded();
        let mut pool = Pool::with_prefix("lameduck-late");
        for gen in state.gens() {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            let backlog_done = backlog_done.clone();
            pool.spawn(move || {
                while let Ok(request) = state.room_rx.try_recv() {
                    state.reject(request);
                }
                while let Ok(Some(request)) = gen.http.try_recv() {
                    state.reject(request);
                }
                let _ = backlog_done.send(());
                while !stop.load(Ordering::Acquire) {
                    match gen.http.recv() {
                        Ok(request) => state.reject(request),
                        // Woken by `unblock` (possibly one left from the drain): look at `stop`.
                        Err(e) if is_unblock(&e) => {}
                        Err(e) => state.accept_ended(&gen, e),
                    }
                }
            })?;
        }
        Ok((Late { pool, stop, state }, backlog))
    }

    /// How many threads it runs.
    pub(crate) fn threads(&self) -> usize {
        self.pool.len()
    }

    /// Stops answering and waits (boundedly) for the threads to end.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for gen in self.state.gens() {
            gen.http.unblock();
        }
        let report = self.pool.join_timeout(STOP_TIMEOUT);
        if !report.is_complete() {
            log::warn!("late responder still writing after {STOP_TIMEOUT:?}; left running");
        }
    }
}
