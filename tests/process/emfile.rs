//! When the process runs out of file descriptors, tiny_http's accept loop ends for good.
//! lameduck notices, answers the connections that meanwhile wait in the backlog (503, or a
//! close), and accepts again once descriptors are free. The server is the seed program
//! (`examples/hello`) as a child under `ulimit -n 64`, driven there by held connections.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(target_os = "linux")]
    return linux::trials();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use crate::support::http::Conn;
    use crate::support::{example, Proc, BOUND};

    pub fn trials() -> Vec<libtest_mimic::Trial> {
        trials![out_of_descriptors_the_server_sheds_then_accepts_again,]
    }

    /// What a new connection got while the server was out of descriptors.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Served,
        Unavailable,
        Closed,
        LeftHanging,
    }

    fn try_one(addr: std::net::SocketAddr, held: &mut Vec<Conn>) -> Outcome {
        let Ok(mut conn) = Conn::open_with_timeout(addr, Duration::from_secs(3)) else {
            return Outcome::Closed;
        };
        match conn.request("GET", "/") {
            Ok(r) if r.status == 200 => {
                held.push(conn);
                Outcome::Served
            }
            Ok(r) if r.status == 503 => Outcome::Unavailable,
            Ok(r) => panic!("unexpected status {}", r.status),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Outcome::LeftHanging,
            Err(_) => Outcome::Closed,
        }
    }

    fn out_of_descriptors_the_server_sheds_then_accepts_again() {
        let hello = example("hello");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
            .arg(hello.get_program())
            .args(["--addr", "127.0.0.1:0", "--delay-ms", "0", "--workers", "4"])
            .env("RUST_LOG", "info,lameduck=debug,tiny_http=off");
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line("listening on http://", BOUND);
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();

        // Hold keep-alive connections (two descriptors each in tiny_http) until the server
        // can take no more: then new ones are answered 503 or closed, never left waiting.
        let mut held = Vec::new();
        let mut turned_away = 0;
        let start = Instant::now();
        while turned_away < 5 {
            assert!(start.elapsed() < BOUND, "never ran out of descriptors");
            match try_one(addr, &mut held) {
                Outcome::Served => {}
                Outcome::LeftHanging => panic!(
                    "connection {} waited 3 s without an answer:\n{}",
                    held.len() + turned_away,
                    proc.output()
                ),
                other => {
                    eprintln!("connection {}: {other:?}", held.len() + turned_away);
                    turned_away += 1;
                }
            }
        }
        proc.wait_line("accept loop ended", BOUND);
        eprintln!("{} connections held when descriptors ran out", held.len());

        // Free the descriptors: the server accepts again.
        held.clear();
        let freed = Instant::now();
        let mut served = None;
        while served.is_none() {
            assert!(
                freed.elapsed() < BOUND,
                "did not accept again:\n{}",
                proc.output()
            );
            let mut unused = Vec::new();
            if try_one(addr, &mut unused) == Outcome::Served {
                served = Some(freed.elapsed());
            }
        }
        proc.wait_line("accepting again", BOUND);
        eprintln!(
            "served again {:.1?} after the descriptors were freed",
            served.unwrap()
        );

        proc.signal("INT");
        proc.wait_line("graceful shutdown finished.", BOUND);
        assert_eq!(proc.wait_exit(BOUND).code(), Some(0), "{}", proc.output());
    }
}
