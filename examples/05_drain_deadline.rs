//! # 05 — the drain, its deadline, and the report
//!
//! **Teaches:** what happens to requests when shutdown fires. One worker, a 1-second
//! deadline, three routes:
//!
//! - `/slow` works for 5 s and ignores shutdown: the deadline cuts it, and the report names
//!   it (method, path, client, age, worker) so it can be logged or retried;
//! - `/polite` works for 5 s but listens: `listener.sleep` returns early when shutdown
//!   fires, and the handler answers at once;
//! - a request queued behind a busy worker is answered `503` with `Retry-After` and
//!   `Connection: close` once the deadline has passed.
//!
//! **Run:** `cargo run --example 05_drain_deadline`, then
//! `curl -i 127.0.0.1:8080/slow & sleep 0.2; curl -i 127.0.0.1:8080/ &` and Ctrl+C.
//!
//! **You will see** the queued curl get `503 Service Unavailable` and `Retry-After: 5`
//! about a second after Ctrl+C, and:
//! ```text
//! WARN  lameduck::server] deadline of 1s exceeded: shutdown (signal) took 1.0s: ...
//! ERROR 05_drain_deadline] cut by the deadline: GET /slow from 127.0.0.1:50422, in its handler for 1.3s on lameduck-worker-1
//! INFO  05_drain_deadline] answered 503 instead: 1
//! ```
//! The process then exits with code 1, taking the cut handler with it.

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

    let (trigger, listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .workers(1)
        .deadline(Duration::from_secs(1))
        .retry_after(Duration::from_secs(5))
        .build(move |request: &mut Request| -> ResponseBox {
            match request.url() {
                "/slow" => {
                    std::thread::sleep(Duration::from_secs(5));
                    Response::from_string("slow work done\n").boxed()
                }
                "/polite" => match listener.sleep(Duration::from_secs(5)) {
                    Ok(()) => Response::from_string("polite work done\n").boxed(),
                    Err(_) => Response::from_string("stopped early: shutting down\n").boxed(),
                },
                _ => Response::from_string("quick\n").boxed(),
            }
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
