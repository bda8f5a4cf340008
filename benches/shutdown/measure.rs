//! The measurements. Each starts fresh servers (except throughput, which keeps one of each
//! for all its rounds), prints its table, and returns what the summary needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitStatus;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{Delay, Kind, Spec, IN_HANDLER};
use crate::load::{Conn, Load, Tally, READ_TIMEOUT};
use crate::process::{ProcStatus, ServerProcess, Sig, Signaller};
use crate::table::{self, num, Table};
use crate::wrk::{self, WrkRun};
use crate::Plan;

/// Before an "idle" signal, the server has had nothing to do for at least this long
/// (lameduck keeps draining for 20 ms after its last keep-alive response)...
const IDLE_BEFORE_SIGNAL: Duration = Duration::from_millis(100);

/// ...plus a part of this, different in each round.
const IDLE_SPREAD: Duration = Duration::from_secs(1);

/// Load before each server's first measured throughput run.
const WARM_UP: Duration = Duration::from_millis(300);

/// The longest wait for a process to exit after a signal (except where said).
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// The longest wait for the load to reach the responses after which the signal is sent.
const LOAD_BOUND: Duration = Duration::from_secs(20);

/// After the server exited, how long clients get to notice (refused connects) and end.
const CLIENTS_BOUND: Duration = Duration::from_secs(10);

/// The deadline of the never-returning handler, and when to give up on an exit.
const DEADLINE: Duration = Duration::from_secs(1);
const GIVE_UP: Duration = Duration::from_secs(5);

/// A burst's responses count if they come within this long.
const BURST_WINDOW: Duration = Duration::from_secs(1);

/// In how many rounds at each number of connections plain should have served every
/// connection, for a median p99 beside it of at least this many runs: rounds of plain and
/// lameduck are added until then (at most as many as the plan's), fewer if the plan has
/// fewer rounds. Plain served every connection in 2 of 10 rounds at 256 connections in a
/// full run, and one slow round of lameduck's made the median of the two.
const PAIRED_ROUNDS: usize = 5;

/// Values per server, in a map.
pub type PerKind<T> = HashMap<Kind, Vec<T>>;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn status_text(status: Option<ExitStatus>) -> String {
    match status {
        None => "not reaped".to_owned(),
        Some(status) => match status.code() {
            Some(code) => format!("exit {code}"),
            None => killed_by(status),
        },
    }
}

#[cfg(unix)]
fn killed_by(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(2) => "killed by SIGINT".to_owned(),
        Some(9) => "killed by SIGKILL".to_owned(),
        Some(signal) => format!("killed by signal {signal}"),
        None => "?".to_owned(),
    }
}

#[cfg(not(unix))]
fn killed_by(_status: ExitStatus) -> String {
    "killed".to_owned()
}

fn distinct(texts: impl IntoIterator<Item = String>) -> String {
    let set: BTreeSet<String> = texts.into_iter().collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

fn progress(what: &str, round: usize, rounds: usize) {
    eprintln!("  [{what}] round {}/{rounds} done", round + 1);
}

/// How long a server stays idle before the signal in `round`: [`IDLE_BEFORE_SIGNAL`] plus a
/// fraction of [`IDLE_SPREAD`] (golden-ratio steps, the same for the three servers of a
/// round), so that signals fall at unrelated moments of the servers' own timers (lameduck's
/// supervisor wakes every 20 ms while connections arrive, and every 100 ms where it cannot
/// read the connection table).
fn idle_pause(round: usize) -> Duration {
    let fraction = (round as f64 * 0.618_033_988_75).fract();
    IDLE_BEFORE_SIGNAL + IDLE_SPREAD.mul_f64(fraction)
}

/// Sends SIGINT and waits (at most `bound`) for the exit: milliseconds from the signal and
/// the exit status, or `None` if it did not exit.
fn signal_to_exit(
    signaller: &mut Signaller,
    server: &mut ServerProcess,
    bound: Duration,
) -> Result<Option<(f64, Option<ExitStatus>)>, String> {
    signal_to_exit_with(signaller, server, bound, Sig::Int)
}

/// As [`signal_to_exit`], with `sig`.
fn signal_to_exit_with(
    signaller: &mut Signaller,
    server: &mut ServerProcess,
    bound: Duration,
    sig: Sig,
) -> Result<Option<(f64, Option<ExitStatus>)>, String> {
    let sent = signaller.send(server.pid, sig)?;
    Ok(server
        .wait_exit(bound)
        .map(|exit| (millis(exit.at.saturating_duration_since(sent)), exit.status)))
}

/// One request, whole response, 200: the server is up and its workers run.
fn one_request(server: &ServerProcess) -> Result<(), String> {
    let response = Conn::connect(server.addr, READ_TIMEOUT)
        .and_then(|mut conn| conn.get())
        .map_err(|e| format!("first request: {e}"))?;
    match response.status {
        200 => Ok(()),
        status => Err(format!("first request: status {status}")),
    }
}

// ---------------------------------------------------------------------------------------
// 1. Throughput and latency

/// One timed keep-alive run.
pub struct RunStat {
    pub rps: f64,
    /// The server's CPU time per 2xx response, in microseconds.
    pub cpu_us: Option<f64>,
    pub p99_ms: Option<f64>,
    pub served: usize,
    pub ok: u64,
    pub lost: u64,
    pub cut: u64,
}

impl RunStat {
    fn new(mut tally: Tally, elapsed: Duration, cpu: Option<Duration>) -> RunStat {
        let per_response = |cpu: Duration| cpu.as_secs_f64() * 1e6 / tally.ok as f64;
        RunStat {
            rps: tally.ok as f64 / elapsed.as_secs_f64(),
            cpu_us: cpu.filter(|_| tally.ok > 0).map(per_response),
            p99_ms: table::percentile(&mut tally.latencies_us, 99.0).map(|us| f64::from(us) / 1e3),
            served: tally.clients_served,
            ok: tally.ok,
            lost: tally.lost,
            cut: tally.cut,
        }
    }
}

pub struct Throughput {
    pub runs: HashMap<(usize, Kind), Vec<RunStat>>,
}

impl Throughput {
    fn values(&self, conns: usize, kind: Kind, f: impl Fn(&RunStat) -> f64) -> Vec<f64> {
        self.runs
            .get(&(conns, kind))
            .map_or_else(Vec::new, |runs| runs.iter().map(f).collect())
    }

    pub fn median_rps(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::median(&self.values(conns, kind, |r| r.rps))
    }

    pub fn median_p99(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::median(&self.values(conns, kind, |r| r.p99_ms.unwrap_or(f64::INFINITY)))
    }

    /// The median p99 of the runs in which every connection got a response.
    pub fn median_p99_all_served(&self, conns: usize, kind: Kind) -> Option<f64> {
        let runs = self.runs.get(&(conns, kind))?;
        let p99: Vec<f64> = runs
            .iter()
            .filter(|r| r.served == conns)
            .filter_map(|r| r.p99_ms)
            .collect();
        table::median(&p99)
    }

    pub fn median_cpu_us(&self, conns: usize, kind: Kind) -> Option<f64> {
        let runs = self.runs.get(&(conns, kind))?;
        table::median(&runs.iter().filter_map(|r| r.cpu_us).collect::<Vec<_>>())
    }

    pub fn min_served(&self, conns: usize, kind: Kind) -> Option<usize> {
        let runs = self.runs.get(&(conns, kind))?;
        runs.iter().map(|r| r.served).min()
    }

    pub fn total_ok(&self, kind: Kind) -> u64 {
        self.runs
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .flat_map(|(_, runs)| runs.iter().map(|r| r.ok))
            .sum()
    }

    /// The median req/s of the runs in which every connection got a response.
    pub fn median_rps_all_served(&self, conns: usize, kind: Kind) -> Option<f64> {
        let runs = self.runs.get(&(conns, kind))?;
        let rps: Vec<f64> = runs
            .iter()
            .filter(|r| r.served == conns)
            .map(|r| r.rps)
            .collect();
        table::median(&rps)
    }

    /// How many runs had every connection served.
    pub fn all_served_runs(&self, conns: usize, kind: Kind) -> usize {
        self.runs
            .get(&(conns, kind))
            .map_or(0, |runs| runs.iter().filter(|r| r.served == conns).count())
    }

    /// The median req/s over plain's.
    pub fn ratio(&self, conns: usize, kind: Kind) -> Option<f64> {
        Some(self.median_rps(conns, kind)? / self.median_rps(conns, Kind::Plain)?)
    }

    /// The same, counting only runs in which every connection got a response: plain
    /// tiny_http leaves some connections without a thread in some runs, and its throughput
    /// is then that of fewer connections.
    pub fn ratio_all_served(&self, conns: usize, kind: Kind) -> Option<f64> {
        Some(
            self.median_rps_all_served(conns, kind)?
                / self.median_rps_all_served(conns, Kind::Plain)?,
        )
    }
}

pub fn throughput(plan: &Plan) -> Result<Throughput, String> {
    let spec = |kind| Spec::new(kind, plan.workers, Delay::Millis(0));
    let servers = throughput_kinds()
        .into_iter()
        .map(|kind| Ok((kind, ServerProcess::start(spec(kind))?)))
        .collect::<Result<HashMap<_, _>, String>>()?;
    for server in servers.values() {
        Load::start(server.addr, 16).run_for(WARM_UP);
    }
    let mut runs: HashMap<(usize, Kind), Vec<RunStat>> = HashMap::new();
    for round in 0..plan.rounds {
        for &conns in &plan.conns {
            for kind in Kind::rotated(throughput_kinds(), round) {
                let server = &servers[&kind];
                let cpu_before = server.cpu_time();
                let (tally, elapsed) = Load::start(server.addr, conns).run_for(plan.load_time);
                let cpu = match (cpu_before, server.cpu_time()) {
                    (Ok(before), Ok(after)) => Some(after.saturating_sub(before)),
                    _ => None,
                };
                let stat = RunStat::new(tally, elapsed, cpu);
                runs.entry((conns, kind)).or_default().push(stat);
            }
        }
        progress("throughput", round, plan.rounds);
    }
    let result = Throughput { runs };
    print_throughput(plan, &result);
    Ok(result)
}

fn print_throughput(plan: &Plan, result: &Throughput) {
    println!(
        "\n1. Throughput and latency: hello world (0 ms handler), keep-alive, {} s per run, \
         {} interleaved round(s), one server of each kind kept for all rounds",
        plan.load_time.as_secs_f64(),
        plan.rounds
    );
    let mut table = Table::new(&[
        "conns",
        "server",
        "req/s",
        "x plain",
        "req/s all served",
        "x plain",
        "p99 ms",
        "all served",
        "served",
        "CPU us/req",
        "req/s min",
        "req/s max",
        "lost",
        "cut",
    ]);
    for &conns in &plan.conns {
        for kind in throughput_kinds() {
            let rps = result.values(conns, kind, |r| r.rps);
            let sum = |f: fn(&RunStat) -> u64| {
                result
                    .runs
                    .get(&(conns, kind))
                    .map_or(0, |runs| runs.iter().map(f).sum::<u64>())
            };
            table.row(vec![
                conns.to_string(),
                kind.name().to_owned(),
                num(table::median(&rps), 0),
                num(result.ratio(conns, kind), 3),
                num(result.median_rps_all_served(conns, kind), 0),
                num(result.ratio_all_served(conns, kind), 3),
                num(result.median_p99(conns, kind), 2),
                num(result.median_p99_all_served(conns, kind), 2),
                result
                    .min_served(conns, kind)
                    .map_or("-".to_owned(), |s| format!("{s}/{conns}")),
                num(result.median_cpu_us(conns, kind), 1),
                num(table::min(&rps), 0),
                num(table::max(&rps), 0),
                sum(|r| r.lost).to_string(),
                sum(|r| r.cut).to_string(),
            ]);
        }
    }
    table.print();
    if let Some(&most) = plan.conns.iter().max() {
        for kind in throughput_kinds() {
            let runs = result
                .runs
                .get(&(most, kind))
                .map_or(&[][..], Vec::as_slice);
            let served: Vec<String> = runs.iter().map(|r| r.served.to_string()).collect();
            let name = kind.name();
            println!(
                "  {name}: connections served per run at {most}: {}",
                served.join(" ")
            );
        }
    }
    println!(
        "  req/s and p99: medians over rounds; all served: the same over the runs in which every \
         connection got a response; served: fewest connections that got at least one response \
         in a run; CPU us/req: the server's user+system time (/proc/<pid>/stat, 10 ms ticks) \
         per 2xx response, median; lost, cut: sums over rounds; cut: requests still unanswered \
         when a run's time was up (one in flight per served connection is normal)"
    );
}

// ---------------------------------------------------------------------------------------
// 1b. Latency under wrk

/// A server's median beside plain's over the same rounds: see [`Latency::paired`].
pub struct Paired {
    pub median: f64,
    pub plain: f64,
    pub rounds: usize,
}

pub struct Latency {
    /// Per connection count and server, one run a round, in round order.
    pub runs: HashMap<(usize, Kind), Vec<WrkRun>>,
    /// Per run as in `runs`: the connections left without a thread, seen from outside
    /// while wrk's load was on (`starved.rs`); `None` where that could not be seen.
    pub starved: HashMap<(usize, Kind), Vec<Option<usize>>>,
    /// lameduck's rescues (and the baseline's), per connection count: the longest a
    /// connection kicked for waited for its thread in each run, in ms (0: none waited), from
    /// its own debug log.
    pub rescue_waits: HashMap<(usize, Kind), Vec<f64>>,
    /// The same waits counted from when tiny_http accepted the connection, at most (the
    /// rescue's part; the rest is the backlog's, as with plain tiny_http). 0 from a
    /// baseline that does not say.
    pub queued_waits: HashMap<(usize, Kind), Vec<f64>>,
    /// The same runs: the longest from when tiny_http accepted a connection kicked for, at
    /// most, to its kick (the rescue's time to see it). 0 from a baseline that does not say.
    pub to_kick_waits: HashMap<(usize, Kind), Vec<f64>>,
    /// The same runs: the longest from a kick to the look that saw its connection read (the
    /// freed thread's time to run, and the looks' pace). 0 from a baseline that does not say.
    pub after_kick_waits: HashMap<(usize, Kind), Vec<f64>>,
    /// The same runs: the longest a connection that had a thread waited for it to read its
    /// first request (the threads were slow to run: the machine's share, not the rescue's).
    pub late_waits: HashMap<(usize, Kind), Vec<f64>>,
    /// Per connection count: the rounds of plain and lameduck (and the baseline) added
    /// after the interleaved ones, until plain served every connection in
    /// [`PAIRED_ROUNDS`] of them. The other servers have fewer runs there.
    pub added_rounds: HashMap<usize, usize>,
    /// Per run: the server's CPU time (user and system) over wrk's run, in microseconds per
    /// request wrk completed; the burst of connections and their threads' starts included.
    pub cpu_us: HashMap<(usize, Kind), Vec<f64>>,
}

impl Latency {
    fn values(&self, conns: usize, kind: Kind, f: impl Fn(&WrkRun) -> f64) -> Vec<f64> {
        self.runs
            .get(&(conns, kind))
            .map_or_else(Vec::new, |runs| runs.iter().map(f).collect())
    }

    pub fn median_rps(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::median(&self.values(conns, kind, |r| r.rps))
    }

    pub fn median_p99(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::median(&self.values(conns, kind, |r| r.p99_ms))
    }

    /// The runs in which the server left no connection without a thread.
    fn all_served(&self, conns: usize, kind: Kind) -> Vec<&WrkRun> {
        let (Some(runs), Some(starved)) = (
            self.runs.get(&(conns, kind)),
            self.starved.get(&(conns, kind)),
        ) else {
            return Vec::new();
        };
        runs.iter()
            .zip(starved)
            .filter(|(_, starved)| **starved == Some(0))
            .map(|(run, _)| run)
            .collect()
    }

    /// How many runs served every connection.
    pub fn all_served_runs(&self, conns: usize, kind: Kind) -> usize {
        self.all_served(conns, kind).len()
    }

    /// The median p99 of the runs that served every connection: a server that left some
    /// unserved measured the p99 of fewer connections.
    pub fn median_p99_all_served(&self, conns: usize, kind: Kind) -> Option<f64> {
        let p99: Vec<f64> = self
            .all_served(conns, kind)
            .iter()
            .map(|r| r.p99_ms)
            .collect();
        table::median(&p99)
    }

    /// Round by round, beside plain: the rounds in which plain, and `kind` too, served every
    /// connection, and the median of `value` for each over those rounds (`kind`'s,
    /// plain's). Plain serves every connection mostly in the machine's quieter rounds:
    /// `kind`'s p99 over all its rounds against plain's over those compares the rounds more
    /// than the servers. And its throughput in the rounds it starves connections is that of
    /// fewer connections, with fewer threads to switch between.
    pub fn paired(&self, conns: usize, kind: Kind, value: fn(&WrkRun) -> f64) -> Option<Paired> {
        let served = |kind: Kind| -> Option<Vec<(f64, bool)>> {
            let runs = self.runs.get(&(conns, kind))?;
            let starved = self.starved.get(&(conns, kind))?;
            Some(
                runs.iter()
                    .zip(starved)
                    .map(|(run, starved)| (value(run), *starved == Some(0)))
                    .collect(),
            )
        };
        let (theirs, plain) = (served(kind)?, served(Kind::Plain)?);
        let pairs: Vec<(f64, f64)> = theirs
            .iter()
            .zip(&plain)
            .filter(|((_, all), (_, plain_all))| *all && *plain_all)
            .map(|((v, _), (plain_v, _))| (*v, *plain_v))
            .collect();
        Some(Paired {
            median: table::median(&pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
            plain: table::median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
            rounds: pairs.len(),
        })
    }

    /// [`Latency::paired`] for the p99.
    pub fn paired_p99(&self, conns: usize, kind: Kind) -> Option<Paired> {
        self.paired(conns, kind, |run| run.p99_ms)
    }

    /// [`Latency::paired`] for the requests per second.
    pub fn paired_rps(&self, conns: usize, kind: Kind) -> Option<Paired> {
        self.paired(conns, kind, |run| run.rps)
    }

    /// In how many rounds at `conns` connections plain and lameduck both served every
    /// connection.
    pub fn paired_rounds(&self, conns: usize) -> usize {
        self.paired_p99(conns, Kind::Lameduck)
            .map_or(0, |p| p.rounds)
    }

    /// Each round's p99, in ms, with `*` where plain served every connection that round.
    pub fn p99_per_round(&self, conns: usize, kind: Kind) -> String {
        let (Some(runs), Some(plain)) = (
            self.runs.get(&(conns, kind)),
            self.starved.get(&(conns, Kind::Plain)),
        ) else {
            return String::new();
        };
        runs.iter()
            .zip(plain)
            .map(|(run, plain)| {
                let mark = if *plain == Some(0) { "*" } else { "" };
                format!("{:.2}{mark}", run.p99_ms)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The most connections left without a thread in one run.
    pub fn most_starved(&self, conns: usize, kind: Kind) -> Option<usize> {
        self.starved
            .get(&(conns, kind))?
            .iter()
            .flatten()
            .max()
            .copied()
    }

    /// The slowest request of all runs.
    pub fn max_ms(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::max(&self.values(conns, kind, |r| r.max_ms))
    }

    pub fn ratio(&self, conns: usize, kind: Kind) -> Option<f64> {
        Some(self.median_rps(conns, kind)? / self.median_rps(conns, Kind::Plain)?)
    }

    pub fn median_cpu_us(&self, conns: usize, kind: Kind) -> Option<f64> {
        table::median(self.cpu_us.get(&(conns, kind))?)
    }
}

/// Every server, fresh for each run (wrk opens its connections at once: a cold burst, as
/// a restarted server meets), under wrk at each connection count, interleaved.
pub fn latency(plan: &Plan) -> Result<Latency, String> {
    let mut result = Latency {
        runs: HashMap::new(),
        starved: HashMap::new(),
        rescue_waits: HashMap::new(),
        to_kick_waits: HashMap::new(),
        after_kick_waits: HashMap::new(),
        late_waits: HashMap::new(),
        queued_waits: HashMap::new(),
        cpu_us: HashMap::new(),
        added_rounds: HashMap::new(),
    };
    for round in 0..plan.rounds {
        for &conns in &plan.wrk_conns {
            for kind in Kind::rotated(latency_kinds(), round) {
                wrk_run(plan, &mut result, conns, kind)?;
            }
        }
        progress("latency (wrk)", round, plan.rounds);
    }
    // Plain serves every connection in few rounds (a third, at 256 connections); the p99
    // beside it is compared in those only, so rounds of the two are added until there are
    // enough of them (at most as many again).
    let wanted = PAIRED_ROUNDS.min(plan.rounds);
    for &conns in &plan.wrk_conns {
        let mut added = 0;
        while result.paired_rounds(conns) < wanted && added < plan.rounds {
            for kind in Kind::rotated(paired_kinds(), plan.rounds + added) {
                wrk_run(plan, &mut result, conns, kind)?;
            }
            added += 1;
        }
        if added > 0 {
            eprintln!(
                "  [latency (wrk)] {added} round(s) of plain and lameduck added at {conns} \
                 connections: {} in which plain served every connection",
                result.paired_rounds(conns)
            );
        }
        result.added_rounds.insert(conns, added);
    }
    print_latency(plan, &result);
    Ok(result)
}

/// One wrk run of `kind` at `conns` connections on a fresh server, noted in `result`.
fn wrk_run(plan: &Plan, result: &mut Latency, conns: usize, kind: Kind) -> Result<(), String> {
    let mut spec = Spec::new(kind, plan.workers, Delay::Millis(0));
    if rescues_logged(kind) {
        spec = spec.logging_rescues();
    }
    let mut server = ServerProcess::start(spec)?;
    one_request(&server)?;
    let cpu_before = server.cpu_time();
    // Looked at while the load is on, well after its connections were opened.
    let (run, seen) = thread::scope(|s| {
        let look = s.spawn(|| {
            thread::sleep(plan.load_time.mul_f64(0.6));
            crate::starved::count(server.addr)
        });
        let run = wrk::run(server.addr, conns, plan.load_time);
        (run, look.join().ok().flatten())
    });
    let cpu = match (cpu_before, server.cpu_time()) {
        (Ok(before), Ok(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let run = run.map_err(|e| format!("{} at {conns} connections: {e}", kind.name()))?;
    if let Some(cpu) = cpu.filter(|_| run.requests > 0) {
        result
            .cpu_us
            .entry((conns, kind))
            .or_default()
            .push(cpu.as_secs_f64() * 1e6 / run.requests as f64);
    }
    result.runs.entry((conns, kind)).or_default().push(run);
    result.starved.entry((conns, kind)).or_default().push(seen);
    if rescues_logged(kind) {
        server.kill();
        let _ = server.wait_exit(EXIT_BOUND);
        let tail = server.stderr_tail();
        let longest = |key| {
            tail.iter()
                .filter_map(|l| rescue_wait(l, key))
                .fold(0.0, f64::max)
        };
        let note = |waits: &mut HashMap<(usize, Kind), Vec<f64>>, key| {
            waits.entry((conns, kind)).or_default().push(longest(key));
        };
        note(&mut result.rescue_waits, "the longest for ");
        note(&mut result.late_waits, "the last after ");
        note(&mut result.queued_waits, "accepted it, at most ");
        note(&mut result.to_kick_waits, "kicked for within ");
        note(&mut result.after_kick_waits, "read within ");
    }
    Ok(())
}

/// The servers of the rounds added for the paired p99: plain, lameduck, and plain again and
/// the baseline where they run.
fn paired_kinds() -> Vec<Kind> {
    latency_kinds()
        .into_iter()
        .filter(|kind| {
            matches!(
                kind,
                Kind::Plain | Kind::PlainAgain | Kind::Lameduck | Kind::Baseline
            )
        })
        .collect()
}

/// The servers of the throughput part (the bench's own client): those compared, lameduck
/// watched, plain again if asked (`--plain-twice`), and the baseline if one was given
/// (`--baseline`).
fn throughput_kinds() -> Vec<Kind> {
    let mut kinds = Kind::throughput();
    if crate::child::has_plain_again() {
        kinds.push(Kind::PlainAgain);
    }
    if crate::child::has_baseline() {
        kinds.push(Kind::Baseline);
    }
    kinds
}

/// The servers of the latency part: those of the throughput part, and the baseline if one
/// was given (`--baseline`).
fn latency_kinds() -> Vec<Kind> {
    throughput_kinds()
}

/// Whether the server logs its rescues: lameduck, in this build or the baseline's.
fn rescues_logged(kind: Kind) -> bool {
    matches!(kind, Kind::Lameduck | Kind::Baseline)
}

/// A wait in a lameduck rescue's debug line: `... the longest for 12.3 ms; ...` (`key`
/// `"the longest for "`), `... the last after 4.5 ms` (`"the last after "`).
fn rescue_wait(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(key).nth(1)?;
    rest.split(" ms").next()?.parse().ok()
}

fn print_latency(plan: &Plan, result: &Latency) {
    println!(
        "\n1b. Latency under wrk ({}): `wrk -t1 -cN --latency --timeout 2s`, {} s per run, a \
         fresh server for each run, {} interleaved round(s); then rounds of plain and lameduck \
         only until plain served every connection in {} (at most {} more), added at {} \
         connections: {}",
        wrk::version().unwrap_or_default(),
        plan.load_time.as_secs_f64(),
        plan.rounds,
        PAIRED_ROUNDS.min(plan.rounds),
        plan.rounds,
        plan.wrk_conns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" / "),
        plan.wrk_conns
            .iter()
            .map(|c| result.added_rounds.get(c).copied().unwrap_or(0).to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let mut table = Table::new(&[
        "conns",
        "server",
        "req/s",
        "x plain",
        "p50 ms",
        "p99 ms",
        "p99 max ms",
        "slowest ms",
        "timeouts",
        "errors",
        "all served",
        "p99 all served",
        "most unserved",
        "CPU us/req",
    ]);
    for &conns in &plan.wrk_conns {
        for kind in latency_kinds() {
            let sum = |f: fn(&WrkRun) -> u64| {
                result
                    .runs
                    .get(&(conns, kind))
                    .map_or(0, |runs| runs.iter().map(f).sum::<u64>())
            };
            table.row(vec![
                conns.to_string(),
                kind.name().to_owned(),
                num(result.median_rps(conns, kind), 0),
                num(result.ratio(conns, kind), 3),
                num(table::median(&result.values(conns, kind, |r| r.p50_ms)), 2),
                num(result.median_p99(conns, kind), 2),
                num(table::max(&result.values(conns, kind, |r| r.p99_ms)), 2),
                num(result.max_ms(conns, kind), 1),
                sum(|r| r.timeouts).to_string(),
                sum(|r| r.errors).to_string(),
                format!(
                    "{}/{}",
                    result.all_served_runs(conns, kind),
                    result.runs.get(&(conns, kind)).map_or(0, Vec::len)
                ),
                num(result.median_p99_all_served(conns, kind), 2),
                result
                    .most_starved(conns, kind)
                    .map_or("-".to_owned(), |n| n.to_string()),
                num(result.median_cpu_us(conns, kind), 1),
            ]);
        }
    }
    table.print();
    println!(
        "  req/s, p50 and p99: medians over rounds; p99 max: the worst run's; slowest: the \
         slowest request of all runs; timeouts: requests that waited over 2 s; errors: socket \
         errors and responses not 2xx/3xx (sums). A connection never served counts in none \
         of these: all served, runs in which `ss` showed no connection whose bytes all stayed \
         unread {:.1} s into the load; p99 all served: the median over those runs; most \
         unserved: the most such connections in one run (-: `ss` missing); CPU us/req: the \
         server's user+system time over the run (/proc/<pid>/stat, 10 ms ticks; the burst's \
         thread starts included) per request wrk completed, median.",
        plan.load_time.as_secs_f64() * 0.6
    );
    for &conns in &plan.wrk_conns {
        for kind in latency_kinds() {
            println!(
                "  p99 per round at {conns} connections, {} (ms; *: plain served every \
                 connection that round): {}",
                kind.name(),
                result.p99_per_round(conns, kind)
            );
        }
    }
    for kind in latency_kinds().into_iter().filter(|&k| rescues_logged(k)) {
        for &conns in &plan.wrk_conns {
            let waits = |of: &HashMap<(usize, Kind), Vec<f64>>| {
                of.get(&(conns, kind)).cloned().unwrap_or_default()
            };
            let texts = |waits: &[f64]| -> String {
                let texts: Vec<String> = waits.iter().map(|w| format!("{w:.1}")).collect();
                texts.join(" ")
            };
            let rescues = waits(&result.rescue_waits);
            println!(
                "  {} at {conns} connections: the longest a connection tiny_http left without \
                 a thread waited for its rescue, per run (ms, 0: none): {} ({} of {} runs with \
                 one); of which since tiny_http accepted it, at most: {}; from then to its \
                 kick, at most: {}; from a kick to the connection seen read: {}; in the same \
                 runs, the longest a connection that had a thread waited for it to run (ms, 0: \
                 none seen): {}",
                kind.name(),
                texts(&rescues),
                rescues.iter().filter(|&&w| w > 0.0).count(),
                rescues.len(),
                texts(&waits(&result.queued_waits)),
                texts(&waits(&result.to_kick_waits)),
                texts(&waits(&result.after_kick_waits)),
                texts(&waits(&result.late_waits))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Signal to exit, idle

pub struct ExitIdle {
    /// After SIGINT.
    pub ms: PerKind<f64>,
    /// After SIGTERM.
    pub term_ms: PerKind<f64>,
    statuses: HashMap<(Sig, Kind), Vec<String>>,
    /// lameduck's own reports, from its stderr.
    reports: Vec<String>,
}

impl ExitIdle {
    /// The times after `sig`.
    pub fn after(&self, sig: Sig) -> &PerKind<f64> {
        match sig {
            Sig::Int => &self.ms,
            Sig::Term => &self.term_ms,
        }
    }
}

pub fn exit_idle(plan: &Plan, signaller: &mut Signaller) -> Result<ExitIdle, String> {
    let mut result = ExitIdle {
        ms: HashMap::new(),
        term_ms: HashMap::new(),
        statuses: HashMap::new(),
        reports: Vec::new(),
    };
    for round in 0..plan.rounds {
        for kind in Kind::rotated(exit_kinds(), round) {
            // Which goes first alternates too: a second start of the same binary is warmer.
            let mut sigs = Sig::BOTH;
            sigs.rotate_left(round % Sig::BOTH.len());
            for sig in sigs {
                let mut server =
                    ServerProcess::start(Spec::new(kind, plan.workers, Delay::Millis(0)))?;
                one_request(&server)?;
                thread::sleep(idle_pause(round));
                let (ms, status) = signal_to_exit_with(signaller, &mut server, EXIT_BOUND, sig)?
                    .ok_or_else(|| {
                        format!(
                            "{} did not exit in {EXIT_BOUND:?} after SIG{} (SIGINT ignored? a \
                             background job of a non-interactive shell starts with SIGINT \
                             ignored, and its children too)",
                            kind.name(),
                            sig.name()
                        )
                    })?;
                let times = match sig {
                    Sig::Int => &mut result.ms,
                    Sig::Term => &mut result.term_ms,
                };
                times.entry(kind).or_default().push(ms);
                let statuses = result.statuses.entry((sig, kind)).or_default();
                statuses.push(status_text(status));
                if kind == Kind::Lameduck && sig == Sig::Int {
                    result.reports.push(server.stderr_tail().join(" / "));
                }
            }
        }
    }
    print_exit_idle(plan, &result);
    Ok(result)
}

/// The servers of the exit part: those compared everywhere, and the baseline if one was
/// given (`--baseline`).
/// The servers of the idle exit: those compared, naive with its server dropped beside naive
/// ([`Kind::NaiveDropped`]), and the baseline where there is one.
fn exit_kinds() -> Vec<Kind> {
    let mut kinds = Kind::compared();
    kinds.insert(2, Kind::NaiveDropped);
    if crate::child::has_baseline() {
        kinds.push(Kind::Baseline);
    }
    kinds
}

fn print_exit_idle(plan: &Plan, result: &ExitIdle) {
    println!(
        "\n2. Signal to exit, idle: a fresh server, one request answered, {} ms + 0-{} ms \
         idle (a different pause each round), then SIGINT, and the same again with SIGTERM \
         (which goes first alternates); {} run(s) of each. (Under load: see 3, 50 ms handler, \
         SIGINT.)",
        IDLE_BEFORE_SIGNAL.as_millis(),
        IDLE_SPREAD.as_millis(),
        plan.rounds
    );
    let mut table = Table::new(&[
        "server",
        "signal",
        "median ms",
        "min ms",
        "max ms",
        "exit status",
        "per run, ms",
    ]);
    for (kind, sig) in exit_kinds()
        .into_iter()
        .flat_map(|kind| Sig::BOTH.map(|sig| (kind, sig)))
    {
        let ms = result.after(sig).get(&kind).cloned().unwrap_or_default();
        let statuses = result
            .statuses
            .get(&(sig, kind))
            .cloned()
            .unwrap_or_default();
        table.row(vec![
            kind.name().to_owned(),
            format!("SIG{}", sig.name()),
            num(table::median(&ms), 2),
            num(table::min(&ms), 2),
            num(table::max(&ms), 2),
            distinct(statuses),
            ms.iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    table.print();
    println!(
        "  naive+drop: naive, with its tiny_http::Server dropped after the workers are joined, \
         as lameduck's is (naive leaves it to the process's exit): tiny_http's own teardown"
    );
    println!("  lameduck's own reports:");
    for report in &result.reports {
        println!("    {report}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Requests lost during shutdown (and signal to exit under load)

pub struct DrainRun {
    pub exit_ms: Option<f64>,
    pub status: String,
    pub tally: Tally,
    /// Responses (any status) after the signal.
    pub answered_after: u64,
    /// lameduck's report, from its stderr.
    pub report: Option<String>,
}

pub struct Drain {
    pub runs: HashMap<(u64, Kind), Vec<DrainRun>>,
}

impl Drain {
    pub fn lost(&self, delay_ms: u64, kind: Kind) -> Option<Vec<f64>> {
        let runs = self.runs.get(&(delay_ms, kind))?;
        Some(runs.iter().map(|r| r.tally.lost as f64).collect())
    }

    pub fn exit_ms(&self, delay_ms: u64, kind: Kind) -> Vec<f64> {
        self.runs
            .get(&(delay_ms, kind))
            .map_or_else(Vec::new, |runs| {
                runs.iter().filter_map(|r| r.exit_ms).collect()
            })
    }

    /// Runs in which the server did not exit.
    pub fn stuck(&self, delay_ms: u64, kind: Kind) -> usize {
        self.runs.get(&(delay_ms, kind)).map_or(0, |runs| {
            runs.iter().filter(|r| r.exit_ms.is_none()).count()
        })
    }
}

pub fn drain(plan: &Plan, signaller: &mut Signaller) -> Result<Drain, String> {
    let mut result = Drain {
        runs: HashMap::new(),
    };
    for &(delay_ms, after) in &plan.drain_cases {
        for round in 0..plan.rounds {
            for kind in Kind::rotated(Kind::compared(), round) {
                let run = drain_once(plan, signaller, kind, delay_ms, after)?;
                result.runs.entry((delay_ms, kind)).or_default().push(run);
            }
            progress(&format!("drain {delay_ms} ms"), round, plan.rounds);
        }
        print_drain(plan, &result, delay_ms, after);
    }
    Ok(result)
}

fn drain_once(
    plan: &Plan,
    signaller: &mut Signaller,
    kind: Kind,
    delay_ms: u64,
    after: u64,
) -> Result<DrainRun, String> {
    let spec = Spec::new(kind, plan.workers, Delay::Millis(delay_ms));
    let mut server = ServerProcess::start(spec)?;
    let load = Load::start(server.addr, plan.drain_clients);
    if !load.wait_responses(after, LOAD_BOUND) {
        let got = load.responses();
        load.stop();
        return Err(format!(
            "{}: {got} of {after} responses before the signal",
            kind.name()
        ));
    }
    let before = load.responses();
    let exit = signal_to_exit(signaller, &mut server, EXIT_BOUND)?;
    let tally = load.finish(CLIENTS_BOUND);
    let answered = tally.ok + tally.unavailable + tally.other_status;
    Ok(DrainRun {
        exit_ms: exit.map(|(ms, _)| ms),
        status: exit.map_or("did not exit".to_owned(), |(_, s)| status_text(s)),
        answered_after: answered.saturating_sub(before),
        tally,
        report: (kind == Kind::Lameduck).then(|| server.stderr_tail().join(" / ")),
    })
}

fn print_drain(plan: &Plan, result: &Drain, delay_ms: u64, after: u64) {
    println!(
        "\n3. Shutdown under load, {delay_ms} ms handler: {} keep-alive clients in a loop, \
         SIGINT after {after} responses; clients end when a connect is refused; {} round(s)",
        plan.drain_clients, plan.rounds
    );
    let mut table = Table::new(&[
        "server",
        "lost per round",
        "lost min/med/max",
        "503",
        "write failed",
        "ok (median)",
        "answered after signal",
        "exit ms med",
        "exit ms max",
        "exit status",
    ]);
    for kind in Kind::compared() {
        let runs = result
            .runs
            .get(&(delay_ms, kind))
            .map_or(&[][..], Vec::as_slice);
        let lost: Vec<f64> = runs.iter().map(|r| r.tally.lost as f64).collect();
        let exits = result.exit_ms(delay_ms, kind);
        table.row(vec![
            kind.name().to_owned(),
            runs.iter()
                .map(|r| r.tally.lost.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            format!(
                "{}/{}/{}",
                num(table::min(&lost), 0),
                num(table::median(&lost), 0),
                num(table::max(&lost), 0)
            ),
            total(runs, |t| t.unavailable).to_string(),
            total(runs, |t| t.write_failed).to_string(),
            num(median_of(runs, |r| r.tally.ok as f64), 0),
            num(median_of(runs, |r| r.answered_after as f64), 0),
            num(table::median(&exits), 1),
            num(table::max(&exits), 1),
            distinct(runs.iter().map(|r| r.status.clone())),
        ]);
    }
    table.print();
    let other: u64 = result
        .runs
        .iter()
        .filter(|((d, _), _)| *d == delay_ms)
        .flat_map(|(_, runs)| runs.iter())
        .map(|r| r.tally.other_status + r.tally.connect_failed)
        .sum();
    println!(
        "  lost: written, no whole response back; exit: SIGINT to the process gone \
         (pipes closed); other statuses and failed (not refused) connects: {other}"
    );
    for kind in Kind::compared() {
        let runs = result
            .runs
            .get(&(delay_ms, kind))
            .map_or(&[][..], Vec::as_slice);
        let lost = add_up(runs.iter().map(|r| &r.tally.lost_by));
        if !lost.is_empty() {
            println!("  {} lost, as the client saw it: {lost}", kind.name());
        }
        let failed = add_up(runs.iter().map(|r| &r.tally.connect_failed_by));
        if !failed.is_empty() {
            println!("  {} failed (not refused) connects: {failed}", kind.name());
        }
    }
    let report = result
        .runs
        .get(&(delay_ms, Kind::Lameduck))
        .and_then(|runs| runs.last())
        .and_then(|run| run.report.clone());
    if let Some(report) = report {
        println!("  lameduck's own report, last round: {report}");
    }
}

/// `"ConnectionReset on a new connection 3, ..."`: counts by what happened, added up.
fn add_up<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> String {
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for (what, n) in maps.flatten() {
        *total.entry(what).or_default() += n;
    }
    let texts: Vec<String> = total
        .iter()
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    texts.join(", ")
}

fn total(runs: &[DrainRun], count: impl Fn(&Tally) -> u64) -> u64 {
    runs.iter().map(|r| count(&r.tally)).sum()
}

fn median_of(runs: &[DrainRun], f: impl Fn(&DrainRun) -> f64) -> Option<f64> {
    table::median(&runs.iter().map(f).collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------------------
// 4. Deadline overrun

pub struct DeadlineRun {
    /// From the signal, `None` if it had not exited after [`GIVE_UP`].
    pub exit_ms: Option<f64>,
    pub status: String,
    /// What the client of the never-ending request got.
    pub client: String,
}

pub fn deadline(plan: &Plan, signaller: &mut Signaller) -> Result<PerKind<DeadlineRun>, String> {
    let mut result: PerKind<DeadlineRun> = HashMap::new();
    for round in 0..plan.small_rounds {
        for kind in Kind::order(round) {
            let run = deadline_once(plan, signaller, kind)?;
            result.entry(kind).or_default().push(run);
        }
        progress("deadline", round, plan.small_rounds);
    }
    print_deadline(plan, &result);
    Ok(result)
}

fn deadline_once(
    plan: &Plan,
    signaller: &mut Signaller,
    kind: Kind,
) -> Result<DeadlineRun, String> {
    let spec = Spec::new(kind, plan.workers, Delay::Hang).with_deadline(DEADLINE);
    let mut server = ServerProcess::start(spec)?;
    let mut conn =
        Conn::connect(server.addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    conn.send().map_err(|e| format!("send: {e}"))?;
    server.wait_line(IN_HANDLER, Duration::from_secs(5))?;
    let exit = signal_to_exit(signaller, &mut server, GIVE_UP)?;
    if exit.is_none() {
        server.kill();
    }
    let client = match conn.read_response() {
        Ok(response) => format!("status {}", response.status),
        Err(e) => format!("no response ({})", e.kind()),
    };
    Ok(DeadlineRun {
        exit_ms: exit.map(|(ms, _)| ms),
        status: exit.map_or(
            format!("did not exit in {} s: killed", GIVE_UP.as_secs()),
            |(_, s)| status_text(s),
        ),
        client,
    })
}

/// How far past the deadline each run exited, in ms.
pub fn overruns(runs: &[DeadlineRun]) -> Vec<f64> {
    let deadline = millis(DEADLINE);
    runs.iter()
        .filter_map(|r| r.exit_ms.map(|ms| ms - deadline))
        .collect()
}

fn print_deadline(plan: &Plan, result: &PerKind<DeadlineRun>) {
    println!(
        "\n4. Deadline overrun: handler never returns, one request in it, deadline {} s \
         (lameduck), SIGINT; give up after {} s; {} round(s)",
        DEADLINE.as_secs(),
        GIVE_UP.as_secs(),
        plan.small_rounds
    );
    let mut table = Table::new(&[
        "server",
        "exit ms after signal",
        "past 1 s, max ms",
        "exit status",
        "the request got",
    ]);
    for kind in Kind::ALL {
        let runs = result.get(&kind).map_or(&[][..], Vec::as_slice);
        let exits = runs
            .iter()
            .map(|r| r.exit_ms.map_or("none".to_owned(), |ms| format!("{ms:.1}")))
            .collect::<Vec<_>>()
            .join(" ");
        let past = (kind == Kind::Lameduck).then(|| table::max(&overruns(runs)));
        table.row(vec![
            kind.name().to_owned(),
            exits,
            past.map_or("n/a".to_owned(), |max| num(max, 1)),
            distinct(runs.iter().map(|r| r.status.clone())),
            distinct(runs.iter().map(|r| r.client.clone())),
        ]);
    }
    table.print();
}

// ---------------------------------------------------------------------------------------
// 5. Idle keep-alive connections

pub struct IdleRun {
    pub served: usize,
    pub proc: Option<ProcStatus>,
    pub exit_ms: Option<f64>,
    pub status: String,
}

pub fn idle(plan: &Plan, signaller: &mut Signaller) -> Result<PerKind<IdleRun>, String> {
    let mut result: PerKind<IdleRun> = HashMap::new();
    for round in 0..plan.small_rounds {
        for kind in Kind::order(round) {
            let run = idle_once(plan, signaller, kind, idle_pause(round))?;
            result.entry(kind).or_default().push(run);
        }
        progress("idle connections", round, plan.small_rounds);
    }
    print_idle(plan, &result);
    Ok(result)
}

fn idle_once(
    plan: &Plan,
    signaller: &mut Signaller,
    kind: Kind,
    pause: Duration,
) -> Result<IdleRun, String> {
    let mut server = ServerProcess::start(Spec::new(kind, plan.workers, Delay::Millis(0)))?;
    let conns = open_idle(&server, plan.idle_conns)?;
    let served = conns.len();
    thread::sleep(pause);
    let proc = server.status().ok();
    let exit = signal_to_exit(signaller, &mut server, EXIT_BOUND)?;
    drop(conns);
    Ok(IdleRun {
        served,
        proc,
        exit_ms: exit.map(|(ms, _)| ms),
        status: exit.map_or("did not exit".to_owned(), |(_, s)| status_text(s)),
    })
}

/// Opens `n` connections, one at a time, each answered once; returns those answered.
fn open_idle(server: &ServerProcess, n: usize) -> Result<Vec<Conn>, String> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n && Instant::now() < until {
        let mut conn = Conn::connect(server.addr, Duration::from_secs(2))
            .map_err(|e| format!("connection {}: {e}", conns.len() + 1))?;
        if conn.get().is_ok_and(|r| r.status == 200) {
            conns.push(conn);
        }
    }
    Ok(conns)
}

fn print_idle(plan: &Plan, result: &PerKind<IdleRun>) {
    println!(
        "\n5. {} idle keep-alive connections (each answered once, then idle {} ms + 0-{} ms), \
         then /proc/<pid>/status, then SIGINT; {} round(s)",
        plan.idle_conns,
        IDLE_BEFORE_SIGNAL.as_millis(),
        IDLE_SPREAD.as_millis(),
        plan.small_rounds
    );
    let mut table = Table::new(&[
        "server",
        "open",
        "VmRSS MiB",
        "threads",
        "exit ms med",
        "exit ms max",
        "exit status",
    ]);
    for kind in Kind::ALL {
        let runs = result.get(&kind).map_or(&[][..], Vec::as_slice);
        let rss: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.proc)
            .map(|p| p.rss_mib())
            .collect();
        let threads: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.proc)
            .map(|p| p.threads as f64)
            .collect();
        let exits: Vec<f64> = runs.iter().filter_map(|r| r.exit_ms).collect();
        table.row(vec![
            kind.name().to_owned(),
            runs.iter().map(|r| r.served).min().unwrap_or(0).to_string(),
            num(table::median(&rss), 1),
            num(table::median(&threads), 0),
            num(table::median(&exits), 1),
            num(table::max(&exits), 1),
            distinct(runs.iter().map(|r| r.status.clone())),
        ]);
    }
    table.print();
}

// ---------------------------------------------------------------------------------------
// 6. Cold burst

pub fn burst(plan: &Plan) -> Result<PerKind<usize>, String> {
    let mut result: PerKind<usize> = HashMap::new();
    for round in 0..plan.rounds {
        for kind in Kind::order(round) {
            let server = ServerProcess::start(Spec::new(kind, plan.workers, Delay::Millis(0)))?;
            let served = burst_once(&server, plan.burst_conns)?;
            result.entry(kind).or_default().push(served);
        }
    }
    print_burst(plan, &result);
    Ok(result)
}

/// `n` clients connect at once; once every connect is done, each sends one request at once.
/// Counts the responses that came within [`BURST_WINDOW`] of their request. Every
/// connection stays open until all are done, as keep-alive clients' would (a connection
/// closing frees a tiny_http thread for a connection left waiting).
fn burst_once(server: &ServerProcess, n: usize) -> Result<usize, String> {
    let read_timeout = BURST_WINDOW + Duration::from_millis(100);
    let (connect, send) = (Arc::new(Barrier::new(n + 1)), Arc::new(Barrier::new(n + 1)));
    let addr = server.addr;
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let (connect, send) = (Arc::clone(&connect), Arc::clone(&send));
            thread::spawn(move || {
                connect.wait();
                let conn = Conn::connect(addr, read_timeout);
                send.wait();
                let sent = Instant::now();
                let mut conn = conn.ok()?;
                let answered = conn.get().is_ok_and(|r| r.status == 200);
                Some((answered && sent.elapsed() <= BURST_WINDOW, conn))
            })
        })
        .collect();
    connect.wait();
    send.wait();
    let done: Vec<_> = clients
        .into_iter()
        .filter_map(|client| client.join().ok().flatten())
        .collect();
    Ok(done.iter().filter(|(answered, _)| *answered).count())
}

fn print_burst(plan: &Plan, result: &PerKind<usize>) {
    println!(
        "\n6. Cold burst: a fresh server per round, {n} keep-alive connections opened at once \
         (one thread each), then, all connected, one request on each at once; answered within \
         {} s, per round ({} rounds)",
        BURST_WINDOW.as_secs(),
        plan.rounds,
        n = plan.burst_conns
    );
    let mut table = Table::new(&["server", "answered per round", "min"]);
    for kind in Kind::ALL {
        let rounds = result.get(&kind).map_or(&[][..], Vec::as_slice);
        table.row(vec![
            kind.name().to_owned(),
            rounds
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            rounds
                .iter()
                .min()
                .map_or("-".to_owned(), |m| format!("{m}/{}", plan.burst_conns)),
        ]);
    }
    table.print();
}

// ---------------------------------------------------------------------------------------
// 7. Idle memory

pub fn rss(plan: &Plan) -> Result<PerKind<ProcStatus>, String> {
    let mut result: PerKind<ProcStatus> = HashMap::new();
    for round in 0..plan.small_rounds {
        for kind in Kind::order(round) {
            let server = ServerProcess::start(Spec::new(kind, plan.workers, Delay::Millis(0)))?;
            one_request(&server)?;
            thread::sleep(IDLE_BEFORE_SIGNAL);
            result.entry(kind).or_default().push(server.status()?);
        }
    }
    print_rss(plan, &result);
    Ok(result)
}

pub fn median_rss(runs: &[ProcStatus]) -> Option<f64> {
    table::median(&runs.iter().map(ProcStatus::rss_mib).collect::<Vec<_>>())
}

fn print_rss(plan: &Plan, result: &PerKind<ProcStatus>) {
    println!(
        "\n7. Idle memory right after start: a fresh server, one request answered, {} ms \
         idle, then /proc/<pid>/status; {} workers; median of {} server(s) each",
        IDLE_BEFORE_SIGNAL.as_millis(),
        plan.workers,
        plan.small_rounds
    );
    let mut table = Table::new(&["server", "VmRSS MiB", "anonymous", "file", "threads"]);
    for kind in Kind::ALL {
        let runs = result.get(&kind).map_or(&[][..], Vec::as_slice);
        let median =
            |f: fn(&ProcStatus) -> f64| table::median(&runs.iter().map(f).collect::<Vec<_>>());
        table.row(vec![
            kind.name().to_owned(),
            num(median(ProcStatus::rss_mib), 2),
            num(median(ProcStatus::rss_anon_mib), 2),
            num(median(ProcStatus::rss_file_mib), 2),
            num(median(|p| p.threads as f64), 0),
        ]);
    }
    table.print();
    println!(
        "  anonymous: heap and stacks (RssAnon); file: mapped files, mostly libc and this bench \
         binary, which all three servers are (RssFile)"
    );
}
