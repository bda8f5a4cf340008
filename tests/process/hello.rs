//! The seed program, `examples/hello`, as a real child process stopped by real signals.
//!
//! `.ci/run` runs these tests a second time against the Windows build under wine (see
//! `support::example`), where SIGINT sent to the wine process arrives as CTRL_C_EVENT; there
//! only SIGINT is sent, Windows having no SIGTERM.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(unix)]
    return unix::trials();
    #[cfg(not(unix))]
    Vec::new()
}

#[cfg(unix)]
mod unix {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::support::http::{connect_refused, Conn};
    use crate::support::{serve_example, Proc, BOUND};

    pub fn trials() -> Vec<libtest_mimic::Trial> {
        trials![
            a_request_in_flight_completes_after_the_signal_and_new_connects_are_refused,
            the_deadline_exits_1_names_the_cut_request_and_answers_the_queue_503,
            a_second_signal_during_a_long_drain_exits_130_at_once,
            a_long_drain_says_where_it_is_once_a_second_then_reports,
            nothing_is_lost_under_keep_alive_load_with_a_0ms_handler,
            nothing_is_lost_under_keep_alive_load_with_a_50ms_handler,
        ]
    }

    const SEED_LINE: &str = "shutting down gracefully, press Ctrl+C again to force stop";

    /// The signals to test with: SIGINT and SIGTERM, or SIGINT only under wine.
    fn signals() -> &'static [&'static str] {
        if std::env::var_os("LAMEDUCK_EXAMPLE_RUNNER").is_some() {
            &["INT"]
        } else {
            &["INT", "TERM"]
        }
    }

    /// Whether nothing has come back on `conn` yet (without waiting).
    fn nothing_yet(conn: &Conn) -> bool {
        let stream = conn.stream();
        stream.set_nonblocking(true).unwrap();
        let nothing = matches!(
            stream.peek(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        stream.set_nonblocking(false).unwrap();
        nothing
    }

    /// Starts hello on a free port; returns it with its address, once it accepts.
    #[track_caller]
    fn hello(args: &[&str]) -> (Proc, SocketAddr) {
        serve_example("hello", args)
    }

    /// Stop accepting first: connects are refused while the request in flight is still in
    /// its handler (1 s long, the margin for a busy machine), which then completes.
    fn a_request_in_flight_completes_after_the_signal_and_new_connects_are_refused() {
        for signal in signals() {
            let (mut proc, addr) = hello(&["--delay-ms", "1000"]);
            let mut conn = Conn::open(addr).unwrap();
            conn.send("GET", "/", &[], b"").unwrap();
            proc.wait_line(": received", BOUND); // in the handler now

            let sent = Instant::now();
            proc.signal(signal);
            proc.wait_line(SEED_LINE, BOUND);
            while !connect_refused(addr) {
                assert!(
                    sent.elapsed() < BOUND,
                    "SIG{signal}: connects still accepted"
                );
                // Each check is a connection the accept loop must take: leave it gaps.
                thread::sleep(Duration::from_millis(2));
            }
            assert!(
                nothing_yet(&conn),
                "SIG{signal}: the request was answered before connects were refused"
            );

            let response = conn.read_response(false).unwrap();
            assert_eq!(response.status, 200, "SIG{signal}");
            assert_eq!(response.text(), "Hello World");
            assert!(response.closes(), "SIG{signal}: no Connection: close");
            let status = proc.wait_exit(BOUND);
            assert_eq!(status.code(), Some(0), "SIG{signal}:\n{}", proc.output());
            proc.wait_line("graceful shutdown finished.", BOUND);
        }
    }

    fn the_deadline_exits_1_names_the_cut_request_and_answers_the_queue_503() {
        let (mut proc, addr) = hello(&[
            "--delay-ms",
            "5000",
            "--timeout-ms",
            "300",
            "--workers",
            "1",
        ]);
        let mut cut = Conn::open(addr).unwrap();
        cut.send("GET", "/", &[], b"").unwrap();
        proc.wait_line(": received", BOUND);
        // The only worker is busy: this request waits in the queue (read well before the
        // deadline, which is the test's margin).
        let mut queued = Conn::open(addr).unwrap();
        queued.send("GET", "/queued", &[], b"").unwrap();

        proc.signal("INT");
        let status = proc.wait_exit(BOUND);
        assert_eq!(status.code(), Some(1), "{}", proc.output());
        // Its handler (5 s) had not finished: the deadline (300 ms) ended the wait.
        assert!(
            cut.read_response(false).is_err(),
            "the cut request was answered"
        );

        let port = cut.stream().local_addr().unwrap().port();
        proc.wait_line(
            &format!("cut by the deadline: GET / from 127.0.0.1:{port}"),
            BOUND,
        );
        let rejected = queued.read_response(false).unwrap();
        assert_eq!(rejected.status, 503);
        assert!(rejected.header("Retry-After").is_some());
        assert!(rejected.closes());
    }

    /// A drain longer than a second says at `info`, once a second, what it waits for: in
    /// words, and as key-values (env_logger's `kv`, on in the examples); then the report.
    fn a_long_drain_says_where_it_is_once_a_second_then_reports() {
        let (mut proc, addr) = hello(&["--delay-ms", "3000"]);
        let mut conn = Conn::open(addr).unwrap();
        conn.send("GET", "/", &[], b"").unwrap();
        proc.wait_line(": received", BOUND);

        proc.signal("INT");
        let line = proc.wait_line("draining: ", BOUND);
        assert!(
            line.contains("draining: 1 in handlers, 0 queued, "),
            "{line}"
        );
        assert!(line.contains("s left in_handlers=1 queued=0 "), "{line}");
        assert!(line.contains(" seconds_left="), "{line}");
        // The connection table is read on Linux; not under wine.
        let table =
            cfg!(target_os = "linux") && std::env::var_os("LAMEDUCK_EXAMPLE_RUNNER").is_none();
        if table {
            assert!(line.contains(" 1 connection open, "), "{line}");
            assert!(line.contains(" connections_open=1 "), "{line}");
        }

        let response = conn.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        let status = proc.wait_exit(BOUND);
        assert_eq!(status.code(), Some(0), "{}", proc.output());
        let output = proc.output();
        let progress: Vec<_> = output
            .lines()
            .filter(|l| l.contains("draining: "))
            .collect();
        // About 2.9 s of drain: a line at 1 s and at 2 s; one more or less on a slow machine.
        assert!((1..=3).contains(&progress.len()), "{output}");
        let report = output
            .find("served 0 before and 1 during the drain")
            .unwrap_or_else(|| panic!("no report:\n{output}"));
        let last = output.rfind("draining: ").unwrap();
        assert!(last < report, "a progress line after the report:\n{output}");
    }

    /// The second signal ends the process at once: the request in its handler (5 s) is not
    /// waited for.
    fn a_second_signal_during_a_long_drain_exits_130_at_once() {
        let (mut proc, addr) = hello(&["--delay-ms", "5000"]);
        let mut conn = Conn::open(addr).unwrap();
        conn.send("GET", "/", &[], b"").unwrap();
        proc.wait_line(": received", BOUND);
        proc.signal("INT");
        proc.wait_line(SEED_LINE, BOUND);
        proc.signal("INT");
        let status = proc.wait_exit(BOUND);
        assert_eq!(status.code(), Some(130), "{}", proc.output());
        proc.wait_line("forcing exit with code 130", BOUND);
        assert!(
            conn.read_response(false).is_err(),
            "the drain was waited for"
        );
    }

    /// What the clients saw.
    struct Tally {
        /// The event "`before` responses were answered", sent once.
        reached: crossbeam_channel::Sender<()>,
        before: u64,
        answered: AtomicU64,
        rejected_503: AtomicU64,
        refused: AtomicU64,
        lost: AtomicU64,
    }

    /// 32 keep-alive clients in a loop; the signal comes once `before` responses were served.
    /// Every request written must get a whole response (2xx or 503), or its connect refused.
    fn nothing_lost_under_load(delay_ms: &str, before: u64) {
        let (mut proc, addr) = hello(&["--delay-ms", delay_ms, "--workers", "32"]);
        let (reached, load_going) = crossbeam_channel::bounded(1);
        let tally = Arc::new(Tally {
            reached,
            before,
            answered: AtomicU64::new(0),
            rejected_503: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });
        let (done_tx, done) = crossbeam_channel::unbounded();
        let started = Instant::now();
        for _ in 0..32 {
            let tally = Arc::clone(&tally);
            let done_tx = done_tx.clone();
            thread::spawn(move || {
                client(addr, &tally, started + BOUND);
                done_tx.send(()).unwrap();
            });
        }
        load_going
            .recv_timeout(BOUND)
            .expect("load never got going");
        proc.signal("INT");
        for _ in 0..32 {
            done.recv_timeout(BOUND).expect("a client did not finish");
        }
        let status = proc.wait_exit(BOUND);
        let t = &*tally;
        let (answered, rejected, refused, lost) = (
            t.answered.load(Ordering::Relaxed),
            t.rejected_503.load(Ordering::Relaxed),
            t.refused.load(Ordering::Relaxed),
            t.lost.load(Ordering::Relaxed),
        );
        eprintln!(
            "delay {delay_ms} ms: answered {answered} (503: {rejected}), refused {refused}, lost {lost}"
        );
        assert_eq!(lost, 0, "requests lost\n{}", proc.output());
        assert_eq!(refused, 32, "every client ends on a refused connect");
        assert!(answered > before);
        assert_eq!(status.code(), Some(0), "{}", proc.output());
    }

    /// One looping keep-alive client: reconnects when told to close, stops when refused.
    fn client(addr: SocketAddr, tally: &Tally, give_up: Instant) {
        while Instant::now() < give_up {
            let Ok(mut conn) = Conn::open(addr) else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            loop {
                if conn.send("GET", "/", &[], b"").is_err() {
                    break; // not written: nothing to lose
                }
                match conn.read_response(false) {
                    Ok(response) => {
                        if tally.answered.fetch_add(1, Ordering::Relaxed) + 1 == tally.before {
                            let _ = tally.reached.send(());
                        }
                        match response.status {
                            200 => {}
                            503 => {
                                tally.rejected_503.fetch_add(1, Ordering::Relaxed);
                            }
                            other => panic!("unexpected status {other}"),
                        }
                        if response.closes() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("lost: {e}");
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    fn nothing_is_lost_under_keep_alive_load_with_a_0ms_handler() {
        nothing_lost_under_load("0", 2000);
    }

    fn nothing_is_lost_under_keep_alive_load_with_a_50ms_handler() {
        nothing_lost_under_load("50", 200);
    }
}
