//! The timed join: it names who finished, who panicked and who still runs, and never blocks
//! past its deadline.

use std::time::{Duration, Instant};

use lameduck::{Pool, Reason};

use crate::support::{quiet_panics, BOUND};

#[test]
fn a_stuck_worker_is_named_and_the_join_returns_on_time() {
    quiet_panics();
    let (trigger, listener) = lameduck::trigger();
    // The stuck worker waits on a channel the test closes only at the end, so it does not
    // outlive the test.
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    let mut pool = Pool::new();
    for _ in 0..3 {
        let listener = listener.clone();
        pool.spawn(move || {
            listener.wait();
        })
        .unwrap();
    }
    let stuck_name = pool
        .spawn(move || {
            let _ = stuck.recv();
        })
        .unwrap()
        .to_owned();
    pool.spawn(|| panic!("worker failed: {}", 42)).unwrap();

    trigger.fire(Reason::Requested);
    let deadline_in = Duration::from_millis(200);
    let start = Instant::now();
    let report = pool.join_timeout(deadline_in);
    let took = start.elapsed();

    assert!(
        took >= deadline_in,
        "returned before the deadline: {took:?}"
    );
    // It returned while the stuck worker still runs: the deadline, not the worker, ended
    // the wait. By how much it overruns is the benchmark's to measure (`-- --only deadline`).
    assert_eq!(
        report.finished(),
        [
            "lameduck-worker-1",
            "lameduck-worker-2",
            "lameduck-worker-3"
        ]
    );
    assert_eq!(report.running(), [stuck_name.as_str()]);
    assert_eq!(stuck_name, "lameduck-worker-4");
    assert_eq!(report.panicked().len(), 1);
    assert_eq!(report.panicked()[0].name(), "lameduck-worker-5");
    assert_eq!(report.panicked()[0].message(), "worker failed: 42");
    assert!(!report.is_complete());

    // The stuck worker is still in the pool; once released, a second join collects it.
    drop(release);
    let report = pool.join_timeout(Duration::from_secs(10));
    assert_eq!(report.finished(), ["lameduck-worker-4"]);
    assert!(report.is_complete());
    assert!(pool.is_empty());
}

#[test]
fn threads_carry_their_names() {
    let mut pool = Pool::with_prefix("job");
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..2 {
        let tx = tx.clone();
        pool.spawn(move || {
            tx.send(std::thread::current().name().unwrap().to_owned())
                .unwrap();
        })
        .unwrap();
    }
    let report = pool.join_timeout(Duration::from_secs(10));
    assert!(report.is_complete());
    let mut names: Vec<String> = rx.try_iter().collect();
    names.sort();
    assert_eq!(names, ["job-1", "job-2"]);
}

#[test]
fn an_empty_pool_joins_at_once() {
    let start = Instant::now();
    let report = Pool::new().join_timeout(BOUND);
    assert!(report.is_complete());
    assert!(start.elapsed() < BOUND, "waited for the timeout");
}
