//! What `examples/hello` tells systemd, read from a fake `NOTIFY_SOCKET`: a datagram socket
//! of the test's own, where systemd would listen (systemd itself cannot run in CI).
//!
//! Linux only (systemd's); the native build even when the others run under wine.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(target_os = "linux")]
    return linux::trials();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use crate::support::http::Conn;
    use crate::support::{native_example, Proc, BOUND};

    pub fn trials() -> Vec<libtest_mimic::Trial> {
        trials![
            hello_tells_systemd_ready_stopping_and_the_drain_with_its_timeout,
            an_upgrade_tells_systemd_the_new_main_pid_and_not_stopping,
        ]
    }

    /// The service manager's side: one datagram per notification, its lines.
    struct Manager {
        socket: UnixDatagram,
        path: PathBuf,
    }

    impl Manager {
        /// In the temporary folder, whose path is short: a socket's path has room for 107
        /// bytes, which a target folder can exceed.
        fn new() -> Manager {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("lameduck-notify-{}-{n}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path).unwrap();
            Manager { socket, path }
        }

        /// `NOTIFY_SOCKET` for the child.
        fn env(&self) -> &std::path::Path {
            &self.path
        }

        /// The next notification, as its `KEY=value` lines.
        #[track_caller]
        fn next(&self, proc: &mut Proc) -> Vec<String> {
            self.socket.set_read_timeout(Some(BOUND)).unwrap();
            let mut buf = [0u8; 4096];
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no notification: {e}\n{}", proc.output()));
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    /// `READY=1` once it serves; at SIGTERM `STOPPING=1` and `EXTEND_TIMEOUT_USEC` of the
    /// deadline (10 s) plus the margin (5 s); once a second of the drain the progress line
    /// as `STATUS=`, the timeout renewed by what is left; the report last; exit 0.
    fn hello_tells_systemd_ready_stopping_and_the_drain_with_its_timeout() {
        let manager = Manager::new();
        let mut cmd = native_example("hello");
        cmd.args(["--addr", "127.0.0.1:0", "--delay-ms", "1500"])
            .env("NOTIFY_SOCKET", manager.env())
            .env("RUST_LOG", "info,lameduck=trace,tiny_http=off");
        let mut proc = Proc::spawn(cmd);
        let ready = manager.next(&mut proc);
        assert_eq!(value(&ready, "READY"), Some("1"), "{ready:?}");
        let status = value(&ready, "STATUS").unwrap();
        let addr = status
            .strip_prefix("serving http://")
            .unwrap()
            .parse()
            .unwrap();

        let mut conn = Conn::open(addr).unwrap();
        conn.send("GET", "/", &[], b"").unwrap();
        proc.wait_line(": received", BOUND);
        let sent = Instant::now();
        proc.signal("TERM");
        let stopping = manager.next(&mut proc);
        assert_eq!(value(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
        assert_eq!(
            value(&stopping, "STATUS"),
            Some("shutting down (signal)"),
            "{stopping:?}"
        );
        let extend: u64 = value(&stopping, "EXTEND_TIMEOUT_USEC")
            .unwrap()
            .parse()
            .unwrap();
        let at_most = Duration::from_secs(15).as_micros() as u64;
        let at_least = at_most - sent.elapsed().as_micros() as u64;
        assert!(
            (at_least..=at_most).contains(&extend),
            "EXTEND_TIMEOUT_USEC={extend}"
        );

        let draining = manager.next(&mut proc);
        let status = value(&draining, "STATUS").unwrap();
        assert!(
            status.starts_with("draining: 1 in handlers, 0 queued, 1 connection open, "),
            "{draining:?}"
        );
        let extend: u64 = value(&draining, "EXTEND_TIMEOUT_USEC")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            extend < at_most - 500_000,
            "renewed with what is left: {extend}"
        );

        let response = conn.read_response(false).unwrap();
        assert_eq!(response.text(), "Hello World");
        let report = manager.next(&mut proc);
        let status = value(&report, "STATUS").unwrap();
        assert!(status.starts_with("shutdown (signal) took "), "{report:?}");
        let exit = proc.wait_exit(BOUND);
        assert!(exit.success(), "{exit:?}\n{}", proc.output());
    }

    /// SIGUSR2: the old process says `MAINPID=` the new one and no `STOPPING=1` (the
    /// service goes on), the new one `READY=1`, the old one's report last; SIGTERM to the
    /// new one then says `STOPPING=1`.
    fn an_upgrade_tells_systemd_the_new_main_pid_and_not_stopping() {
        let manager = Manager::new();
        let mut cmd = native_example("hello");
        cmd.args(["--addr", "127.0.0.1:0", "--delay-ms", "0"])
            .env("NOTIFY_SOCKET", manager.env())
            .env("RUST_LOG", "info,tiny_http=off");
        let mut proc = Proc::spawn(cmd);
        let ready = manager.next(&mut proc);
        assert_eq!(value(&ready, "READY"), Some("1"), "{ready:?}");

        proc.signal("USR2");
        let mut seen = Vec::new();
        let (mut new_ready, mut old_report) = (false, false);
        while !(new_ready && old_report) {
            let message = manager.next(&mut proc);
            new_ready |= value(&message, "READY") == Some("1");
            old_report |=
                value(&message, "STATUS").is_some_and(|s| s.starts_with("shutdown (upgrade: pid "));
            seen.push(message);
        }
        let main_pid: u32 = seen
            .iter()
            .find_map(|m| value(m, "MAINPID"))
            .unwrap_or_else(|| panic!("no MAINPID in {seen:?}"))
            .parse()
            .unwrap();
        assert_ne!(main_pid, proc.pid);
        assert!(
            seen.iter().all(|m| value(m, "STOPPING").is_none()),
            "{seen:?}"
        );

        proc.signal_pid(main_pid, "TERM");
        let stopping = manager.next(&mut proc);
        assert_eq!(value(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
        assert!(proc.wait_exit(BOUND).success(), "{}", proc.output());
    }
}
