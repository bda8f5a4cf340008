//! # Restart on one machine: stop + start, against an upgrade in place
//!
//! ```text
//! cargo bench --bench restart              # 10 rounds of each, interleaved (~30 s)
//! cargo bench --bench restart -- --smoke   # 2 rounds of each; exits non-zero if an upgrade
//!                                          # refused a connect or lost a request (CI)
//! ```
//!
//! The server: `lameduck::Server` on a fixed loopback port, 32 workers, a handler that answers
//! at once with its process id, `signal::install` and `Handle::upgrade_on_sigusr2`; this binary
//! run again (`LAMEDUCK_BENCH_RESTART=ADDR`). The load: 32 keep-alive clients and one that
//! connects anew for each request, all in a loop, counting answers, refused connects (a
//! refused client tries again 1 ms later) and requests lost (written, and no whole response
//! came back).
//!
//! Each round starts a server, lets the load run 300 ms, then restarts it one of two ways:
//!
//! - **stop + start**: `kill -TERM`, wait for the exit, start the same binary on the same
//!   port: what a service manager's restart does without socket activation;
//! - **upgrade**: `kill -USR2`: the new process takes the socket, the old one drains.
//!
//! and measures connects refused, requests lost, the longest a client waited for an answer
//! (from its first try, refused connects and all, to the answer: what a user sees of the
//! restart), and the time from the signal until the first answer from the new process (which
//! in an upgrade is not a wait: the old one serves meanwhile). Linux only (signals through
//! `kill`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHILD: &str = "LAMEDUCK_BENCH_RESTART";
const CLIENTS: usize = 32;
const LOAD_BEFORE: Duration = Duration::from_millis(300);
/// Every wait is bounded by this.
const BOUND: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(addr) = std::env::var(CHILD) {
        serve(&addr);
    }
    if !cfg!(target_os = "linux") {
        println!("restart: skipped: Linux only");
        return;
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rounds = if smoke { 2 } else { 10 };
    println!(
        "restart under load ({CLIENTS} keep-alive clients + 1 connecting per request), \
         {rounds} rounds of each, interleaved"
    );
    let mut results: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let mut order = [Way::StopStart, Way::Upgrade];
        if round % 2 == 1 {
            order.reverse();
        }
        for way in order {
            match restart_round(way) {
                Ok(r) => results[way as usize].push(r),
                Err(e) => {
                    println!("{}: FAILED: {e}", way.name());
                    std::process::exit(1);
                }
            }
        }
    }
    println!(
        "\n{:<20} {:>18} {:>6} {:>26} {:>30} {:>9}",
        "",
        "refused connects",
        "lost",
        "longest wait for answer",
        "signal → new process serves",
        "old exit"
    );
    for (way, rounds) in [Way::StopStart, Way::Upgrade].iter().zip(&results) {
        let refused: Vec<u64> = rounds.iter().map(|r| r.refused).collect();
        let lost: u64 = rounds.iter().map(|r| r.lost).sum();
        let gap: Vec<f64> = rounds.iter().map(|r| r.gap.as_secs_f64() * 1e3).collect();
        let wait: Vec<f64> = rounds
            .iter()
            .map(|r| r.longest_wait.as_secs_f64() * 1e3)
            .collect();
        let exits: Vec<String> = rounds.iter().map(|r| r.old_exit.clone()).collect();
        let all_zero = exits.iter().all(|e| e == "0");
        println!(
            "{:<20} {:>18} {:>6} {:>26} {:>30} {:>9}",
            way.name(),
            spread(&refused.iter().map(|&n| n as f64).collect::<Vec<_>>(), 0),
            lost,
            format!("{} ms", spread(&wait, 1)),
            format!("{} ms", spread(&gap, 1)),
            if all_zero {
                "0".to_owned()
            } else {
                exits.join(",")
            },
        );
    }
    println!("(median [min–max] per round; lost: the sum)");
    let upgrade = &results[1];
    let bad = upgrade
        .iter()
        .any(|r| r.refused > 0 || r.lost > 0 || r.old_exit != "0");
    if bad {
        println!("FAIL: an upgrade refused a connect, lost a request, or its old process failed");
        std::process::exit(1);
    }
    if results[0].iter().any(|r| r.lost > 0) {
        println!("note: stop + start lost requests (its old process's backlog is reset)");
    }
}

#[derive(Clone, Copy)]
enum Way {
    StopStart,
    Upgrade,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::StopStart => "stop + start",
            Way::Upgrade => "upgrade (SIGUSR2)",
        }
    }
}

struct Round {
    refused: u64,
    lost: u64,
    longest_wait: Duration,
    gap: Duration,
    old_exit: String,
}

/// `median [min–max]`.
fn spread(values: &[f64], decimals: usize) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let median = sorted[sorted.len() / 2];
    format!("{median:.decimals$} [{min:.decimals$}–{max:.decimals$}]")
}

fn restart_round(way: Way) -> Result<Round, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut old = Server::start(addr)?;
    let load = Load::start(addr);
    load.wait_answers(200)?;
    thread::sleep(LOAD_BEFORE); // the load runs a while: a time, not a synchronisation
    let signalled = Instant::now();
    load.new_pid.store(0, Ordering::SeqCst);
    load.not_pid.store(old.pid(), Ordering::SeqCst);
    let mut new = None;
    match way {
        Way::StopStart => {
            signal(old.pid(), "TERM")?;
            old.wait_exit()?;
            new = Some(Server::start(addr)?);
        }
        Way::Upgrade => signal(old.pid(), "USR2")?,
    }
    let new_pid = load.wait_new_pid()?;
    let gap = load.first_new.lock().unwrap().map(|at| at - signalled);
    let old_exit = old.wait_exit()?;
    load.wait_answers(200)?;
    let (refused, lost, longest_wait) = load.stop();
    match new.as_mut() {
        Some(server) => {
            signal(server.pid(), "TERM")?;
            server.wait_exit()?;
        }
        None => {
            signal(new_pid, "TERM")?;
            wait_gone(new_pid)?;
        }
    }
    Ok(Round {
        refused,
        lost,
        longest_wait,
        gap: gap.ok_or("no answer from the new process")?,
        old_exit,
    })
}

fn signal(pid: u32, name: &str) -> Result<(), String> {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| e.to_string())?
        .success();
    ok.then_some(())
        .ok_or_else(|| format!("kill -{name} {pid}"))
}

/// Waits for a process that is not this one's child to be gone.
fn wait_gone(pid: u32) -> Result<(), String> {
    let until = Instant::now() + BOUND;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        if Instant::now() > until {
            return Err(format!("process {pid} still runs"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// A server process of this binary's.
struct Server {
    child: Child,
}

impl Server {
    fn start(addr: SocketAddr) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(CHILD, addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(BOUND)
            .map_err(|_| format!("the server on {addr} did not start"))?;
        Ok(Server { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit code, as text (`signal N` if a signal ended it).
    fn wait_exit(&mut self) -> Result<String, String> {
        let until = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(match status.code() {
                    Some(code) => code.to_string(),
                    None => format!("{status}"),
                });
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                return Err("the server did not exit".to_owned());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The clients, and what they saw.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    /// The longest a client waited for an answer since the last `stop`, in microseconds.
    longest_wait: Arc<AtomicU64>,
    /// Answers from a process other than this one count as the new process's.
    not_pid: Arc<AtomicU32>,
    new_pid: Arc<AtomicU32>,
    first_new: Arc<Mutex<Option<Instant>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let mut load = Load {
            stop: Arc::default(),
            answers: Arc::default(),
            refused: Arc::default(),
            lost: Arc::default(),
            longest_wait: Arc::default(),
            not_pid: Arc::default(),
            new_pid: Arc::default(),
            first_new: Arc::default(),
            threads: Vec::new(),
        };
        for i in 0..=CLIENTS {
            let client = Client {
                addr,
                reuse: i < CLIENTS,
                stop: Arc::clone(&load.stop),
                answers: Arc::clone(&load.answers),
                refused: Arc::clone(&load.refused),
                lost: Arc::clone(&load.lost),
                longest_wait: Arc::clone(&load.longest_wait),
                not_pid: Arc::clone(&load.not_pid),
                new_pid: Arc::clone(&load.new_pid),
                first_new: Arc::clone(&load.first_new),
            };
            load.threads.push(thread::spawn(move || client.run()));
        }
        load
    }

    fn wait_answers(&self, more: u64) -> Result<(), String> {
        let target = self.answers.load(Ordering::SeqCst) + more;
        let until = Instant::now() + BOUND;
        while self.answers.load(Ordering::SeqCst) < target {
            if Instant::now() > until {
                return Err(format!("fewer than {more} answers in {BOUND:?}"));
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn wait_new_pid(&self) -> Result<u32, String> {
        let until = Instant::now() + BOUND;
        loop {
            let pid = self.new_pid.load(Ordering::SeqCst);
            if pid != 0 {
                return Ok(pid);
            }
            if Instant::now() > until {
                return Err("no answer from a new process".to_owned());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the clients; returns (refused, lost, the longest wait).
    fn stop(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.refused.load(Ordering::SeqCst),
            self.lost.load(Ordering::SeqCst),
            Duration::from_micros(self.longest_wait.load(Ordering::SeqCst)),
        )
    }
}

struct Client {
    addr: SocketAddr,
    reuse: bool,
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    longest_wait: Arc<AtomicU64>,
    not_pid: Arc<AtomicU32>,
    new_pid: Arc<AtomicU32>,
    first_new: Arc<Mutex<Option<Instant>>>,
}

impl Client {
    fn run(&self) {
        // When the client began to try for the answer it waits for.
        let mut trying = None;
        while !self.stop.load(Ordering::Relaxed) {
            let since = *trying.get_or_insert_with(Instant::now);
            let Ok(mut stream) = TcpStream::connect(self.addr) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
                continue;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_nodelay(true);
            let mut since = since;
            while !self.stop.load(Ordering::Relaxed) {
                if stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .is_err()
                {
                    break; // not written: nothing to lose
                }
                match read_response(&mut stream) {
                    Some((pid, closes)) => {
                        let waited = since.elapsed().as_micros() as u64;
                        self.longest_wait.fetch_max(waited, Ordering::Relaxed);
                        trying = None;
                        since = Instant::now();
                        self.answers.fetch_add(1, Ordering::Relaxed);
                        self.saw(pid);
                        if closes || !self.reuse {
                            break;
                        }
                    }
                    None => {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    fn saw(&self, pid: u32) {
        let old = self.not_pid.load(Ordering::SeqCst);
        if old != 0 && pid != old && self.new_pid.load(Ordering::SeqCst) == 0 {
            let mut first = self.first_new.lock().unwrap();
            if self.new_pid.load(Ordering::SeqCst) == 0 {
                *first = Some(Instant::now());
                self.new_pid.store(pid, Ordering::SeqCst);
            }
        }
    }
}

/// Reads one response with a `Content-Length`: the pid it names, and whether it closes the
/// connection. `None`: no whole response.
fn read_response(stream: &mut TcpStream) -> Option<(u32, bool)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    let closes = head.contains("connection: close");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    let pid = String::from_utf8_lossy(&body).trim().parse().ok()?;
    Some((pid, closes))
}

/// The child: serves on `addr` until a signal, and upgrades on SIGUSR2.
fn serve(addr: &str) -> ! {
    // Quiet unless RUST_LOG says otherwise (`RUST_LOG=lameduck=debug` shows each step).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .format_timestamp_micros()
        .init();
    let result = (|| -> Result<(), lameduck::Error> {
        let (trigger, _) = lameduck::trigger();
        lameduck::signal::install(&trigger)?;
        let pid = std::process::id();
        let server = lameduck::Server::bind(addr)
            .trigger(trigger)
            .workers(32)
            .build(move |_: &mut lameduck::tiny_http::Request| {
                lameduck::tiny_http::Response::from_string(pid.to_string()).boxed()
            })?;
        #[cfg(unix)]
        server.handle().upgrade_on_sigusr2()?;
        println!("listening on http://{}", server.local_addr());
        server.run().map(drop)
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("restart bench server: {e}");
            std::process::exit(1);
        }
    }
}
