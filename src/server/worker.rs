//! The workers: each takes a request, runs the handler, writes the response, and keeps
//! count in a slot of its own.
//!
//! A worker takes requests until the phase says stop ([`Phases::stop_taking`]): when the
//! drain is over, after the requests waiting in the room; at the deadline at once, the
//! requests still waiting then answered 503. A worker in a handler finishes it (lameduck
//! cannot stop a running thread) and then stops.
//!
//! [`Phases::stop_taking`]: super::phase::Phases::stop_taking

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tiny_http::{Request, ResponseBox};

use super::crew;
use super::metrics;
use super::phase::Phase;
use super::slots::{Current, Slot};
use super::Shared;
use crate::shutdown::join::panic_message;
use crate::tinyhttp::{self, Taken};

/// A worker's loop, on slot `index`. A worker that takes a request while every other one
/// holds one starts one more, if more may be; the first waits with a bound, and
/// when it waits it out, the workers beyond the first two are asked to retire (`crew.rs`).
pub(crate) fn work(shared: &Arc<Shared>, index: usize) {
    let Some(slot) = shared.live.slots.iter().nth(index) else {
        return;
    };
    shared.http.own_thread_started();
    let mut queue = shared.http.queue().taker();
    loop {
        let stop = shared.live.phases.stop_taking();
        let bound = if index == 0 {
            shared.crew.idle_bound()
        } else {
            None
        };
        let request = match queue.take(stop, bound) {
            Taken::Request(request) => request,
            Taken::Stop => return,
            Taken::Idle => {
                crew::retire_idle(shared);
                continue;
            }
            Taken::Woken if crew::retire(shared, index) => return,
            Taken::Woken => continue,
        };
        // Every other worker holds a request too: none is waiting for the next, nor on its
        // way back to wait.
        if shared.crew.took() && shared.crew.can_grow() && queue.none_waiting() {
            crew::grow(shared);
        }
        if shared.live.phases.now() == Phase::Overdue {
            shared.late(request);
        } else {
            serve(shared, slot, request);
        }
        shared.crew.done();
    }
}

/// Serves one request and counts it.
fn serve(shared: &Shared, slot: &Slot, mut request: Request) {
    let config = &shared.config;
    if let Some(response) = builtin(shared, slot, &request) {
        let close = shared.live.phases.close_response();
        if let Err(e) = tinyhttp::send(request, response, close, config.write_timeout) {
            log::debug!("writing a health or metrics response: {e}");
        }
        return;
    }
    shared.live.occupancy.start();
    let started = begin(shared, slot, &request);
    let handled = handle(shared, &mut request);
    let during_drain = shared.live.phases.close_response();
    let close = during_drain || handled.refused;
    let status = handled.response.status_code().0;
    let method = request.method().clone();
    let logged = log::log_enabled!(log::Level::Debug)
        .then(|| (request.url().to_owned(), request.remote_addr().copied()));
    // The body is read (user code: the handler's `Read`) while it is written: guarded too.
    let write_timeout = config.write_timeout;
    let response = handled.response;
    let written = panic::catch_unwind(AssertUnwindSafe(|| {
        tinyhttp::send(request, response, close, write_timeout)
    }));
    let panicked = match written {
        Ok(Ok(())) => handled.panicked,
        Ok(Err(e)) => {
            log::debug!("writing a response: {e}");
            handled.panicked
        }
        Err(payload) => {
            log::error!(
                "reading the response body for {method} panicked: {}; response cut",
                panic_message(payload.as_ref())
            );
            true
        }
    };
    slot.done(during_drain, !close, panicked);
    shared.live.occupancy.end(shared.http.queue());
    if let Some((url, peer)) = logged {
        log::debug!(
            "{method} {url} from {}: {status} in {:.1?}{}",
            peer_text(peer.as_ref()),
            started.elapsed(),
            if close { ", connection closed" } else { "" }
        );
    }
}

/// What lameduck answers in the handler's place, if `request` asks for it: a health check
/// (counted in `slot`), or the metrics.
fn builtin(shared: &Shared, slot: &Slot, request: &Request) -> Option<ResponseBox> {
    let config = &shared.config;
    let fired = shared.live.phases.is_fired();
    if let Some(response) = config.health.answer(request, fired, config.retry_after) {
        slot.health_check();
        return Some(response);
    }
    metrics::answer(config.metrics.as_deref(), request, || shared.live.stats())
}

/// Notes the request `slot`'s worker starts on, for the report should the deadline cut it.
fn begin(shared: &Shared, slot: &Slot, request: &Request) -> Instant {
    log::trace!(
        "{} {} from {}: received",
        request.method(),
        request.url(),
        peer_text(request.remote_addr())
    );
    let started = Instant::now();
    slot.enter(Current {
        method: request.method().clone(),
        url: request.url().to_owned(),
        headers: if shared.archive.is_some() {
            request.headers().to_vec()
        } else {
            Vec::new()
        },
        peer: request.remote_addr().copied(),
        started,
    });
    started
}

/// What [`handle`] answered.
struct Handled {
    response: ResponseBox,
    /// The handler panicked.
    panicked: bool,
    /// lameduck refused the request: the connection must close.
    refused: bool,
}

/// Runs the handler, or answers in its place: 400 or 501 for a request whose framing
/// could smuggle another (and whatever follows on its connection), 431 for a head over the
/// limit, 500 for a panic or a response header that would split the response.
fn handle(shared: &Shared, request: &mut Request) -> Handled {
    let (response, panicked, refused) = answer(shared, request);
    Handled {
        response,
        panicked,
        refused,
    }
}

fn answer(shared: &Shared, request: &mut Request) -> (ResponseBox, bool, bool) {
    if let Some(refusal) = shared.http.refusal(request) {
        log::debug!(
            "{} {} from {}: {}, refused (request framing)",
            request.method(),
            request.url(),
            peer_text(request.remote_addr()),
            refusal.status_code().0
        );
        return (refusal, false, true);
    }
    let max_head = shared.config.max_request_head;
    let head = tinyhttp::head_size(request);
    if head > max_head {
        log::debug!(
            "{} {}...: request head of {head} bytes over the limit of {max_head}; answered 431",
            request.method(),
            request.url().chars().take(64).collect::<String>(),
        );
        return (tinyhttp::head_too_large(max_head), false, false);
    }
    match panic::catch_unwind(AssertUnwindSafe(|| shared.handler.handle(request))) {
        Ok(response) => match tinyhttp::splitting_header(&response) {
            None => (response, false, false),
            Some(bad) => {
                log::error!(
                    "handler for {} {} returned header {:?} holding CR or LF \
                     (response splitting); answered 500",
                    request.method(),
                    request.url(),
                    bad.field.as_str().as_str()
                );
                (tinyhttp::internal_error(), false, false)
            }
        },
        Err(payload) => {
            log::error!(
                "handler panicked on {} {}: {}; answered 500",
                request.method(),
                request.url(),
                panic_message(payload.as_ref())
            );
            (tinyhttp::internal_error(), true, false)
        }
    }
}

/// A client's address for the log.
pub(crate) fn peer_text(peer: Option<&SocketAddr>) -> String {
    peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// Locks a mutex; a panic while it was held cannot leave these plain values half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
