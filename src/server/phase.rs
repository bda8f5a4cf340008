//! Where the server is in its life: one phase at a time, in order, and the latches that the
//! workers and responses wait on.
//!
//! ```text
//! Serving ─fire─► LameDuck ─► Stopping ─► Draining ─► Done
//!            └────────────────┘                 └──► Overdue ─► Done
//!           (no lame-duck delay)                    (deadline)
//! ```
//!
//! The phase moves forward only, on the thread that runs the timeline (`drain.rs`). The fire
//! itself comes from any thread, a moment before the timeline sees it: what depends on the
//! fire alone (readiness, `Connection: close`) reads the trigger, not the phase.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::shutdown::latch::Latch;
use crate::shutdown::trigger::Listener;

/// The longest a response written after the fire waits for the listening socket to close:
/// longer than the rescue before the stop may take (500 ms at most, when connections wait
/// for a thread); the close itself takes a millisecond. See [`Phases::close_response`].
/// A bound: at 200 ms, responses under load timed out while the rescue ran to its bound and
/// told clients to reconnect into the closing socket; with 1 s, 200 Python rounds lost
/// nothing (`LAMEDUCK_PYTHON_ROUNDS=50 cargo test --test process python`, 2026-12-02).
const CLOSED_WAIT: Duration = Duration::from_secs(1);

/// Where a server is in its life: [`Stats::phase`](crate::Stats::phase).
///
/// ```text
/// Serving ─fire─► LameDuck ─► Stopping ─► Draining ─► Done
///            └────────────────┘                 └──► Overdue ─► Done
///           (no lame-duck delay)                    (deadline)
/// ```
///
/// The phase moves forward only. It changes on the thread that runs the timeline
/// ([`Server::run`](crate::Server::run)), a moment after the fire: a snapshot taken just
/// after [`Handle::shutdown`](crate::Handle::shutdown) may still say `Serving`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Phase {
    /// Before the fire: accepting and serving.
    Serving,
    /// The [lame-duck delay](crate::Builder::lame_duck): readiness says 503, the socket
    /// still accepts, responses say `Connection: close`.
    LameDuck,
    /// The socket is closing: no new connection gets in.
    Stopping,
    /// The socket is closed (an idle server's stays sealed until its workers end); what the
    /// server holds is served.
    Draining,
    /// The deadline passed with work left: waiting requests are answered 503, handlers
    /// still running are left to the report.
    Overdue,
    /// The drain is over; what still arrives is answered 503.
    Done,
}

impl Phase {
    /// Every phase, in order.
    pub(crate) const ALL: [Phase; 6] = [
        Phase::Serving,
        Phase::LameDuck,
        Phase::Stopping,
        Phase::Draining,
        Phase::Overdue,
        Phase::Done,
    ];

    /// Its name in lower case, words joined by `_`: `serving`, `lame_duck`, `stopping`,
    /// `draining`, `overdue`, `done` (the `phase` label of the metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::LameDuck => "lame_duck",
            Phase::Stopping => "stopping",
            Phase::Draining => "draining",
            Phase::Overdue => "overdue",
            Phase::Done => "done",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phase, and the latches that mark its steps.
pub(crate) struct Phases {
    now: AtomicU8,
    fired: Listener,
    /// A lame-duck delay comes between the fire and the stop.
    lame_duck: bool,
    /// Opens once connects to the listening socket are refused.
    closed: Latch,
    /// Opens when workers are to stop taking requests: the drain is over, or overdue.
    stop_taking: Latch,
}

impl Phases {
    /// Serving, until `fired` fires.
    pub(crate) fn new(fired: Listener, lame_duck: bool) -> Phases {
        Phases {
            now: AtomicU8::new(Phase::Serving as u8),
            fired,
            lame_duck,
            closed: Latch::new(),
            stop_taking: Latch::new(),
        }
    }

    /// The phase now.
    pub(crate) fn now(&self) -> Phase {
        match self.now.load(Ordering::SeqCst) {
            0 => Phase::Serving,
            1 => Phase::LameDuck,
            2 => Phase::Stopping,
            3 => Phase::Draining,
            4 => Phase::Overdue,
            _ => Phase::Done,
        }
    }

    /// Moves to `phase`, if it lies ahead.
    pub(crate) fn enter(&self, phase: Phase) {
        self.now.fetch_max(phase as u8, Ordering::SeqCst);
    }

    /// Whether shutdown has fired (the phase may not show it yet).
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.is_triggered()
    }

    /// The listening socket is closed: responses that waited for it go.
    pub(crate) fn socket_closed(&self) {
        self.closed.open();
    }

    /// The latch workers take requests until.
    pub(crate) fn stop_taking(&self) -> &Latch {
        &self.stop_taking
    }

    /// Whether a response written now tells its client to close the connection: from the
    /// fire on. Decided when the response is written, so a request that started before the
    /// fire and ends after it says so too.
    ///
    /// While the socket is being closed, a client told to close could reconnect into it as
    /// it closes and be reset: such a response first waits until connects are refused
    /// (microseconds; at most [`CLOSED_WAIT`]). That is from the fire on without a lame-duck
    /// delay (the timeline may not have left `Serving` yet), and from `Stopping` with one;
    /// during the delay itself the socket stays open, and a client told to close reconnects
    /// to this server or, once its balancer has heard readiness say 503, elsewhere.
    pub(crate) fn close_response(&self) -> bool {
        if !self.is_fired() {
            return false;
        }
        let waits = match self.now() {
            Phase::Serving => !self.lame_duck,
            Phase::LameDuck => false,
            _ => true,
        };
        if waits {
            self.closed.wait_timeout(CLOSED_WAIT);
        }
        true
    }
}
