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
//! let stopped = server.run()?; // serves until shutdown, then drains
//! println!("{}", stopped.report());
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
//! 4. **Stop accepting.** Nothing new gets in, first. On Linux the listening socket is
//!    *sealed*: a filter of its own drops the first packet of every new connection, while
//!    the accept loop takes what the kernel's backlog already holds, so that a connection
//!    whose handshake completed is served, not reset; then the socket closes and connects
//!    are refused, all within milliseconds. Connections already open stay open. (Behind a
//!    load balancer, a [lame-duck delay](Builder::lame_duck) comes before: readiness says
//!    503 while the server goes on serving.)
//! 5. **Drain.** Requests in handlers finish, queued requests are served, and every response
//!    from now on carries `Connection: close`, so keep-alive clients go elsewhere. The drain
//!    sees the connections (below): it waits for requests on their way, and for the
//!    [idle linger](Builder::idle_linger) (100 ms) for a request on an idle keep-alive
//!    connection; then it ends, without waiting on connections that stay idle.
//! 6. **Deadline.** At [`Builder::deadline`] (10 s by default, counted from the fire)
//!    requests still queued are answered `503` with `Retry-After`; handlers still running
//!    are named.
//! 7. **Timed join.** The [`Pool`] of workers is joined with the deadline
//!    ([`Pool::join_deadline`]): `run` returns within about 20 ms of it even if a handler
//!    never returns, so the process can exit.
//! 8. **Report.** [Shutdown hooks](Builder::on_shutdown) run with what is left of the
//!    deadline, then [`Server::run`] returns the [`Stopped`] server with its
//!    [`ShutdownReport`], or [`Error::DeadlineExceeded`] carrying it: the reason, timings,
//!    counts, and every request it could not finish, for a log or a retry queue. While the
//!    [`Stopped`] value lives, requests that still arrive get `503` + `Connection: close`.
//!
//! # Watching a drain
//!
//! A drain that lasts more than a second says once a second, at `info`, what it waits for:
//!
//! ```text
//! INFO  lameduck::server::drain] draining: 3 in handlers, 0 queued, 5 connections open, 7.2s left in_handlers=3 queued=0 connections_open=5 seconds_left=7.2
//! ```
//!
//! The numbers are `log` key-values too (`in_handlers`, `queued`, `connections_open` where
//! connections are seen, `seconds_left`), for a logger that keeps them (env_logger prints
//! them after the message with its `kv` feature). Then the report, as always: a scraper
//! never sees the last numbers once the process has exited, the log does.
//!
//! The same, at any time and from any thread: [`Handle::stats`] returns a [`Stats`]
//! snapshot ([`Phase`], requests waiting and in handlers, served, rejected, shed, handler
//! panics, connections open, time left to the deadline) from atomics alone, cheap enough
//! for every request; [`Builder::metrics`] serves it in Prometheus' text format, answered
//! with `Connection: close` during the drain like every response. With the `serde` feature
//! the [`ShutdownReport`] is `serde::Serialize`, for one JSON line in a log pipeline.
//!
//! # Restarting without refusing a connection
//!
//! [`Handle::upgrade`] (or SIGUSR2, [`Handle::upgrade_on_sigusr2`]) starts the program again
//! and hands it the listening socket; the new process's [`Server::bind`] takes it instead
//! of binding and says it is ready, and only then does this one fire its shutdown
//! ([`Reason::Upgrade`]), stop accepting and drain. The socket never closes: no connect is
//! refused. Nothing hurries the old process, so its drain waits longer for a request on an
//! idle keep-alive connection ([`Builder::upgrade_linger`], 1 s). A new process that fails
//! or is late is killed; this one serves on. On Windows
//! the socket goes over with `WSADuplicateSocketW`, and a file asks for it
//! ([`Handle::upgrade_on_file`]: Windows has no SIGUSR2).
//!
//! The same [`Server::bind`] takes a socket from systemd's socket activation
//! (`LISTEN_FDS`; [`Server::inherited`] takes the first), and leaves it open at its stop
//! for the next process. Under a `Type=notify` unit it tells systemd `READY=1`,
//! `STOPPING=1`, the drain's progress as `STATUS=`, and `EXTEND_TIMEOUT_USEC` so that the
//! stop timeout covers the deadline. See `examples/09_upgrade.rs`, and the README for the
//! units.
//!
//! The pieces work on their own: a program without HTTP uses [`trigger()`], [`signal`] and
//! [`Pool`] (see `examples/01_flag.rs` to `03_timed_join.rs`).
//!
//! # Connections: what Go tracks, and what lameduck sees
//!
//! Go's `http.Server` owns its connections and keeps a state for each: `StateNew` (accepted,
//! no request yet), `StateActive` (a request is being read or served), `StateIdle` (between
//! requests on a keep-alive connection). `Shutdown` closes the listeners, closes idle
//! connections at once, and waits until every active one has gone idle.
//!
//! tiny_http hides its connections: lameduck sees a request only once tiny_http has read it
//! whole. On Linux it reads the kernel's table of the TCP connections on its port instead
//! (`sock_diag`), which gives each connection's peer, TCP state, bytes received and not yet
//! read, and the times of its last data received and sent; held against whether a request
//! of each client came out of tiny_http, that gives Go's states and two more. What the drain does with
//! each:
//!
//! | state | Go | lameduck sees | the drain |
//! |---|---|---|---|
//! | new | `StateNew` | open, nothing received | waits up to the idle linger |
//! | active | `StateActive` | a request in a handler or waiting for a worker, or data received after the connection's last response went out: a head or body on its way | waits for it, up to the deadline |
//! | idle | `StateIdle` | nothing received since its last response went out | waits up to the idle linger: a request sent by then is served, `Connection: close` |
//! | unread | — | bytes waiting that no thread reads (tiny_http's pool left the connection without one) | frees it (a rescue), waits for it |
//! | stuck | — | a request began, then nothing for a second (a slow client, or tiny_http's HTTP/2.0 deadlock) | no longer waits; named in the report ([`ConnectionsLeft`]) |
//!
//! Where the table cannot be read (not Linux), the drain sees only requests: it waits the
//! idle linger after the last response that left a connection open, and does not see a
//! request on its way.
//!
//! # Anatomy
//!
//! The source tree, in reading order. Everything that exists because the server is built on
//! tiny_http lives in `tinyhttp/`, whose module doc lists each of tiny_http's quirks and
//! what lameduck does about it; nothing else touches tiny_http's `Server`.
//!
//! **`shutdown/`** — what works without HTTP.
//! - `trigger.rs` — [`trigger()`], [`Trigger`] / [`Listener`], [`Reason`], [`Fired`]: the
//!   flag and the broadcast.
//! - `signal.rs` — [`signal`]: the only code that calls `ctrlc`; what each OS delivers; the
//!   second signal.
//! - `watch.rs` — [`watch`]: triggers besides signals (heartbeat, a file, the end of stdin).
//! - `console.rs` — [`console`]: Windows' console close, log-off and shutdown, which end
//!   the process 5 s later: fired, and waited for until the drains are over.
//! - `service.rs` — [`service`]: running as a Windows service; the service control
//!   manager's requests, and what it is told while the drain lasts.
//! - `pool.rs`, `join.rs` — [`Pool`], [`JoinReport`]: named threads, exit reports over a
//!   channel, the timed join and what it found.
//! - `latch.rs`, `helper.rs` — lameduck's own one-shot broadcast, and the start, stop and
//!   bounded join of its background threads.
//!
//! **`server/`** — the server and its timeline.
//! - `mod.rs` — [`Server`], [`Handle`], [`Handler`], [`Stopped`].
//! - `config.rs` — [`Builder`], the defaults ([`DEFAULT_DEADLINE`], …).
//! - `phase.rs` — where the server is ([`Phase`]): Serving → LameDuck → Stopping →
//!   Draining → Overdue → Done.
//! - `drain.rs` — the timeline above, one function per phase, in order; the progress lines.
//! - `worker.rs` — the workers: take a request, run the handler, write the response.
//! - `crew.rs` — the workers started: two with the server, one more whenever a worker
//!   takes a request while every other one holds one, up to [`Builder::workers`]; those
//!   beyond two retired after 5 s in which no request reached the first.
//! - `slots.rs` — each worker's counts, and the request it is in the handler for.
//! - `stats.rs` — [`Stats`]: the counters and gauges a running server shows;
//!   `metrics.rs` — the same in Prometheus' text format ([`Builder::metrics`]).
//! - `health.rs`, `hooks.rs`, `archive.rs` ([`Unserved`]), `report.rs`
//!   ([`ShutdownReport`], [`Straggler`]).
//!
//! **`tinyhttp/`** — the seam.
//! - `queue.rs` — the requests tiny_http read: workers take them from its queue, and the
//!   drain takes it over.
//! - `socket.rs` — sealing the socket, stopping tiny_http's accept loop while its queue is
//!   still served; a new one when it died.
//! - `connections.rs` (`connections/linux.rs`), `peers.rs` — the OS's table of connections
//!   and what lameduck knows of each client: the states above.
//! - `supervisor.rs`, `parking.rs`, `rescue.rs`, `threads.rs` — connections tiny_http
//!   leaves without a thread: prevented by parking its idle threads on connections of
//!   lameduck's own, found by counting its threads, and freed.
//! - `framing.rs` — requests whose framing is ambiguous (request smuggling), refused.
//! - `shedder.rs` — the bound on waiting requests; `late_responder.rs` — the 503 after the
//!   drain; `gauges.rs` — the waiting requests and the connections last seen, for
//!   [`Stats`].
//! - `response.rs` — writing responses (`Connection: close`, 503, 500, 431); `body.rs` —
//!   [`Body`], a request body that fails rather than comes up short.
//!
//! **`restart/`** — restarting without refusing a connection.
//! - `inherited.rs` — [`Server::inherited`], [`InheritError`]: the listening sockets of
//!   systemd's socket activation (`LISTEN_FDS`) or of an upgrade, read once, checked, and
//!   taken by [`Server::bind`] before it binds.
//! - `upgrade.rs` — [`Handle::upgrade`], [`UpgradeError`]: the new process started with
//!   the socket, waited for, killed if it fails; one upgrade at a time.
//! - `baton.rs` — the line between the old process and the new: "ready" one way,
//!   "released" the other, so that only one accepts while the socket changes hands.
//! - `systemd.rs` — what a service manager is told when `NOTIFY_SOCKET` is set: `READY=1`
//!   once serving, `STOPPING=1` at the fire, the drain's progress as `STATUS=`, and
//!   `EXTEND_TIMEOUT_USEC` so that the unit's stop timeout covers the deadline.
//!
//! **`os/`** — the crate's only `unsafe`, one file per OS. `unix.rs`: a descriptor number
//! become a socket, and sockets given to a child as descriptor numbers; `windows.rs`: a
//! socket described for another process and opened there.
//!
//! **`error.rs`** — [`Error`], the one error type.
//!
//! # Limitations
//!
//! - **One thread per connection** (tiny_http's design): an idle keep-alive connection holds
//!   a thread. 1 000 idle connections cost about 1 000 threads and 25 MiB.
//! - **Idle keep-alive connections cannot be closed** by the server (tiny_http has no API
//!   for it): after the drain, a request on one is answered `503` + `Connection: close`
//!   while the [`Stopped`] value lives; once the process has exited the client sees the end
//!   of the stream (or a reset, if it had sent something), which HTTP clients retry for
//!   idempotent requests.
//! - **Connections are seen on Linux only.** Elsewhere a request still arriving when the
//!   drain ends (its head or a small body not yet whole) is not waited for, and connections
//!   in the kernel's backlog at the instant the socket closes are reset by the OS, as with
//!   Go's `Shutdown`. Windows has a table of connections (`GetExtendedTcpTable`, which works
//!   under wine too: `bash .ci/windows tcptable`), but a row holds state and endpoints
//!   only, not the bytes waiting unread nor the time of the last data, without which an
//!   idle connection and a request on its way look alike; its per-connection statistics
//!   need administrator rights (and wine lacks them). The drain there waits the idle linger
//!   after the last response that left a connection open, and rescues on timers.
//! - **A server at rest is not quite idle**: its supervisor checks its own accept loop every
//!   300 ms (on Linux, that its thread is there; elsewhere with a ping, a connection and a
//!   `400`), and on Linux looks at its connections in the kernel's table once a second
//!   (a system call per descriptor and a lookup per connection not seen read before, about
//!   0.1 ms for a few dozen) and holds up to 12 connections of its own,
//!   two descriptors each: tiny_http's idle threads parked, and up to 3 spares queued for
//!   the next threads whose connections end, so that a burst finds no thread waiting
//!   (`tinyhttp/supervisor.rs`, `tinyhttp/parking.rs`).
//! - **A burst can leave a few connections waiting tens of milliseconds** (Linux):
//!   tiny_http's pool queues connections without a thread when a burst meets a thread that
//!   went idle just before it (a probe that connected and closed); lameduck finds and frees
//!   them, but among hundreds of new threads on few cores its looks and the freed threads
//!   wait for a core like every other thread. `wrk -c256` on a fresh server, 2 cores: a
//!   rescue in about one run of four, the longest wait 20–150 ms, where connections with a
//!   thread of their own waited up to 40–90 ms for it to run (README, Performance).
//! - **A client per request costs the supervisor more**: connections arriving all the time
//!   keep it looking (lookups, about 0.1 ms for a few dozen, and rescues that watch new
//!   connections until their threads read them); lameduck served 0.89× plain tiny_http in
//!   such a run. Past 4 096 descriptors its looks are dumps of the kernel's whole table,
//!   which walk the sockets such a port leaves in `TIME_WAIT` too (tens of milliseconds
//!   each with a hundred thousand of them): they are paced to a tenth of a core by that
//!   cost, and a burst then is rescued later (`benches/NOTES.md`).
//! - **A connect in the sealed milliseconds waits a second** (Linux): its first packet is
//!   dropped, and the client's kernel sends it again after a second (TCP's initial
//!   retransmission timeout), to be refused or to reach the restarted server. A load
//!   balancer's connect timeout should be above a second.
//! - **A request line with HTTP/2.0** (an h2c prior-knowledge preface) makes tiny_http
//!   deadlock that connection's thread for the life of the process; any client can do it.
//!   The drain names it stuck and does not wait for it; put the server behind a proxy that
//!   speaks HTTP/1.1 upstream (nginx) where clients are not trusted.
//! - **A running handler cannot be stopped**: at the deadline it is named and left running;
//!   give it a [`Listener`] to stop early.
//! - **A shutdown within 5 s of a burst wakes every worker the burst started**: workers
//!   beyond the first two retire only after 5 s with (nearly) no request
//!   ([`Builder::workers`]).
//! - **An upgrade hands over the socket of the server asked**, one per process: a program with two servers
//!   cannot upgrade (its new process finds the second address in use, exits, and the
//!   upgrade fails cleanly).
//!
//! # Common mistakes
//!
//! - **Installing the signal handler twice** (or after the application's own `ctrlc`
//!   handler): `ctrlc` allows one per process; the second install returns
//!   [`Error::SignalHandlerExists`]. Install once and clone the [`Trigger`].
//! - **A handler that never returns** holds its worker for good and is cut at the deadline:
//!   let long handlers wait on a [`Listener`] ([`Listener::sleep`], `select!` on
//!   [`Listener::receiver`]).
//! - **Forgetting that the deadline covers the lame-duck delay**: both count from the fire.
//!   A 5 s delay with a 5 s deadline leaves no time to drain (lameduck cuts the delay to the
//!   deadline and says so).
//! - **A process manager that kills before the deadline**: systemd's `TimeoutStopSec`,
//!   Kubernetes' `terminationGracePeriodSeconds` must exceed the deadline.
//! - **Dropping the [`Stopped`] value at once** while clients may still send on old
//!   keep-alive connections: keep it until the process exits.
//! - **A keep-alive client pool in front** (nginx `keepalive`, a load balancer): its idle
//!   connections to the server see `Connection: close` only on their next response; the
//!   idle linger covers a request sent just after the fire, not one sent after the drain.
//!   Give the server a [lame-duck delay](Builder::lame_duck) longer than the pool's pace,
//!   so that every pooled connection is told to close while the server still serves.
//! - **A load balancer's connect timeout of a second or less**: see the limitation above;
//!   nginx's `proxy_connect_timeout 2s` is enough.
//! - **Upgrading a program that builds its server with [`Server::from_listener`]**: only
//!   [`Server::bind`] and [`Server::inherited`] take an inherited socket; the new process
//!   binds anew, finds the address in use, and the upgrade fails (cleanly: the old process
//!   serves on).
//! - **Spawning another lameduck program from a socket-activated one** without clearing
//!   `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` for it: the child's `build` fails
//!   with [`InheritError::OtherProcess`] rather than take sockets meant for its parent.
//!
//! # Log levels
//!
//! Through the `log` crate; lameduck never installs a logger. Targets are the module paths:
//! `lameduck::shutdown::signal` for signals, `lameduck::server::drain` for the timeline,
//! `lameduck::server::worker` for each request.
//!
//! | level | what |
//! |---|---|
//! | `error` | a handler panicked (answered 500); the accept loop died while serving; an upgrade failed (the server serves on) |
//! | `warn` | the deadline was exceeded (with the report); a second signal; a stop that could not be confirmed; an upgrade refused |
//! | `info` | each shutdown phase: serving, lame duck, stop accepting and drain, the report; once a second of a drain that lasts, where it is (`draining: …`, with key-values); each step of an upgrade; an inherited socket taken |
//! | `debug` | each request, when answered; the end of the accept loop |
//! | `trace` | each request, when received |
//!
//! tiny_http logs `Error accepting new client` at `error` when its accept loop ends, which
//! lameduck makes it do at every shutdown: filter `tiny_http` out (`RUST_LOG=info,tiny_http=off`,
//! as the examples do).
//!
//! # Platforms
//!
//! Linux, macOS and Windows alike; the differences, and what each OS delivers, are in
//! [`signal`]. Windows: closing the console window, logging off or shutting down fires
//! shutdown and holds the process until the drain is over, within the 5 s Windows allows
//! ([`console`]); as a service ([`service`], feature `service`) the service control
//! manager's STOP and PRESHUTDOWN drain, and a log-off is ignored. The README's platform
//! table says which of these were checked under wine and which at the seam. The connection table (the drain's view of connections, and the
//! rescue on evidence), the parking of tiny_http's idle threads and the seal are Linux's; elsewhere the drain waits the idle linger
//! after the last keep-alive response, the rescue is timed, and the socket is closed once
//! every connection accepted so far has a thread. Upgrades in place work on Unix and
//! Windows (SIGUSR2 is Unix's); inherited sockets and systemd's notifications are Unix's
//! (see the README's platform table).
//!
//! # Safety
//!
//! `#![deny(unsafe_code)]`, allowed in one module per OS and nowhere else: on Unix
//! `os/unix.rs`, where a descriptor number announced by the environment (socket
//! activation, an upgrade) is checked and becomes a socket, and where the new process of
//! an upgrade gets the socket as a descriptor number (`pre_exec` + `dup2`); on Windows
//! `os/windows.rs`, where the socket is described for the new process of an upgrade
//! (`WSADuplicateSocketW`) and opened there (`WSASocketW`). Each `unsafe` block has its
//! `SAFETY:` comment.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod os;
mod restart;
mod server;
mod shutdown;
mod tinyhttp;

pub use error::Error;
pub use restart::inherited::InheritError;
pub use restart::upgrade::{UpgradeError, DEFAULT_UPGRADE_TIMEOUT};
pub use server::archive::{Unserved, Why};
pub use server::config::{
    default_workers, Builder, DEFAULT_DEADLINE, DEFAULT_IDLE_LINGER, DEFAULT_MAX_REQUEST_HEAD,
    DEFAULT_MAX_WAITING, DEFAULT_RETRY_AFTER, DEFAULT_UPGRADE_LINGER, DEFAULT_WRITE_TIMEOUT,
};
pub use server::phase::Phase;
pub use server::report::{ConnectionsLeft, HookOutcome, HookReport, ShutdownReport, Straggler};
pub use server::stats::Stats;
pub use server::stopped::Stopped;
pub use server::{Handle, Handler, Server};
pub use shutdown::console;
pub use shutdown::console::ConsoleEvent;
pub use shutdown::join::{JoinReport, Panicked};
pub use shutdown::pool::Pool;
pub use shutdown::service;
pub use shutdown::service::ServiceStop;
pub use shutdown::signal;
pub use shutdown::signal::{SecondSignal, Signals};
pub use shutdown::trigger::{trigger, Fired, Interrupted, Listener, Reason, Trigger};
pub use shutdown::watch;
pub use tinyhttp::{read_body, Body};

/// The HTTP library lameduck serves with, re-exported: handlers take its
/// [`Request`](tiny_http::Request) and return its [`ResponseBox`](tiny_http::ResponseBox).
pub use tiny_http;

#[allow(dead_code)]
fn _ensure_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Trigger>();
    is::<Listener>();
    is::<Error>();
    is::<Stats>();
}

/// The README's code blocks, compiled and run as doctests so that they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
