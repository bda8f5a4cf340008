//! # hello — the seed program, ported
//!
//! **Teaches:** the whole of lameduck in one program, the synchronous twin of Go's
//! `signal.NotifyContext` + `http.Server.Shutdown(ctx)` example: `/` sleeps, then answers
//! `Hello World`; Ctrl+C (or SIGTERM) stops accepting, lets the request in flight finish and
//! exits; a second Ctrl+C forces the exit; a handler slower than the deadline is cut and
//! named.
//!
//! **Run:** `cargo run --example hello`, then in another terminal `curl 127.0.0.1:8080`, and
//! press Ctrl+C in the first while curl waits.
//!
//! Options (for tests and benchmarks): `--addr` (default `127.0.0.1:8080`; port 0 picks a
//! free one), `--delay-ms` (handler sleep, default 3000), `--timeout-ms` (shutdown deadline,
//! default 10000), `--workers` (default: 8 per CPU).
//!
//! **You will see:**
//! ```text
//! listening on http://127.0.0.1:8080
//! INFO  lameduck::server] serving http://127.0.0.1:8080 with 16 workers
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 10s)
//! INFO  lameduck::server] shutdown (signal) took 2.1s: served 0 before and 1 during the drain, ...
//! INFO  hello] graceful shutdown finished.
//! ```
//! curl gets `Hello World`. With `--timeout-ms 1000` the deadline cuts the request instead:
//! `ERROR hello] shutdown deadline of 1s exceeded: ... unfinished: GET / from 127.0.0.1:...`
//! and the exit code is 1. Exit codes: 0 drained, 1 deadline exceeded (or bad arguments),
//! 130 forced by a second signal.

use std::error::Error as StdError;
use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::{Error, Server};

struct Args {
    addr: String,
    delay: Duration,
    timeout: Duration,
    workers: Option<usize>,
}

fn main() {
    // tiny_http logs an error when its accept loop ends, and lameduck ends it on purpose at
    // every shutdown: keep it quiet unless RUST_LOG asks for it.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tiny_http=off"),
    )
    .init();
    if let Err(e) = run() {
        log::error!("{e}");
        if let Some(report) = e.downcast_ref::<Error>().and_then(Error::report) {
            for straggler in report.stragglers() {
                log::error!("cut by the deadline: {straggler}");
            }
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn StdError>> {
    let args = parse_args(std::env::args().skip(1))?;

    // Ctrl+C / SIGTERM fire the trigger; a second one exits with code 130.
    let (trigger, _listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let delay = args.delay;
    let mut builder = Server::bind(args.addr.as_str())
        .trigger(trigger)
        .deadline(args.timeout);
    if let Some(workers) = args.workers {
        builder = builder.workers(workers);
    }
    let server = builder.build(move |_request: &mut Request| {
        std::thread::sleep(delay);
        Response::from_string("Hello World").boxed()
    })?;
    println!("listening on http://{}", server.local_addr());

    server.run()?;
    log::info!("graceful shutdown finished.");
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: "127.0.0.1:8080".to_owned(),
        delay: Duration::from_millis(3000),
        timeout: Duration::from_millis(10_000),
        workers: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let millis = |v: String| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag} {v}: {e}"))
        };
        match flag.as_str() {
            "--addr" => parsed.addr = value()?,
            "--delay-ms" => parsed.delay = millis(value()?)?,
            "--timeout-ms" => parsed.timeout = millis(value()?)?,
            "--workers" => {
                let v = value()?;
                parsed.workers = Some(v.parse().map_err(|e| format!("--workers {v}: {e}"))?);
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: hello [--addr ADDR] [--delay-ms N] \
                     [--timeout-ms N] [--workers N]"
                ))
            }
        }
    }
    Ok(parsed)
}
