//! # 03 — the timed join names the worker that ignores shutdown
//!
//! **Teaches:** shutdown must be bounded. `JoinHandle::join` waits forever for a thread that
//! never returns; `Pool::join_timeout` waits only until its deadline, then reports who
//! finished, who panicked (with the message) and who is still running, by name. The process
//! can then log that and exit instead of hanging.
//!
//! **Run:** `cargo run --example 03_timed_join`, then press Ctrl+C.
//!
//! **You will see**, 2 seconds after Ctrl+C:
//! ```text
//! 4 workers started; press Ctrl+C (pid 4242)
//! INFO  lameduck::shutdown::signal] shutting down gracefully, press Ctrl+C again to force stop
//! INFO  03_timed_join] finished: ["lameduck-worker-1", "lameduck-worker-2"]
//! WARN  03_timed_join] lameduck-worker-3 panicked: lost its database connection
//! WARN  03_timed_join] still running at the deadline: ["lameduck-worker-4"]
//! ```

use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(2);

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

    let mut pool = lameduck::Pool::new();
    // Two well-behaved workers: they stop when told.
    for _ in 0..2 {
        let listener = listener.clone();
        pool.spawn(move || while listener.sleep(Duration::from_millis(250)).is_ok() {})?;
    }
    // One that fails on the way out.
    let l = listener.clone();
    pool.spawn(move || {
        l.wait();
        panic!("lost its database connection");
    })?;
    // One that ignores shutdown altogether.
    pool.spawn(|| loop {
        std::thread::park();
    })?;
    println!(
        "{} workers started; press Ctrl+C (pid {})",
        pool.len(),
        std::process::id()
    );

    listener.wait();
    let report = pool.join_timeout(DEADLINE);
    log::info!("finished: {:?}", report.finished());
    for p in report.panicked() {
        log::warn!("{p}");
    }
    if !report.is_complete() {
        log::warn!("still running at the deadline: {:?}", report.running());
    }
    // Returning from main ends the process, and with it the worker that would not stop.
    Ok(())
}
