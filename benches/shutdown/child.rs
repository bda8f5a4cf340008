//! The three servers under test. Each runs in a child process: this bench binary started
//! again with [`ENV`] set to an encoded [`Spec`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use lameduck::tiny_http::{self, Request, Response};

/// The environment variable that makes this binary a server; its value is a [`Spec`].
pub const ENV: &str = "LAMEDUCK_BENCH_SERVER";

/// What a server prints on stdout once it accepts, followed by its address.
pub const LISTENING: &str = "listening on http://";

/// What a never-returning handler prints on stdout when a request reaches it.
pub const IN_HANDLER: &str = "in handler";

/// How long "never returns" is.
const HANG: Duration = Duration::from_secs(3600);

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// tiny_http, N threads on `recv()`, no shutdown handling at all.
    Plain,
    /// tiny_http plus a `ctrlc` flag and `unblock()`: workers stop, no drain.
    Naive,
    /// The same, but its `tiny_http::Server` is dropped once the workers are joined, as
    /// lameduck's is: what tiny_http's own teardown adds to an exit. In the exit part only.
    NaiveDropped,
    /// `lameduck::Server` with `lameduck::signal::install`.
    Lameduck,
    /// The same with what watches a drain turned on: `Builder::metrics` (every request's path
    /// is checked against it) and a thread that takes `Handle::stats()` every millisecond.
    /// In the throughput part only, beside the three.
    Watched,
    /// The seed's Go program (`net/http`, `signal.NotifyContext` + `Server.Shutdown`), where
    /// Go is installed ([`set_go`]): in the throughput, latency, exit and drain parts.
    Go,
    /// Plain tiny_http a second time (`--plain-twice`, [`set_plain_again`]): two copies of
    /// the same server side by side show how far apart the same code comes out in one run,
    /// the bench's resolution. In the throughput and latency parts.
    PlainAgain,
    /// lameduck as another build of this bench runs it (`--baseline PATH`, [`set_baseline`]):
    /// the same child from another binary, to compare two versions of lameduck in one run.
    /// In the exit and latency parts.
    Baseline,
}

/// The other build of this bench whose lameduck child is the baseline.
static BASELINE: OnceLock<PathBuf> = OnceLock::new();

/// Makes lameduck as `binary` (another build of this bench) a row of the exit and latency
/// parts.
pub fn set_baseline(binary: PathBuf) {
    let _ = BASELINE.set(binary);
}

/// Whether a baseline takes part.
pub fn has_baseline() -> bool {
    BASELINE.get().is_some()
}

/// Whether plain tiny_http runs twice.
static PLAIN_AGAIN: AtomicBool = AtomicBool::new(false);

/// Makes plain tiny_http, a second time, a row of the throughput and latency parts.
pub fn set_plain_again() {
    PLAIN_AGAIN.store(true, Ordering::Relaxed);
}

/// Whether plain tiny_http runs twice.
pub fn has_plain_again() -> bool {
    PLAIN_AGAIN.load(Ordering::Relaxed)
}

/// The Go server's binary, once built.
static GO: OnceLock<PathBuf> = OnceLock::new();

/// Makes the Go server a column of the parts it takes part in.
pub fn set_go(binary: PathBuf) {
    let _ = GO.set(binary);
}

/// Whether the Go server takes part.
pub fn has_go() -> bool {
    GO.get().is_some()
}

impl Kind {
    /// The three tiny_http servers: every part measures them.
    pub const ALL: [Kind; 3] = [Kind::Plain, Kind::Naive, Kind::Lameduck];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::PlainAgain => "plain again",
            Kind::Naive => "naive",
            Kind::NaiveDropped => "naive+drop",
            Kind::Lameduck => "lameduck",
            Kind::Watched => "lameduck+watch",
            Kind::Go => "go",
            Kind::Baseline => "baseline",
        }
    }

    /// The servers of the exit and drain parts: the three, and Go where it takes part.
    pub fn compared() -> Vec<Kind> {
        let mut kinds = Kind::ALL.to_vec();
        if has_go() {
            kinds.push(Kind::Go);
        }
        kinds
    }

    /// The servers of the throughput and latency parts: those and lameduck with what
    /// watches a drain turned on.
    pub fn throughput() -> Vec<Kind> {
        let mut kinds = Kind::compared();
        kinds.insert(3, Kind::Watched);
        kinds
    }

    /// The three kinds, rotated by `round`: runs are interleaved and no server always goes
    /// first.
    pub fn order(round: usize) -> [Kind; 3] {
        let mut kinds = Kind::ALL;
        kinds.rotate_left(round % Kind::ALL.len());
        kinds
    }

    /// `kinds` rotated by `round`, the same way.
    pub fn rotated(mut kinds: Vec<Kind>, round: usize) -> Vec<Kind> {
        let n = kinds.len();
        kinds.rotate_left(round % n);
        kinds
    }

    fn parse(text: &str) -> Option<Kind> {
        [
            Kind::Plain,
            Kind::Naive,
            Kind::NaiveDropped,
            Kind::Lameduck,
            Kind::Watched,
        ]
        .into_iter()
        .find(|kind| kind.name() == text)
    }
}

/// What the handler does before it answers `Hello World`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    Millis(u64),
    /// Prints [`IN_HANDLER`] and sleeps for an hour.
    Hang,
}

/// One server to run: kind, worker count, handler, shutdown deadline (lameduck only).
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub kind: Kind,
    pub workers: usize,
    pub delay: Delay,
    pub deadline: Duration,
    /// lameduck logs its rescues (debug) on stderr: how long connections waited for a thread.
    pub log_rescues: bool,
}

impl Spec {
    /// A server with lameduck's default deadline (10 s).
    pub fn new(kind: Kind, workers: usize, delay: Delay) -> Spec {
        Spec {
            kind,
            workers,
            delay,
            deadline: lameduck::DEFAULT_DEADLINE,
            log_rescues: false,
        }
    }

    pub fn logging_rescues(self) -> Spec {
        Spec {
            log_rescues: true,
            ..self
        }
    }

    pub fn with_deadline(self, deadline: Duration) -> Spec {
        Spec { deadline, ..self }
    }

    /// `kind,workers,delay_ms|hang,deadline_ms`
    pub fn encode(&self) -> String {
        let delay = match self.delay {
            Delay::Millis(ms) => ms.to_string(),
            Delay::Hang => "hang".to_owned(),
        };
        // The baseline is lameduck, in its own binary; plain again is plain.
        let kind = match self.kind {
            Kind::Baseline => Kind::Lameduck.name(),
            Kind::PlainAgain => Kind::Plain.name(),
            kind => kind.name(),
        };
        let workers = self.workers;
        format!("{kind},{workers},{delay},{}", self.deadline.as_millis())
    }

    /// The command that starts this server: this binary again with [`ENV`] set, or the Go
    /// program with the same handler delay and deadline as flags.
    ///
    /// # Panics
    ///
    /// For Go before [`set_go`], or with [`Delay::Hang`] (no part asks for that).
    pub fn command(&self) -> Result<Command, String> {
        if self.kind == Kind::Go {
            let Delay::Millis(delay) = self.delay else {
                panic!("the Go server has no never-returning handler");
            };
            let mut go = Command::new(GO.get().expect("set_go before a Go server"));
            go.arg("-addr=127.0.0.1:0")
                .arg(format!("-delay-ms={delay}"))
                .arg(format!("-timeout-ms={}", self.deadline.as_millis()));
            return Ok(go);
        }
        let exe = match self.kind {
            Kind::Baseline => BASELINE
                .get()
                .expect("set_baseline before a baseline")
                .clone(),
            _ => std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
        };
        let mut command = Command::new(exe);
        command.env(ENV, self.encode());
        if self.log_rescues {
            command.env("RUST_LOG", "lameduck::tinyhttp::rescue=debug");
        }
        Ok(command)
    }

    fn decode(text: &str) -> Result<Spec, String> {
        let parts: Vec<&str> = text.split(',').collect();
        let [kind, workers, delay, deadline] = parts[..] else {
            return Err(format!("{text:?}: want kind,workers,delay_ms,deadline_ms"));
        };
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
        Ok(Spec {
            kind: Kind::parse(kind).ok_or_else(|| format!("unknown server {kind:?}"))?,
            workers: usize::try_from(number(workers)?).map_err(|e| e.to_string())?,
            delay: match delay {
                "hang" => Delay::Hang,
                ms => Delay::Millis(number(ms)?),
            },
            deadline: Duration::from_millis(number(deadline)?),
            log_rescues: false,
        })
    }
}

/// Runs the server that `spec` (the value of [`ENV`]) describes, and exits.
pub fn serve(spec: &str) -> ! {
    let spec = Spec::decode(spec).unwrap_or_else(|e| fail(&format!("{ENV}: {e}")));
    // Silent unless asked, for a look inside: RUST_LOG=lameduck=debug.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .format_timestamp_micros()
        .init();
    let code = match spec.kind {
        Kind::Plain | Kind::PlainAgain => plain(spec),
        Kind::Naive | Kind::NaiveDropped => naive(spec),
        Kind::Lameduck | Kind::Watched => with_lameduck(spec),
        Kind::Go => fail("the Go server is not this binary"),
        Kind::Baseline => fail("the baseline is another binary"),
    };
    std::process::exit(code)
}

/// The handler all three servers share.
fn hello(delay: Delay) -> Response<std::io::Cursor<Vec<u8>>> {
    match delay {
        Delay::Millis(0) => {}
        Delay::Millis(ms) => thread::sleep(Duration::from_millis(ms)),
        Delay::Hang => {
            println!("{IN_HANDLER}");
            thread::sleep(HANG);
        }
    }
    Response::from_string("Hello World")
}

fn announce(addr: SocketAddr) {
    println!("{LISTENING}{addr}"); // stdout is line-buffered: the parent sees it at once
}

fn fail(message: &str) -> ! {
    eprintln!("bench server: {message}");
    std::process::exit(2)
}

fn bind_tiny_http() -> (Arc<tiny_http::Server>, SocketAddr) {
    let server =
        tiny_http::Server::http("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("tiny_http: {e}")));
    let addr = server
        .server_addr()
        .to_ip()
        .unwrap_or_else(|| fail("tiny_http: no IP address"));
    (Arc::new(server), addr)
}

fn spawn_workers(n: usize, work: impl Fn() + Send + Sync + 'static) -> Vec<JoinHandle<()>> {
    let work = Arc::new(work);
    (0..n)
        .map(|_| {
            let work = Arc::clone(&work);
            thread::spawn(move || work())
        })
        .collect()
}

fn join(workers: Vec<JoinHandle<()>>) {
    for worker in workers {
        let _ = worker.join();
    }
}

/// No shutdown handling: SIGINT's default action ends the process.
fn plain(spec: Spec) -> i32 {
    let (server, addr) = bind_tiny_http();
    let workers = spawn_workers(spec.workers, move || {
        while let Ok(request) = server.recv() {
            let _ = request.respond(hello(spec.delay));
        }
    });
    announce(addr);
    join(workers);
    0
}

/// A `ctrlc` handler sets a flag and unblocks every worker; workers stop; main joins them.
/// The handler keeps the `tiny_http::Server` alive to the process's exit; for
/// [`Kind::NaiveDropped`] it holds a weak reference, and main drops the server last.
fn naive(spec: Spec) -> i32 {
    let (server, addr) = bind_tiny_http();
    let stop = Arc::new(AtomicBool::new(false));
    let kept = (spec.kind == Kind::Naive).then(|| Arc::clone(&server));
    let on_signal = {
        let (weak, stop) = (Arc::downgrade(&server), Arc::clone(&stop));
        move || {
            let _ = &kept;
            stop.store(true, Ordering::SeqCst);
            if let Some(server) = weak.upgrade() {
                for _ in 0..spec.workers {
                    server.unblock();
                }
            }
        }
    };
    ctrlc::set_handler(on_signal).unwrap_or_else(|e| fail(&format!("ctrlc: {e}")));
    let serving = Arc::clone(&server);
    let workers = spawn_workers(spec.workers, move || {
        while !stop.load(Ordering::SeqCst) {
            if let Ok(request) = serving.recv() {
                let _ = request.respond(hello(spec.delay));
            }
        }
    });
    announce(addr);
    join(workers);
    drop(server); // the last reference for NaiveDropped: tiny_http's `Drop` runs here
    0
}

/// lameduck, as its README and `examples/hello.rs` use it. The server is dropped before the
/// process exits, as when `main` returns.
fn with_lameduck(spec: Spec) -> i32 {
    match run_lameduck(spec) {
        Ok(stopped) => {
            eprintln!("{stopped}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run_lameduck(spec: Spec) -> Result<lameduck::Stopped, lameduck::Error> {
    let (trigger, _listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;
    let delay = spec.delay;
    let mut builder = lameduck::Server::bind("127.0.0.1:0")
        .trigger(trigger)
        .workers(spec.workers)
        .deadline(spec.deadline);
    if spec.kind == Kind::Watched {
        builder = builder.metrics("/metrics");
    }
    let server = builder.build(move |_request: &mut Request| hello(delay).boxed())?;
    if spec.kind == Kind::Watched {
        let (handle, stop) = (server.handle(), server.handle().listener());
        thread::spawn(move || {
            while stop.sleep(Duration::from_millis(1)).is_ok() {
                std::hint::black_box(handle.stats());
            }
        });
    }
    announce(server.local_addr());
    server.run()
}
