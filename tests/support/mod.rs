//! What the tests share: child processes with a watchdog, lines read from them with a time
//! bound, an HTTP client ([`http`]), an in-process server ([`server`]), one time bound, a
//! scratch folder, and a quiet panic hook. Nothing here sleeps to synchronise: every wait is
//! on an event (a line, an end of file) with a deadline, and a deadline missed fails the test
//! with all the output seen so far.

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// The longest any test waits for one event (a line, a response, an exit) before it fails.
/// Events come in milliseconds; the bound only matters when something is wrong, and is wide
/// enough for a loaded machine and for wine.
pub const BOUND: Duration = Duration::from_secs(30);

/// The variable that makes a test binary with children (`tests/process`) run one child
/// instead of its tests: `module:mode`.
pub const CHILD: &str = "LAMEDUCK_CHILD";

/// Panics are expected in some tests (handlers, hooks, pool workers that panic on purpose):
/// printing them, with a backtrace under wine, can take longer than a test's deadline. From
/// the first call on, panics on lameduck's worker and hook threads print nothing; the test
/// sees them in the report. Installed once per process.
pub fn quiet_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = thread::current().name().unwrap_or("").to_owned();
            if !(name.starts_with("lameduck-worker-") || name.starts_with("lameduck-hook-")) {
                default(info);
            }
        }));
    });
}

/// Waits until `done` holds, looking again every millisecond; fails after [`BOUND`], saying
/// `what` it waited for. Only for a state that shows in a snapshot alone (a server's phase
/// or counts in `Handle::stats`), which has no event to wait on.
#[track_caller]
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "still not {what} after {BOUND:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A new, empty folder for one test's files, under cargo's scratch folder for tests
/// (`CARGO_TARGET_TMPDIR`, inside whatever target folder is in use): nothing a test writes
/// lands beside the sources or depends on the current directory.
#[track_caller]
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lameduck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// One event from a child's output.
enum Event {
    Line(&'static str, String),
    Eof(&'static str),
}

/// A child process whose stdout and stderr are read line by line. Killed when dropped.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    seen: Vec<String>,
    open_streams: usize,
    pub pid: u32,
}

impl Proc {
    /// Starts `cmd` with piped stdin, stdout and stderr. On Unix it leads a process group of
    /// its own, so that dropping the `Proc` ends whatever it started too (nginx's workers, a
    /// shell's child).
    #[track_caller]
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (tx, events) = crossbeam_channel::unbounded();
        forward("stdout", child.stdout.take().unwrap(), tx.clone());
        forward("stderr", child.stderr.take().unwrap(), tx);
        Proc {
            pid: child.id(),
            stdin: child.stdin.take(),
            child,
            events,
            seen: Vec::new(),
            open_streams: 2,
        }
    }

    /// Waits until a line containing `needle` appears on stdout or stderr, and returns it.
    #[track_caller]
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline) {
                Some(Event::Line(_, line)) => {
                    if line.contains(needle) {
                        return line;
                    }
                }
                Some(Event::Eof(_)) if self.open_streams == 0 => {
                    let status = self.child.wait();
                    panic!(
                        "child ended ({status:?}) before printing {needle:?}; output:\n{}",
                        self.output()
                    )
                }
                Some(Event::Eof(_)) => {}
                None => panic!(
                    "no line with {needle:?} within {timeout:?}; output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Waits until `count` lines containing `needle` have appeared on stdout or stderr.
    #[track_caller]
    pub fn wait_lines(&mut self, needle: &str, count: usize, timeout: Duration) {
        let mut found = self.seen.iter().filter(|l| l.contains(needle)).count();
        let deadline = Instant::now() + timeout;
        while found < count {
            match self.next_event(deadline) {
                Some(Event::Line(_, line)) => found += usize::from(line.contains(needle)),
                Some(Event::Eof(_)) if self.open_streams == 0 => {
                    panic!(
                        "child ended after {found} of {count} lines with {needle:?}; output:\n{}",
                        self.output()
                    )
                }
                Some(Event::Eof(_)) => {}
                None => panic!(
                    "{found} of {count} lines with {needle:?} within {timeout:?}; output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Every line printed so far, stdout and stderr interleaved as they arrived.
    pub fn output(&mut self) -> String {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Line(stream, line) => self.seen.push(format!("[{stream}] {line}")),
                Event::Eof(_) => self.open_streams -= 1,
            }
        }
        self.seen.join("\n")
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Writes a line to the child's stdin.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().unwrap();
    }

    /// Waits until the child has ended (both output streams closed and the process reaped).
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while self.open_streams > 0 {
            if self.next_event(deadline).is_none() {
                panic!(
                    "child still running after {timeout:?}; output:\n{}",
                    self.output()
                );
            }
        }
        // Both pipes are closed: the process has ended or is ending. Reap it.
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "child closed its output but did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends a Unix signal by name (`INT`, `TERM`, `HUP`) with `kill`.
    #[cfg(unix)]
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Sends a Unix signal by name to `pid`, a process this one started (an upgrade's).
    #[cfg(unix)]
    #[track_caller]
    pub fn signal_pid(&self, pid: u32, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        match self.events.recv_deadline(deadline) {
            Ok(Event::Line(stream, line)) => {
                self.seen.push(format!("[{stream}] {line}"));
                Some(Event::Line(stream, line))
            }
            Ok(Event::Eof(stream)) => {
                self.open_streams -= 1;
                Some(Event::Eof(stream))
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The watchdog: a child, and all it started, never outlives its test.
        // The group outlives its leader while a member lives, so its number is not reused.
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid)])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(
    stream: &'static str,
    pipe: impl Read + Send + 'static,
    tx: crossbeam_channel::Sender<Event>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(line) => {
                    let _ = tx.send(Event::Line(stream, line));
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Eof(stream));
    });
}

/// A command that runs this test binary again as the child `child` (`module:mode`, read back
/// from [`CHILD`] by the binary's `main`), with `env` set: the other side of a test that
/// needs a process of its own.
pub fn child(child: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.env(CHILD, child);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A command that runs this test binary again for the one test `name`, with `env` set (for
/// a test that must run under other limits, as `tests/idle.rs`).
pub fn rerun(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A command that runs the example `name`.
///
/// By default, the example `cargo test` built beside this test binary (a plain `cargo test`
/// builds the examples; `cargo test --test X` alone does not, so run `cargo build
/// --examples` first)
/// (`target/<profile>/examples/`). With `LAMEDUCK_EXAMPLE_DIR` set, the one in that folder
/// instead (`name.exe` or `name`), started through `LAMEDUCK_EXAMPLE_RUNNER` if that is set
/// (a command and its arguments, split on spaces): this is how `.ci/run` runs the same tests
/// against the Windows build under wine, signals included.
#[track_caller]
pub fn example(name: &str) -> Command {
    example_from(name, std::env::var_os("LAMEDUCK_EXAMPLE_DIR"))
}

/// The example `name` built for this machine, even when the tests run against another
/// build (for a helper beside the program under test: one wine program at a time can run).
#[track_caller]
pub fn native_example(name: &str) -> Command {
    example_from(name, None)
}

#[track_caller]
fn example_from(name: &str, dir: Option<std::ffi::OsString>) -> Command {
    let native = dir.is_none();
    let path = match dir {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let exe = dir.join(format!("{name}.exe"));
            if exe.exists() {
                exe
            } else {
                dir.join(name)
            }
        }
        None => {
            let mut dir = std::env::current_exe().expect("current_exe");
            dir.pop(); // the test binary
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir.join("examples")
                .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
        }
    };
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    match std::env::var("LAMEDUCK_EXAMPLE_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() && !native => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words).arg(path);
            cmd
        }
        _ => Command::new(path),
    }
}
pub mod http;

/// Starts the server example `name` on a free loopback port with `args`, with lameduck's
/// per-request trace lines on (the event "request in flight" is `": received"`), and returns
/// it with its address once it accepts connections.
#[track_caller]
pub fn serve_example(name: &str, args: &[&str]) -> (Proc, std::net::SocketAddr) {
    serve_example_in(name, args, None)
}

/// [`serve_example`] with `dir` as the example's current directory, for the files it writes.
#[track_caller]
pub fn serve_example_in(
    name: &str,
    args: &[&str],
    dir: Option<&std::path::Path>,
) -> (Proc, std::net::SocketAddr) {
    let mut cmd = example(name);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info,lameduck=trace,tiny_http=off");
    let mut proc = Proc::spawn(cmd);
    let line = proc.wait_line("listening on http://", BOUND);
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("address in {line:?}: {e}"));
    (proc, addr)
}
pub mod server;
