//! Child processes: a server started and watched, signals sent with `kill`, `/proc` read,
//! and the open-files limit raised.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{self, Spec};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reaping may lag behind the pipes closing.
const REAP_TIMEOUT: Duration = Duration::from_secs(1);

/// Lines of stderr kept for error messages and reports.
const STDERR_LINES: usize = 20;

/// Kills and reaps a child when dropped, whatever happened before.
struct Watchdog(std::process::Child);

impl Drop for Watchdog {
    fn drop(&mut self) {
        // A no-op for a child already reaped: no pid is ever signalled after reuse.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Event {
    Line(String),
    Closed(Instant),
}

/// How a server process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// When its stdout and stderr had both closed: every thread gone, every descriptor closed.
    pub at: Instant,
    /// `None` if it could not be reaped within [`REAP_TIMEOUT`].
    pub status: Option<ExitStatus>,
}

/// A server running in a child process, killed when dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Watchdog,
    events: Receiver<Event>,
    open_pipes: usize,
    last_closed: Option<Instant>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts the server and returns once it has printed the address it accepts on.
    pub fn start(spec: Spec) -> Result<ServerProcess, String> {
        let mut child = spec
            .command()?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {} server: {e}", spec.kind.name()))?;
        let (tx, events) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        read_lines(child.stdout.take().expect("piped"), tx.clone(), None);
        read_lines(
            child.stderr.take().expect("piped"),
            tx,
            Some(stderr.clone()),
        );
        let mut process = ServerProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: child.id(),
            child: Watchdog(child),
            events,
            open_pipes: 2,
            last_closed: None,
            stderr,
        };
        let addr = process.wait_line(child::LISTENING, START_TIMEOUT)?;
        process.addr = addr
            .parse()
            .map_err(|e| format!("{} server printed {addr:?}: {e}", spec.kind.name()))?;
        Ok(process)
    }

    /// Waits for a line on stdout starting with `prefix`; returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str, bound: Duration) -> Result<String, String> {
        let until = Instant::now() + bound;
        loop {
            match self.next_event(until) {
                Some(Event::Line(line)) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_owned());
                    }
                }
                Some(Event::Closed(_)) if self.open_pipes == 0 => {
                    return Err(format!(
                        "server exited before printing {prefix:?}: {}",
                        self.stderr_tail().join(" | ")
                    ))
                }
                Some(Event::Closed(_)) => {}
                None => return Err(format!("server did not print {prefix:?} in {bound:?}")),
            }
        }
    }

    /// Waits up to `bound` for the process to exit: both pipes closed, then reaped.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<Exit> {
        let until = Instant::now() + bound;
        while self.open_pipes > 0 {
            self.next_event(until)?;
        }
        let at = self.last_closed?;
        let reap_until = Instant::now() + REAP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Some(Exit {
                    at,
                    status: Some(status),
                });
            }
            if Instant::now() > reap_until {
                return Some(Exit { at, status: None });
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Kills the process now (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
    }

    /// VmRSS and Threads from `/proc/<pid>/status`.
    pub fn status(&self) -> Result<ProcStatus, String> {
        ProcStatus::read(self.pid)
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> Result<Duration, String> {
        cpu_time(self.pid)
    }

    /// The last lines the server wrote on stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect()
    }

    fn next_event(&mut self, until: Instant) -> Option<Event> {
        let left = until.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(Event::Closed(at)) => {
                self.open_pipes -= 1;
                self.last_closed = Some(self.last_closed.map_or(at, |last| last.max(at)));
                Some(Event::Closed(at))
            }
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }
}

/// Reads `pipe` line by line: to `tail` if given, else as events; reports its end with the
/// time it closed.
fn read_lines(
    pipe: impl Read + Send + 'static,
    events: Sender<Event>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
            match &tail {
                Some(tail) => {
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                None => {
                    let _ = events.send(Event::Line(line));
                }
            }
        }
        let _ = events.send(Event::Closed(Instant::now()));
    });
}

/// A signal that asks a server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sig {
    /// SIGINT: Ctrl+C.
    Int,
    /// SIGTERM: what a service manager, `docker stop` and Kubernetes send.
    Term,
}

impl Sig {
    /// Both, in the order the exit part sends them.
    pub const BOTH: [Sig; 2] = [Sig::Int, Sig::Term];

    /// The name `kill` takes.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Int => "INT",
            Sig::Term => "TERM",
        }
    }
}

/// Sends signals with `kill`: a shell started once reads `kill -INT <pid>` lines on its
/// stdin and runs its builtin `kill`, so that starting a process is not part of what is
/// timed.
pub struct Signaller {
    stdin: ChildStdin,
    _shell: Watchdog,
}

impl Signaller {
    pub fn start() -> Result<Signaller, String> {
        let mut shell = Command::new("sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start sh: {e}"))?;
        let stdin = shell.stdin.take().expect("piped");
        Ok(Signaller {
            stdin,
            _shell: Watchdog(shell),
        })
    }

    /// Sends `sig` to `pid`; returns the moment just before.
    pub fn send(&mut self, pid: u32, sig: Sig) -> Result<Instant, String> {
        let line = format!("kill -{} {pid}\n", sig.name());
        let at = Instant::now();
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("write to the kill shell: {e}"))?;
        Ok(at)
    }
}

/// Memory and threads of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug)]
pub struct ProcStatus {
    pub rss_kib: u64,
    /// Of which anonymous (heap, stacks) and file-backed (the binary, libc).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub threads: u64,
}

impl ProcStatus {
    fn read(pid: u32) -> Result<ProcStatus, String> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .ok_or_else(|| format!("{path}: no {name}"))
        };
        Ok(ProcStatus {
            rss_kib: field("VmRSS:")?,
            rss_anon_kib: field("RssAnon:")?,
            rss_file_kib: field("RssFile:")?,
            threads: field("Threads:")?,
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn rss_anon_mib(&self) -> f64 {
        self.rss_anon_kib as f64 / 1024.0
    }

    pub fn rss_file_mib(&self) -> f64 {
        self.rss_file_kib as f64 / 1024.0
    }
}

/// User plus system time of `pid`, from `/proc/<pid>/stat` (in clock ticks).
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = tick(11)
        .zip(tick(12))
        .map(|(user, system)| user + system)
        .ok_or_else(|| format!("{path}: no utime/stime"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// `getconf CLK_TCK`, asked once (100 on Linux almost everywhere).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&ticks: &f64| ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Set once this binary has been re-executed with a raised open-files limit.
const RAISED_ENV: &str = "LAMEDUCK_BENCH_ULIMIT_RAISED";

/// The soft limit on open files, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Makes sure this process (and the servers it starts, which inherit it) may open `need`
/// files: if the soft limit is lower, runs this binary again through
/// `sh -c 'ulimit -n 8192; exec "$0" "$@"'`. Returns the limit in force.
pub fn raise_open_files(need: u64) -> Option<u64> {
    let limit = open_files_limit();
    if limit.is_some_and(|limit| limit >= need) || std::env::var_os(RAISED_ENV).is_some() {
        return limit;
    }
    reexec_with_ulimit();
    limit
}

#[cfg(unix)]
fn reexec_with_ulimit() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let script = r#"ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@""#;
    let error = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(RAISED_ENV, "1")
        .exec();
    eprintln!("could not raise the open-files limit through sh: {error}");
}

#[cfg(not(unix))]
fn reexec_with_ulimit() {}
