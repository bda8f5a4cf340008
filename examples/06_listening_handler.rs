//! # 06 — a handler that listens
//!
//! **Teaches:** long work need not wait for the deadline. The handler holds the
//! trigger's `Listener` and waits on it instead of sleeping blind: `listener.sleep(d)`
//! returns early, with `Err(Interrupted)`, the moment shutdown fires. `/work` stands for a
//! job of 5 s done in steps; between steps it asks the listener, and when shutdown comes it
//! stops, answers what it has (`Connection: close`, as every response during the drain) and
//! frees its worker. The drain then ends at once, well before its 10 s deadline.
//! (`listener.receiver()` puts the same wait into a `crossbeam_channel::select!`.)
//!
//! **Run:** `cargo run --example 06_listening_handler`, then
//! `curl -i 127.0.0.1:8080/work &` in another terminal and Ctrl+C in the first.
//!
//! **You will see** the curl get `stopped early at step 3 of 10: shutting down` at once, and:
//! ```text
//! INFO  06_listening_handler] /work: shutdown fired at step 3 of 10
//! INFO  lameduck::server::drain] shutdown (signal): stop accepting, drain (deadline 10s)
//! INFO  06_listening_handler] drained in time: shutdown (signal) took 4.8ms: served 0 before and 1 during the drain, ...
//! ```
//! Options: `--addr ADDR`.

use std::time::Duration;

use lameduck::tiny_http::{Request, Response, ResponseBox};
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

fn run() -> Result<(), lameduck::Error> {
    let addr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => "127.0.0.1:8080".to_owned(),
    };

    let (trigger, listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    const STEPS: u32 = 10;
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .deadline(Duration::from_secs(10))
        .build(move |request: &mut Request| -> ResponseBox {
            for step in 1..=STEPS {
                // Half a second of work, cut short if shutdown fires meanwhile.
                if listener.sleep(Duration::from_millis(500)).is_err() {
                    log::info!(
                        "{}: shutdown fired at step {step} of {STEPS}",
                        request.url()
                    );
                    let text = format!("stopped early at step {step} of {STEPS}: shutting down\n");
                    return Response::from_string(text).boxed();
                }
            }
            Response::from_string("work done\n").boxed()
        })?;
    println!("listening on http://{}", server.local_addr());

    let stopped = server.run()?;
    log::info!("drained in time: {stopped}");
    Ok(())
}
