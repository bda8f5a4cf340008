//! After a programmatic shutdown and the `Server` dropped, no lameduck thread is left but the
//! one still inside a handler, which the report names. Thread names are read from
//! /proc/self/task (Linux); this file is alone in its test binary so that no other test's
//! threads are counted.

#[path = "support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
#[test]
fn only_the_straggler_outlives_the_server() {
    use std::time::Duration;

    use support::http::Conn;

    use lameduck::tiny_http::{Request, Response};
    use lameduck::{Error, Server};

    /// Names (as the kernel keeps them: 15 bytes) of this process's lameduck threads.
    fn lameduck_threads() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| name.starts_with("lameduck-"))
            .collect();
        names.sort();
        names
    }

    assert!(lameduck_threads().is_empty());
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let server = Server::bind("127.0.0.1:0")
        .workers(4)
        .deadline(Duration::from_millis(200))
        .build(move |request: &mut Request| {
            if request.url() == "/stuck" {
                started_tx.send(()).unwrap();
                let _ = stuck.recv();
            }
            Response::from_string("ok").boxed()
        })
        .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let client = std::thread::spawn(move || Conn::open(addr).unwrap().request("GET", "/stuck"));
    let runner = std::thread::spawn(move || server.run());
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    // A thread names itself once it runs: on a busy machine a worker can still be waiting
    // for its first time slice while another already serves.
    let workers = || {
        let mut running = lameduck_threads();
        running.retain(|n| n.starts_with("lameduck-worker"));
        running
    };
    let named_by = std::time::Instant::now() + Duration::from_secs(10);
    // Two workers are started with the server; one request leaves one waiting, or, if the
    // second had not reached tiny_http's queue yet, starts a third.
    while workers().len() < 2 && std::time::Instant::now() < named_by {
        std::thread::yield_now();
    }
    assert!((2..=3).contains(&workers().len()), "{:?}", workers());

    handle.shutdown();
    let stopped = match runner.join().unwrap() {
        Err(Error::DeadlineExceeded(stopped)) => stopped,
        other => panic!("expected the deadline to cut /stuck: {other:?}"),
    };
    assert_eq!(stopped.report().stragglers()[0].url(), "/stuck");
    drop(stopped);

    // The kernel truncates names to 15 bytes: "lameduck-worker-1" shows as "lameduck-worker".
    assert_eq!(lameduck_threads(), ["lameduck-worker"]);

    // Let the straggler finish: then none is left at all.
    drop(release);
    let response = client.join().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert!(response.closes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lameduck_threads().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            lameduck_threads()
        );
        std::thread::yield_now();
    }
}
