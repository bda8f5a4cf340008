//! The late responder: after the drain, whatever still reaches tiny_http's queue or waits in
//! the room is answered `503` + `Retry-After` + `Connection: close`, so that no client hangs.
//!
//! Requests can still arrive after the workers have stopped: on keep-alive connections that
//! stayed idle through the drain (tiny_http gives no way to close them), on connections
//! accepted in the instant before the accept loop ended, and, after a deadline, the requests
//! that were still queued. One thread, `lameduck-late-1`, answers them for as long as the
//! value [`Server::run`](crate::Server::run) returned lives. After an idle drain none of
//! those can come (no connection was open when the socket was sealed, and the accept loop
//! has ended): no thread is started then.

use std::time::{Duration, Instant};

use tiny_http::Request;

use super::queue::Queue;
use crate::error::Error;
use crate::shutdown::helper::{Helper, Stop};

/// How long stopping waits for the thread to end. It only waits longer than an instant if
/// it is writing a 503 to a client that does not read. A bound; its usual stop is not
/// timed alone.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The running late responder.
pub(crate) struct LateResponder {
    helper: Helper,
}

impl LateResponder {
    /// Starts answering with `reject`. Returns once what was queued at the start has been
    /// answered, or after `backlog_wait`, so that the report can count it.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(
        queue: std::sync::Arc<Queue>,
        reject: impl Fn(Request) + Send + 'static,
        backlog_wait: Duration,
    ) -> Result<LateResponder, Error> {
        let (backlog_done, backlog) = crossbeam_channel::bounded(1);
        let helper = Helper::start("lameduck-late", move |stop: &Stop| {
            let lead = queue.lead();
            while let Some(request) = queue.try_take_waiting().or_else(|| lead.try_receive()) {
                reject(request);
            }
            let _ = backlog_done.send(());
            while !stop.is_open() {
                match queue.try_take_waiting().or_else(|| lead.receive()) {
                    Some(request) => reject(request),
                    None => continue, // woken: look at `stop`, and in the room
                }
            }
        })?;
        // Not `recv_deadline` when there is no wait: crossbeam spins, then yields, some ten
        // times before it looks at the deadline.
        if backlog_wait.is_zero() {
            let _ = backlog.try_recv();
        } else {
            let _ = backlog.recv_deadline(Instant::now() + backlog_wait);
        }
        Ok(LateResponder { helper })
    }

    /// Stops answering and waits (boundedly) for the thread to end.
    pub(crate) fn stop(self, queue: &Queue) {
        self.helper.ask_to_stop();
        queue.interrupt();
        if !self.helper.stop(STOP_TIMEOUT) {
            log::warn!("late responder still writing after {STOP_TIMEOUT:?}; left running");
        }
    }
}
