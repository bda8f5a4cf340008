//! The HTTP server: a builder, the [`Server`] with its shutdown timeline, and a [`Handle`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::{Request, ResponseBox};

use crate::accept::{reach, Acceptor};
use crate::archive::Unserved;
use crate::connections::Table;
use crate::hooks::{self, Hook};
use crate::late::Late;
use crate::probe::{self, Supervisor};
use crate::report::ShutdownReport;
use crate::room::Shedder;
use crate::state::{lock, Archive, Health, Phase, Settings, State};
use crate::worker::{self, Serves, DRAIN_POLL};
use crate::{Error, Listener, Pool, Reason, Trigger};

/// The shutdown deadline when none is set: 10 seconds, as in the Go program lameduck ports.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// The `Retry-After` of lameduck's 503 answers when none is set.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The keep-alive grace when none is set. See [`Builder::keep_alive_grace`].
pub const DEFAULT_KEEP_ALIVE_GRACE: Duration = Duration::from_millis(20);

/// The write timeout when none is set. See [`Builder::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (request line and headers) served when no limit is set. See
/// [`Builder::max_request_head`].
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How many requests may wait for a worker when none is set. See [`Builder::max_waiting`].
pub const DEFAULT_MAX_WAITING: usize = 1024;

/// After the deadline, how long (beyond one drain poll) workers that are between requests
/// get to notice it; those still running after that are in a handler.
const OVERDUE_GRACE: Duration = Duration::from_millis(2);

/// How long before the end of a lame-duck delay responses start to wait for the socket's
/// close (see `worker::close_now`).
const STOPPING_LEAD: Duration = Duration::from_millis(5);

/// How long `run` waits for the late responder to answer what was queued at the deadline,
/// so that the report can count it.
const BACKLOG_WAIT: Duration = Duration::from_millis(50);

/// Handles one request: reads what it needs from it (the body too) and returns the response.
///
/// Implemented for every `Fn(&mut Request) -> ResponseBox + Send + Sync + 'static`. It runs
/// on a worker thread; many run at once. A panic is caught: the client gets `500`, the panic
/// message is logged, the worker carries on.
///
/// To cut long work short when shutdown fires, give the handler a [`Listener`] (from the
/// [`Trigger`] passed to [`Builder::trigger`], or from [`Server::handle`]):
///
/// ```
/// use std::time::{Duration, Instant};
/// use lameduck::tiny_http::{Response, StatusCode};
///
/// let (trigger, listener) = lameduck::trigger();
/// let server = lameduck::Server::bind("127.0.0.1:0")
///     .trigger(trigger)
///     .build(move |_request: &mut lameduck::tiny_http::Request| {
///         match listener.sleep(Duration::from_secs(30)) {
///             Ok(()) => Response::from_string("done").boxed(),
///             Err(_) => Response::from_string("cut short by shutdown")
///                 .with_status_code(StatusCode(503))
///                 .boxed(),
///         }
///     })?;
/// # Ok::<(), lameduck::Error>(())
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers `request`.
    fn handle(&self, request: &mut Request) -> ResponseBox;
}

impl<F> Handler for F
where
    F: Fn(&mut Request) -> ResponseBox + Send + Sync + 'static,
{
    fn handle(&self, request: &mut Request) -> ResponseBox {
        self(request)
    }
}

/// The default number of workers: 8 per CPU, at least 8, at most 128.
///
/// Handlers are expected to block (on files, databases, other services, or a `sleep` as in
/// the seed program), so there are more workers than cores; each worker runs one handler at
/// a time. Raise it for slow handlers under many clients, lower it for CPU-bound handlers.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 8).clamp(8, 128)
}

enum Bind {
    Addrs(io::Result<Vec<SocketAddr>>),
    Listener(TcpListener),
}

/// Configures a [`Server`]; made by [`Server::bind`] or [`Server::from_listener`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    bind: Bind,
    workers: usize,
    deadline: Duration,
    retry_after: Duration,
    keep_alive_grace: Duration,
    write_timeout: Duration,
    max_request_head: usize,
    max_waiting: usize,
    lame_duck: Duration,
    health: Health,
    hooks: Vec<Hook>,
    archive: Option<Archive>,
    trigger: Option<Trigger>,
}

impl Builder {
    fn new(bind: Bind) -> Builder {
        Builder {
            bind,
            workers: default_workers(),
            deadline: DEFAULT_DEADLINE,
            retry_after: DEFAULT_RETRY_AFTER,
            keep_alive_grace: DEFAULT_KEEP_ALIVE_GRACE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_request_head: DEFAULT_MAX_REQUEST_HEAD,
            max_waiting: DEFAULT_MAX_WAITING,
            lame_duck: Duration::ZERO,
            health: Health::default(),
            hooks: Vec::new(),
            archive: None,
            trigger: None,
        }
    }

    /// Number of worker threads, each running one handler at a time. Default:
    /// [`default_workers`]. At least 1.
    pub fn workers(mut self, workers: usize) -> Builder {
        self.workers = workers.max(1);
        self
    }

    /// How long the drain may take, counted from the fire. Default: [`DEFAULT_DEADLINE`]
    /// (10 s).
    pub fn deadline(mut self, deadline: Duration) -> Builder {
        self.deadline = deadline;
        self
    }

    /// The `Retry-After` sent with lameduck's 503 answers, in whole seconds (at least 1).
    /// Default: [`DEFAULT_RETRY_AFTER`] (5 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Builder {
        self.retry_after = retry_after;
        self
    }

    /// How long the drain keeps serving connections that a keep-alive response left open
    /// shortly before the fire. Default: [`DEFAULT_KEEP_ALIVE_GRACE`] (20 ms).
    ///
    /// A client in a request loop sends its next request on the same connection as soon as
    /// it has read a response. If the fire falls in between, that request reaches the server
    /// after the drain could have ended, and a server that has exited resets it: lost. So
    /// the drain lasts until no response without `Connection: close` has been written for
    /// this long. It costs nothing when the server was idle before the fire; under load it
    /// adds this much to the shutdown. Zero turns it off.
    pub fn keep_alive_grace(mut self, grace: Duration) -> Builder {
        self.keep_alive_grace = grace;
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
        self.write_timeout = timeout;
        self
    }

    /// The largest request head (request line and headers, in bytes) served; a larger one is
    /// answered `431 Request Header Fields Too Large` without reaching the handler. Default:
    /// [`DEFAULT_MAX_REQUEST_HEAD`] (64 KiB).
    ///
    /// tiny_http has read the whole head into memory by then (it has no limit of its own);
    /// the limit keeps it from the handler, and the memory is freed when it is answered.
    pub fn max_request_head(mut self, bytes: usize) -> Builder {
        self.max_request_head = bytes;
        self
    }

    /// How many requests may wait for a worker while every worker is busy. Beyond that, a
    /// new request is answered `503 Service Unavailable` with `Retry-After` and
    /// `Connection: close` at once, instead of waiting (and memory growing) without bound.
    /// Default: [`DEFAULT_MAX_WAITING`] (1024). Zero: no waiting, a request that finds
    /// every worker busy is turned away.
    ///
    /// Counted in [`ShutdownReport::shed`]. See the `room` module for how it is done over
    /// tiny_http's unbounded queue.
    pub fn max_waiting(mut self, requests: usize) -> Builder {
        self.max_waiting = requests;
        self
    }

    /// Serves a readiness endpoint at `path` (say `"/readyz"`): `200 ready` until shutdown
    /// fires, `503` from that moment on, so that a load balancer or Kubernetes stops sending
    /// traffic. Not passed to the handler; counted apart ([`ShutdownReport::health_checks`]).
    pub fn readiness(mut self, path: impl Into<String>) -> Builder {
        self.health.readiness = Some(path.into());
        self
    }

    /// Serves a liveness endpoint at `path` (say `"/livez"`): `200 alive` while the server
    /// serves, the drain included. Not passed to the handler; counted apart.
    pub fn liveness(mut self, path: impl Into<String>) -> Builder {
        self.health.liveness = Some(path.into());
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
        self.lame_duck = delay;
        self
    }

    /// Runs `hook` after the drain, with the deadline as argument (Go's
    /// `RegisterOnShutdown`). Hooks run in the order registered, each on its own thread,
    /// sharing what is left of the deadline; one that panics or is still running at the
    /// deadline is named in the report ([`ShutdownReport::hooks`]) and does not stop the
    /// others.
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
    /// and logged. See `examples/08_report_archive.rs`.
    pub fn on_unserved(mut self, archive: impl FnMut(Unserved) + Send + 'static) -> Builder {
        self.archive = Some(Mutex::new(Box::new(archive)));
        self
    }

    /// Shuts down when `trigger` fires, instead of a trigger of the server's own.
    ///
    /// Share one trigger between the server, [`signal::install`](crate::signal::install) and
    /// the handler's [`Listener`], so that one signal stops them all.
    pub fn trigger(mut self, trigger: Trigger) -> Builder {
        self.trigger = Some(trigger);
        self
    }

    /// Binds (if not given a listener) and starts accepting connections. Requests are queued
    /// until [`Server::run`] starts the workers.
    ///
    /// # Errors
    ///
    /// - [`Error::Bind`] if no address could be bound (or resolved).
    /// - [`Error::Listener`] if the listener could not be set up (its address read, cloned).
    /// - [`Error::Start`] if tiny_http could not start.
    pub fn build(self, handler: impl Handler) -> Result<Server, Error> {
        let listener = match self.bind {
            Bind::Listener(listener) => listener,
            Bind::Addrs(addrs) => bind(addrs)?,
        };
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Listener("read the listener's address", e))?;
        // tiny_http's accept loop ends on the first error: a non-blocking listener (say, one
        // from socket activation) would end it at once.
        listener
            .set_nonblocking(false)
            .map_err(|e| Error::Listener("make the listener blocking", e))?;
        if !self.write_timeout.is_zero() {
            socket2::SockRef::from(&listener)
                .set_write_timeout(Some(self.write_timeout))
                .map_err(|e| Error::Listener("set the write timeout", e))?;
        }
        let clone = listener
            .try_clone()
            .map_err(|e| Error::Listener("clone the listener", e))?;
        let http = tiny_http::Server::from_listener(listener, None).map_err(Error::Start)?;
        let trigger = self.trigger.unwrap_or_else(|| crate::trigger().0);
        let settings = Settings {
            workers: self.workers,
            lame_duck: self.lame_duck,
            max_waiting: self.max_waiting,
            retry_after: self.retry_after,
            keep_alive_grace: self.keep_alive_grace,
            write_timeout: self.write_timeout,
            max_head: self.max_request_head,
        };
        let state = State::new(
            http,
            Box::new(handler),
            trigger.clone(),
            settings,
            self.health,
            self.archive,
        );
        Ok(Server {
            state: Arc::new(state),
            acceptor: Arc::new(Mutex::new(Acceptor::new(clone, addr))),
            addr,
            trigger,
            workers: self.workers,
            deadline: self.deadline,
            lame_duck: self.lame_duck,
            hooks: Mutex::new(self.hooks),
            run: Mutex::new(Run::Ready),
            table: Mutex::new(open_table(addr)),
        })
    }
}

/// The connection table of the listening address, where the OS gives one.
fn open_table(addr: SocketAddr) -> Option<Table> {
    match Table::open(addr) {
        Ok(table) => Some(table),
        Err(e) => {
            log::debug!("no connection table for {addr} ({e}): rescues are timed");
            None
        }
    }
}

fn bind(addrs: io::Result<Vec<SocketAddr>>) -> Result<TcpListener, Error> {
    let addrs = addrs.map_err(|source| Error::Bind {
        addr: "(unresolved address)".to_owned(),
        source,
    })?;
    let mut last = None;
    for addr in &addrs {
        match TcpListener::bind(addr) {
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

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("deadline", &self.deadline)
            .field("retry_after", &self.retry_after)
            .field("keep_alive_grace", &self.keep_alive_grace)
            .field("write_timeout", &self.write_timeout)
            .field("max_request_head", &self.max_request_head)
            .field("max_waiting", &self.max_waiting)
            .finish_non_exhaustive()
    }
}

enum Run {
    Ready,
    Running,
    Done(Late),
}

/// An HTTP server that shuts down gracefully: it stops accepting first, finishes what it
/// holds, answers what it cannot finish, and never waits past its deadline.
///
/// Built with [`Server::bind`] or [`Server::from_listener`]; accepting from the moment it is
/// built; serving once [`run`](Server::run) is called. See [`run`](Server::run) for the
/// shutdown timeline.
///
/// # Examples
///
/// ```
/// use lameduck::tiny_http::Response;
///
/// let server = lameduck::Server::bind("127.0.0.1:0")
///     .build(|_request: &mut lameduck::tiny_http::Request| {
///         Response::from_string("Hello World").boxed()
///     })?;
/// let handle = server.handle();
/// std::thread::spawn(move || handle.shutdown()); // or a signal, see `signal::install`
/// let report = server.run()?;
/// assert!(report.is_complete());
/// # Ok::<(), lameduck::Error>(())
/// ```
pub struct Server {
    state: Arc<State>,
    acceptor: Arc<Mutex<Acceptor>>,
    addr: SocketAddr,
    trigger: Trigger,
    workers: usize,
    deadline: Duration,
    lame_duck: Duration,
    hooks: Mutex<Vec<Hook>>,
    run: Mutex<Run>,
    /// The OS's table of the connections on the port (`connections.rs`), if it has one.
    table: Mutex<Option<Table>>,
}

impl Server {
    /// A builder for a server listening on `addr` (`"127.0.0.1:8080"`, `"[::1]:0"`, a
    /// `SocketAddr`…). Port 0 picks a free port; [`Server::local_addr`] tells which.
    pub fn bind(addr: impl ToSocketAddrs) -> Builder {
        Builder::new(Bind::Addrs(addr.to_socket_addrs().map(Iterator::collect)))
    }

    /// A builder for a server accepting from a listener bound elsewhere (socket activation,
    /// a test that binds port 0 first). It is made blocking.
    pub fn from_listener(listener: TcpListener) -> Builder {
        Builder::new(Bind::Listener(listener))
    }

    /// The address the server listens on (with the real port if it was bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to shut the server down from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            trigger: self.trigger.clone(),
            addr: self.addr,
        }
    }

    /// Serves until shutdown fires, then shuts down, and returns what the shutdown did.
    ///
    /// The timeline, from the moment the trigger fires (a signal, [`Handle::shutdown`], any
    /// clone of the [`Trigger`]):
    ///
    /// 1. **Stop accepting.** The listening socket is closed: new connects are refused.
    ///    Connections already open stay open.
    /// 2. **Drain.** Requests in handlers finish; requests already read and queued are
    ///    served. Every response written from the fire on carries `Connection: close`, so
    ///    keep-alive clients go elsewhere.
    /// 3. **Deadline.** If the drain is not over by [`Builder::deadline`], queued requests
    ///    are answered `503` with `Retry-After` and `Connection: close`; requests still in a
    ///    handler are named in the report. `run` returns within about 20 ms of the deadline
    ///    even if a handler never returns.
    /// 4. **Timed join.** The workers are joined with the deadline; the [`ShutdownReport`]
    ///    says what happened.
    ///
    /// After `run` returns, requests that still arrive on old keep-alive connections are
    /// answered `503` + `Connection: close` by one thread, `lameduck-late-1`, until the
    /// `Server` is dropped.
    ///
    /// # Errors
    ///
    /// - [`Error::DeadlineExceeded`], carrying the report, if the deadline cut the drain.
    /// - [`Error::Spawn`] if a worker thread could not be started (shutdown is then fired).
    /// - [`Error::AlreadyRun`] if `run` was called before on this server.
    pub fn run(&self) -> Result<ShutdownReport, Error> {
        {
            let mut run = lock(&self.run);
            if !matches!(*run, Run::Ready) {
                return Err(Error::AlreadyRun);
            }
            *run = Run::Running;
        }
        let mut pool = Pool::new();
        for _ in 0..self.workers {
            if let Err(e) = worker::spawn(&self.state, &mut pool, Serves::Current) {
                self.trigger.fire(Reason::Other(format!("{e}")));
                let _ = self.shut_down(pool, None, None);
                return Err(e);
            }
        }
        let shedder = match Shedder::start(Arc::clone(&self.state)) {
            Ok(shedder) => Some(shedder),
            Err(e) => {
                log::warn!("{e}: requests will wait without bound when every worker is busy");
                None
            }
        };
        let supervisor = match Supervisor::start(
            Arc::clone(&self.state),
            Arc::clone(&self.acceptor),
            reach(self.addr),
        ) {
            Ok(supervisor) => Some(supervisor),
            Err(e) => {
                log::warn!("{e}: connections tiny_http leaves without a thread will wait");
                None
            }
        };
        log::info!("serving http://{} with {} workers", self.addr, self.workers);
        self.shut_down(pool, supervisor, shedder)
    }

    /// Waits for the fire, then runs the timeline of [`Server::run`].
    fn shut_down(
        &self,
        mut pool: Pool,
        supervisor: Option<Supervisor>,
        shedder: Option<Shedder>,
    ) -> Result<ShutdownReport, Error> {
        let state = &self.state;
        let fired = self.trigger.listener().wait();
        let t0 = fired.at();
        let deadline = t0 + self.deadline;
        // 0. Lame duck: go on serving while readiness says 503.
        let lame_duck = self.lame_duck.min(self.deadline);
        if !lame_duck.is_zero() {
            log::info!(
                "shutdown ({}): lame duck for {lame_duck:?}: readiness 503, still serving \
                 (deadline {:?})",
                fired.reason(),
                self.deadline
            );
            // Responses in the last moments of the delay already wait for the close: a
            // client told to close just before it would reconnect into the closing socket.
            let lead = lame_duck.saturating_sub(STOPPING_LEAD);
            std::thread::sleep((t0 + lead).saturating_duration_since(Instant::now()));
            state.set_stopping();
            std::thread::sleep((t0 + lame_duck).saturating_duration_since(Instant::now()));
        }
        let lame_duck = t0.elapsed();
        log::info!(
            "shutdown ({}): stop accepting, drain (deadline {:?})",
            fired.reason(),
            self.deadline
        );

        // 1. Stop accepting. Responses from now on wait until connects are refused before
        //    they tell clients to close. First, every connection accepted so far gets a
        //    thread (see `probe.rs`), unless none arrived since a rescue last found nothing
        //    to free; then the workers are woken for the drain at once, while the socket
        //    closes.
        state.set_stopping();
        if let Some(shedder) = &shedder {
            shedder.begin_stop();
        }
        // The supervisor's own rescue, if one is under way, ends at its next kick: two
        // rescues at once would take each other's signs of a freed connection.
        if let Some(supervisor) = supervisor {
            supervisor.stop();
        }
        let from_table = lock(&self.table)
            .as_mut()
            .map(|table| probe::rescue_from_table(reach(self.addr), table, deadline));
        let rescue = match from_table {
            Some(Ok(freed)) => freed > 0,
            Some(Err(ref e)) => {
                log::debug!("connection table unreadable ({e}): timed rescue");
                state.peers.take_seen_new() || state.peers.is_unsure()
            }
            None => state.peers.take_seen_new() || state.peers.is_unsure(),
        };
        if rescue && !matches!(from_table, Some(Ok(_))) {
            let gen = state.current_gen();
            let pull = || match gen.http.try_recv() {
                Ok(Some(request)) => {
                    state.peers.note(request.remote_addr());
                    state.wait_or_shed(request, &gen);
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    state.accept_ended(&gen, e);
                    false
                }
            };
            probe::rescue_briefly(reach(self.addr), &state.peers, &pull);
        }
        let ended = state.current_gen().ended();
        let mut acceptor = lock(&self.acceptor);
        let stopped = acceptor.begin_stop().and_then(|()| {
            if !rescue {
                state.set_phase(Phase::Draining);
                state.wake_serving();
            }
            acceptor.confirm_stopped(&ended)
        });
        drop(acceptor);
        if let Err(e) = stopped {
            log::warn!("stop accepting on {}: {e}", self.addr);
        }
        state.set_closed();
        let stopped_accepting = t0.elapsed();
        // 2. Drain: every worker is woken to see the new phase (done already if idle).
        if rescue || state.phase() == Phase::Serving {
            state.set_phase(Phase::Draining);
            state.wake_serving();
        }

        // 3. Deadline; 4. timed join (the workers of dead generations, if any, too).
        let mut retired = lock(&state.retired);
        let mut workers = pool.join_deadline(deadline);
        workers.absorb_all(retired.join_deadline(deadline));
        let mut drained = t0.elapsed();
        if !workers.is_complete() {
            // Workers waiting for others' handlers to finish are woken to see the deadline;
            // those left are in a handler.
            state.set_phase(Phase::Overdue);
            state.wake_draining(self.workers);
            workers.absorb(pool.join_timeout(DRAIN_POLL + OVERDUE_GRACE));
            workers.absorb_all(retired.join_timeout(DRAIN_POLL + OVERDUE_GRACE));
            drained = self.deadline;
        }
        drop(retired);
        if let Some(shedder) = shedder {
            shedder.stop();
        }

        // What still arrives, or is still queued, gets a 503.
        let late = match Late::start(Arc::clone(state)) {
            Ok((late, backlog)) => {
                let until = std::time::Instant::now() + BACKLOG_WAIT;
                for _ in 0..late.threads() {
                    if backlog.recv_deadline(until).is_err() {
                        break;
                    }
                }
                Some(late)
            }
            Err(e) => {
                log::error!("{e}: requests arriving from now on will not be answered");
                None
            }
        };

        // What the deadline cut goes to the archive; then the hooks.
        for cut in state.cut() {
            state.archive(cut);
        }
        let hooks = hooks::run(std::mem::take(&mut *lock(&self.hooks)), deadline);

        let counts = state.counts();
        let report = ShutdownReport {
            stopped_accepting,
            drained,
            total: t0.elapsed(),
            deadline: self.deadline,
            served_before: counts.served_before,
            served_during_drain: counts.served_during_drain,
            rejected: state.rejected.load(std::sync::atomic::Ordering::Relaxed),
            shed: state.shed.load(std::sync::atomic::Ordering::Relaxed),
            handler_panics: counts.panics,
            health_checks: counts.health_checks,
            lame_duck,
            hooks,
            stragglers: state.stragglers(),
            workers,
            fired,
        };
        if let Some(late) = late {
            *lock(&self.run) = Run::Done(late);
        }
        if report.is_complete() {
            log::info!("{report}");
            Ok(report)
        } else {
            log::warn!("deadline of {:?} exceeded: {report}", self.deadline);
            Err(Error::DeadlineExceeded(Box::new(report)))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let ended = self.state.current_gen().ended();
        let _ = lock(&self.acceptor).stop(&ended);
        if let Run::Done(late) = std::mem::replace(&mut *lock(&self.run), Run::Ready) {
            late.stop();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("workers", &self.workers)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Starts a server's shutdown from any thread. Clone it freely.
#[derive(Clone, Debug)]
pub struct Handle {
    trigger: Trigger,
    addr: SocketAddr,
}

impl Handle {
    /// Fires shutdown with [`Reason::Requested`]; returns at once. [`Server::run`] then
    /// stops accepting, drains and returns. Calling it again does nothing more.
    pub fn shutdown(&self) {
        self.trigger.fire(Reason::Requested);
    }

    /// A listener for the server's shutdown.
    pub fn listener(&self) -> Listener {
        self.trigger.listener()
    }

    /// The server's trigger (to fire with a reason of your own).
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

#[allow(dead_code)]
fn _ensure_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Server>();
    is::<Handle>();
}
