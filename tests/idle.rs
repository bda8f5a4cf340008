//! 1 000 idle keep-alive connections hold 1 000 of tiny_http's threads, but do not stop a
//! new client from being served, and do not hold the shutdown: the drain does not wait for
//! them to close (they never would), it tells them to and reports them. The server is the
//! seed program (`examples/hello`) as a child process, stopped with a real SIGINT. How long
//! each step takes is measured by the benchmark (`cargo bench --bench shutdown -- --only
//! idle`), side by side with plain tiny_http.
//!
//! Both processes need more than 1 024 file descriptors (tiny_http takes two per
//! connection): if the soft limit is lower, the test runs itself again under a shell that
//! raises it (up to the hard limit, which needs no privilege).

#[path = "support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::time::Instant;

    use super::support::http::Conn;
    use super::support::{rerun, serve_example, Proc, BOUND};

    const NEEDED: u64 = 4096;

    fn fd_limit() -> u64 {
        let out = Command::new("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or(u64::MAX) // "unlimited"
    }

    #[test]
    fn a_thousand_idle_connections_slow_neither_new_clients_nor_the_shutdown() {
        if fd_limit() < NEEDED && std::env::var_os("LAMEDUCK_FD_RAISED").is_none() {
            let test = rerun(
                "linux::a_thousand_idle_connections_slow_neither_new_clients_nor_the_shutdown",
                &[("LAMEDUCK_FD_RAISED", "1")],
            );
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("ulimit -n {NEEDED} && exec \"$0\" \"$@\"")])
                .arg(test.get_program())
                .args(test.get_args());
            cmd.envs(test.get_envs().filter_map(|(k, v)| Some((k, v?))));
            let mut child = Proc::spawn(cmd);
            child.wait_line("test result: ok. 1 passed", BOUND);
            assert!(child.wait_exit(BOUND).success(), "{}", child.output());
            return;
        }
        assert!(fd_limit() >= NEEDED, "could not raise the descriptor limit");

        // A deadline that the drain would reach if it waited for the idle connections.
        let (mut hello, addr) =
            serve_example("hello", &["--delay-ms", "0", "--timeout-ms", "5000"]);
        let mut idle: Vec<Conn> = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let mut conn = Conn::open(addr).unwrap();
            assert_eq!(conn.request("GET", "/").unwrap().status, 200);
            idle.push(conn);
        }

        let start = Instant::now();
        let mut fresh = Conn::open(addr).unwrap();
        assert_eq!(fresh.request("GET", "/").unwrap().status, 200);
        let new_client = start.elapsed();
        drop(fresh);

        let sent = Instant::now();
        hello.signal("INT");
        let report = hello.wait_line("shutdown (signal) took", BOUND);
        let drained = Instant::now();
        let status = hello.wait_exit(BOUND);
        let (to_report, report_to_exit) = (drained - sent, drained.elapsed());
        eprintln!(
            "1000 idle connections: new client served in {new_client:.1?}; signal -> report \
             {to_report:.1?}; report -> exit {report_to_exit:.1?}"
        );
        // Exit code 0: drained before the deadline, which waiting for the idle connections
        // would have reached. They are named in the report, still open.
        let output = hello.output();
        let tail = |n| output.lines().rev().take(n).collect::<Vec<_>>().join("\n");
        assert_eq!(
            status.code(),
            Some(0),
            "last lines, newest first:\n{}",
            tail(60)
        );
        assert!(
            report.contains("1000 idle connections left open"),
            "{report}\nlast lines, newest first:\n{}",
            tail(60)
        );
        // Each is closed with the process: the end of the stream, and no response it did not
        // ask for.
        for conn in &mut idle {
            assert!(conn.read_response(false).is_err());
        }
    }
}
