//! # 12 — watching a drain: progress lines, stats, `/metrics`
//!
//! **Teaches:** what an operator sees while a drain runs. `/` works for a while (3 s), then
//! answers with the server's own numbers ([`Handle::stats`](lameduck::Handle::stats), cheap
//! enough for every request); `/metrics` is answered by lameduck in Prometheus' text format.
//! A drain longer than a second logs once a second what it still waits for.
//!
//! **Run:** `cargo run --example 12_watch`, then in another terminal
//! `curl 127.0.0.1:8080/metrics; curl 127.0.0.1:8080/ &`, and Ctrl+C in the first while the
//! second curl waits.
//!
//! **You will see** the metrics (`lameduck_phase{phase="serving"} 1`, …), then the log:
//! ```text
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 10s)
//! INFO  lameduck::server::drain] draining: 1 in handlers, 0 queued, 1 connection open, 9.0s left in_handlers=1 ...
//! INFO  lameduck::server] shutdown (signal) took 2.6s: served 0 before and 1 during the drain, ...
//! ```
//! and curl gets `done; phase draining, 1 in handlers, 0 served before this one`.
//! Options: `--addr ADDR`, `--delay-ms N` (the work, 3000).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::{Handle, Server};

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

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut addr, mut delay_ms) = ("127.0.0.1:8080".to_owned(), 3000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--delay-ms" => delay_ms = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;
    // The handler reads the server's numbers through its handle, made once the server is.
    let handle: Arc<OnceLock<Handle>> = Arc::default();
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .metrics("/metrics")
        .build({
            let handle = Arc::clone(&handle);
            move |_: &mut Request| {
                std::thread::sleep(Duration::from_millis(delay_ms));
                let stats = handle.get().expect("set before run").stats();
                Response::from_string(format!(
                    "done; phase {}, {} in handlers, {} served before this one\n",
                    stats.phase(),
                    stats.in_handlers(),
                    stats.served()
                ))
                .boxed()
            }
        })?;
    let _ = handle.set(server.handle());
    println!("listening on http://{}", server.local_addr());
    server.run()?;
    Ok(())
}
