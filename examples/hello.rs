//! # hello — the seed program, ported
//!
//! **Teaches:** the whole of lameduck in one program, the synchronous twin of Go's
//! `signal.NotifyContext` + `http.Server.Shutdown(ctx)` example: `/` sleeps, then answers
//! `Hello World`; Ctrl+C (or SIGTERM) stops accepting, lets the request in flight finish and
//! exits; a second Ctrl+C forces the exit; a handler slower than the deadline is cut and
//! named.
//!
//! **Run:** `cargo run --example hello`, then in another terminal `curl 127.0.0.1:8080`, and
//! press Ctrl+C in the first while curl waits. **You will see** curl get `Hello World` and:
//! ```text
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 10s)
//! INFO  lameduck::server::drain] draining: 1 in handlers, 0 queued, 1 connection open, 9.0s left ...
//! INFO  lameduck::server] shutdown (signal) took 2.1s: served 0 before and 1 during the drain, ...
//! INFO  hello] graceful shutdown finished.
//! ```
//! With `--timeout-ms 1000` the deadline cuts the request instead (`ERROR hello] cut by the
//! deadline: GET / from 127.0.0.1:...`). Exit codes: 0 drained, 1 deadline exceeded (or bad
//! arguments), 130 forced by a second signal. Options: `--addr` (port 0 picks a free one),
//! `--delay-ms` (handler sleep, 3000), `--timeout-ms` (deadline, 10000), `--workers`.
//! On Unix, `kill -USR2 <pid>` upgrades it in place (see `09_upgrade.rs`): a new copy takes
//! the socket, this one drains and exits, no connection refused.

use std::error::Error as StdError;
use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::{Error, Server};

fn main() {
    // tiny_http logs an error when lameduck ends its accept loop, on purpose: quiet it.
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
    let (mut addr, mut delay_ms, mut timeout_ms, mut workers) =
        ("127.0.0.1:8080".to_owned(), 3000, 10_000, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--addr" => addr = value,
            "--delay-ms" => delay_ms = number()?,
            "--timeout-ms" => timeout_ms = number()?,
            "--workers" => workers = Some(number()? as usize),
            other => return Err(format!("unknown argument {other}; see the file's header").into()),
        }
    }

    // Ctrl+C / SIGTERM fire the trigger; a second one exits with code 130.
    let (trigger, _listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let mut builder = Server::bind(addr.as_str())
        .trigger(trigger)
        .deadline(Duration::from_millis(timeout_ms));
    if let Some(workers) = workers {
        builder = builder.workers(workers); // by default, 8 per CPU
    }
    let server = builder.build(move |_request: &mut Request| {
        std::thread::sleep(Duration::from_millis(delay_ms));
        Response::from_string("Hello World").boxed()
    })?;
    // SIGUSR2 (Unix): upgrade in place, a new copy takes the socket, this one drains.
    #[cfg(unix)]
    server.handle().upgrade_on_sigusr2()?;
    println!("listening on http://{}", server.local_addr());
    server.run()?;
    log::info!("graceful shutdown finished.");
    Ok(())
}
