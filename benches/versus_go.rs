//! # Side by side with Go: what happens to requests on their way when the signal comes
//!
//! ```text
//! cargo bench --bench versus_go        # about a minute; needs Go (Debian: golang-go)
//! ```
//!
//! Two servers, each a child process stopped by a real SIGTERM, each case on a fresh one:
//!
//! - **Go**: the seed program (`versus_go/seed.go`: `signal.NotifyContext` +
//!   `http.Server.Shutdown`, deadline 10 s), built here with `go build`;
//! - **lameduck**: its twin (this binary run again: `lameduck::signal::install` +
//!   `lameduck::Server`, deadline 10 s, the defaults otherwise).
//!
//! Both handlers read the request body, then answer `Hello World` (or how many bytes they
//! read), at once unless a case says otherwise. The client is the tests' own
//! (`tests/support/http.rs`: whole responses, or an error) and the load generator the
//! shutdown benchmark's (`shutdown/load.rs`). The signal is sent with `kill`; where a case
//! says "after the signal", the client first waits for the server's log line
//! `shutting down gracefully`, which both print when the signal has reached them.
//!
//! The result is one table: what the client got from each. It asserts nothing; the tests
//! (`tests/library/connections.rs`, `tests/process/`) assert lameduck's side. Linux only
//! (`/proc`, signals through `kill`); elsewhere, or without Go, it says so and exits 0.

#[allow(dead_code)]
#[path = "shutdown/apt.rs"]
mod apt;
#[allow(dead_code)]
#[path = "shutdown/go.rs"]
mod go;
#[allow(dead_code)]
#[path = "shutdown/load.rs"]
mod load;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::http::Conn;
use support::{Proc, BOUND};

/// The line both servers log when the signal has reached them.
const SIGNAL_SEEN: &str = "shutting down gracefully";

fn main() {
    if let Ok(mode) = std::env::var(support::CHILD) {
        lameduck_server(&mode);
    }
    if !cfg!(target_os = "linux") {
        println!("versus_go: Linux only (it reads /proc); skipped");
        return;
    }
    let Some(go) = build_go() else {
        println!("versus_go: `go` is not installed (Debian: apt-get install golang-go); skipped");
        return;
    };
    let servers = [Kind::Go(go), Kind::Lameduck];
    println!("| case | Go 1.19 `net/http` | lameduck |");
    println!("|---|---|---|");
    for (name, case) in CASES {
        let got: Vec<String> = servers.iter().map(case).collect();
        println!("| {name} | {} | {} |", got[0], got[1]);
        std::io::stdout().flush().unwrap();
    }
}

type Case = fn(&Kind) -> String;

const CASES: [(&str, Case); 9] = [
    ("a head split over two writes 100 ms apart, the signal in between, on a new connection", head_split),
    ("the same, for the second request of a keep-alive connection", second_head_split),
    ("a 10-byte POST body, one byte every 50 ms from the signal on", trickling_body),
    ("a 5 MiB upload, 1 MiB of it sent before the signal", upload),
    ("20 rounds of 20 idle keep-alive connections, each sending its next request at a random moment in the 100 ms after the signal: answered", idle_connections),
    ("5 GETs pipelined in one write, handler 200 ms, the signal during the first: answered", pipelined),
    ("32 keep-alive clients in a loop, the signal after 2 000 responses, 5 rounds: lost per round", under_load),
    ("`Transfer-Encoding: xchunked`; then `Transfer-Encoding: chunked` with `Content-Length`", smuggling),
    ("200 connections that send an HTTP/2 prior-knowledge preface and close: left in the server", prefaces),
];

/// Which server.
enum Kind {
    Go(PathBuf),
    Lameduck,
}

/// A server under test.
struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    /// Starts a fresh one whose handler sleeps `delay_ms`.
    fn start(kind: &Kind, delay_ms: u64) -> Server {
        let delay = delay_ms.to_string();
        let cmd = match kind {
            Kind::Go(binary) => {
                let mut cmd = Command::new(binary);
                cmd.args(["-addr", "127.0.0.1:0", "-delay-ms", &delay]);
                cmd
            }
            Kind::Lameduck => support::child(&delay, &[]),
        };
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("listening on http://", BOUND);
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Server { proc, addr }
    }

    /// Sends SIGTERM; with `wait`, returns once the server has logged it.
    fn terminate(&mut self, wait: bool) -> Instant {
        let sent = Instant::now();
        self.proc.signal("TERM");
        if wait {
            self.proc.wait_line(SIGNAL_SEEN, BOUND);
        }
        sent
    }

    /// Threads and open descriptors, from `/proc`.
    fn threads_and_fds(&self) -> (usize, usize) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid)).unwrap();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.proc.pid))
            .unwrap()
            .count();
        (threads, fds)
    }
}

/// What a client got: the status and whether it said `Connection: close`, or the error.
fn outcome(response: std::io::Result<support::http::Response>) -> String {
    match response {
        Ok(r) if r.closes() => format!("`{}`, `Connection: close`", r.status),
        Ok(r) => format!("`{}`", r.status),
        Err(e) => format!("no response ({})", e.kind()),
    }
}

fn head_split(kind: &Kind) -> String {
    let mut server = Server::start(kind, 0);
    let mut conn = Conn::open(server.addr).unwrap();
    split_after_the_signal(&mut server, &mut conn)
}

fn second_head_split(kind: &Kind) -> String {
    let mut server = Server::start(kind, 0);
    let mut conn = Conn::open(server.addr).unwrap();
    conn.request("GET", "/").unwrap();
    split_after_the_signal(&mut server, &mut conn)
}

/// Sends half a head, the signal, and the rest 100 ms after the first half.
fn split_after_the_signal(server: &mut Server, conn: &mut Conn) -> String {
    let first = Instant::now();
    conn.write_raw(b"GET /next HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    server.terminate(true);
    thread::sleep(Duration::from_millis(100).saturating_sub(first.elapsed()));
    if let Err(e) = conn.write_raw(b"\r\n") {
        return format!("closed before the rest was sent ({})", e.kind());
    }
    outcome(conn.read_response(false))
}

fn trickling_body(kind: &Kind) -> String {
    let mut server = Server::start(kind, 0);
    let mut conn = Conn::open(server.addr).unwrap();
    conn.write_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    let sent = server.terminate(true);
    for _ in 0..10 {
        thread::sleep(Duration::from_millis(50)); // the client's pace
        if let Err(e) = conn.write_raw(b"x") {
            return format!("closed while the body came ({})", e.kind());
        }
    }
    let got = outcome(conn.read_response(false));
    format!("{got} after {} ms", sent.elapsed().as_millis())
}

fn upload(kind: &Kind) -> String {
    const SIZE: usize = 5 << 20;
    let mut server = Server::start(kind, 0);
    let mut conn = Conn::open(server.addr).unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n");
    conn.write_raw(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..16 {
        conn.write_raw(&chunk).unwrap();
    }
    server.terminate(false);
    for _ in 16..SIZE / chunk.len() {
        if let Err(e) = conn.write_raw(&chunk) {
            return format!("closed during the upload ({})", e.kind());
        }
    }
    let response = conn.read_response(false);
    let whole = response
        .as_ref()
        .is_ok_and(|r| r.text() == format!("read {SIZE}"));
    format!(
        "{}{}",
        outcome(response),
        if whole { ", whole" } else { "" }
    )
}

fn idle_connections(kind: &Kind) -> String {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut answered, mut sent_in_time) = (0, 0);
    for _ in 0..20 {
        let mut server = Server::start(kind, 0);
        let conns: Vec<Conn> = (0..20)
            .map(|_| {
                let mut conn = Conn::open(server.addr).unwrap();
                conn.request("GET", "/").unwrap();
                conn
            })
            .collect();
        let delays: Vec<Duration> = (0..20)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                Duration::from_micros(rng % 100_000)
            })
            .collect();
        let signal = server.terminate(false);
        let clients: Vec<_> = conns
            .into_iter()
            .zip(delays)
            .map(|(mut conn, delay)| {
                thread::spawn(move || {
                    thread::sleep(delay.saturating_sub(signal.elapsed()));
                    let written = conn.send("GET", "/next", &[], b"").is_ok();
                    let in_time = signal.elapsed() < Duration::from_millis(100);
                    let ok = written && conn.read_response(false).is_ok_and(|r| r.status == 200);
                    (in_time, ok)
                })
            })
            .collect();
        for client in clients {
            let (in_time, ok) = client.join().unwrap();
            sent_in_time += usize::from(in_time);
            answered += usize::from(in_time && ok);
        }
        server.proc.wait_exit(BOUND);
    }
    format!("{answered} of {sent_in_time} sent in time")
}

fn pipelined(kind: &Kind) -> String {
    let mut server = Server::start(kind, 200);
    let mut conn = Conn::open(server.addr).unwrap();
    conn.write_raw(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5))
        .unwrap();
    thread::sleep(Duration::from_millis(50)); // into the first handler's 200 ms
    server.terminate(false);
    let mut answered = 0;
    let mut last_closes = false;
    while let Ok(response) = conn.read_response(false) {
        answered += 1;
        last_closes = response.closes();
    }
    let close = if last_closes {
        ", the last with `Connection: close`"
    } else {
        ""
    };
    format!("{answered}{close}")
}

fn under_load(kind: &Kind) -> String {
    let lost: Vec<u64> = (0..5)
        .map(|_| {
            let mut server = Server::start(kind, 0);
            let load = load::Load::start(server.addr, 32);
            assert!(load.wait_responses(2000, BOUND), "no load");
            server.terminate(false);
            let tally = load.finish(BOUND);
            server.proc.wait_exit(BOUND);
            tally.lost
        })
        .collect();
    let (min, max) = (lost.iter().min().unwrap(), lost.iter().max().unwrap());
    format!("{min}–{max}")
}

fn smuggling(kind: &Kind) -> String {
    let server = Server::start(kind, 0);
    let ask = |framing: &str| {
        let mut conn = Conn::open(server.addr).unwrap();
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\n");
        conn.write_raw(head.as_bytes()).unwrap();
        let got = outcome(conn.read_response(false));
        let next = match conn.request("GET", "/") {
            Ok(r) => format!("`{}`", r.status),
            Err(_) => "closed".to_owned(),
        };
        format!("{got}; a GET after it on the connection: {next}")
    };
    format!(
        "{}. {}",
        ask("Transfer-Encoding: xchunked"),
        ask("Transfer-Encoding: chunked\r\nContent-Length: 5")
    )
}

fn prefaces(kind: &Kind) -> String {
    let server = Server::start(kind, 0);
    let before = server.threads_and_fds();
    for _ in 0..200 {
        let mut conn = Conn::open(server.addr).unwrap();
        conn.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    }
    // Settled: the same counts for half a second (polling /proc: no event to wait on).
    let start = Instant::now();
    let mut last = server.threads_and_fds();
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_millis(500) && start.elapsed() < BOUND {
        thread::sleep(Duration::from_millis(50));
        let now = server.threads_and_fds();
        if now != last {
            (last, stable_since) = (now, Instant::now());
        }
    }
    let threads = last.0 as i64 - before.0 as i64;
    let fds = last.1 as i64 - before.1 as i64;
    format!("{threads:+} threads, {fds:+} descriptors")
}

/// Builds the seed's Go program into cargo's scratch folder; `None` without Go.
fn build_go() -> Option<PathBuf> {
    let dir = support::scratch_dir("versus-go");
    go::build(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// The child: lameduck's twin of the seed program, its handler sleeping `delay_ms`.
fn lameduck_server(delay_ms: &str) -> ! {
    use lameduck::tiny_http::{Request, Response};
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .filter_module("tiny_http", log::LevelFilter::Off)
        .init();
    let delay = Duration::from_millis(delay_ms.parse().unwrap());
    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger).unwrap();
    let server = lameduck::Server::bind("127.0.0.1:0")
        .trigger(trigger)
        .deadline(Duration::from_secs(10))
        .build(move |request: &mut Request| {
            let read = lameduck::read_body(request, 8 << 20).map_or(0, |body| body.len());
            thread::sleep(delay);
            if read > 0 {
                Response::from_string(format!("read {read}")).boxed()
            } else {
                Response::from_string("Hello World").boxed()
            }
        })
        .unwrap();
    println!("listening on http://{}", server.local_addr());
    let code = match server.run() {
        Ok(_) => 0,
        Err(_) => 1,
    };
    std::process::exit(code);
}
