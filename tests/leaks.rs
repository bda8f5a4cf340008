//! 200 start → serve → shutdown cycles in one process leave nothing behind: the thread and
//! file-descriptor counts return to where they started (read from /proc, Linux). Alone in its
//! test binary so that no other test's threads or sockets are counted.

mod common;

#[cfg(target_os = "linux")]
#[test]
fn two_hundred_cycles_leave_no_thread_and_no_descriptor() {
    use std::time::{Duration, Instant};

    use common::http::Conn;
    use common::server::Running;
    use lameduck::tiny_http::{Request, Response};

    fn count(dir: &str) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }
    let threads = || count("/proc/self/task");
    let names = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    let fds = || count("/proc/self/fd");

    let (threads_before, fds_before) = (threads(), fds());
    let start = Instant::now();
    let mut peak_threads = 0;
    for _ in 0..200 {
        let s = Running::start(
            |b| b.workers(2),
            |_: &mut Request| Response::from_string("hello").boxed(),
        );
        let mut conn = Conn::open(s.addr).unwrap();
        assert_eq!(conn.request("GET", "/").unwrap().status, 200);
        drop(conn);
        s.handle.shutdown();
        let (server, outcome) = s.finished();
        outcome.unwrap();
        drop(server);
        peak_threads = peak_threads.max(threads());
    }
    let cycles = start.elapsed();

    // tiny_http's pool threads end 5 s after their server is gone (its idle timeout):
    // wait for that, boundedly, watching the counts.
    let settle = Instant::now();
    while (threads(), fds()) != (threads_before, fds_before) {
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "after 200 cycles: {} threads (was {threads_before}: {:?}), {} fds (was {fds_before})",
            threads(),
            names(),
            fds()
        );
        std::thread::sleep(Duration::from_millis(50)); // polling /proc: no event to wait on
    }
    eprintln!(
        "200 cycles in {cycles:.1?}; peak {peak_threads} threads; back to {threads_before} \
         threads and {fds_before} fds {:.1?} later",
        settle.elapsed()
    );
}
