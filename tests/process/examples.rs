//! The syllabus runs: each example, started as its README says, stopped with a real signal,
//! says what its header promises and exits 0.
//!
//! `.ci/run` runs these tests a second time against the Windows build under wine (see
//! `support::example`): SIGINT sent to the wine process arrives as CTRL_C_EVENT. So they send
//! SIGINT only, the one signal both platforms have.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(unix)]
    return unix::trials();
    #[cfg(not(unix))]
    Vec::new()
}

#[cfg(unix)]
mod unix {
    use std::time::Duration;

    use crate::support::http::{get, Conn};
    use crate::support::{
        example, native_example, scratch_dir, serve_example, serve_example_in, Proc, BOUND,
    };

    pub fn trials() -> Vec<libtest_mimic::Trial> {
        trials![
            example_01_flag_stops_between_rounds,
            example_02_broadcast_wakes_every_thread,
            example_03_timed_join_names_the_stuck_worker,
            example_04_server_routes_and_reports,
            example_05_cuts_the_slow_route_and_answers_the_queue_503,
            example_06_a_listening_handler_stops_early,
            example_07_readiness_flips_and_the_lame_duck_serves,
            example_08_a_second_signal_exits_130,
            example_09_upgrades_on_sigusr2_and_the_new_process_serves,
            example_09_upgrades_when_a_file_appears,
            example_10_archives_what_the_deadline_cut_and_11_replays_it,
        ]
    }

    /// SIGUSR2: a new process serves on the same address, the old one exits 0; SIGINT then
    /// stops the new one. The native build only: Windows has no SIGUSR2.
    fn example_09_upgrades_on_sigusr2_and_the_new_process_serves() {
        let mut cmd = native_example("09_upgrade");
        cmd.args(["--addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info,tiny_http=off");
        let mut p = Proc::spawn(cmd);
        let line = p.wait_line("listening on http://", BOUND);
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let old = p.pid;
        assert_eq!(
            get(addr, "/").unwrap().text(),
            format!("served by pid {old}\n")
        );
        p.signal("USR2");
        let line = p.wait_line(&format!("pid {old}: upgraded to pid "), BOUND);
        let new: u32 = line
            .rsplit("pid ")
            .next()
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            get(addr, "/").unwrap().text(),
            format!("served by pid {new}\n")
        );
        p.signal_pid(new, "INT");
        p.wait_line(&format!("pid {new}: stopped (signal), exiting"), BOUND);
        // Both output pipes close once both processes are gone; the old one is ours to reap.
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    /// A file asks for the upgrade: the way on Windows, and so the one run under wine too
    /// (where the socket goes to the new process through `WSADuplicateSocketW`). The new
    /// process answers on the same address; the old one drains, says so, and exits 0 (under
    /// wine the runner says with what code, and lets the new process run on:
    /// `LAMEDUCK_WINDOWS_WAIT_ALL`). The new one is ended by the group kill when the test
    /// ends (its pid is Windows' under wine).
    fn example_09_upgrades_when_a_file_appears() {
        let dir = scratch_dir("example-09");
        let mut cmd = example("09_upgrade");
        cmd.current_dir(&dir)
            .args(["--addr", "127.0.0.1:0", "--upgrade-file", "upgrade"])
            .env("RUST_LOG", "info,tiny_http=off")
            .env("LAMEDUCK_WINDOWS_WAIT_ALL", "1");
        let mut p = Proc::spawn(cmd);
        let line = p.wait_line("listening on http://", BOUND);
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let old = get(addr, "/").unwrap().text();
        let old = old.trim().rsplit(' ').next().unwrap().to_owned();
        std::fs::write(dir.join("upgrade"), b"").unwrap();
        let line = p.wait_line(&format!("pid {old}: upgraded to pid "), BOUND);
        let new = line
            .rsplit("pid ")
            .next()
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(
            get(addr, "/").unwrap().text(),
            format!("served by pid {new}\n")
        );
        assert!(!dir.join("upgrade").exists(), "the file is removed");
        let output = p.output();
        assert!(
            !output.contains("WARN") && !output.contains("ERROR"),
            "{output}"
        );
        if std::env::var_os("LAMEDUCK_EXAMPLE_RUNNER").is_some() {
            p.wait_line("the program exited with code 0;", BOUND);
            p.signal("TERM"); // the runner: it stops wine, and the new process with it
            p.wait_exit(BOUND);
        } else {
            p.signal_pid(new.parse().unwrap(), "INT");
            p.wait_line(&format!("pid {new}: stopped (signal), exiting"), BOUND);
            assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
        }
    }

    fn example_01_flag_stops_between_rounds() {
        let mut p = Proc::spawn(example("01_flag"));
        p.wait_line("press Ctrl+C to stop", BOUND);
        p.signal("INT");
        p.wait_line(
            "shutting down gracefully, press Ctrl+C again to force stop",
            BOUND,
        );
        p.wait_line("none cut short; cleaning up", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_02_broadcast_wakes_every_thread() {
        let mut p = Proc::spawn(example("02_broadcast"));
        p.wait_line("threads waiting", BOUND);
        p.signal("INT");
        for n in 1..=4 {
            p.wait_line(&format!("ticker-{n} woke"), BOUND);
        }
        p.wait_line("all 4 threads joined", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_03_timed_join_names_the_stuck_worker() {
        // A panicking worker that prints a backtrace can take seconds to symbolise it on a
        // busy machine, and would miss the example's 2 s join: no backtrace.
        let mut cmd = example("03_timed_join");
        cmd.env("RUST_BACKTRACE", "0");
        let mut p = Proc::spawn(cmd);
        p.wait_line("workers started", BOUND);
        p.signal("INT");
        p.wait_line(
            r#"finished: ["lameduck-worker-1", "lameduck-worker-2"]"#,
            BOUND,
        );
        p.wait_line(
            "lameduck-worker-3 panicked: lost its database connection",
            BOUND,
        );
        p.wait_line(
            r#"still running at the deadline: ["lameduck-worker-4"]"#,
            BOUND,
        );
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_04_server_routes_and_reports() {
        let (mut p, addr) = serve_example("04_server", &[]);
        let home = get(addr, "/").unwrap();
        assert_eq!(
            (home.status, home.text().as_str()),
            (200, "hello from lameduck\n")
        );
        assert_eq!(get(addr, "/count").unwrap().text(), "2\n");
        assert_eq!(get(addr, "/nope").unwrap().status, 404);
        p.signal("INT");
        p.wait_line("served 3 requests", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_05_cuts_the_slow_route_and_answers_the_queue_503() {
        let (mut p, addr) = serve_example("05_deadline", &[]);
        let mut slow = Conn::open(addr).unwrap();
        slow.send("GET", "/slow", &[], b"").unwrap();
        p.wait_line("/slow from", BOUND);
        let mut queued = Conn::open(addr).unwrap();
        queued.send("GET", "/", &[], b"").unwrap();
        p.signal("INT");
        let rejected = queued.read_response(false).unwrap();
        assert_eq!(rejected.status, 503);
        assert_eq!(rejected.header("Retry-After"), Some("5"));
        p.wait_line("cut by the deadline: GET /slow from 127.0.0.1:", BOUND);
        p.wait_line("answered 503 instead: 1", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(1), "{}", p.output());
    }

    fn example_06_a_listening_handler_stops_early() {
        let (mut p, addr) = serve_example("06_listening_handler", &[]);
        let mut work = Conn::open(addr).unwrap();
        work.send("GET", "/work", &[], b"").unwrap();
        p.wait_line("/work from", BOUND);
        p.signal("INT");
        let response = work.read_response(false).unwrap();
        assert!(
            response.text().starts_with("stopped early at step "),
            "{}",
            response.text()
        );
        assert!(response.closes());
        p.wait_line("drained in time", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_07_readiness_flips_and_the_lame_duck_serves() {
        let (mut p, addr) = serve_example("07_health", &["--lame-duck-ms", "500"]);
        assert_eq!(get(addr, "/readyz").unwrap().status, 200);
        p.signal("INT");
        p.wait_line("lame duck for 500ms", BOUND);
        assert_eq!(get(addr, "/readyz").unwrap().status, 503);
        assert_eq!(get(addr, "/livez").unwrap().status, 200);
        let served = get(addr, "/").unwrap();
        assert!(served.status == 200 && served.closes());
        // Logged just before the stop: connects are refused within moments.
        p.wait_line("stop accepting, drain", BOUND);
        let stop = std::time::Instant::now();
        while !crate::support::http::connect_refused(addr) {
            assert!(stop.elapsed() < BOUND, "still accepting");
            std::thread::sleep(Duration::from_millis(5)); // each check is a connection
        }
        p.wait_line("health checks answered", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(0), "{}", p.output());
    }

    fn example_08_a_second_signal_exits_130() {
        let (mut p, addr) = serve_example("08_force_exit", &[]);
        let mut slow = Conn::open(addr).unwrap();
        slow.send("GET", "/", &[], b"").unwrap();
        p.wait_line("GET / from", BOUND);
        p.signal("INT");
        p.wait_line("press Ctrl+C again to force stop", BOUND);
        p.signal("INT");
        p.wait_line("forcing exit with code 130", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(130), "{}", p.output());
    }

    fn example_10_archives_what_the_deadline_cut_and_11_replays_it() {
        // The examples run in a scratch folder and are given a relative path: the same for a
        // Windows program under wine.
        let dir = scratch_dir("archive");
        let (mut p, addr) = serve_example_in("10_archive", &["--archive", "retry"], Some(&dir));
        let mut slow = Conn::open(addr).unwrap();
        slow.send("POST", "/slow", &[], b"order=42").unwrap();
        p.wait_line("/slow: order=42", BOUND);
        let mut queued = Conn::open(addr).unwrap();
        queued
            .send("POST", "/pay", &["X-Order: 43"], b"order=43")
            .unwrap();
        p.signal("INT");
        assert_eq!(queued.read_response(false).unwrap().status, 503);
        p.wait_line("archived: POST /pay (rejected) in ", BOUND);
        p.wait_line("archived: POST /slow (cut) in ", BOUND);
        assert_eq!(p.wait_exit(BOUND).code(), Some(1), "{}", p.output());

        let archived = |why: &str| -> String {
            let mut found = std::fs::read_dir(dir.join("retry"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.to_string_lossy().ends_with(&format!("-{why}.http")));
            let file = found.next().expect(why);
            assert!(found.next().is_none(), "one {why} request only");
            String::from_utf8(std::fs::read(file).unwrap()).unwrap()
        };
        let pay = archived("rejected");
        assert!(pay.starts_with("POST /pay HTTP/1.1\r\n"), "{pay}");
        assert!(pay.contains("\r\nX-Order: 43\r\n"), "{pay}");
        assert!(
            pay.ends_with("\r\nContent-Length: 8\r\nConnection: close\r\n\r\norder=43"),
            "{pay}"
        );
        let cut = archived("cut");
        assert!(cut.starts_with("POST /slow HTTP/1.1\r\n"), "{cut}");
        assert!(
            cut.ends_with("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            "{cut}"
        );

        // A fresh server receives them again, and the queue empties.
        let (mut fresh, fresh_addr) = serve_example_in(
            "10_archive",
            &["--archive", "fresh", "--slow-ms", "0"],
            Some(&dir),
        );
        // The replay is only a client: the native build, beside the server under test.
        let mut replay = native_example("11_replay");
        replay.current_dir(&dir);
        replay.args(["--from", "retry", "--to", &fresh_addr.to_string()]);
        let mut replay = Proc::spawn(replay);
        replay.wait_line("POST /pay -> 200", BOUND);
        replay.wait_line("POST /slow -> 200", BOUND);
        replay.wait_line("replayed 2, 0 left in retry", BOUND);
        assert_eq!(
            replay.wait_exit(BOUND).code(),
            Some(0),
            "{}",
            replay.output()
        );
        fresh.wait_line("POST /pay: order=43", BOUND);
        fresh.signal("INT");
        assert_eq!(fresh.wait_exit(BOUND).code(), Some(0), "{}", fresh.output());
        assert_eq!(std::fs::read_dir(dir.join("retry")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
