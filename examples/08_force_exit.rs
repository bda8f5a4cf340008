//! # 08 — the second Ctrl+C, and why 130
//!
//! **Teaches:** a graceful shutdown can take long: here a request takes 30 s and the
//! deadline is a minute. An operator who does not want to wait presses Ctrl+C again: the
//! process ends at once with exit code **130**, which is 128 + 2 (SIGINT), what shells report
//! for a program killed by Ctrl+C. Scripts and supervisors can then tell a forced stop (130)
//! from a clean one (0) or a missed deadline (1). This is Go's "press Ctrl+C again to force
//! stop". `Signals::new().on_second(SecondSignal::Ignore)` turns it off;
//! `SecondSignal::Run(..)` runs your own action instead.
//!
//! **Run:** `cargo run --example 08_force_exit`, then `curl 127.0.0.1:8080 &` in another
//! terminal, then Ctrl+C twice in the first, then `echo $?`.
//!
//! **You will see:**
//! ```text
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 60s)
//! WARN  lameduck::shutdown::signal] signal received again: forcing exit with code 130
//! $ echo $?
//! 130
//! ```
//! Options: `--addr ADDR`.

use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::{SecondSignal, Server, Signals};

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
    // The default, spelled out: the second signal exits with 130.
    Signals::new()
        .on_second(SecondSignal::Exit(lameduck::signal::FORCED_EXIT_CODE))
        .install(&trigger)?;

    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .deadline(Duration::from_secs(60))
        .build(|_: &mut Request| {
            std::thread::sleep(Duration::from_secs(30));
            Response::from_string("finally\n").boxed()
        })?;
    println!("listening on http://{}", server.local_addr());
    server.run()?;
    log::info!("drained without being forced");
    Ok(())
}
