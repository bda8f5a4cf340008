//! Graceful shutdown for synchronous programs, on Windows and Unix alike, without an async
//! runtime.
//!
//! lameduck is the synchronous counterpart of Go's `signal.NotifyContext`: a signal fires a
//! [`Trigger`], every [`Listener`] wakes at once, and the program's threads finish what they
//! hold before a deadline. A [`Pool`] of named workers is joined with that deadline and says
//! who did not make it.
//!
//! # The shutdown timeline
//!
//! ```text
//!  signal ──► flag ──► broadcast ──► workers finish ──► timed join ──► report
//!  Ctrl+C     atomic    every wait,    what they hold     deadline      finished / panicked /
//!  SIGTERM    bool      select! and                       bounded       still running
//!                       sleep wakes
//! ```
//!
//! 1. **Signal.** [`signal::install`] hands SIGINT, SIGTERM and SIGHUP (Ctrl+C and
//!    Ctrl+Break on Windows) to one handler. The first logs
//!    `shutting down gracefully, press Ctrl+C again to force stop` and fires the trigger;
//!    a second one exits with code 130 (configurable).
//! 2. **Flag.** [`Trigger::fire`] sets an atomic flag: [`Listener::is_triggered`] is one load,
//!    cheap on hot paths.
//! 3. **Broadcast.** Firing drops the only sender of a `crossbeam-channel`; every thread
//!    blocked in [`Listener::wait`], [`Listener::sleep`] or a `select!` on
//!    [`Listener::receiver`] wakes at once, and a listener that asks later sees it at once.
//! 4. **Timed join.** [`Pool::join_deadline`] waits for the workers' exit reports, never past
//!    the deadline, and returns a [`JoinReport`]: finished, panicked (with the message), still
//!    running, by thread name.
//!
//! ```
//! use std::time::Duration;
//!
//! let (trigger, listener) = lameduck::trigger();
//! // lameduck::signal::install(&trigger)?;   // Ctrl+C / SIGTERM fire it in a real program
//!
//! let mut pool = lameduck::Pool::new();
//! for _ in 0..4 {
//!     let listener = listener.clone();
//!     pool.spawn(move || {
//!         while listener.sleep(Duration::from_millis(10)).is_ok() {
//!             // one round of work
//!         }
//!     })?;
//! }
//!
//! trigger.fire(lameduck::Reason::Requested);
//! let report = pool.join_timeout(Duration::from_secs(5));
//! assert!(report.is_complete());
//! # Ok::<(), lameduck::Error>(())
//! ```
//!
//! # Anatomy
//!
//! In reading order:
//!
//! - [`trigger`](mod@trigger) — the [`Trigger`] / [`Listener`] pair: flag, broadcast, the
//!   [`Reason`] and time of the fire.
//! - [`signal`] — the only code that calls `ctrlc`; what each OS delivers; the second signal.
//! - [`pool`] — named worker threads, exit reports over a channel, the timed join.
//! - [`error`] — the one [`Error`] enum.
//!
//! # Safety
//!
//! `#![forbid(unsafe_code)]`: lameduck itself has no `unsafe`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
pub mod error;
mod late;
pub mod pool;
mod probe;
pub mod report;
mod respond;
pub mod server;
pub mod signal;
pub mod trigger;
mod worker;

pub use error::Error;
pub use pool::{JoinReport, Panicked, Pool};
pub use report::{ShutdownReport, Straggler};
pub use server::{Builder, Handle, Handler, Server};
pub use signal::{SecondSignal, Signals};
pub use trigger::{trigger, Fired, Interrupted, Listener, Reason, Trigger};

/// The HTTP library lameduck serves with, re-exported: handlers take its
/// [`Request`](tiny_http::Request) and return its [`ResponseBox`](tiny_http::ResponseBox).
pub use tiny_http;

#[allow(dead_code)]
fn _ensure_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Trigger>();
    is::<Listener>();
    is::<Error>();
}
