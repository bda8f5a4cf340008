//! # 01 — Ctrl+C sets a flag; the work loop ends cleanly
//!
//! **Teaches:** the smallest graceful shutdown. A signal handler fires a trigger; the work
//! loop checks the flag between rounds (one atomic load) and, once it is set, stops taking
//! new work, finishes the round it is in and cleans up. Nothing is cut in half.
//!
//! **Run:** `cargo run --example 01_flag`, then press Ctrl+C (or `kill -TERM <pid>`).
//!
//! **You will see:**
//! ```text
//! working; press Ctrl+C to stop (pid 4242)
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  01_flag] stopped after 37 rounds, none cut short; cleaning up
//! ```
//! Press Ctrl+C twice quickly and the process exits at once with code 130 instead.

use std::thread;
use std::time::Duration;

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
    println!("working; press Ctrl+C to stop (pid {})", std::process::id());

    let mut rounds = 0u64;
    while !listener.is_triggered() {
        // One round of work that must not be cut in half.
        thread::sleep(Duration::from_millis(100));
        rounds += 1;
    }

    log::info!("stopped after {rounds} rounds, none cut short; cleaning up");
    Ok(())
}
