//! 200 start → serve → shutdown cycles in one process leave nothing behind: the thread and
//! file-descriptor counts return to where they started (read from /proc, Linux). Alone in its
//! test binary so that no other test's threads or sockets are counted.

#[path = "support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
#[test]
fn two_hundred_cycles_leave_no_thread_and_no_descriptor() {
    use std::time::{Duration, Instant};

    use lameduck::tiny_http::{Request, Response};
    use support::http::Conn;
    use support::server::Running;

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
        let stopped = s.finished().unwrap();
        drop(stopped);
        peak_threads = peak_threads.max(threads());
    }
    let cycles = start.elapsed();

    // tiny_http's pool threads end 5 s after their server is gone (its idle timeout):
    // wait for that, boundedly, watching the counts. One exception is tiny_http's own: when
    // its accept loop ends it drops its thread pool and notifies the pool's idle threads
    // without holding their lock, so a pool thread going idle at that instant (in a pool of
    // at most 4 threads, where idle threads wait without a timeout) can miss the
    // notification and wait for good. Such a thread holds no descriptor and bears the name
    // of the thread that built the server (tiny_http's threads are unnamed), never a
    // lameduck one. Once the idle timeout is well past, at most one such thread in 200
    // cycles is tolerated; every descriptor must be back, and no lameduck thread left.
    let exact = || (threads(), fds()) == (threads_before, fds_before);
    let one_tiny_http_thread_left = || {
        fds() == fds_before
            && threads() == threads_before + 1
            && !names().iter().any(|name| name.starts_with("lameduck-"))
    };
    let settle = Instant::now();
    let settled =
        || exact() || (settle.elapsed() > Duration::from_secs(8) && one_tiny_http_thread_left());
    while !settled() {
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "after 200 cycles: {} threads (was {threads_before}: {:?}), {} fds (was {fds_before})",
            threads(),
            names(),
            fds()
        );
        std::thread::sleep(Duration::from_millis(50)); // polling /proc: no event to wait on
    }
    if exact() {
        eprintln!(
            "200 cycles in {cycles:.1?}; peak {peak_threads} threads; back to {threads_before} \
             threads and {fds_before} fds {:.1?} later",
            settle.elapsed()
        );
    } else {
        eprintln!(
            "200 cycles in {cycles:.1?}; peak {peak_threads} threads; descriptors back, and one \
             tiny_http pool thread missed its pool's last wake-up: {:?}",
            names()
        );
    }
}
