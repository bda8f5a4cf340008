//! What a shutdown did: the [`ShutdownReport`] and the requests it could not finish.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tiny_http::Method;

use crate::shutdown::join::JoinReport;
use crate::shutdown::trigger::{Fired, Reason};

/// What [`Server::run`](crate::Server::run) did from the moment shutdown fired.
///
/// Returned by `run` on success, and carried by
/// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) when the deadline cut the
/// drain short. Its `Display` is a log-ready summary; every request lameduck read and could
/// not answer is in [`stragglers`](ShutdownReport::stragglers), so the application can log
/// it or put it in a retry queue.
///
/// # As one JSON line (feature `serde`)
///
/// With the `serde` feature it is `serde::Serialize`, for a log pipeline that keeps JSON:
/// times in seconds, clients as `"ip:port"`, the reason as its text.
///
/// ```text
/// {"reason":"signal","fired_at":1796198400.5,"complete":true,"deadline_seconds":10.0,
///  "lame_duck_seconds":0.0,"stopped_accepting_seconds":0.0004,"drain_seconds":2.1,
///  "total_seconds":2.1,"served_before":0,"served_during_drain":1,"rejected":0,"shed":0,
///  "handler_panics":0,"health_checks":0,
///  "stragglers":[{"method":"GET","url":"/","peer":"127.0.0.1:51234","age_seconds":10.0,
///                 "worker":"lameduck-worker-1"}],
///  "workers":{"finished":["lameduck-worker-1"],"panicked":[{"name":…,"message":…}],"running":[]},
///  "hooks":[{"name":"flush","outcome":"finished","took_seconds":0.01,"message":null}],
///  "connections_left":{"idle":0,"arriving":[],"stuck":[],"unread":[]}}
/// ```
///
#[cfg_attr(feature = "serde", doc = "```")]
#[cfg_attr(not(feature = "serde"), doc = "```ignore")]
/// # use lameduck::tiny_http::{Request, Response};
/// # let server = lameduck::Server::bind("127.0.0.1:0")
/// #     .build(|_: &mut Request| Response::from_string("x").boxed())?;
/// # server.handle().shutdown();
/// let stopped = server.run()?;
/// let line = serde_json::to_string(stopped.report()).expect("a report is always JSON");
/// log::info!("{line}");
/// assert!(line.starts_with(r#"{"reason":"requested","#));
/// # Ok::<(), lameduck::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    pub(crate) fired: Fired,
    pub(crate) deadline: Duration,
    pub(crate) deadline_capped: bool,
    pub(crate) stopped_accepting: Duration,
    pub(crate) drained: Duration,
    pub(crate) total: Duration,
    pub(crate) served_before: u64,
    pub(crate) served_during_drain: u64,
    pub(crate) rejected: u64,
    pub(crate) shed: u64,
    pub(crate) handler_panics: u64,
    pub(crate) stragglers: Vec<Straggler>,
    pub(crate) workers: JoinReport,
    pub(crate) lame_duck: Duration,
    pub(crate) health_checks: u64,
    pub(crate) hooks: Vec<HookReport>,
    pub(crate) connections: ConnectionsLeft,
}

impl ShutdownReport {
    /// Why shutdown was fired.
    pub fn reason(&self) -> &Reason {
        self.fired.reason()
    }

    /// What fired shutdown, and when.
    pub fn fired(&self) -> &Fired {
        &self.fired
    }

    /// The deadline the drain had, counted from the fire.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether the deadline was cut below [`Builder::deadline`](crate::Builder::deadline)
    /// because the OS ends the process sooner: a console closed, a log-off or a system
    /// shutdown on Windows ([`Reason::Console`], [`CONSOLE_DEADLINE`](crate::console::CONSOLE_DEADLINE)).
    pub fn deadline_capped(&self) -> bool {
        self.deadline_capped
    }

    /// From the fire until new connects were refused (or the check gave up, which is
    /// logged at `warn`).
    pub fn stopped_accepting_after(&self) -> Duration {
        self.stopped_accepting
    }

    /// How long the server went on accepting and serving after the fire, with readiness
    /// answering 503 ([`Builder::lame_duck`](crate::Builder::lame_duck)).
    pub fn lame_duck_time(&self) -> Duration {
        self.lame_duck
    }

    /// From the fire until every worker had finished (the drain), or until the deadline.
    pub fn drain_time(&self) -> Duration {
        self.drained
    }

    /// From the fire until `run` returned.
    pub fn total_time(&self) -> Duration {
        self.total
    }

    /// Requests answered before shutdown fired.
    pub fn served_before(&self) -> u64 {
        self.served_before
    }

    /// Requests answered after shutdown fired (with `Connection: close`), before the deadline.
    pub fn served_during_drain(&self) -> u64 {
        self.served_during_drain
    }

    /// Requests answered `503 Service Unavailable` with `Retry-After`, because they arrived
    /// or were still queued when the drain was over or its deadline had passed, up to the
    /// moment `run` returned.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Requests to the readiness and liveness paths, over the server's whole life; not
    /// counted as served.
    pub fn health_checks(&self) -> u64 {
        self.health_checks
    }

    /// What each shutdown hook did, in the order they ran.
    pub fn hooks(&self) -> &[HookReport] {
        &self.hooks
    }

    /// Requests answered `503` at once, over the server's whole life, because every worker
    /// was busy and the waiting room was full
    /// ([`Builder::max_waiting`](crate::Builder::max_waiting)).
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Requests whose handler panicked; each was answered `500 Internal Server Error`.
    pub fn handler_panics(&self) -> u64 {
        self.handler_panics
    }

    /// Number of requests still in a handler when `run` returned.
    pub fn unfinished(&self) -> usize {
        self.stragglers.len()
    }

    /// Requests still in a handler when `run` returned: what the deadline cut.
    pub fn stragglers(&self) -> &[Straggler] {
        &self.stragglers
    }

    /// The timed join of the worker threads.
    pub fn workers(&self) -> &JoinReport {
        &self.workers
    }

    /// The connections still open when the drain ended, where the OS lets lameduck see
    /// them (Linux).
    pub fn connections_left(&self) -> &ConnectionsLeft {
        &self.connections
    }

    /// `true` if everything finished before the deadline: every request, every worker,
    /// every shutdown hook.
    pub fn is_complete(&self) -> bool {
        self.connections.unread.is_empty()
            && self.connections.arriving.is_empty()
            && self.stragglers.is_empty()
            && self.workers.is_complete()
            && self
                .hooks
                .iter()
                .all(|h| !matches!(h.outcome, HookOutcome::Overran))
    }
}

impl fmt::Display for ShutdownReport {
    /// The report in one piece: formatted first, then written at once, so that on an
    /// unbuffered stream (`eprintln!("{stopped}")`) it is one write, not one per value,
    /// and no other thread's line lands in the middle of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(160);
        self.write_to(&mut text)?;
        f.write_str(&text)
    }
}

impl ShutdownReport {
    fn write_to(&self, f: &mut String) -> fmt::Result {
        use fmt::Write as _;
        write!(
            f,
            "shutdown ({}) took {:.1?}: served {} before and {} during the drain, \
             rejected {} with 503, {} unfinished",
            self.reason(),
            self.total,
            self.served_before,
            self.served_during_drain,
            self.rejected,
            self.stragglers.len()
        )?;
        if self.shed > 0 {
            write!(f, "; {} shed with 503 while overloaded", self.shed)?;
        }
        if self.deadline_capped {
            write!(
                f,
                "; deadline cut to {:?}, what the OS allows after the event",
                self.deadline
            )?;
        }
        let left = &self.connections;
        if left.idle > 0 {
            write!(f, "; {} idle connections left open", left.idle)?;
        }
        for peer in &left.arriving {
            write!(f, "\n  arriving: a request from {peer} still on its way")?;
        }
        for peer in &left.stuck {
            write!(
                f,
                "\n  stuck: a request from {peer} began and stopped arriving"
            )?;
        }
        for peer in &left.unread {
            write!(
                f,
                "\n  unread: a request from {peer} that no thread read (tiny_http)"
            )?;
        }
        for straggler in &self.stragglers {
            write!(f, "\n  unfinished: {straggler}")?;
        }
        for hook in &self.hooks {
            if !matches!(hook.outcome, HookOutcome::Finished(_)) {
                write!(f, "\n  hook {:?}: {}", hook.name, hook.outcome)?;
            }
        }
        Ok(())
    }
}

/// The connections still open when the drain ended, as the OS's connection table showed
/// them (Linux; elsewhere empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionsLeft {
    pub(crate) idle: usize,
    pub(crate) arriving: Vec<SocketAddr>,
    pub(crate) stuck: Vec<SocketAddr>,
    pub(crate) unread: Vec<SocketAddr>,
}

impl ConnectionsLeft {
    /// Connections open and idle (between requests, or opened and silent) past the idle
    /// linger. The kernel closes them when the process exits; a request on one meanwhile is
    /// answered `503` while the [`Stopped`](crate::Stopped) value lives.
    pub fn idle(&self) -> usize {
        self.idle
    }

    /// Clients whose request was still arriving when the deadline passed (a head or a small
    /// body not yet whole, data still coming). The report is then incomplete.
    pub fn arriving(&self) -> &[SocketAddr] {
        &self.arriving
    }

    /// Clients whose request began to arrive and then stopped for a second or more: a slow
    /// or stuck client, or one tiny_http deadlocked (a request line with HTTP/2.0).
    pub fn stuck(&self) -> &[SocketAddr] {
        &self.stuck
    }

    /// Clients whose request reached the server but was never read: no thread of tiny_http
    /// took the connection before the deadline. The report is then incomplete.
    pub fn unread(&self) -> &[SocketAddr] {
        &self.unread
    }
}

/// A request still in its handler when the deadline passed.
#[derive(Clone, Debug)]
pub struct Straggler {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) age: Duration,
    pub(crate) worker: String,
}

impl Straggler {
    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's URL (path and query) as the client sent it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client's address, if known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// How long it had been in the handler when the report was made.
    pub fn age(&self) -> Duration {
        self.age
    }

    /// The worker thread running it.
    pub fn worker(&self) -> &str {
        &self.worker
    }
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if let Some(peer) = self.peer {
            write!(f, " from {peer}")?;
        }
        write!(
            f,
            ", in its handler for {:.1?} on {}",
            self.age, self.worker
        )
    }
}

/// What one shutdown hook did.
#[derive(Clone, Debug)]
pub struct HookReport {
    pub(crate) name: String,
    pub(crate) outcome: HookOutcome,
}

impl HookReport {
    /// The name it was registered with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it ended.
    pub fn outcome(&self) -> &HookOutcome {
        &self.outcome
    }
}

/// How a shutdown hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// It returned, after this long.
    Finished(Duration),
    /// It panicked, with this message.
    Panicked(String),
    /// It was still running at the deadline, and was left running.
    Overran,
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Finished(took) => write!(f, "finished in {took:.1?}"),
            HookOutcome::Panicked(message) => write!(f, "panicked: {message}"),
            HookOutcome::Overran => f.write_str("still running at the deadline"),
        }
    }
}
