//! The HTTP server: the [`Server`] and its [`Handle`], the [`Handler`] it runs, and what
//! [`Server::run`] leaves when it returns, [`Stopped`].
//!
//! The files: `config.rs` the builder; `phase.rs` where the server is in its life;
//! `worker.rs` the workers, `crew.rs` how many are started, and `slots.rs` their counts and
//! the request each is in; `drain.rs` the shutdown timeline, one function per phase;
//! `stats.rs` what a running server shows, and `metrics.rs` the same for Prometheus;
//! `health.rs`, `hooks.rs`, `archive.rs` and `report.rs` the pieces a deployment uses.
//! Everything that touches tiny_http itself is behind `crate::tinyhttp`.

pub(crate) mod archive;
pub(crate) mod config;
mod crew;
mod drain;
mod health;
pub(crate) mod hooks;
#[cfg(feature = "serde")]
mod json;
mod metrics;
pub(crate) mod phase;
pub(crate) mod report;
mod slots;
pub(crate) mod stats;
pub(crate) mod stopped;
mod worker;

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};

use tiny_http::{Request, ResponseBox};

use archive::Unserved;
use config::{Bind, Builder, Config};
use crew::Crew;
use drain::{Helpers, Shutdown};
use hooks::Hook;
use phase::Phases;
use stats::{Live, Stats};
use stopped::Stopped;
use worker::peer_text;

use crate::error::Error;
use crate::restart::systemd;
use crate::restart::upgrade::{Setup, Upgrades};
use crate::shutdown::trigger::{Listener, Reason, Trigger};
use crate::tinyhttp::{self, Http, LateResponder, Occupancy};

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

/// Where unserved requests go (`Builder::on_unserved`).
pub(crate) type Archive = Mutex<Box<dyn FnMut(Unserved) + Send + 'static>>;

/// What the workers and the timeline share.
pub(crate) struct Shared {
    handler: Box<dyn Handler>,
    config: Config,
    http: Http,
    archive: Option<Archive>,
    /// The phase, counters and gauges, shared with every [`Handle`] too.
    live: Arc<Live>,
    /// The upgrade under way, if any.
    upgrades: Upgrades,
    /// The workers: started as requests need them.
    crew: Crew,
}

impl Shared {
    /// Answers `request` with 503, `Retry-After` and `Connection: close`, because the server
    /// is shutting down; archives it first if asked to.
    fn reject(&self, mut request: Request) {
        if self.archive.is_some() {
            self.archive(Unserved::rejected(&mut request));
        }
        self.answer_503(request, "shutting down");
        self.live.count_rejected();
    }

    /// Answers `request` with 503 at once: every worker is busy and the room is full.
    fn shed(&self, request: Request) {
        self.answer_503(request, "overloaded");
        self.live.count_shed();
    }

    /// Past the deadline, and after the drain: answers a scrape of the metrics, and 503 (as
    /// [`Shared::reject`]) to anything else.
    fn late(&self, request: Request) {
        let scrape = metrics::answer(self.config.metrics.as_deref(), &request, || {
            self.live.stats()
        });
        match scrape {
            Some(response) => {
                if let Err(e) = tinyhttp::send(request, response, true, self.config.write_timeout) {
                    log::debug!("writing the metrics: {e}");
                }
            }
            None => self.reject(request),
        }
    }

    fn answer_503(&self, request: Request, why: &str) {
        log::debug!(
            "{} {} from {}: 503, {why}",
            request.method(),
            request.url(),
            peer_text(request.remote_addr())
        );
        let response = tinyhttp::unavailable(self.config.retry_after, why);
        if let Err(e) = tinyhttp::send(request, response, true, self.config.write_timeout) {
            log::debug!("writing a 503: {e}");
        }
    }

    /// Hands `unserved` to the application's archive, if it set one.
    fn archive(&self, unserved: Unserved) {
        if let Some(archive) = &self.archive {
            let mut archive = worker::lock(archive);
            if panic::catch_unwind(AssertUnwindSafe(|| archive(unserved))).is_err() {
                log::error!("the archive of unserved requests panicked");
            }
        }
    }
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
/// let stopped = server.run()?;
/// assert!(stopped.report().is_complete());
/// # Ok::<(), lameduck::Error>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    trigger: Trigger,
    /// In a mutex only so that `Server` is `Sync`: hooks need not be.
    hooks: Mutex<Vec<Hook>>,
}

impl Server {
    /// A builder for a server listening on `addr` (`"127.0.0.1:8080"`, `"[::1]:0"`, a
    /// `SocketAddr`…). Port 0 picks a free port; [`Server::local_addr`] tells which.
    ///
    /// The socket listens with the system's backlog, as Go's listeners do (Linux:
    /// `net.core.somaxconn`), not std's 128: a burst of connections beyond the backlog has
    /// its handshakes dropped, and those clients try again a second later. A listener given
    /// to [`Server::from_listener`] keeps the backlog it was made with.
    ///
    /// **Inherited sockets first.** If the process was started with listening sockets
    /// (systemd's socket activation, `LISTEN_FDS`) and one of them listens on `addr` (or on
    /// its port, where either address is the unspecified one: `ListenStream=8080` listens on
    /// `[::]:8080`), the server takes it instead of binding, and says so in the log. So a
    /// program that binds its address works unchanged under a socket unit. An environment
    /// that announces sockets wrongly (one closed, or not a listening TCP socket, or meant
    /// for another process) is an error from `build`, not a reason to bind anew.
    pub fn bind(addr: impl ToSocketAddrs) -> Builder {
        Builder::new(Bind::Addrs(addr.to_socket_addrs().map(Iterator::collect)))
    }

    /// A builder for a server on the first listening socket the process inherited and no
    /// server has taken yet: systemd's socket activation (`LISTEN_FDS`, `LISTEN_PID`,
    /// `LISTEN_FDNAMES`), for a program that leaves the address to its socket unit.
    ///
    /// ```no_run
    /// # use lameduck::tiny_http::{Request, Response};
    /// // systemd-socket-activate -l 127.0.0.1:8080 ./my-server
    /// let server = lameduck::Server::inherited()
    ///     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    ///
    /// `build` fails with [`Error::Inherit`] if there is none, or if the environment
    /// announces sockets wrongly; nothing is bound then.
    pub fn inherited() -> Builder {
        Builder::new(Bind::Inherited)
    }

    /// A builder for a server accepting from a listener bound elsewhere (socket activation,
    /// a test that binds port 0 first). It is made blocking.
    pub fn from_listener(listener: TcpListener) -> Builder {
        Builder::new(Bind::Listener(listener))
    }

    pub(super) fn new(
        http: Http,
        config: Config,
        handler: Box<dyn Handler>,
        trigger: Trigger,
        hooks: Vec<Hook>,
        archive: Option<Archive>,
    ) -> Server {
        let config_workers = config.workers;
        let live = Live::new(
            Phases::new(trigger.listener(), !config.lame_duck.is_zero()),
            config.workers,
            Arc::new(Occupancy::new(config.workers)),
            Arc::clone(http.gauges()),
        );
        let shared = Shared {
            handler,
            config,
            http,
            archive,
            live: Arc::new(live),
            upgrades: Upgrades::default(),
            crew: Crew::new(config_workers),
        };
        Server {
            shared: Arc::new(shared),
            trigger,
            hooks: Mutex::new(hooks),
        }
    }

    /// The address the server listens on (with the real port if it was bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.http.local_addr()
    }

    /// A handle to shut the server down, and to watch it, from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            trigger: self.trigger.clone(),
            addr: self.local_addr(),
            live: Arc::clone(&self.shared.live),
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Serves until shutdown fires, then shuts down, and returns what is left: the report,
    /// and what answers requests that still arrive.
    ///
    /// The timeline, from the moment the trigger fires (a signal, [`Handle::shutdown`], any
    /// clone of the [`Trigger`]):
    ///
    /// 1. **Stop accepting.** The listening socket is closed: new connects are refused.
    ///    Connections already open stay open. (After the [lame-duck delay](Builder::lame_duck),
    ///    if one is set.)
    /// 2. **Drain.** Requests in handlers finish; requests already read and queued are
    ///    served. Every response written from the fire on carries `Connection: close`, so
    ///    keep-alive clients go elsewhere.
    /// 3. **Deadline.** If the drain is not over by [`Builder::deadline`], queued requests
    ///    are answered `503` with `Retry-After` and `Connection: close`; requests still in a
    ///    handler are named in the report. `run` returns within about 20 ms of the deadline
    ///    even if a handler never returns.
    /// 4. **Timed join.** The workers are joined with the deadline; the
    ///    [`ShutdownReport`](crate::ShutdownReport) says what happened.
    ///
    /// Requests that still arrive on old keep-alive connections are answered `503` +
    /// `Connection: close` by one thread, `lameduck-late-1`, for as long as the returned
    /// [`Stopped`] (or the error carrying it) lives: keep it until the process exits, or
    /// for as long as clients may still send.
    ///
    /// `run` takes the server: it cannot run twice.
    ///
    /// ```compile_fail,E0382
    /// # use lameduck::tiny_http::{Request, Response};
    /// let server = lameduck::Server::bind("127.0.0.1:0")
    ///     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// # server.handle().shutdown();
    /// let first = server.run();
    /// let second = server.run(); // error: use of moved value: `server`
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::DeadlineExceeded`], carrying the [`Stopped`] server, if the deadline cut
    ///   the drain.
    /// - [`Error::Spawn`] if a worker thread could not be started (shutdown is then fired).
    pub fn run(self) -> Result<Stopped, Error> {
        // Until `run` returns: a console closing on Windows waits for this (`console.rs`).
        let _serving = crate::shutdown::console::Serving::enter(self.trigger.listener());
        let shared = &self.shared;
        let mut failed = None;
        if let Err(e) = crew::start(shared) {
            self.trigger.fire(Reason::Other(format!("{e}")));
            failed = Some(e);
        }
        let helpers = Helpers::start(shared, &self.trigger.listener());
        if failed.is_none() {
            log::info!(
                "serving http://{} with up to {} workers",
                self.local_addr(),
                shared.config.workers
            );
            systemd::ready(&format!("serving http://{}", self.local_addr()));
        }

        let mut shutdown = Shutdown::wait(shared, &self.trigger.listener());
        shutdown.lame_duck();
        shutdown.stop_accepting(helpers);
        shutdown.drain();
        let workers = shutdown.join(shared.crew.close());
        let late = shutdown.sweep();
        let hooks = std::mem::take(&mut *worker::lock(&self.hooks));
        let hooks = shutdown.run_hooks(hooks);
        let report = shutdown.report(workers, hooks);

        if let Some(e) = failed {
            return Err(e);
        }
        let complete = report.is_complete();
        systemd::status(&report.to_string());
        if complete {
            log::info!("{report}");
        } else {
            log::warn!("deadline of {:?} exceeded: {report}", report.deadline());
        }
        let answering = Answering {
            late,
            shared: Arc::clone(shared),
        };
        let stopped = Stopped::new(report, self.local_addr(), Box::new(answering));
        if complete {
            Ok(stopped)
        } else {
            Err(Error::DeadlineExceeded(Box::new(stopped)))
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// The late responder of a [`Stopped`] server: stopped when dropped.
struct Answering {
    late: Option<LateResponder>,
    shared: Arc<Shared>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Some(late) = self.late.take() {
            late.stop(self.shared.http.queue());
        }
    }
}

/// Starts a server's shutdown, and shows where it is, from any thread. Clone it freely.
///
/// It keeps the server's counters alive, not the server: a handle kept after the server is
/// gone holds no connection, request nor thread.
#[derive(Clone)]
pub struct Handle {
    trigger: Trigger,
    addr: SocketAddr,
    live: Arc<Live>,
    /// For an upgrade, while the server lives.
    shared: Weak<Shared>,
}

impl Handle {
    /// Fires shutdown with [`Reason::Requested`]; returns at once. [`Server::run`] then
    /// stops accepting, drains and returns. Calling it again does nothing more.
    pub fn shutdown(&self) {
        self.trigger.fire(Reason::Requested);
    }

    /// Upgrades in place: starts a new copy of the program, hands it the listening socket,
    /// and once it is ready fires shutdown with [`Reason::Upgrade`], so that this server
    /// stops accepting and drains while the new one serves. No connection is refused: the
    /// socket never closes. Returns the new process's id, once it is ready (at most
    /// [`Builder::upgrade_timeout`] later); the drain then goes on in [`Server::run`] as
    /// on any shutdown.
    ///
    /// The new process is the program again with the same arguments (or
    /// [`Builder::upgrade_command`]): its [`Server::bind`] takes the socket instead of
    /// binding. It inherits standard input, output and error. SIGUSR2 can ask for it
    /// ([`Handle::upgrade_on_sigusr2`]), as for nginx, or a file
    /// ([`Handle::upgrade_on_file`]).
    ///
    /// # Errors
    ///
    /// [`UpgradeError`](crate::UpgradeError), logged too: another upgrade is under way,
    /// the server is shutting down, the new process could not start, exited, or was not
    /// ready in time (it is then killed). This server serves on in every case.
    ///
    /// On Windows the socket goes to the new process through `WSADuplicateSocketW`, over a
    /// loopback connection the new process opens to this one (a child inherits no socket
    /// there); the rest is the same.
    pub fn upgrade(&self) -> Result<u32, crate::UpgradeError> {
        let Some(shared) = self.shared.upgrade() else {
            return Err(crate::UpgradeError::ShuttingDown);
        };
        let config = &shared.config;
        shared.upgrades.upgrade(Setup {
            trigger: &self.trigger,
            listener: shared.http.listener_copy(),
            asked: config.asked.unwrap_or(self.addr),
            keep_open: shared.http.keeps_socket_open(),
            timeout: config.upgrade_timeout,
            command: config.upgrade_command.as_ref(),
        })
    }

    /// Upgrades the server on each `SIGUSR2` ([`Handle::upgrade`]), nginx's convention, and
    /// `ExecReload=kill -USR2 $MAINPID` in a systemd unit. Unix only: Windows has no such
    /// signal.
    ///
    /// The signal is handled on a thread of its own (`lameduck-sigusr2`) that lives as long
    /// as the process, through `signal-hook` (`ctrlc`, which handles the others, cannot tell
    /// signals apart). Each one logs what came of it; one during an upgrade under way, or
    /// after one that succeeded, is refused and says so.
    ///
    /// # Errors
    ///
    /// [`Error::SignalInstall`] if the handler could not be installed, [`Error::Spawn`] if
    /// its thread could not be started.
    #[cfg(unix)]
    pub fn upgrade_on_sigusr2(&self) -> Result<(), Error> {
        let handle = self.clone();
        crate::shutdown::signal::on_sigusr2("lameduck-sigusr2", move || {
            log::info!("SIGUSR2: upgrade");
            // What came of it is logged by the upgrade itself.
            let _ = handle.upgrade();
        })
    }

    /// Upgrades the server ([`Handle::upgrade`]) each time `file`'s condition holds, as the
    /// same [`FileTrigger`](crate::watch::FileTrigger) would shut it down: for a deployment
    /// tool that drops a file. The file is removed first (or, for
    /// [`FileTrigger::disappears`](crate::watch::FileTrigger::disappears), created), so that
    /// the new process, the same program watching the same path, does not upgrade in turn.
    /// The watch ends when the server shuts down.
    ///
    /// ```no_run
    /// # use lameduck::tiny_http::{Request, Response};
    /// # let server = lameduck::Server::bind("127.0.0.1:0")
    /// #     .build(|_: &mut Request| Response::from_string("x").boxed())?;
    /// server
    ///     .handle()
    ///     .upgrade_on_file(lameduck::watch::FileTrigger::appears("/run/myapp/upgrade"))?;
    /// # Ok::<(), lameduck::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if its thread could not be started.
    pub fn upgrade_on_file(&self, file: crate::watch::FileTrigger) -> Result<(), Error> {
        let handle = self.clone();
        file.watch(&self.trigger.listener(), move |reason| {
            log::info!("{reason}: upgrade");
            let _ = handle.upgrade();
        })
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

    /// A snapshot of the server's counters and gauges: its phase, the requests in handlers
    /// and waiting, what it served and answered 503, the connections open, the time left to
    /// the deadline. Loads atomics only: no lock, no allocation, cheap enough to call on
    /// every request. Valid before [`Server::run`], during it and after it.
    pub fn stats(&self) -> Stats {
        self.live.stats()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("addr", &self.addr)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

#[allow(dead_code)]
fn _ensure_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Server>();
    is::<Handle>();
    is::<Stopped>();
}
