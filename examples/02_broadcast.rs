//! # 02 — one trigger, many threads, all wake at once
//!
//! **Teaches:** the broadcast. A flag is enough for a loop that polls, but a thread blocked
//! on a channel or in a sleep would only notice at its next wake-up. Firing the trigger
//! disconnects a `crossbeam-channel`, so every thread blocked in `select!` on
//! `listener.receiver()`, in `listener.wait()` or in `listener.sleep()` wakes at the same
//! moment, however long its own timer still had to run.
//!
//! **Run:** `cargo run --example 02_broadcast`, then press Ctrl+C.
//!
//! **You will see** each thread report how soon after the signal it woke (microseconds),
//! although their timers tick every 1, 2, 3 and 4 seconds:
//! ```text
//! 4 threads waiting; press Ctrl+C (pid 4242)
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  02_broadcast] ticker-3 woke 61µs after the signal, after 2 ticks
//! ...
//! ```

use std::time::Duration;

use crossbeam_channel::{select, tick};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run() {
        log::error!("{e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), lameduck::Error> {
    let (trigger, listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let mut pool = lameduck::Pool::with_prefix("ticker");
    for seconds in 1..=4 {
        let listener = listener.clone();
        pool.spawn(move || {
            let ticks = tick(Duration::from_secs(seconds));
            let mut count = 0;
            loop {
                select! {
                    recv(ticks) -> _ => count += 1,
                    recv(listener.receiver()) -> _ => break,
                }
            }
            let fired = listener.wait(); // returns at once: it has fired
            log::info!(
                "{} woke {:?} after the signal, after {count} ticks",
                std::thread::current().name().unwrap_or("?"),
                fired.elapsed()
            );
        })?;
    }
    println!(
        "{} threads waiting; press Ctrl+C (pid {})",
        pool.len(),
        std::process::id()
    );

    listener.wait();
    let report = pool.join_timeout(Duration::from_secs(1));
    log::info!("all {} threads joined", report.finished().len());
    Ok(())
}
