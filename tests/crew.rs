//! Workers are started as requests need them: two with the server, then one more whenever a
//! worker takes a request while every other one holds one, up to `Builder::workers`, and
//! never more; those beyond the first two end after 5 s without a request, and start again
//! when needed.
//! Alone in its test binary: it counts this process's threads (Linux).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use lameduck::tiny_http::{Request, Response};
use support::http::Conn;
use support::server::Running;

/// The bound on each wait of this test.
const WAIT: Duration = Duration::from_secs(10);

/// Names of this process's worker threads (as the kernel keeps them: 15 bytes).
#[cfg(target_os = "linux")]
fn workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "lameduck-worker")
        .count()
}

/// Holds each request in its handler until its group is let go (or the bound): `/a` until
/// the first of `go` is dropped, `/b` the second, the others the third.
fn holding(
    inside: Sender<()>,
    go: [Receiver<()>; 3],
) -> impl Fn(&mut Request) -> lameduck::tiny_http::ResponseBox + Send + Sync + 'static {
    move |request: &mut Request| {
        inside.send(()).unwrap();
        let go = match request.url() {
            "/a" => &go[0],
            "/b" => &go[1],
            _ => &go[2],
        };
        let _ = go.recv_timeout(WAIT);
        Response::from_string("ok").boxed()
    }
}

/// Six requests held in handlers at once, on a server of at most six workers that starts
/// with two: all six are in a handler together, so six workers run; then twelve more,
/// held too once the first six are let go: six are in a handler, and no seventh worker
/// starts. Every request is answered. Then, idle, four of them end within their 5 s (and a
/// bound); four requests held at once start workers again, on the slots and names of those
/// that ended.
#[test]
fn workers_start_as_requests_need_them_up_to_the_most() {
    let (inside_tx, inside) = crossbeam_channel::unbounded();
    let (go_a, held_a) = crossbeam_channel::unbounded::<()>();
    let (go_b, held_b) = crossbeam_channel::unbounded::<()>();
    let (go_c, held_c) = crossbeam_channel::unbounded::<()>();
    let s = Running::start(
        |b| b.workers(6),
        holding(inside_tx, [held_a, held_b, held_c]),
    );
    #[cfg(target_os = "linux")]
    {
        // Named once they run: on a busy machine a worker may still wait for its first slice.
        let by = Instant::now() + WAIT;
        while workers() < 2 && Instant::now() < by {
            std::thread::yield_now();
        }
        assert_eq!(workers(), 2, "started with the server");
    }

    let send = |n: usize, path: &str| -> Vec<Conn> {
        (0..n)
            .map(|_| {
                let mut conn = Conn::open(s.addr).unwrap();
                conn.send("GET", path, &[], b"").unwrap();
                conn
            })
            .collect()
    };
    let first = send(6, "/a");
    for i in 0..6 {
        inside
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {i} of 6 requests reached a handler"));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(workers(), 6);

    let more = send(12, "/b");
    drop(go_a);
    for mut conn in first {
        assert_eq!(conn.read_response(false).unwrap().status, 200);
    }
    for i in 0..6 {
        inside
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {i} of the next 6 reached a handler"));
    }
    #[cfg(target_os = "linux")]
    assert_eq!(workers(), 6, "no more than the most");
    drop(go_b);
    for mut conn in more {
        assert_eq!(conn.read_response(false).unwrap().status, 200);
    }
    // The other six of the twelve said they were in, too.
    while inside.try_recv().is_ok() {}

    #[cfg(target_os = "linux")]
    {
        let by = Instant::now() + Duration::from_secs(5) + WAIT;
        while workers() > 2 && Instant::now() < by {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(workers(), 2, "the idle ones retired");
    }
    let again = send(4, "/c");
    for i in 0..4 {
        inside.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!("only {i} of 4 requests reached a handler after the retirement")
        });
    }
    drop(go_c);
    for mut conn in again {
        assert_eq!(conn.read_response(false).unwrap().status, 200);
    }
    let report = s.shut_down();
    #[cfg(target_os = "linux")]
    {
        assert_eq!(workers(), 0, "every worker joined");
        // Four at once, and the last to take one started one more: 4 or 5 workers, each on a
        // slot of its own (the two left may be any two).
        let names = report.workers().finished();
        let mut distinct = names.to_vec();
        distinct.dedup();
        assert_eq!(distinct, names, "a name twice: {:?}", report.workers());
        assert!((4..=6).contains(&names.len()), "{:?}", report.workers());
        assert!(report.workers().running().is_empty() && report.workers().panicked().is_empty());
    }
    #[cfg(not(target_os = "linux"))]
    let _ = report;
}
