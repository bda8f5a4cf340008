//! # 07 — readiness flips at once, the lame duck keeps serving
//!
//! **Teaches:** shutting down behind a load balancer. Readiness (`/readyz`) tells the
//! balancer whether to send traffic: it answers `503` the moment Ctrl+C or SIGTERM arrives.
//! Balancers notice only at their next check, so the server keeps accepting and serving for
//! a lame-duck delay (3 s here), telling every client to reconnect (`Connection: close`), and
//! only then stops accepting and drains. Liveness (`/livez`) stays `200` throughout: the
//! process is healthy, just leaving.
//!
//! **Run:** `cargo run --example 07_health`, then in another terminal
//! `while sleep 0.5; do curl -s -o /dev/null -w '%{http_code} ' 127.0.0.1:8080/readyz;
//! curl -s -o /dev/null -w '%{http_code}\n' 127.0.0.1:8080/; done`, and Ctrl+C in the first.
//!
//! **You will see** `200 200` lines, then `503 200` for three seconds after Ctrl+C, then
//! `000 000` (connection refused), and in the server's log:
//! ```text
//! INFO  lameduck::server::drain] shutdown (signal): lame duck for 3s: readiness 503, still serving (deadline 10s)
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 10s)
//! ```
//! Options: `--addr ADDR`, `--lame-duck-ms N`.

use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
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
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut lame_duck = Duration::from_secs(3);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--lame-duck-ms" => lame_duck = Duration::from_millis(value.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .readiness("/readyz")
        .liveness("/livez")
        .lame_duck(lame_duck)
        .build(|_: &mut Request| Response::from_string("hello\n").boxed())?;
    println!("listening on http://{}", server.local_addr());

    let stopped = server.run()?;
    let report = stopped.report();
    log::info!(
        "lame duck {:.1?}, then drained; {} health checks answered",
        report.lame_duck_time(),
        report.health_checks()
    );
    Ok(())
}
