//! The shutdown timeline, from the fire to the report: one function per phase, called in this
//! order by [`Server::run`](super::Server::run).
//!
//! ```text
//! lame_duck ─► stop_accepting ─► drain ─► join ─► sweep ─► run_hooks ─► report
//! ```
//!
//! [`Shutdown`] owns the one deadline (the fire plus [`Builder::deadline`]) and the times
//! the report gives.
//!
//! [`Builder::deadline`]: crate::Builder::deadline

use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::hooks::{self, Hook};
use super::phase::Phase;
use super::report::{ConnectionsLeft, HookReport, ShutdownReport};
use super::Shared;
use crate::restart::systemd;
use crate::restart::upgrade::Stop;
use crate::shutdown::console;
use crate::shutdown::join::JoinReport;
use crate::shutdown::pool::Pool;
use crate::shutdown::trigger::{Fired, Listener, Reason};
use crate::tinyhttp::{Census, LateResponder, Shedder};

/// How long before the end of a lame-duck delay responses start to wait for the socket's
/// close (see `Phases::close_response`): a client told to close in the last moments would
/// otherwise reconnect into the closing socket. Not tuned by a measurement; the case it
/// serves is: behind nginx with a 300 ms lame-duck delay, 0 of about 1 900 requests failed,
/// in each of 14 runs (`tests/process/rolling.rs`).
const STOPPING_LEAD: Duration = Duration::from_millis(5);

/// How often the drain looks again while a worker is in a handler or the idle linger
/// runs, when nothing else wakes it (a worker that finishes does). Not tuned by a
/// measurement: with connections open a look is a census of one or two 0.7 ms dumps, so a
/// shorter poll spends more of a core on looking; only what the census alone shows (a
/// connection closed) waits for it.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// How often a drain that lasts says where it is, at `info` (`draining: 3 in handlers, …`):
/// often enough for an operator watching a rollout, seldom enough for a log. A choice, not
/// a measurement.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// After the deadline, how long workers that are not in a handler get to notice it; those
/// still running after that are in a handler. The old drain poll (5 ms) plus 2 ms, set when
/// waking waiting workers at once cut the overrun from 26 to 9 ms. `cargo bench --bench
/// shutdown -- --only deadline` (2026-12-02): 9.5 ms past a 1 s deadline (target ≤ 20 ms).
const OVERDUE_GRACE: Duration = Duration::from_millis(7);

/// How long the late responder may take to answer what was queued at the deadline, so that
/// the report can count it. A bound, not a tuning, and not timed: the benchmark's deadline
/// case (`--only deadline`, exit 9.5 ms past a 1 s deadline on 2026-12-02) queues nothing.
/// Only a client that does not read its 503 should hold it to the end.
const BACKLOG_WAIT: Duration = Duration::from_millis(50);

/// The threads that look after tiny_http while the server serves: the supervisor and the
/// shedder (`tinyhttp/`). A server runs without one that could not start, and says so.
pub(super) struct Helpers {
    supervisor: Option<crate::tinyhttp::Supervisor>,
    shedder: Option<Shedder>,
}

impl Helpers {
    /// Starts both. Without a lame-duck delay they end at `fire` on their own, side by
    /// side with the server's thread (which waits for the supervisor's as the stop
    /// begins), once a rescue or ping under way, or the shedder's lead, is over; with one
    /// they go on while the server serves, until asked.
    pub(super) fn start(shared: &Arc<Shared>, fire: &Listener) -> Helpers {
        let until = shared.config.lame_duck.is_zero().then(|| fire.clone());
        let supervisor = shared
            .http
            .supervise(shared.config.retry_after, until.clone())
            .map_err(|e| log::warn!("{e}: connections tiny_http leaves without a thread will wait"))
            .ok();
        let shedding = Arc::clone(shared);
        let shedder = Shedder::start(
            Arc::clone(shared.http.queue()),
            Arc::clone(&shared.live.occupancy),
            move |request| shedding.shed(request),
            until,
        )
        .map_err(|e| log::warn!("{e}: requests will wait without bound when every worker is busy"))
        .ok();
        Helpers {
            supervisor,
            shedder,
        }
    }

    /// Stops both: asks both first, so that they end side by side, and waits (boundedly)
    /// until the supervisor no longer looks after tiny_http (it may be in a rescue). Their
    /// threads end meanwhile: [`Helpers::join`] waits for them, once the workers are
    /// joined. In an idle exit, waiting for both threads here took 0.3 ms, a third of what
    /// lameduck adds to the naive server's exit (a timeline of 20 exits); a supervisor
    /// waiting for something to do is not waited for at all (`Stop::idle_while`): 0.19 ms
    /// less in 40 interleaved idle exits (medians).
    pub(super) fn stop(&self, shared: &Shared) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.ask_to_stop();
        }
        if let Some(shedder) = &self.shedder {
            shedder.ask_to_stop(shared.http.queue());
        }
        if let Some(supervisor) = &self.supervisor {
            supervisor.stop_working();
        }
    }

    /// Waits (boundedly) for both threads to end, once [`Helpers::stop`] returned.
    pub(super) fn join(self) {
        if let Some(shedder) = self.shedder {
            shedder.join();
        }
        if let Some(supervisor) = self.supervisor {
            supervisor.join();
        }
    }
}

/// A shutdown under way: the deadline, and what the report gives.
pub(super) struct Shutdown<'a> {
    shared: &'a Arc<Shared>,
    fired: Fired,
    /// The one deadline: the fire plus `Builder::deadline` (or less: see `deadline_len`).
    deadline: Instant,
    /// From the fire to the deadline: `Builder::deadline`, or less where the OS ends the
    /// process sooner (a console closed on Windows: `capped`).
    deadline_len: Duration,
    capped: bool,
    lame_duck: Duration,
    stopped_accepting: Duration,
    drained: Duration,
    /// The connections as the drain last saw them, where they can be seen.
    census: Option<Census>,
    /// The last census was read before the idle linger ended, found only idle connections,
    /// and the linger has ended since: the next look comes at once.
    look_again: bool,
    /// The drain found the server idle: nothing queued, no connection (`idle`).
    idle: bool,
    /// The helpers, stopped, their threads joined with the workers'.
    helpers: Option<Helpers>,
}

impl<'a> Shutdown<'a> {
    /// Waits for the fire; the deadline counts from it.
    pub(super) fn wait(shared: &'a Arc<Shared>, fire: &Listener) -> Shutdown<'a> {
        let fired = fire.wait();
        let (deadline_len, capped) = console::capped(fired.reason(), shared.config.deadline);
        let deadline = fired.at() + deadline_len;
        shared.live.set_deadline(deadline);
        // An upgrade: the service goes on, in the new process (which is told `MAINPID`).
        if !matches!(fired.reason(), Reason::Upgrade { .. }) {
            systemd::stopping(
                &format!("shutting down ({})", fired.reason()),
                deadline.saturating_duration_since(Instant::now()),
            );
        }
        Shutdown {
            shared,
            deadline,
            deadline_len,
            capped,
            fired,
            lame_duck: Duration::ZERO,
            stopped_accepting: Duration::ZERO,
            drained: Duration::ZERO,
            census: None,
            look_again: false,
            idle: false,
            helpers: None,
        }
    }

    /// 0. The lame-duck delay, if one is set: readiness says 503, and the server goes on
    ///    accepting and serving, every response saying `Connection: close`.
    pub(super) fn lame_duck(&mut self) {
        let delay = self.shared.config.lame_duck;
        let t0 = self.fired.at();
        // No balancer waits on a closing console: its few seconds go to the drain.
        let console = matches!(self.fired.reason(), Reason::Console { .. });
        if !delay.is_zero() && !console {
            log::info!(
                "shutdown ({}): lame duck for {delay:?}: readiness 503, still serving \
                 (deadline {:?})",
                self.fired.reason(),
                self.deadline_len
            );
            self.shared.live.phases.enter(Phase::LameDuck);
            sleep_until(t0 + delay.saturating_sub(STOPPING_LEAD));
            self.shared.live.phases.enter(Phase::Stopping);
            sleep_until(t0 + delay);
        }
        self.lame_duck = t0.elapsed();
    }

    /// 1. Stop accepting: the helpers stop, and no new connection gets in from now on (the
    ///    socket is sealed, or, where it cannot be, closed once every connection accepted so
    ///    far has a thread). Meanwhile the workers are told to take what is left from the
    ///    drain only.
    pub(super) fn stop_accepting(&mut self, helpers: Helpers) {
        let shared = self.shared;
        log::info!(
            "shutdown ({}): stop accepting, drain (deadline {:?}{})",
            self.fired.reason(),
            self.deadline_len,
            if self.capped {
                ", cut to what the OS allows"
            } else {
                ""
            }
        );
        shared.live.phases.enter(Phase::Stopping);
        helpers.stop(shared);
        self.helpers = Some(helpers);
        let queue = shared.http.queue();
        let shed = |request| shared.shed(request);
        let between = || queue.pump_from_now_on();
        let stopped = match shared.upgrades.stopping() {
            Stop::Close if shared.http.keeps_socket_open() => {
                log::info!("the socket stays open for the next server (socket activation)");
                shared.http.hand_off(self.deadline, &shed, between, None)
            }
            Stop::Close => shared.http.stop_accepting(self.deadline, &shed, between),
            Stop::HandOver { baton, pid } => {
                log::info!("upgrade: the socket stays open for pid {pid}");
                shared
                    .http
                    .hand_off(self.deadline, &shed, between, Some(baton))
            }
        };
        if let Err(e) = stopped {
            log::warn!("stop accepting on {}: {e}", shared.http.local_addr());
        }
        // An idle server's socket, sealed, closes as its workers end (`join`).
        if !shared.http.none_left() {
            shared.live.phases.socket_closed();
        }
        self.stopped_accepting = self.fired.elapsed();
    }

    /// 2. Drain: requests in handlers finish, queued requests are served (this thread takes
    ///    them from tiny_http and hands them to the workers), requests on their way are
    ///    waited for, and so, for the idle linger, are idle connections. The drain ends once
    ///    nothing is left. Returns `false` if the deadline came first.
    pub(super) fn drain(&mut self) -> bool {
        let shared = self.shared;
        shared.live.phases.enter(Phase::Draining);
        if self.idle() {
            return true;
        }
        if shared.http.none_left() {
            // No connection, but not idle after all (a worker between two requests): the
            // socket, left sealed for the workers' end, closes now, so that no response
            // waits for it through the drain.
            shared.http.end_accept_loop();
            shared.live.phases.socket_closed();
        }
        let lead = shared.http.queue().lead();
        shared.live.occupancy.wake_on_end(true);
        let linger_end = self.fired.at() + self.linger();
        let mut progress = Instant::now() + PROGRESS_EVERY;
        let drained = loop {
            self.progress(&mut progress);
            let request = match lead.try_receive() {
                Some(request) => request,
                None if self.nothing_left(linger_end) => break true,
                // The look that ends the drain, without a poll's wait.
                None if std::mem::take(&mut self.look_again) => continue,
                None => {
                    let now = Instant::now();
                    let left = self.deadline.saturating_duration_since(now);
                    if left.is_zero() {
                        break false;
                    }
                    // Look again in a moment, or as the linger ends if that comes first.
                    let mut wait = left.min(DRAIN_POLL);
                    let linger_left = linger_end.saturating_duration_since(now);
                    if !linger_left.is_zero() {
                        wait = wait.min(linger_left);
                    }
                    match lead.receive_timeout(wait) {
                        Some(request) => request,
                        None => continue,
                    }
                }
            };
            if !self.hand_over(request, &mut progress) {
                break false;
            }
        };
        shared.live.occupancy.wake_on_end(false);
        drop(lead);
        if drained {
            shared.live.phases.stop_taking().open();
        }
        self.drained = self.fired.elapsed();
        drained
    }

    /// How long idle connections hold the drain: the idle linger, or at an upgrade the
    /// upgrade linger if longer (the new process serves meanwhile).
    fn linger(&self) -> Duration {
        let config = &self.shared.config;
        match self.fired.reason() {
            Reason::Upgrade { .. } => config.idle_linger.max(config.upgrade_linger),
            _ => config.idle_linger,
        }
    }

    /// Puts `request` in the waiting room for the workers, waiting for a place up to the
    /// deadline (and saying meanwhile where the drain is). `false` if the deadline came
    /// first: the request is then answered 503.
    fn hand_over(&self, mut request: Request, progress: &mut Instant) -> bool {
        let queue = self.shared.http.queue();
        loop {
            let now = Instant::now();
            let left = self.deadline.saturating_duration_since(now);
            let wait = left.min(progress.saturating_duration_since(now));
            match queue.put(request, wait) {
                Ok(()) => return true,
                Err(back) if wait < left => {
                    request = back;
                    self.progress(progress);
                }
                Err(back) => {
                    self.shared.reject(back);
                    return false;
                }
            }
        }
    }

    /// Once every [`PROGRESS_EVERY`] of the drain (when `next` comes), says at `info` what
    /// it waits for, in the message and as key-values.
    fn progress(&self, next: &mut Instant) {
        let now = Instant::now();
        if now < *next {
            return;
        }
        *next = now + PROGRESS_EVERY;
        // A look at the connections (one dump of the table, where there is one), so that
        // the line, and stats meanwhile, count them as they are now.
        let _ = self.shared.http.census();
        let stats = self.shared.live.stats();
        let (in_handlers, queued) = (stats.in_handlers(), stats.waiting());
        let left = self.deadline.saturating_duration_since(now);
        // Tenths of a second, as the message shows it.
        let seconds_left = (left.as_secs_f64() * 10.0).round() / 10.0;
        let connections = match stats.connections_open() {
            Some(1) => ", 1 connection open".to_owned(),
            Some(open) => format!(", {open} connections open"),
            None => String::new(),
        };
        let message = format!(
            "draining: {in_handlers} in handlers, {queued} queued{connections}, \
             {seconds_left:.1}s left"
        );
        systemd::draining(&message, left);
        match stats.connections_open() {
            Some(open) => log::info!(
                in_handlers = in_handlers, queued = queued, connections_open = open,
                seconds_left = seconds_left;
                "{message}"
            ),
            None => log::info!(
                in_handlers = in_handlers, queued = queued, seconds_left = seconds_left;
                "{message}"
            ),
        }
    }

    /// The idle server's drain: no connection is open and none can come (the stop found
    /// none), no worker is in a request, and every worker waits in tiny_http's queue, which
    /// is then empty. The workers are told to stop and woken once, to end; nothing more is
    /// looked at. (A worker a request reaches meanwhile serves it first.)
    fn idle(&mut self) -> bool {
        let shared = self.shared;
        let queue = shared.http.queue();
        let idle = shared.http.none_left()
            && shared.live.occupancy.busy() == 0
            && queue.room_is_empty()
            && queue.waiting_workers() == shared.crew.started();
        if idle {
            shared.live.phases.stop_taking().open();
            queue.wake_workers();
            shared.live.gauges().saw_open(0);
            self.census = Some(Census::default());
            self.drained = self.fired.elapsed();
            self.idle = true;
        }
        idle
    }

    /// Whether nothing is left to serve (tiny_http's queue is empty; the caller looked): no
    /// worker in a handler, no request waiting for one, no request on its way or unread on
    /// a connection, and no idle connection unless the linger is over. Where connections
    /// cannot be seen: no response that left its connection open within the linger.
    fn nothing_left(&mut self, linger_end: Instant) -> bool {
        let shared = self.shared;
        if shared.live.occupancy.busy() > 0
            || !shared.http.queue().room_is_empty()
            || shared.http.still_accepting()
        {
            return false;
        }
        // Read before the census: what arrived before the linger ended is in it.
        let lingered = Instant::now() >= linger_end;
        let left = |census: &Census| census.only_waiting() && (lingered || census.is_empty());
        let Some(mut census) = shared.http.census() else {
            return shared
                .live
                .slots
                .keep_alive_linger_left(self.linger())
                .is_zero();
        };
        let mut confirmed = left(&census);
        // Read before the linger's end, done after it: what it saw holds nothing else.
        self.look_again = !lingered && census.only_waiting() && Instant::now() >= linger_end;
        // A dump of the table can skip a connection: with connections about, a second dump,
        // taken at once, must agree, unless this one cannot have skipped any. None at all
        // is the idle server's case, which must stay fast.
        if confirmed && census.seen > 0 && !census.complete {
            match shared.http.census() {
                Some(again) => {
                    confirmed = left(&again);
                    census = again;
                }
                None => confirmed = false,
            }
        }
        log::trace!("census: {census:?}, left: {confirmed}");
        self.census = Some(census);
        confirmed
    }

    /// What the last census saw left open: idle connections, requests stalled on the way,
    /// bytes no thread read. Stalled connections that never handed a request over are
    /// named at `warn`, once.
    fn connections_left(&self) -> ConnectionsLeft {
        let Some(census) = &self.census else {
            return ConnectionsLeft::default();
        };
        let stuck: Vec<_> = census.stalled.iter().map(|(peer, _)| *peer).collect();
        for (peer, _) in census.stalled.iter().filter(|(_, served)| !served) {
            log::warn!(
                "connection from {peer}: a request began and stopped arriving, and tiny_http \
                 handed nothing over (an HTTP/2 preface deadlocks its thread); left open"
            );
        }
        ConnectionsLeft {
            idle: census.new + census.idle,
            arriving: census.active.clone(),
            stuck,
            unread: census.unread.clone(),
        }
    }

    /// 3. Timed join: the accept loop ends for good, and the workers are joined with the
    ///    deadline. If some are still running then, the server is overdue: workers stop
    ///    taking requests (what waits is answered 503), and those still running after a
    ///    moment are in a handler; the report names them.
    ///
    pub(super) fn join(&mut self, mut pool: Pool) -> JoinReport {
        self.shared.http.end_accept_loop();
        self.shared.live.phases.socket_closed();
        let mut workers = pool.join_deadline(self.deadline);
        if let Some(helpers) = self.helpers.take() {
            helpers.join();
        }
        if !workers.is_complete() {
            self.shared.live.phases.enter(Phase::Overdue);
            self.shared.live.phases.stop_taking().open();
            workers.absorb(pool.join_timeout(OVERDUE_GRACE));
            self.drained = self.deadline_len;
        }
        workers
    }

    /// 4. Sweep: the late responder answers 503 to what is still queued (this waits
    ///    [`BACKLOG_WAIT`] at most for that, so that the report counts it) and to what
    ///    arrives from now on; what the deadline cut goes to the archive.
    ///
    ///    None after an idle drain: nothing was queued, no connection was open when the
    ///    socket was sealed, and the accept loop has ended, so nothing can reach tiny_http's
    ///    queue any more. Its thread's start and stop were a tenth of an idle exit's
    ///    lameduck-only time (a timeline of 20 exits: 39–91 µs to start, part of the 220 µs
    ///    of the teardown).
    pub(super) fn sweep(&mut self) -> Option<LateResponder> {
        let shared = self.shared;
        let late = if self.idle { None } else { self.start_late() };
        for cut in shared.live.slots.cut() {
            shared.archive(cut);
        }
        shared.live.set_drain_time(self.drained);
        shared.live.phases.enter(Phase::Done);
        late
    }

    /// Starts the late responder; see `sweep`.
    fn start_late(&self) -> Option<LateResponder> {
        let rejecting = Arc::clone(self.shared);
        LateResponder::start(
            Arc::clone(self.shared.http.queue()),
            move |request| rejecting.late(request),
            BACKLOG_WAIT,
        )
        .map_err(|e| log::error!("{e}: requests arriving from now on will not be answered"))
        .ok()
    }

    /// 5. Shutdown hooks, in order, sharing what is left of the deadline.
    pub(super) fn run_hooks(&self, hooks: Vec<Hook>) -> Vec<HookReport> {
        hooks::run(hooks, self.deadline)
    }

    /// 6. The report.
    pub(super) fn report(self, workers: JoinReport, hooks: Vec<HookReport>) -> ShutdownReport {
        let shared = self.shared;
        let connections = self.connections_left();
        let counts = shared.live.slots.counts();
        ShutdownReport {
            stopped_accepting: self.stopped_accepting,
            drained: self.drained,
            total: self.fired.elapsed(),
            deadline: self.deadline_len,
            deadline_capped: self.capped,
            served_before: counts.served_before,
            served_during_drain: counts.served_during_drain,
            rejected: shared.live.rejected(),
            shed: shared.live.shed(),
            handler_panics: counts.panics,
            health_checks: counts.health_checks,
            lame_duck: self.lame_duck,
            hooks,
            stragglers: shared.live.slots.stragglers(),
            workers,
            fired: self.fired,
            connections,
        }
    }
}

fn sleep_until(until: Instant) {
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}
