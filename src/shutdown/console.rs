//! Windows' console close, log-off and system shutdown: the events after which the OS ends
//! the process as soon as its handler returns, and at the latest [`CONSOLE_BUDGET`] after
//! the event. `ctrlc`'s handler returns at once, so the drain would be cut at its start.
//!
//! lameduck's own handler for these three events (registered by
//! [`signal::install`](crate::signal::install), in `os/windows.rs`) calls `on_event`:
//! it fires shutdown with [`Reason::Console`], and does not return until every server that
//! trigger stops has returned from `run`, or the budget is nearly spent. The drain's
//! deadline is cut to [`CONSOLE_DEADLINE`] for such a fire, and the report says so; the
//! lame-duck delay is skipped (no balancer waits on a closing console). Ctrl+C and
//! Ctrl+Break go on to `ctrlc`'s handler, as before.
//!
//! All but the registration is the same on every OS, and tested on every OS with events of
//! the tests' own: wine 8 does not deliver these events (checked: its console ignores the
//! close of its window, and `GenerateConsoleCtrlEvent` delivers Ctrl+C only), so only the
//! registration, and Ctrl+C passing through it, run under wine.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::latch::Latch;
use super::trigger::{Listener, Reason, Trigger};

/// How long Windows lets a console process run after `CTRL_CLOSE_EVENT` (and, by default,
/// `CTRL_LOGOFF_EVENT` and `CTRL_SHUTDOWN_EVENT`) before it ends it: 5 s (Microsoft's
/// documentation of `HandlerRoutine`; the system's `HungAppTimeout`).
pub const CONSOLE_BUDGET: Duration = Duration::from_secs(5);

/// The deadline of a drain that one of these events fired, when [`Builder::deadline`] is
/// longer: the budget less time for the timed join (20 ms), the shutdown hooks' end, and
/// the handler's return. A bound, not a measurement.
///
/// [`Builder::deadline`]: crate::Builder::deadline
pub const CONSOLE_DEADLINE: Duration = Duration::from_millis(4500);

/// How long the handler waits for the servers to return from `run`: the budget less the
/// handler's own return.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) const HANDLER_WAIT: Duration = Duration::from_millis(4800);

/// A console event after which Windows ends the process ([`Reason::Console`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleEvent {
    /// The console window was closed (`CTRL_CLOSE_EVENT`).
    Close,
    /// The user is logging off (`CTRL_LOGOFF_EVENT`).
    Logoff,
    /// The system is shutting down (`CTRL_SHUTDOWN_EVENT`).
    Shutdown,
}

impl fmt::Display for ConsoleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsoleEvent::Close => "console window closed",
            ConsoleEvent::Logoff => "user logging off",
            ConsoleEvent::Shutdown => "system shutting down",
        })
    }
}

/// The servers in `run`: the listener of the trigger that stops each, and a latch that opens
/// when its `run` returns.
static RUNNING: Mutex<Vec<(Listener, Latch)>> = Mutex::new(Vec::new());

/// A server in `run`, from [`Serving::enter`] until dropped.
pub(crate) struct Serving {
    done: Latch,
}

impl Serving {
    /// A server stopped by `listener`'s trigger begins to run.
    pub(crate) fn enter(listener: Listener) -> Serving {
        let done = Latch::new();
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|(_, latch)| !latch.is_open());
        running.push((listener, done.clone()));
        Serving { done }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.done.open();
    }
}

/// What a console event does: fires `trigger`, then waits up to `wait` for every server it
/// stops to return from `run`. Returns whether they all did. A log-off reaching a service
/// (`service`: the process runs as one) is ignored: a service outlives the session. (Windows
/// calls it; the tests, on every OS, too.)
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn on_event(
    event: ConsoleEvent,
    trigger: &Trigger,
    wait: Duration,
    service: bool,
) -> bool {
    if service && event == ConsoleEvent::Logoff {
        log::info!("{event}: ignored, a service outlives the session");
        return true;
    }
    let until = Instant::now() + wait;
    log::warn!(
        "{event}: shutting down; Windows ends the process within {CONSOLE_BUDGET:?}, the drain \
         has {CONSOLE_DEADLINE:?} at most"
    );
    trigger.fire(Reason::Console { event });
    let ours = trigger.listener();
    let waiting: Vec<Latch> = RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(listener, _)| listener.same(&ours))
        .map(|(_, done)| done.clone())
        .collect();
    let all = waiting.iter().all(|done| done.wait_deadline(until));
    if !all {
        log::warn!("{event}: a server is still shutting down; Windows ends the process now");
    }
    all
}

/// The deadline a drain fired for `reason` has, given the configured one.
pub(crate) fn capped(reason: &Reason, deadline: Duration) -> (Duration, bool) {
    match reason {
        Reason::Console { .. } if deadline > CONSOLE_DEADLINE => (CONSOLE_DEADLINE, true),
        _ => (deadline, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_http::{Request, Response};
    use crate::{Handle, Server, Stopped};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;

    type Outcome = mpsc::Receiver<Result<Stopped, crate::Error>>;

    /// A server stopped by `trigger`, its handler sleeping `sleep`, running on a thread that
    /// sends what `run` returned.
    fn running(trigger: &Trigger, deadline: Duration, sleep: Duration) -> (Handle, Outcome) {
        let server = Server::bind("127.0.0.1:0")
            .trigger(trigger.clone())
            .deadline(deadline)
            .build(move |_: &mut Request| {
                std::thread::sleep(sleep);
                Response::from_string("done").boxed()
            })
            .unwrap();
        let handle = server.handle();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.run());
        });
        (handle, rx)
    }

    /// Sends a request, and returns once it is in the handler.
    fn in_flight(handle: &Handle) -> TcpStream {
        let mut conn = TcpStream::connect(handle.local_addr()).unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while handle.stats().in_handlers() == 0 {
            assert!(
                Instant::now() < until,
                "the request never reached the handler"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        conn
    }

    /// The console closes while a request of 4 s is in its handler: the request is answered
    /// (within the 4.5 s the deadline is cut to), and the event's handler returns only once
    /// `run` has returned, with a report that says the console closed and that the 10 s
    /// deadline was cut to what Windows allows.
    #[test]
    fn a_console_close_waits_for_the_drain_and_cuts_the_deadline() {
        let (trigger, _) = crate::trigger();
        let (handle, result) = running(&trigger, Duration::from_secs(10), Duration::from_secs(4));
        let mut conn = in_flight(&handle);
        assert!(on_event(
            ConsoleEvent::Close,
            &trigger,
            CONSOLE_BUDGET,
            false
        ));
        // The handler returned once `run` was returning: its outcome comes at once.
        let stopped = result
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        let report = stopped.report();
        assert_eq!(
            *report.reason(),
            Reason::Console {
                event: ConsoleEvent::Close
            }
        );
        assert_eq!(report.deadline(), CONSOLE_DEADLINE);
        assert!(report.deadline_capped());
        assert!(
            report.to_string().contains("deadline cut to 4.5s"),
            "{report}"
        );
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"done") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    }

    /// A deadline shorter than the budget stays; a handler slower than it is cut and named,
    /// and the event's handler returns once `run` has.
    #[test]
    fn a_shorter_deadline_is_kept_and_the_handler_returns_after_run() {
        let (trigger, _) = crate::trigger();
        let (handle, result) =
            running(&trigger, Duration::from_millis(300), Duration::from_secs(3));
        let _conn = in_flight(&handle);
        assert!(on_event(
            ConsoleEvent::Logoff,
            &trigger,
            CONSOLE_BUDGET,
            false
        ));
        let error = result
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap_err();
        let report = error.report().unwrap();
        assert_eq!(report.deadline(), Duration::from_millis(300));
        assert!(!report.deadline_capped());
        assert_eq!(report.stragglers().len(), 1);
    }

    /// Only the servers the fired trigger stops are waited for.
    #[test]
    fn servers_of_another_trigger_are_not_waited_for() {
        let (ours, _) = crate::trigger();
        let (theirs, _) = crate::trigger();
        let (_, our_result) = running(&ours, Duration::from_secs(10), Duration::ZERO);
        let (_, their_result) = running(&theirs, Duration::from_secs(10), Duration::ZERO);
        assert!(on_event(
            ConsoleEvent::Shutdown,
            &ours,
            CONSOLE_BUDGET,
            false
        ));
        our_result
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(!theirs.is_triggered(), "the other server was not stopped");
        assert!(
            their_result.try_recv().is_err(),
            "the other server still runs"
        );
        theirs.fire(Reason::Requested);
        their_result
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap();
    }

    /// A log-off reaching a service is ignored: nothing fired, nothing waited for.
    #[test]
    fn a_logoff_is_ignored_by_a_service() {
        let (trigger, _) = crate::trigger();
        let (_, result) = running(&trigger, Duration::from_secs(10), Duration::ZERO);
        assert!(on_event(
            ConsoleEvent::Logoff,
            &trigger,
            CONSOLE_BUDGET,
            true
        ));
        assert!(!trigger.is_triggered());
        trigger.fire(Reason::Requested);
        result
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap();
    }
}
