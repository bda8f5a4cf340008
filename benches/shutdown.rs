//! # Side by side: plain tiny_http, a naive shutdown, lameduck, and Go
//!
//! ```text
//! cargo bench --bench shutdown                     # the full run, ~14 minutes on 2 cores
//! cargo bench --bench shutdown -- --install        # the same, apt-get installing wrk and Go
//! cargo bench --bench shutdown -- --smoke          # a few seconds; asserts lameduck lost no
//!                                                  # request and every server answered (CI)
//! cargo bench --bench shutdown -- --only burst     # one measurement: throughput, latency,
//!                                                  # exit, drain (or lost), deadline, idle,
//!                                                  # burst, rss
//! cargo bench --bench shutdown -- --workers 8      # another worker count (default 32)
//! cargo bench --bench shutdown -- --rounds 3       # fewer (or more) rounds of everything
//! cargo bench --bench shutdown -- --only exit --baseline OLD
//!                                                  # the exit part with lameduck as another
//!                                                  # build of this bench (OLD, a copy of
//!                                                  # target/release/deps/shutdown-*) runs it
//!                                                  # as one more row (also the latency part:
//!                                                  # its rescues side by side)
//! cargo bench --bench shutdown -- --plain-twice    # plain tiny_http a second time, in the
//!                                                  # throughput and latency parts: how far
//!                                                  # apart the same server comes out
//! ```
//!
//! The servers, with the same worker count and the same handler (sleep D ms, then
//! `Hello World`), each in a child process (this binary run again, see `shutdown/child.rs`):
//!
//! - **plain**: tiny_http, N threads looping on `recv()`, no shutdown handling: SIGINT ends
//!   it the default way. The floor for throughput.
//! - **naive**: the same plus a `ctrlc` handler that sets a flag and calls `unblock()` once
//!   per worker; workers leave their loop, main joins them and exits 0. No drain.
//! - **lameduck**: `lameduck::Server` with `lameduck::signal::install` (and, in the
//!   throughput and latency parts, **lameduck+watch**: the same with `Builder::metrics` on and
//!   `Handle::stats()` taken every millisecond).
//! - **go**: the seed's Go program (`versus_go/seed.go`, `shutdown/go.rs`), where Go is
//!   installed, in the throughput, latency, exit and drain parts; skipped with a note
//!   otherwise.
//!
//! A child prints `listening on http://ADDR` once it accepts; the parent waits for that line
//! (never a sleep), sends load and `kill -INT`, and takes the exit as the moment both of the
//! child's pipes (stdout, stderr) have closed, then reaps it. Signals are `kill -INT <pid>`
//! lines written to one `sh` started in advance, so that starting a `kill` process is not
//! timed. Every wait is bounded; a child is killed when its handle is dropped.
//!
//! The load generator is in this bench (`shutdown/load.rs`): std threads, one blocking
//! keep-alive `TcpStream` each, `GET / HTTP/1.1`, whole responses read (Content-Length or
//! chunked), reconnect after `Connection: close`. It counts ok (2xx), 503, refused connects
//! and **lost**: a request written whose whole response never came back (end of stream,
//! reset, partial response, 5 s read timeout). A write that fails is not lost.
//!
//! Measurements (`shutdown/measure.rs`):
//!
//! 1. `throughput`: hello world, keep-alive, 1/16/64/256 connections, 2 s runs interleaved
//!    over 10 rounds: median req/s, ratio to plain, p99 latency, connections served, server
//!    CPU time per request.
//!
//!    `latency`: the same under wrk (`shutdown/wrk.rs`, Debian's `wrk`) at 16/64/256
//!    connections, a fresh server per run: req/s, p50, p99, slowest; and, from lameduck's
//!    debug log, how long a connection tiny_http left without a thread waited for its
//!    rescue. Its p99 is compared with plain's in the rounds where plain served every
//!    connection; rounds of the two are added until there are 5 such (at most as many again).
//!    Skipped with a note without wrk.
//! 2. `exit`: signal to exit when idle, SIGINT and SIGTERM (10 runs of each, each after a
//!    different idle pause). Under load it is measured by `drain`.
//! 3. `drain`: 32 clients in a loop, 0 ms and 50 ms handlers, SIGINT after 2000 / 200
//!    responses: lost (and how the client saw it), 503, ok, signal to exit.
//! 4. `deadline`: a handler that never returns, deadline 1 s: how far past it the exit comes.
//! 5. `idle`: 1 000 idle keep-alive connections: RSS, threads, signal to exit. The open-files
//!    limit is raised first if needed (this binary runs again through `sh -c 'ulimit -n'`).
//! 6. `burst`: a cold server, 64 connections opened at once, then one request on each at
//!    once: answered within 1 s.
//! 7. `rss`: idle memory after start.
//!
//! Then a summary of the targets, PASS or MISS for lameduck. The full run asserts nothing.
//! `--smoke` runs each measurement once and briefly (no deadline, 100 idle connections) and
//! exits non-zero only if lameduck lost a request or a server answered none: no timing is
//! asserted. Linux only (signals through `kill`, `/proc`); elsewhere it says it skipped.

#[path = "shutdown/apt.rs"]
mod apt;
#[path = "shutdown/child.rs"]
mod child;
#[path = "shutdown/go.rs"]
mod go;
#[path = "shutdown/load.rs"]
mod load;
#[path = "shutdown/measure.rs"]
mod measure;
#[path = "shutdown/process.rs"]
mod process;
#[path = "shutdown/starved.rs"]
mod starved;
#[path = "shutdown/summary.rs"]
mod summary;
#[path = "shutdown/table.rs"]
mod table;
#[path = "shutdown/wrk.rs"]
mod wrk;

use std::time::{Duration, Instant};

use measure::{Drain, ExitIdle, IdleRun, Latency, PerKind, Throughput};
use process::{ProcStatus, Signaller};

/// What to run, and how much of it.
pub struct Plan {
    pub smoke: bool,
    /// Workers of every server.
    pub workers: usize,
    /// Rounds of throughput, exit, drain and burst.
    pub rounds: usize,
    /// Rounds of deadline, idle connections and memory.
    pub small_rounds: usize,
    /// Length of one throughput run.
    pub load_time: Duration,
    /// Connection counts of the throughput runs.
    pub conns: Vec<usize>,
    /// Connection counts of the runs under wrk.
    pub wrk_conns: Vec<usize>,
    /// Clients of the shutdown-under-load runs.
    pub drain_clients: usize,
    /// (handler ms, responses before the signal) of the shutdown-under-load runs.
    pub drain_cases: Vec<(u64, u64)>,
    pub idle_conns: usize,
    pub burst_conns: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            smoke: false,
            // At least as many workers as the 32 clients of the shutdown runs: the drain then
            // takes one handler time.
            workers: 32,
            rounds: 10,
            small_rounds: 3,
            load_time: Duration::from_secs(2),
            conns: vec![1, 16, 64, 256],
            wrk_conns: vec![16, 64, 256],
            drain_clients: 32,
            drain_cases: vec![(0, 2000), (50, 200)],
            idle_conns: 1000,
            burst_conns: 64,
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            rounds: 1,
            small_rounds: 1,
            load_time: Duration::from_millis(300),
            conns: vec![16],
            wrk_conns: vec![16],
            drain_cases: vec![(0, 500), (50, 100)],
            idle_conns: 100,
            ..Plan::full()
        }
    }

    /// Files this process and a server need open at once for the idle-connections run.
    fn open_files_needed(&self) -> u64 {
        3 * self.idle_conns as u64 + 256
    }
}

/// The measurements, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    Throughput,
    Latency,
    Exit,
    Drain,
    Deadline,
    Idle,
    Burst,
    Rss,
}

impl Measure {
    const ALL: [Measure; 8] = [
        Measure::Throughput,
        Measure::Latency,
        Measure::Exit,
        Measure::Drain,
        Measure::Deadline,
        Measure::Idle,
        Measure::Burst,
        Measure::Rss,
    ];

    fn name(self) -> &'static str {
        match self {
            Measure::Throughput => "throughput",
            Measure::Latency => "latency",
            Measure::Exit => "exit",
            Measure::Drain => "drain",
            Measure::Deadline => "deadline",
            Measure::Idle => "idle",
            Measure::Burst => "burst",
            Measure::Rss => "rss",
        }
    }

    fn parse(text: &str) -> Option<Measure> {
        match text {
            "lost" => Some(Measure::Drain),
            _ => Measure::ALL.into_iter().find(|m| m.name() == text),
        }
    }
}

/// Everything measured, for the summary.
#[derive(Default)]
pub struct Results {
    pub throughput: Option<Throughput>,
    pub latency: Option<Latency>,
    pub exit: Option<ExitIdle>,
    pub drain: Option<Drain>,
    pub deadline: Option<PerKind<measure::DeadlineRun>>,
    pub idle: Option<PerKind<IdleRun>>,
    pub burst: Option<PerKind<usize>>,
    pub rss: Option<PerKind<ProcStatus>>,
    /// Measurements that could not be completed, with why.
    failed: Vec<(Measure, String)>,
}

struct Args {
    smoke: bool,
    install: bool,
    only: Option<Measure>,
    workers: Option<usize>,
    rounds: Option<usize>,
    baseline: Option<std::path::PathBuf>,
    plain_twice: bool,
}

/// `--smoke`, `--install`, `--only NAME`, `--workers N`, `--rounds N`, `--baseline PATH`,
/// `--plain-twice`; anything else (cargo passes `--bench`) is ignored.
fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        smoke: false,
        install: false,
        only: None,
        workers: None,
        rounds: None,
        baseline: None,
        plain_twice: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--smoke" => args.smoke = true,
            "--install" => args.install = true,
            "--plain-twice" => args.plain_twice = true,
            "--only" => {
                let name = iter.next().unwrap_or_default();
                let names: Vec<&str> = Measure::ALL.iter().map(|m| m.name()).collect();
                args.only =
                    Some(Measure::parse(&name).ok_or_else(|| {
                        format!("--only {name:?}: want one of {}", names.join(", "))
                    })?);
            }
            "--workers" | "--rounds" => {
                let n = iter.next().unwrap_or_default();
                let n = n.parse().map_err(|e| format!("{arg} {n:?}: {e}"))?;
                match arg.as_str() {
                    "--workers" => args.workers = Some(n),
                    _ => args.rounds = Some(n),
                }
            }
            "--baseline" => {
                let path = std::path::PathBuf::from(iter.next().unwrap_or_default());
                if !path.is_file() {
                    return Err(format!("--baseline {path:?}: not a file"));
                }
                args.baseline = Some(path);
            }
            _ => {}
        }
    }
    Ok(args)
}

fn main() {
    if let Ok(spec) = std::env::var(child::ENV) {
        child::serve(&spec);
    }
    if !cfg!(target_os = "linux") {
        println!("shutdown bench: skipped: needs Linux (signals sent with kill, /proc)");
        return;
    }
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("shutdown bench: {e}");
        std::process::exit(2)
    });
    let mut plan = if args.smoke {
        Plan::smoke()
    } else {
        Plan::full()
    };
    if let Some(workers) = args.workers {
        plan.workers = workers;
    }
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds.max(1);
        plan.small_rounds = rounds.max(1);
    }
    if let Some(baseline) = args.baseline {
        child::set_baseline(baseline);
    }
    if args.plain_twice {
        child::set_plain_again();
    }
    let wanted = |m: Measure| match args.only {
        Some(only) => only == m,
        None => !(args.smoke && matches!(m, Measure::Deadline | Measure::Latency)),
    };
    if wanted(Measure::Idle) {
        ensure_open_files(&mut plan);
    }
    if args.install {
        install(&plan);
    }
    let go_note = if plan.smoke {
        "not in a smoke run".to_owned()
    } else {
        with_go()
    };
    let started = Instant::now();
    print_header(&plan, &go_note);
    let mut signaller = Signaller::start().unwrap_or_else(|e| {
        eprintln!("shutdown bench: {e}");
        std::process::exit(2)
    });
    let measures: Vec<Measure> = Measure::ALL.into_iter().filter(|&m| wanted(m)).collect();
    let results = run(&plan, &measures, &mut signaller);
    summary::print(&plan, &results);
    println!("\nwall time: {:.1} s", started.elapsed().as_secs_f64());
    if plan.smoke {
        smoke_verdict(&plan, &results);
    }
}

/// Raises the open-files limit if the idle-connections run needs it (by running this binary
/// again through `sh -c 'ulimit -n ...'`), or opens fewer connections.
fn ensure_open_files(plan: &mut Plan) {
    let need = plan.open_files_needed();
    match process::raise_open_files(need) {
        Some(limit) if limit < need => {
            plan.idle_conns = usize::try_from(limit.saturating_sub(256) / 3).unwrap_or(0);
            println!(
                "note: open-files limit {limit} < {need}: {} idle connections only",
                plan.idle_conns
            );
        }
        _ => {}
    }
}

fn run(plan: &Plan, measures: &[Measure], signaller: &mut Signaller) -> Results {
    let mut results = Results::default();
    for &m in measures {
        let outcome = match m {
            Measure::Throughput => measure::throughput(plan).map(|r| results.throughput = Some(r)),
            Measure::Latency if wrk::version().is_none() => {
                println!(
                    "\nlatency: skipped: wrk is not installed (Debian: apt-get install wrk; \
                     or run this bench with --install)"
                );
                Ok(())
            }
            Measure::Latency => measure::latency(plan).map(|r| results.latency = Some(r)),
            Measure::Exit => measure::exit_idle(plan, signaller).map(|r| results.exit = Some(r)),
            Measure::Drain => measure::drain(plan, signaller).map(|r| results.drain = Some(r)),
            Measure::Deadline => {
                measure::deadline(plan, signaller).map(|r| results.deadline = Some(r))
            }
            Measure::Idle => measure::idle(plan, signaller).map(|r| results.idle = Some(r)),
            Measure::Burst => measure::burst(plan).map(|r| results.burst = Some(r)),
            Measure::Rss => measure::rss(plan).map(|r| results.rss = Some(r)),
        };
        if let Err(e) = outcome {
            println!("\n{}: FAILED: {e}", m.name());
            results.failed.push((m, e));
        }
    }
    results
}

/// Smoke mode: exits non-zero if lameduck lost a request or a server answered none.
fn smoke_verdict(plan: &Plan, results: &Results) {
    let mut failures = summary::smoke_failures(plan, results);
    for (measure, e) in &results.failed {
        if matches!(measure, Measure::Throughput | Measure::Drain) {
            failures.push(format!("{} could not be measured: {e}", measure.name()));
        }
    }
    if failures.is_empty() {
        println!("smoke: ok (lameduck lost no request; every server answered)");
        return;
    }
    for failure in &failures {
        eprintln!("smoke: FAILED: {failure}");
    }
    std::process::exit(1);
}

/// Installs what the Go column and the wrk part need, where missing (`--install`).
fn install(plan: &Plan) {
    let missing = [
        (
            "wrk",
            wrk::version().is_none(),
            wrk::install as fn() -> Result<(), String>,
        ),
        (
            "golang-go",
            !plan.smoke && go::version().is_none(),
            go::install,
        ),
        ("iproute2", !starved::available(), starved::install),
    ];
    for (package, needed, install) in missing {
        if needed {
            println!("installing {package} (--install)");
            if let Err(e) = install() {
                println!("note: {e}");
            }
        }
    }
}

/// Builds the Go server and makes it a column; says how it went.
fn with_go() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lameduck-bench-go");
    let built = std::fs::create_dir_all(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| go::build(&dir));
    match built {
        Ok(Some(binary)) => {
            child::set_go(binary);
            format!(
                "the seed's program ({}), {}",
                go::source().display(),
                go::version().unwrap_or_default()
            )
        }
        Ok(None) => "skipped: Go is not installed (Debian: golang-go; or --install)".to_owned(),
        Err(e) => format!("skipped: {e}"),
    }
}

fn print_header(plan: &Plan, go_note: &str) {
    let mode = if plan.smoke { "smoke" } else { "full" };
    println!("lameduck shutdown benchmark ({mode} run): plain tiny_http, naive, lameduck, Go");
    println!("command:  {}", command_line());
    println!("machine:  {}", machine());
    println!("date:     {}", date());
    println!("lameduck: {}", source_version());
    println!(
        "servers:  child processes (this binary run again) on 127.0.0.1, {} workers each, \
         handler: sleep D ms, then \"Hello World\"",
        plan.workers
    );
    println!("go:       {go_note}");
    println!(
        "load:     generated by this bench on the same machine: std threads, one blocking \
         keep-alive TcpStream each"
    );
    println!(
        "signals:  `kill -INT <pid>` written to a shell started in advance; exit = the \
         child's stdout and stderr closed"
    );
    if let Some(limit) = process::open_files_limit() {
        println!("open files (soft limit): {limit}");
    }
}

/// The cargo command that runs this binary with its arguments (cargo adds `--bench`).
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let binary = std::env::args().next().unwrap_or_default();
    let mut cargo = "cargo bench --bench shutdown".to_owned();
    if !args.is_empty() {
        cargo = format!("{cargo} -- {}", args.join(" "));
    }
    format!("{cargo}  (binary: {binary})")
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs (available_parallelism), {model}")
}

/// The commit the crate was built from, and the files of `src/` changed since.
fn source_version() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return format!("{dir} (not a git checkout)");
    };
    let changed = git(&["status", "--porcelain", "--", "src"]).unwrap_or_default();
    let files: Vec<&str> = changed.lines().filter_map(|l| l.get(3..)).collect();
    if files.is_empty() {
        format!("git {commit}")
    } else {
        format!("git {commit} + uncommitted changes in {}", files.join(", "))
    }
}

fn date() -> String {
    std::process::Command::new("date")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
