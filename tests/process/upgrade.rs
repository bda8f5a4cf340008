//! Upgrade in place, with real signals to real processes: `examples/hello` upgraded on
//! SIGUSR2, ten times in a row, under load; and an upgrade whose new process fails.
//!
//! Linux (a subreaper, `reaper.py`, sees how every old process exits: each one's child, the
//! new process, outlives it); the native build even when the others run under wine.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(target_os = "linux")]
    return linux::trials();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use std::os::unix::fs::PermissionsExt;

    use crate::support::http::{get, Conn};
    use crate::support::{native_example, scratch_dir, until, Proc, BOUND};

    pub fn trials() -> Vec<libtest_mimic::Trial> {
        trials![
            ten_upgrades_under_load_refuse_nothing_lose_nothing_and_every_old_process_exits_0,
            a_new_process_that_fails_leaves_the_old_one_serving,
            a_keep_alive_client_silent_past_the_idle_linger_is_served_by_the_old_process,
        ]
    }

    /// hello, started from `path` with `args` under the reaper; its address once it
    /// listens.
    fn reaped(path: &std::ffi::OsStr, args: &[&str]) -> (Proc, SocketAddr) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/process/reaper.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(path)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,tiny_http=off");
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("listening on http://", BOUND);
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (proc, addr)
    }

    /// The pid `reaper.py` started.
    fn first_pid(proc: &mut Proc) -> u32 {
        let line = proc.wait_line("reaper: started ", BOUND);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[derive(Default)]
    struct Tally {
        answered: AtomicU64,
        refused: AtomicU64,
        lost: AtomicU64,
        /// Responses other than 200, the first of them kept.
        not_ok: AtomicU64,
        first_not_ok: std::sync::Mutex<Option<String>>,
        stop: AtomicBool,
    }

    /// A keep-alive client (`reuse`) or one that connects anew per request: counts answers,
    /// refused connects and requests sent that got no whole response, until told to stop.
    fn client(addr: SocketAddr, tally: &Tally, reuse: bool) {
        while !tally.stop.load(Ordering::Relaxed) {
            let Ok(mut conn) = Conn::open(addr) else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mut last = Instant::now();
            while !tally.stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let gap = sent - last;
                if conn.send("GET", "/", &[], b"").is_err() {
                    break; // not written: nothing to lose
                }
                match conn.read_response(false) {
                    Ok(response) => {
                        last = Instant::now();
                        if response.status != 200 {
                            // Counted, and asserted on with the servers' logs at the end.
                            tally.not_ok.fetch_add(1, Ordering::Relaxed);
                            let mut first = tally.first_not_ok.lock().unwrap();
                            first.get_or_insert_with(|| {
                                format!(
                                    "{response:?}, sent {gap:?} after the last response, \
                                     answered {:?} later",
                                    last - sent
                                )
                            });
                        }
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                        if response.closes() || !reuse {
                            break;
                        }
                    }
                    Err(e) => {
                        // How long the client took to send it shows whether it was slow.
                        eprintln!(
                            "lost: {e}, sent {gap:?} after the last response, {:?} before",
                            sent.elapsed()
                        );
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    /// The `n`-th (from 1) line holding `needle`, once there are that many.
    fn nth_line(proc: &mut Proc, needle: &str, n: usize) -> String {
        proc.wait_lines(needle, n, BOUND);
        proc.output()
            .lines()
            .filter(|line| line.contains(needle))
            .nth(n - 1)
            .unwrap()
            .to_owned()
    }

    /// 32 keep-alive clients and one that connects anew per request, while hello is
    /// upgraded ten times in a row by SIGUSR2, each time once the clients have had 200
    /// answers more: no connect refused, no request lost, and every old process exits 0
    /// once its drain is over. Then SIGTERM stops the last one, which exits 0 too.
    fn ten_upgrades_under_load_refuse_nothing_lose_nothing_and_every_old_process_exits_0() {
        let hello = native_example("hello");
        let args = ["--delay-ms", "1", "--workers", "32"];
        let (mut proc, addr) = reaped(hello.get_program(), &args);
        let mut pid = first_pid(&mut proc);
        let tally = Arc::new(Tally::default());
        let clients: Vec<_> = (0..33)
            .map(|i| {
                let tally = Arc::clone(&tally);
                thread::spawn(move || client(addr, &tally, i < 32))
            })
            .collect();
        for n in 1..=10 {
            let answered = tally.answered.load(Ordering::Relaxed);
            until("200 answers more", || {
                tally.answered.load(Ordering::Relaxed) >= answered + 200
            });
            proc.signal_pid(pid, "USR2");
            let line = nth_line(&mut proc, "is ready after", n);
            let new: u32 = line
                .split("upgrade: pid ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("no pid in {line:?}"));
            let exit = proc.wait_line(&format!("reaper: exit {pid} "), BOUND);
            assert!(
                exit.ends_with(" 0"),
                "old process {pid}: {exit}\n{}",
                proc.output()
            );
            pid = new;
        }
        let answered = tally.answered.load(Ordering::Relaxed);
        until("200 answers more", || {
            tally.answered.load(Ordering::Relaxed) >= answered + 200
        });
        tally.stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        proc.signal_pid(pid, "TERM");
        let exit = proc.wait_line(&format!("reaper: exit {pid} "), BOUND);
        assert!(exit.ends_with(" 0"), "last process {pid}: {exit}");
        let (answered, refused, lost) = (
            tally.answered.load(Ordering::Relaxed),
            tally.refused.load(Ordering::Relaxed),
            tally.lost.load(Ordering::Relaxed),
        );
        eprintln!("10 upgrades: answered {answered}, refused {refused}, lost {lost}");
        let not_ok = tally.not_ok.load(Ordering::Relaxed);
        assert_eq!(
            not_ok,
            0,
            "responses not 200, the first: {:?}\n{}",
            tally.first_not_ok.lock().unwrap(),
            proc.output()
        );
        assert_eq!(refused, 0, "connects refused\n{}", proc.output());
        assert_eq!(lost, 0, "requests lost\n{}", proc.output());
        assert!(proc.wait_exit(BOUND).success(), "{}", proc.output());
    }

    /// A broken binary installed over the running one: the new process exits at once with
    /// code 3, so the upgrade fails, the old process says why and serves on; the good
    /// binary installed again, a second SIGUSR2 upgrades.
    fn a_new_process_that_fails_leaves_the_old_one_serving() {
        let dir = scratch_dir("upgrade-broken");
        let installed = dir.join("hello");
        let good = native_example("hello").get_program().to_owned();
        std::fs::copy(&good, &installed).unwrap();
        let (mut proc, addr) = reaped(installed.as_os_str(), &["--delay-ms", "0"]);
        let pid = first_pid(&mut proc);

        // Installed as a package manager does: a new file renamed over the old path.
        let broken = dir.join("hello.new");
        std::fs::write(&broken, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&broken, &installed).unwrap();
        proc.signal_pid(pid, "USR2");
        let line = proc.wait_line("upgrade failed", BOUND);
        assert!(
            line.contains("exited before it was ready: exit status: 3")
                && line.ends_with("serving on"),
            "{line}"
        );
        assert_eq!(get(addr, "/").unwrap().text(), "Hello World");

        std::fs::copy(&good, &broken).unwrap();
        std::fs::rename(&broken, &installed).unwrap();
        proc.signal_pid(pid, "USR2");
        proc.wait_line("is ready after", BOUND);
        proc.wait_line(&format!("reaper: exit {pid} 0"), BOUND);
        assert_eq!(get(addr, "/").unwrap().text(), "Hello World");
    }

    /// A keep-alive client silent for 300 ms after the fire of an upgrade (three idle
    /// lingers, a client starved on a busy machine): the old process, which has no reason to
    /// hurry, still serves its next request, with `Connection: close`, then exits 0.
    fn a_keep_alive_client_silent_past_the_idle_linger_is_served_by_the_old_process() {
        let hello = native_example("hello");
        let (mut proc, addr) = reaped(hello.get_program(), &["--delay-ms", "0"]);
        let pid = first_pid(&mut proc);
        let mut conn = Conn::open(addr).unwrap();
        conn.send("GET", "/", &[], b"").unwrap();
        let first = conn.read_response(false).unwrap();
        assert!(first.status == 200 && !first.closes(), "{first:?}");

        proc.signal_pid(pid, "USR2");
        proc.wait_line("shutdown (upgrade: pid ", BOUND);
        // Not a synchronisation: the client's silence is what is tested.
        thread::sleep(Duration::from_millis(300));
        conn.send("GET", "/", &[], b"").unwrap();
        let late = conn.read_response(false).unwrap();
        assert!(
            late.status == 200 && late.closes(),
            "{late:?}\n{}",
            proc.output()
        );
        let exit = proc.wait_line(&format!("reaper: exit {pid} "), BOUND);
        assert!(exit.ends_with(" 0"), "{exit}\n{}", proc.output());
        assert_eq!(get(addr, "/").unwrap().text(), "Hello World");
    }
}
