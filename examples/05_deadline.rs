//! # 05 — the deadline, and what it cut
//!
//! **Teaches:** the drain is bounded. One worker, a 1-second deadline, and `/slow`, which
//! works for 5 s and ignores shutdown. When the deadline passes:
//!
//! - the handler still running is **cut**: the process will not wait for it, and the report
//!   names it (method, path, client, age, worker) so it can be logged or retried;
//! - a request still queued behind the busy worker is answered `503` with `Retry-After` and
//!   `Connection: close`, so its client knows to come back;
//! - `run` returns `Error::DeadlineExceeded`, which carries the report.
//!
//! **Run:** `cargo run --example 05_deadline`, then
//! `curl -i 127.0.0.1:8080/slow & sleep 0.2; curl -i 127.0.0.1:8080/ &` and Ctrl+C.
//!
//! **You will see** the queued curl get `503 Service Unavailable` and `Retry-After: 5`
//! about a second after Ctrl+C, and:
//! ```text
//! WARN  lameduck::server::drain] deadline of 1s exceeded: shutdown (signal) took 1.0s: ...
//! ERROR 05_deadline] cut by the deadline: GET /slow from 127.0.0.1:50422, in its handler for 1.3s on lameduck-worker-1
//! INFO  05_deadline] answered 503 instead: 1
//! ```
//! The process then exits with code 1, taking the cut handler with it.
//! Options: `--addr ADDR`.

use std::time::Duration;

use lameduck::tiny_http::{Request, Response, ResponseBox};
use lameduck::{Error, Server};

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tiny_http=off"),
    )
    .init();
    if let Err(e) = run() {
        log::error!("{e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let addr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => "127.0.0.1:8080".to_owned(),
    };

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .workers(1)
        .deadline(Duration::from_secs(1))
        .retry_after(Duration::from_secs(5))
        .build(|request: &mut Request| -> ResponseBox {
            if request.url() == "/slow" {
                std::thread::sleep(Duration::from_secs(5));
            }
            Response::from_string("done\n").boxed()
        })?;
    println!("listening on http://{}", server.local_addr());

    match server.run() {
        Ok(stopped) => {
            log::info!("drained in time: {stopped}");
            Ok(())
        }
        Err(Error::DeadlineExceeded(stopped)) => {
            let report = stopped.report();
            for cut in report.stragglers() {
                log::error!("cut by the deadline: {cut}");
            }
            log::info!("answered 503 instead: {}", report.rejected());
            std::process::exit(1);
        }
        Err(other) => Err(other),
    }
}
