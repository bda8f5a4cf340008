//! Configuring a server: the [`Builder`], its defaults, and the settings it hands the server.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use super::archive::Unserved;
use super::health::Health;
use super::hooks::Hook;
use super::{Archive, Handler, Server};
use crate::error::Error;
use crate::restart::inherited::{self, InheritError, Inherited, Origin, Pick};
use crate::restart::upgrade::{CommandFn, DEFAULT_UPGRADE_TIMEOUT};
use crate::shutdown::trigger::Trigger;
use crate::tinyhttp::Http;

/// The shutdown deadline when none is set: 10 seconds, as in the Go program lameduck ports.
/// A convention, not a measurement; `run` returns 9.5 ms past a 1 s deadline (`cargo bench
/// --bench shutdown -- --only deadline`, 2026-12-02).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// The `Retry-After` of lameduck's 503 answers when none is set. A hint to clients, chosen
/// without a measurement: nothing in lameduck waits on it.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The idle linger when none is set. See [`Builder::idle_linger`]. Not from a measurement;
/// its cost and gain are: 1 000 idle connections exit at linger + 43 ms (`cargo bench
/// --bench shutdown -- --only idle`, 2026-12-02); requests sent on idle connections within
/// 100 ms of the signal: 398 of 398 served, Go 1 of 399 (`cargo bench --bench versus_go`).
pub const DEFAULT_IDLE_LINGER: Duration = Duration::from_millis(100);

/// The idle linger of an upgrade's old process when none is set. See
/// [`Builder::upgrade_linger`]. Not from a measurement: ten times the idle linger. The
/// upgrade test's keep-alive clients, beside two busy loops on a 2-core machine, were seen
/// to send their next request more than 100 ms after the fire (`tests/process/upgrade.rs`).
pub const DEFAULT_UPGRADE_LINGER: Duration = Duration::from_secs(1);

/// The write timeout when none is set. See [`Builder::write_timeout`]. Not from a
/// measurement; measured is how late a stalled write frees its worker: about 1.2× the
/// timeout on Linux, 2× under wine (`tests/library/reliability.rs`).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (request line and headers) served when no limit is set. See
/// [`Builder::max_request_head`].
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How many requests may wait for a worker when none is set. See [`Builder::max_waiting`].
pub const DEFAULT_MAX_WAITING: usize = 1024;

/// The default number of workers: 8 per CPU, at least 8, at most 128.
///
/// Handlers are expected to block (on files, databases, other services, or a `sleep` as in
/// the seed program), so there are more workers than cores; each worker runs one handler at
/// a time. Raise it for slow handlers under many clients, lower it for CPU-bound handlers.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 8).clamp(8, 128)
}

pub(super) enum Bind {
    /// An inherited socket that serves one of them, or else one of them bound.
    Addrs(io::Result<Vec<SocketAddr>>),
    Listener(TcpListener),
    /// The first inherited socket left.
    Inherited,
}

/// The settings the server runs with, from the [`Builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) deadline: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) idle_linger: Duration,
    /// The idle linger of the old process of an upgrade.
    pub(crate) upgrade_linger: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_request_head: usize,
    pub(crate) max_waiting: usize,
    /// Never longer than the deadline.
    pub(crate) lame_duck: Duration,
    pub(crate) health: Health,
    /// The path of the metrics endpoint, if on.
    pub(crate) metrics: Option<String>,
    /// How long the new process of an upgrade may take to be ready.
    pub(crate) upgrade_timeout: Duration,
    /// What starts the new process of an upgrade, if not the program again.
    pub(crate) upgrade_command: Option<CommandFn>,
    /// The address the server was asked to bind, for the new process of an upgrade.
    pub(crate) asked: Option<SocketAddr>,
}

/// Configures a [`Server`]; made by [`Server::bind`] or [`Server::from_listener`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    bind: Bind,
    config: Config,
    hooks: Vec<Hook>,
    archive: Option<Archive>,
    trigger: Option<Trigger>,
}

impl Builder {
    pub(super) fn new(bind: Bind) -> Builder {
        Builder {
            bind,
            config: Config {
                workers: default_workers(),
                deadline: DEFAULT_DEADLINE,
                retry_after: DEFAULT_RETRY_AFTER,
                idle_linger: DEFAULT_IDLE_LINGER,
                upgrade_linger: DEFAULT_UPGRADE_LINGER,
                write_timeout: DEFAULT_WRITE_TIMEOUT,
                max_request_head: DEFAULT_MAX_REQUEST_HEAD,
                max_waiting: DEFAULT_MAX_WAITING,
                lame_duck: Duration::ZERO,
                health: Health::default(),
                metrics: None,
                upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
                upgrade_command: None,
                asked: None,
            },
            hooks: Vec::new(),
            archive: None,
            trigger: None,
        }
    }

    /// The most worker threads, each running one handler at a time. Default:
    /// [`default_workers`]. At least 1.
    ///
    /// Two are started with the server; a worker that takes a request while every other
    /// one holds a request too starts one more, until this many run. After 5 s in which no
    /// request reached the first worker, those beyond the first two end. So an idle server
    /// holds two threads, and its shutdown wakes and joins two.
    pub fn workers(mut self, workers: usize) -> Builder {
        self.config.workers = workers.max(1);
        self
    }

    /// How long the drain may take, counted from the fire. Default: [`DEFAULT_DEADLINE`]
    /// (10 s).
    pub fn deadline(mut self, deadline: Duration) -> Builder {
        self.config.deadline = deadline;
        self
    }

    /// The `Retry-After` sent with lameduck's 503 answers, in whole seconds (at least 1).
    /// Default: [`DEFAULT_RETRY_AFTER`] (5 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Builder {
        self.config.retry_after = retry_after;
        self
    }

    /// How long after the fire the drain waits for requests on connections that are open
    /// and idle (between requests, or opened and silent). Default: [`DEFAULT_IDLE_LINGER`]
    /// (100 ms).
    ///
    /// A client in a request loop sends its next request on the same connection as soon as
    /// it has read a response; if the fire falls in between, that request arrives after the
    /// drain could have ended, and a server that has exited resets it: lost. Go's `Shutdown`
    /// closes idle connections at once and loses it; lameduck serves every request sent on
    /// an idle connection up to this long after the fire (with `Connection: close`).
    ///
    /// What happens to a connection still idle when the linger ends: it stays open, and a
    /// request on it is answered `503` + `Connection: close` while the [`Stopped`] value
    /// lives; when the process exits, the kernel closes it (the client sees the end of the
    /// stream, or a reset if it had sent something). A request on its way (its head or body
    /// still arriving) is waited for past the linger, up to the deadline: it is not idle.
    ///
    /// It costs nothing when no connection is open. Where the connection table cannot be
    /// read (not Linux), connections are not seen: the drain then waits this long after the
    /// last response that left a connection open. Zero: idle connections do not hold the
    /// drain.
    ///
    /// [`Stopped`]: crate::Stopped
    pub fn idle_linger(mut self, linger: Duration) -> Builder {
        self.config.idle_linger = linger;
        self
    }

    /// How long a write to a client may block before the client counts as gone. Default:
    /// [`DEFAULT_WRITE_TIMEOUT`] (30 s). Zero turns it off.
    ///
    /// A client that stops reading a large response fills the socket's buffers and blocks
    /// the worker writing to it. After one write has blocked this long, the response is
    /// abandoned and the worker is free again: measured, a worker writing 64 MiB to a client
    /// that never reads is free after about 1.2× the timeout on Linux (2× under wine). A
    /// slow client that keeps
    /// reading is never cut: the limit is on one write making no progress, not on the whole
    /// response. Set as `SO_SNDTIMEO` on the listening socket, which accepted connections
    /// inherit (checked on Linux, and Windows under wine).
    ///
    /// One case takes longer: a request *with a body* answered while serving (not during
    /// shutdown) is written by tiny_http itself, so that the response goes out before the
    /// rest of an unread body is read; after a stall tiny_http writes up to twice more, each
    /// blocking up to the timeout (about 3× in all).
    pub fn write_timeout(mut self, timeout: Duration) -> Builder {
        self.config.write_timeout = timeout;
        self
    }

    /// The largest request head (request line and headers, in bytes) served; a larger one is
    /// answered `431 Request Header Fields Too Large` without reaching the handler. Default:
    /// [`DEFAULT_MAX_REQUEST_HEAD`] (64 KiB).
    ///
    /// tiny_http has read the whole head into memory by then (it has no limit of its own);
    /// the limit keeps it from the handler, and the memory is freed when it is answered.
    pub fn max_request_head(mut self, bytes: usize) -> Builder {
        self.config.max_request_head = bytes;
        self
    }

    /// How many requests may wait for a worker while every worker is busy. Beyond that, a
    /// new request is answered `503 Service Unavailable` with `Retry-After` and
    /// `Connection: close` at once, instead of waiting (and memory growing) without bound.
    /// Default: [`DEFAULT_MAX_WAITING`] (1024). Zero: no waiting, a request that finds
    /// every worker busy is turned away.
    ///
    /// Counted in [`ShutdownReport::shed`](crate::ShutdownReport::shed).
    pub fn max_waiting(mut self, requests: usize) -> Builder {
        self.config.max_waiting = requests;
        self
    }

    /// Serves a readiness endpoint at `path` (say `"/readyz"`): `200 ready` until shutdown
    /// fires, `503` from that moment on, so that a load balancer or Kubernetes stops sending
    /// traffic. Not passed to the handler; counted apart
    /// ([`ShutdownReport::health_checks`](crate::ShutdownReport::health_checks)).
    pub fn readiness(mut self, path: impl Into<String>) -> Builder {
        self.config.health.readiness = Some(path.into());
        self
    }

    /// Serves a liveness endpoint at `path` (say `"/livez"`): `200 alive` while the server
    /// serves, the drain included. Not passed to the handler; counted apart.
    pub fn liveness(mut self, path: impl Into<String>) -> Builder {
        self.config.health.liveness = Some(path.into());
        self
    }

    /// Serves the server's [`Stats`](crate::Stats) at `path` (say `"/metrics"`) in
    /// Prometheus' text format (version 0.0.4): a `GET` on it is answered by lameduck, not
    /// passed to the handler, and not counted as served. Default: off.
    ///
    /// Gauges: `lameduck_phase{phase="…"}` (1 for the phase the server is in),
    /// `lameduck_requests_in_handlers`, `lameduck_requests_waiting`,
    /// `lameduck_connections_open` (where the OS's table is read),
    /// `lameduck_deadline_seconds_left` (once shutdown has fired),
    /// `lameduck_last_drain_duration_seconds` (once the drain is over). Counters:
    /// `lameduck_requests_served_total`, `lameduck_requests_rejected_total`,
    /// `lameduck_requests_shed_total`, `lameduck_handler_panics_total`,
    /// `lameduck_drains_total`.
    ///
    /// During the drain it is answered with `Connection: close`, as every response then:
    /// a scraper's keep-alive connection does not hold the drain. After the drain it is
    /// still answered, while the [`Stopped`](crate::Stopped) value lives; once the process
    /// has exited no scraper sees the last numbers, which is why the report goes to the log.
    ///
    /// ```
    /// # use lameduck::tiny_http::{Request, Response};
    /// let server = lameduck::Server::bind("127.0.0.1:0")
    ///     .metrics("/metrics")
    ///     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    pub fn metrics(mut self, path: impl Into<String>) -> Builder {
        self.config.metrics = Some(path.into());
        self
    }

    /// After shutdown fires, go on accepting and serving for `delay` before the drain, while
    /// readiness answers `503` and every response says `Connection: close`. Default: zero.
    ///
    /// Load balancers and Kubernetes take the server out of rotation at about the moment they
    /// send SIGTERM, not before: requests keep arriving for a while. During the delay they
    /// are served, clients holding keep-alive connections are told to reconnect (and get
    /// rebalanced), and health checks see the server leave. Then the drain stops accepting.
    ///
    /// The [deadline](Builder::deadline) counts from the fire and covers the delay and the
    /// drain: give it room for both (see the README's deployment guide for sizing a
    /// Kubernetes `terminationGracePeriodSeconds` or a systemd `TimeoutStopSec`).
    pub fn lame_duck(mut self, delay: Duration) -> Builder {
        self.config.lame_duck = delay;
        self
    }

    /// Runs `hook` after the drain, with the deadline as argument (Go's
    /// `RegisterOnShutdown`). Hooks run in the order registered, each on its own thread,
    /// sharing what is left of the deadline; one that panics or is still running at the
    /// deadline is named in the report ([`ShutdownReport::hooks`](crate::ShutdownReport::hooks))
    /// and does not stop the others.
    ///
    /// ```
    /// # use lameduck::tiny_http::{Request, Response};
    /// let server = lameduck::Server::bind("127.0.0.1:0")
    ///     .on_shutdown("flush metrics", |deadline| {
    ///         // write what is buffered, giving up at `deadline`
    ///         let _ = deadline;
    ///     })
    ///     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    pub fn on_shutdown(
        mut self,
        name: impl Into<String>,
        hook: impl FnOnce(std::time::Instant) + Send + 'static,
    ) -> Builder {
        self.hooks.push(Hook {
            name: name.into(),
            run: Box::new(hook),
        });
        self
    }

    /// Hands every request the server read but could not serve to `archive`: requests
    /// answered `503` during shutdown (with their body, up to 1 MiB) and requests whose handler
    /// the deadline cut (without it). For a retry queue or a log: the evidence for later
    /// repair. Called from lameduck's threads, one call at a time; a panic in it is caught
    /// and logged. See `examples/10_archive.rs` and `11_replay.rs`.
    pub fn on_unserved(mut self, archive: impl FnMut(Unserved) + Send + 'static) -> Builder {
        self.archive = Some(Mutex::new(Box::new(archive)));
        self
    }

    /// How long the new process of an [upgrade](crate::Handle::upgrade) may take, from its
    /// start until its server is built on the socket handed to it. Default:
    /// [`DEFAULT_UPGRADE_TIMEOUT`](crate::DEFAULT_UPGRADE_TIMEOUT) (10 s). Past it the new
    /// process is killed, and this one serves on.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Builder {
        self.config.upgrade_timeout = timeout;
        self
    }

    /// The [idle linger](Builder::idle_linger) of this process once an
    /// [upgrade](crate::Handle::upgrade) has made it the old one. Default:
    /// [`DEFAULT_UPGRADE_LINGER`] (1 s). The longer of the two is used.
    ///
    /// At an upgrade nothing hurries the old process: the new one serves. Its keep-alive
    /// clients, though, send their next request on the connection they hold, to it; one that
    /// comes after the linger is answered `503` (see [`Builder::idle_linger`]). A longer
    /// linger serves the late ones (each with `Connection: close`, so that its client
    /// connects again, to the new process); the cost is the old process living that much
    /// longer when a client keeps a connection open and silent. The drain ends sooner once
    /// every connection has closed.
    pub fn upgrade_linger(mut self, linger: Duration) -> Builder {
        self.config.upgrade_linger = linger;
        self
    }

    /// What an [upgrade](crate::Handle::upgrade) starts, instead of the program again with
    /// the same arguments: say, a new binary at another path, or other arguments. Called
    /// once per upgrade; lameduck adds the socket (descriptor 3), the baton (4) and two
    /// variables of its own.
    ///
    /// ```
    /// # use lameduck::tiny_http::{Request, Response};
    /// let server = lameduck::Server::bind("127.0.0.1:0")
    ///     .upgrade_command(|| {
    ///         let mut cmd = std::process::Command::new("/usr/local/bin/my-server");
    ///         cmd.arg("--config").arg("/etc/my-server.toml");
    ///         cmd
    ///     })
    ///     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    pub fn upgrade_command(
        mut self,
        command: impl Fn() -> std::process::Command + Send + Sync + 'static,
    ) -> Builder {
        self.config.upgrade_command = Some(CommandFn(std::sync::Arc::new(command)));
        self
    }

    /// Shuts down when `trigger` fires, instead of a trigger of the server's own.
    ///
    /// Share one trigger between the server, [`signal::install`](crate::signal::install) and
    /// the handler's [`Listener`](crate::Listener), so that one signal stops them all.
    pub fn trigger(mut self, trigger: Trigger) -> Builder {
        self.trigger = Some(trigger);
        self
    }

    /// Binds (if not given a listener) and starts accepting connections. Requests are queued
    /// until [`Server::run`] starts the workers.
    ///
    /// # Errors
    ///
    /// - [`Error::Inherit`] if the environment announces inherited sockets
    ///   (`LISTEN_FDS`) that cannot be taken, or, for [`Server::inherited`], if there is
    ///   none: nothing is bound then.
    /// - [`Error::Bind`] if no address could be bound (or resolved).
    /// - [`Error::Listener`] if the listener could not be set up (its address read, cloned).
    /// - [`Error::Start`] if tiny_http could not start.
    pub fn build(self, handler: impl Handler) -> Result<Server, Error> {
        let mut asked = None;
        let listener = match self.bind {
            Bind::Listener(listener) => Listening::own(listener),
            Bind::Addrs(addrs) => inherit_or_bind(addrs, &mut asked)?,
            Bind::Inherited => match inherited::take(Pick::First).map_err(Error::Inherit)? {
                Some(socket) => adopt(socket, None),
                None => return Err(Error::Inherit(InheritError::Nothing)),
            },
        };
        let mut config = self.config;
        config.asked = asked;
        if config.lame_duck > config.deadline {
            log::warn!(
                "lame-duck delay of {:?} cut to the deadline of {:?}: no time is left to drain",
                config.lame_duck,
                config.deadline
            );
            config.lame_duck = config.deadline;
        }
        let http = Http::start(
            listener.listener,
            config.max_waiting,
            config.write_timeout,
            listener.keep_open,
        )?;
        let trigger = self
            .trigger
            .unwrap_or_else(|| crate::shutdown::trigger::trigger().0);
        Ok(Server::new(
            http,
            config,
            Box::new(handler),
            trigger,
            self.hooks,
            self.archive,
        ))
    }
}

/// Takes an inherited socket that serves one of `addrs`, or else binds one of them; `asked`
/// is the first of them.
fn inherit_or_bind(
    addrs: io::Result<Vec<SocketAddr>>,
    asked: &mut Option<SocketAddr>,
) -> Result<Listening, Error> {
    let addrs = addrs.map_err(|source| Error::Bind {
        addr: "(unresolved address)".to_owned(),
        source,
    })?;
    *asked = addrs.first().copied();
    match inherited::take(Pick::Serving(&addrs)).map_err(Error::Inherit)? {
        Some(socket) => Ok(adopt(socket, addrs.first())),
        None => bind(&addrs).map(Listening::own),
    }
}

/// The listener of an inherited socket, said in the log; in an upgrade, once the old process
/// has released it (see `restart/baton.rs`).
fn adopt(socket: Inherited, asked: Option<&SocketAddr>) -> Listening {
    let name = match socket.origin {
        Origin::Systemd => format!(" ({})", socket.name),
        Origin::Upgrade { .. } => String::new(),
    };
    match asked {
        Some(asked) => log::info!(
            "listening on {}{name}, inherited from {}, instead of binding {asked}",
            socket.local,
            socket.origin
        ),
        None => log::info!(
            "listening on {}{name}, inherited from {}",
            socket.local,
            socket.origin
        ),
    }
    // A seal left by a process that died in its few sealed milliseconds would drop every
    // new connection for good: none is meant to be there.
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(&socket.listener).detach_filter();
    #[cfg(any(unix, windows))]
    if let Some(baton) = socket.baton {
        take_over(baton);
    }
    Listening {
        listener: socket.listener,
        keep_open: socket.keep_open,
    }
}

/// The socket a server accepts from.
struct Listening {
    listener: TcpListener,
    /// It outlives this process, held by whoever handed it over (systemd), so that a
    /// restarted server takes it again: the stop leaves it as it is (see
    /// [`Http::start`]).
    keep_open: bool,
}

impl Listening {
    /// A socket this process bound, or was given by the application.
    fn own(listener: TcpListener) -> Listening {
        Listening {
            listener,
            keep_open: false,
        }
    }
}

/// The new process of an upgrade: says it is ready, and waits until the old process has
/// stopped accepting (or is gone) before it accepts itself.
#[cfg(any(unix, windows))]
fn take_over(mut baton: crate::restart::baton::Baton) {
    use crate::restart::baton::Broken;
    if let Err(e) = baton.say_ready() {
        log::warn!("upgrade: could not tell the old process it is ready ({e}): accepting");
        return;
    }
    match baton.wait_released(RELEASE_TIMEOUT) {
        Ok(()) => log::info!("upgrade: the old process released the socket: accepting"),
        Err(Broken::Closed) => log::info!("upgrade: the old process is gone: accepting"),
        Err(e) => log::warn!(
            "upgrade: the old process did not release the socket ({e}) within \
             {RELEASE_TIMEOUT:?}: accepting beside it"
        ),
    }
}

/// How long the new process of an upgrade waits for the old one to stop accepting. The
/// stop takes milliseconds; a bound, not a measurement.
#[cfg(any(unix, windows))]
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

fn bind(addrs: &[SocketAddr]) -> Result<TcpListener, Error> {
    let mut last = None;
    for addr in addrs {
        match listen(*addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, source)) => Error::Bind {
            addr: addr.to_string(),
            source,
        },
        None => Error::Bind {
            addr: "(no address)".to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ),
        },
    })
}

/// Binds a listening socket to `addr` as `TcpListener::bind` does (`SO_REUSEADDR` on Unix),
/// but with the backlog Go gives its listeners rather than std's 128: at 256 connections
/// opened at once, a backlog of 128 overflowed for 100 or so of them in most runs (Linux's
/// `TcpExtListenOverflows`, `wrk -c256`, 2026-12-02), and a client whose handshake is
/// dropped so tries again a second later.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog())?;
    Ok(socket.into())
}

/// The listen backlog: as Go does, the system's limit where it can be read (Linux:
/// `net.core.somaxconn`, 4096 on current kernels), `SOMAXCONN` on Windows (the system picks
/// a reasonable maximum), 1024 elsewhere (the kernel lowers it to its own limit).
fn backlog() -> i32 {
    if cfg!(windows) {
        return i32::MAX;
    }
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|&n| n > 0)
        .map_or(1024, |n| n.min(65_535))
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
