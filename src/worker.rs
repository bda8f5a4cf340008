//! The worker loop: serve, then drain, then stop; and what a worker does with one request.
//!
//! Phases, set by [`Server::run`](crate::Server::run):
//!
//! - **Serving.** Workers block in tiny_http's `recv`. Responses keep the connection open
//!   if the client asked for it.
//! - **Draining** (from the fire). Every worker is woken (`Gen::wake_receivers`). On a quiet
//!   server (no handler running, no keep-alive response within the grace), an idle worker
//!   woken while others are still to wake ends at once, and the last to wake drains. A
//!   draining worker takes what is queued and answers it with `Connection: close`, and stops
//!   once the queue is empty, no worker is in a handler (a request in a handler may still be
//!   followed by one on the same connection), and the keep-alive grace is over, polling
//!   every [`DRAIN_POLL`] meanwhile.
//! - **Overdue** (from the deadline). Workers stop taking requests; a worker still in a
//!   handler finishes it (lameduck cannot stop a running thread) and then stops. What is
//!   queued is answered 503 by the late responder (`late.rs`).

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::{Request, ResponseBox};

use crate::pool::panic_message;
use crate::state::{lock, peer_text, Current, Gen, Phase, Slot, State};
use crate::{respond, Error, Pool};

/// How often a draining worker with nothing to do looks again while another one is still in a
/// handler, or while the keep-alive grace runs.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(5);

/// The longest a response written after the fire waits for the listening socket to be
/// closed (it normally takes microseconds; see `State::closed`).
const CLOSED_WAIT: Duration = Duration::from_millis(200);

/// What a worker receives from.
pub(crate) enum Serves {
    /// The current generation, whichever it is: the server's workers.
    Current,
    /// One dead generation, for the connections it still has: a retired worker.
    Retired(Arc<Gen>),
}

/// The loop of the worker that owns `slot`.
pub(crate) fn work(state: &State, slot: &Slot, serves: Serves) {
    let mut gen = match &serves {
        Serves::Current => state.current_gen(),
        Serves::Retired(gen) => Arc::clone(gen),
    };

    // Serving: block in the queue. The worker counts itself as a receiver *before* it reads
    // the phase and the current generation (see `Gen::wake_receivers`). Requests in the
    // waiting room (`room.rs`) come first: they were taken from the queue earlier.
    let mut woken = false;
    loop {
        if let Ok(request) = state.room_rx.try_recv() {
            woken = false;
            serve(state, slot, request);
            continue;
        }
        gen.enter();
        let moved = matches!(serves, Serves::Current) && state.current_number() != gen.number;
        if state.phase() != Phase::Serving || moved {
            let others = gen.leave();
            if moved {
                gen = state.current_gen();
                continue;
            }
            // Woken idle while others are still to wake, on a quiet server (no handler
            // running, no keep-alive response within the grace, so no request is expected):
            // the last of them drains what may still come, and this one ends now. With
            // traffic, every worker drains, so that requests still arriving are served in
            // parallel.
            if woken && others > 0 && !state.any_busy() && state.keep_alive_grace_left().is_zero() {
                return;
            }
            break;
        }
        let received = gen.http.recv();
        gen.leave();
        woken = false;
        match received {
            Ok(request) => serve(state, slot, request),
            // Woken by `unblock`: the phase or the current generation has changed.
            Err(e) if is_unblock(&e) => woken = true,
            Err(e) => state.accept_ended(&gen, e),
        }
    }

    // The wake-up calls are queue entries any receiver can take: keep off the queue until
    // every receiver still blocked in it has taken one. This lasts microseconds; waiting
    // asleep rather than spinning leaves the cores to the receivers still to wake.
    gen.wait_no_receivers(Duration::from_millis(1), || {
        state.phase() == Phase::Draining
    });

    // Draining: take what is waiting or queued; stop when both are empty, no one is in a
    // handler, and the keep-alive grace is over.
    while state.phase() == Phase::Draining {
        if let Ok(request) = state.room_rx.try_recv() {
            serve(state, slot, request);
            continue;
        }
        match gen.http.try_recv() {
            Ok(Some(request)) => serve(state, slot, request),
            Ok(None) if !state.any_busy() && state.keep_alive_grace_left().is_zero() => return,
            Ok(None) => match gen.http.recv_timeout(
                state
                    .keep_alive_grace_left()
                    .clamp(Duration::from_millis(1), DRAIN_POLL),
            ) {
                Ok(Some(request)) => serve(state, slot, request),
                Ok(None) => {}
                Err(e) => state.accept_ended(&gen, e),
            },
            Err(e) => state.accept_ended(&gen, e),
        }
    }
}

/// Starts a worker for `serves`, with its slot, in `pool`.
///
/// # Errors
///
/// [`Error::Spawn`] if the thread could not be started.
pub(crate) fn spawn(state: &Arc<State>, pool: &mut Pool, serves: Serves) -> Result<(), Error> {
    // The slot is made here, not on the new thread: a thread's first allocation gives it a
    // heap arena of its own (glibc), and idle workers need not have one.
    let slot = state.add_slot(pool.next_name());
    let state = Arc::clone(state);
    pool.spawn(move || work(&state, &slot, serves))?;
    Ok(())
}

/// Starts a worker for the dead generation `gen`, for the connections it still has.
///
/// # Errors
///
/// [`Error::Spawn`] if the thread could not be started.
pub(crate) fn spawn_retired(state: &Arc<State>, gen: Arc<Gen>) -> Result<(), Error> {
    let mut pool = lock(&state.retired);
    spawn(state, &mut pool, Serves::Retired(gen))
}

/// tiny_http's `recv` returns this error when `unblock` woke it.
pub(crate) fn is_unblock(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string() == "thread unblocked"
}

fn serve(state: &State, slot: &Slot, mut request: Request) {
    if let Some(response) = health(state, &request) {
        slot.health_checks.fetch_add(1, Ordering::Relaxed);
        let close = close_now(state);
        if let Err(e) = respond::send(request, response, close, state.settings.write_timeout) {
            log::debug!("writing a health response: {e}");
        }
        return;
    }
    slot.busy.store(true, Ordering::Release);
    state.start_work();
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
        headers: if state.archive.is_some() {
            request.headers().to_vec()
        } else {
            Vec::new()
        },
        peer: request.remote_addr().copied(),
        started,
    });

    let (response, panicked) = handle(state, &mut request);
    let close = close_now(state);
    let status = response.status_code().0;
    let method = request.method().clone();
    // The body is read (user code: the handler's `Read`) while it is written: guarded too.
    let write_timeout = state.settings.write_timeout;
    let written = panic::catch_unwind(AssertUnwindSafe(|| {
        respond::send(request, response, close, write_timeout)
    }));
    let panicked = match written {
        Ok(Ok(())) => panicked,
        Ok(Err(e)) => {
            log::debug!("writing a response: {e}");
            panicked
        }
        Err(payload) => {
            log::error!(
                "reading the response body for {method} panicked: {}; response cut",
                panic_message(payload.as_ref())
            );
            true
        }
    };
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
    state.end_work();
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

/// Whether a response written now tells its client to close, waiting first, if the socket is
/// being closed, until connects are refused.
///
/// Decided when the response is written: a request that started before the fire and ends
/// after it still tells its client to close. During the lame-duck delay the socket still
/// accepts, and clients told to close reconnect (to this server, or elsewhere once the
/// balancer has heard readiness say 503). Once the socket is being closed, a client told to
/// close could reconnect into it as it closes and be reset: so the response waits for the
/// close (microseconds).
fn close_now(state: &State) -> bool {
    if !state.is_shutting_down() {
        return false;
    }
    if state.is_stopping() {
        state.closed.listener().wait_timeout(CLOSED_WAIT);
    }
    true
}

/// The response of a built-in health endpoint, if `request` is for one: readiness is `200`
/// until shutdown fires, `503` from then on; liveness is `200` while the server serves.
fn health(state: &State, request: &Request) -> Option<ResponseBox> {
    let path = request.url().split('?').next().unwrap_or("");
    let health = &state.health;
    if health.readiness.as_deref() == Some(path) {
        Some(if state.is_shutting_down() {
            respond::unavailable(state.settings.retry_after, "shutting down")
        } else {
            respond::plain(200, "ready\n")
        })
    } else if health.liveness.as_deref() == Some(path) {
        Some(respond::plain(200, "alive\n"))
    } else {
        None
    }
}

/// Runs the handler, or answers in its place: 431 for a head over the limit, 500 for a
/// panic or a response header that would split the response. Returns whether it panicked.
fn handle(state: &State, request: &mut Request) -> (ResponseBox, bool) {
    let max_head = state.settings.max_head;
    let head = respond::head_size(request);
    if head > max_head {
        log::debug!(
            "{} {}...: request head of {head} bytes over the limit of {max_head}; answered 431",
            request.method(),
            request.url().chars().take(64).collect::<String>(),
        );
        return (respond::head_too_large(max_head), false);
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
