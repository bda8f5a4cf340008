//! Graceful shutdown for synchronous HTTP servers, on Windows and Unix alike, without an
//! async runtime.
//!
//! lameduck is the synchronous counterpart of Go's `signal.NotifyContext` +
//! `http.Server.Shutdown(ctx)`: a signal fires a [`Trigger`], every [`Listener`] wakes at
//! once, the [`Server`] stops accepting, finishes what it holds, answers what it cannot
//! finish, never waits past its deadline, and says in a [`ShutdownReport`] what it cut.
//!
//! ```
//! use lameduck::tiny_http::{Request, Response};
//!
//! let (trigger, _listener) = lameduck::trigger();
//! // lameduck::signal::install(&trigger)?;  // Ctrl+C / SIGTERM fire it in a real program
//! let server = lameduck::Server::bind("127.0.0.1:0")
//!     .trigger(trigger.clone())
//!     .build(|_request: &mut Request| Response::from_string("Hello World").boxed())?;
//! # std::thread::spawn(move || trigger.fire(lameduck::Reason::Requested));
//! let report = server.run()?; // serves until shutdown, then drains
//! println!("{report}");
//! # Ok::<(), lameduck::Error>(())
//! ```
//!
//! # The shutdown timeline
//!
//! ```text
//!  signal ─► flag ─► broadcast ─► stop accepting ─► drain ─────────► deadline ─► timed join ─► report
//!  Ctrl+C    atomic  every wait   connects          in-flight and     queued: 503  workers     served, cut,
//!  SIGTERM   bool    and select!  refused           queued served,    + Retry-After joined or  rejected,
//!                    wakes                          Connection: close stragglers    named      timings
//! ```
//!
//! 1. **Signal.** [`signal::install`] hands SIGINT, SIGTERM, SIGHUP (Ctrl+C, Ctrl+Break on
//!    Windows) to one handler: the first logs
//!    `shutting down gracefully, press Ctrl+C again to force stop` and fires the trigger;
//!    a second one exits with code 130 (configurable). Any thread can fire it too
//!    ([`Handle::shutdown`], [`Trigger::fire`]).
//! 2. **Flag.** [`Trigger::fire`] sets an atomic flag: [`Listener::is_triggered`] is one
//!    load, cheap on hot paths.
//! 3. **Broadcast.** Firing drops the only sender of a `crossbeam-channel`: every thread in
//!    [`Listener::wait`], [`Listener::sleep`] or a `select!` on [`Listener::receiver`] wakes
//!    at once; a listener that asks later sees it at once.
//! 4. **Stop accepting.** The listening socket is closed first: new connects are refused,
//!    within milliseconds. Connections already open stay open. (Behind a load balancer, a
//!    [lame-duck delay](Builder::lame_duck) comes before: readiness says 503 while the
//!    server goes on serving.)
//! 5. **Drain.** Requests in handlers finish, queued requests are served, and every response
//!    from now on carries `Connection: close`, so keep-alive clients go elsewhere.
//! 6. **Deadline.** At [`Builder::deadline`] (10 s by default) requests still queued are
//!    answered `503` with `Retry-After`; handlers still running are named.
//! 7. **Timed join.** The [`Pool`] of workers is joined with the deadline
//!    ([`Pool::join_deadline`]): `run` returns within about 20 ms of it even if a handler
//!    never returns, so the process can exit.
//! 8. **Report.** [Shutdown hooks](Builder::on_shutdown) run with what is left of the
//!    deadline, then [`Server::run`] returns the [`ShutdownReport`], or
//!    [`Error::DeadlineExceeded`] carrying it: the reason, timings, counts, and every
//!    request it could not finish, for a log or a retry queue.
//!
//! The pieces work on their own: a program without HTTP uses [`trigger()`], [`signal`] and
//! [`Pool`] (see `examples/01_flag.rs` to `03_timed_join.rs`).
//!
//! # Anatomy
//!
//! In reading order:
//!
//! - [`trigger`](mod@trigger) — the [`Trigger`] / [`Listener`] pair: flag, broadcast, the
//!   [`Reason`] and time of the fire.
//! - [`signal`] — the only code that calls `ctrlc`; what each OS delivers; the second signal.
//! - [`watch`] — triggers besides signals: heartbeat watchdog, a file, the end of stdin.
//! - [`pool`] — named worker threads, exit reports over a channel, the timed join.
//! - [`server`] — the builder, the [`Server`] and its timeline, the [`Handle`].
//! - `accept` — stopping tiny_http's accept loop while its queue is still served; starting
//!   a new one when it has died.
//! - `worker` — the worker loop: serve, drain, stop; what the workers share.
//! - `respond` — `Connection: close`, and the 503, 500 and 431 lameduck writes itself.
//! - [`Body`] — reading a request body that fails, rather than comes up short, when the
//!   client left early.
//! - `late` — the thread that answers requests arriving after the drain.
//! - `state` — what the workers share: the phase, the generations of tiny_http servers.
//! - `room` — the bound on requests waiting for a worker; 503 at once beyond it.
//! - `probe` — the supervisor: connections tiny_http leaves without a thread, and an accept
//!   loop that died.
//! - [`report`] — the [`ShutdownReport`] and its [`Straggler`]s.
//! - [`error`] — the one [`Error`] enum.
//!
//! # Log levels
//!
//! Through the `log` crate; lameduck never installs a logger.
//!
//! | level | what |
//! |---|---|
//! | `error` | a handler panicked (answered 500); the accept loop died while serving |
//! | `warn` | the deadline was exceeded (with the report); a second signal; a stop that could not be confirmed |
//! | `info` | each shutdown phase: serving, stop accepting and drain, the report |
//! | `debug` | each request, when answered; the end of the accept loop |
//! | `trace` | each request, when received |
//!
//! tiny_http logs `Error accepting new client` at `error` when its accept loop ends, which
//! lameduck makes it do at every shutdown: filter `tiny_http` out (`RUST_LOG=info,tiny_http=off`,
//! as the examples do).
//!
//! # Safety
//!
//! `#![forbid(unsafe_code)]`: lameduck itself has no `unsafe`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod archive;
mod body;
mod connections;
pub mod error;
mod hooks;
mod late;
pub mod pool;
mod probe;
pub mod report;
mod respond;
mod room;
pub mod server;
pub mod signal;
mod state;
pub mod trigger;
pub mod watch;
mod worker;

pub use archive::{Unserved, Why};
pub use body::{read_body, Body};
pub use error::Error;
pub use pool::{JoinReport, Panicked, Pool};
pub use report::{HookOutcome, HookReport, ShutdownReport, Straggler};
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

/// The README's code blocks, compiled and run as doctests so that they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
