//! The late responder: after the drain, whatever still reaches tiny_http's queue is answered
//! `503` + `Retry-After` + `Connection: close`, so that no client hangs.
//!
//! Requests can still arrive after the workers have stopped: on keep-alive connections that
//! were idle when shutdown fired (tiny_http gives no way to close them), on connections
//! accepted in the instant before the accept loop ended, and, after a deadline, the requests
//! that were still queued. One thread, `lameduck-late-1`, answers them for as long as the
//! [`Server`](crate::Server) lives; dropping the `Server` stops it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::worker::{is_unblock, State};
use crate::{Error, Pool};

/// How long dropping the `Server` waits for the late responder to end. It only waits longer
/// than an instant if it is writing a 503 to a client that does not read.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The running late responder.
pub(crate) struct Late {
    pool: Pool,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
}

impl Late {
    /// Starts answering. The receiver gets a message once the requests queued at the start
    /// have been answered (or, at worst, once the queue looked empty).
    pub(crate) fn start(state: Arc<State>) -> Result<(Late, Receiver<()>), Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (backlog_done, backlog) = crossbeam_channel::bounded(1);
        let mut pool = Pool::with_prefix("lameduck-late");
        {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            pool.spawn(move || {
                while let Ok(Some(request)) = state.http.try_recv() {
                    state.reject(request);
                }
                let _ = backlog_done.send(());
                while !stop.load(Ordering::Acquire) {
                    match state.http.recv() {
                        Ok(request) => state.reject(request),
                        // Woken by `unblock` (possibly one left from the drain): look at `stop`.
                        Err(e) if is_unblock(&e) => {}
                        Err(e) => state.accept_ended(e),
                    }
                }
            })?;
        }
        Ok((Late { pool, stop, state }, backlog))
    }

    /// Stops answering and waits (boundedly) for the thread to end.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.state.http.unblock();
        let report = self.pool.join_timeout(STOP_TIMEOUT);
        if !report.is_complete() {
            log::warn!("late responder still writing after {STOP_TIMEOUT:?}; left running");
        }
    }
}
