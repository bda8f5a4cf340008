//! # 04 — a small server on the builder
//!
//! **Teaches:** the HTTP side. `Server::bind(..).build(handler)` binds and starts accepting;
//! `run()` serves until shutdown fires, then stops accepting, drains and returns a
//! `ShutdownReport`. The handler is a plain closure from `&mut Request` to a response; here
//! it routes two paths. One trigger is shared by the signal handler and the server.
//!
//! **Run:** `cargo run --example 04_server` (or `-- --addr 127.0.0.1:0` for a free port),
//! then `curl 127.0.0.1:8080/` and `curl 127.0.0.1:8080/count`, then Ctrl+C.
//!
//! **You will see:**
//! ```text
//! listening on http://127.0.0.1:8080
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  04_server] served 3 requests; shutdown took 1.2ms
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use lameduck::tiny_http::{Method, Request, Response, ResponseBox};
use lameduck::Server;

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
    let addr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => "127.0.0.1:8080".to_owned(),
    };

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let hits = AtomicU64::new(0);
    let server = Server::bind(addr.as_str()).trigger(trigger).build(
        move |request: &mut Request| -> ResponseBox {
            let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
            match (request.method(), request.url()) {
                (Method::Get, "/") => Response::from_string("hello from lameduck\n").boxed(),
                (Method::Get, "/count") => Response::from_string(format!("{n}\n")).boxed(),
                _ => Response::from_string("not found\n")
                    .with_status_code(404)
                    .boxed(),
            }
        },
    )?;
    println!("listening on http://{}", server.local_addr());

    let stopped = server.run()?;
    let report = stopped.report();
    log::info!(
        "served {} requests; shutdown took {:.1?}",
        report.served_before() + report.served_during_drain(),
        report.total_time()
    );
    Ok(())
}
