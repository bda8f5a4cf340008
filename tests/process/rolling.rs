//! A rolling restart behind a real nginx is invisible to clients. nginx (Debian's
//! `nginx-light`) runs on loopback with a generated config and a prefix of its own, in front
//! of two lameduck servers (this test binary run again as each), keeping idle connections to
//! them (`keepalive 16`, HTTP/1.1 upstream). Under a steady load through nginx, half of it
//! POSTs (which nginx never retries once sent upstream), each server is sent SIGTERM in turn,
//! drains, and is started again; the clients see no failed request.
//!
//! `.ci/run` installs nginx-light, and there (`CI` set) a missing nginx fails the test. On a
//! machine without nginx and without `CI`, the test is reported `ignored` with the reason,
//! so that the README's `cargo test` passes on a fresh machine and says what it did not run.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(target_os = "linux")]
    return linux::trials();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// The child (`LAMEDUCK_CHILD=rolling:PORT`): one upstream server.
pub fn child(port: &str) -> ! {
    #[cfg(target_os = "linux")]
    linux::upstream(port);
    #[cfg(not(target_os = "linux"))]
    panic!("no rolling child here ({port})");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{SocketAddr, TcpListener};
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::support::http::Conn;
    use crate::support::{self, scratch_dir, Proc, BOUND};
    use lameduck::tiny_http::{Request, Response};
    use libtest_mimic::{Completion, Trial};

    /// Ignored, with the reason, where nginx is missing and `CI` is not set.
    pub fn trials() -> Vec<Trial> {
        vec![Trial::ignorable_test(
            crate::trial_name(
                module_path!(),
                "a_rolling_restart_behind_nginx_fails_no_request",
            ),
            || match nginx_binary() {
                Some(nginx) => {
                    a_rolling_restart_behind_nginx_fails_no_request(&nginx);
                    Ok(Completion::Completed)
                }
                None if std::env::var_os("CI").is_some() => Err(
                    "nginx is missing, and under CI this test must run (.ci/run installs \
                         nginx-light)"
                        .into(),
                ),
                None => Ok(Completion::ignored_with(
                    "nginx is not installed (apt-get install nginx-light)",
                )),
            },
        )]
    }

    /// The child: one upstream server on `port`, with a lame-duck delay, stopped by SIGTERM.
    pub fn upstream(port: &str) -> ! {
        env_logger::Builder::new()
            .format_timestamp_millis()
            .filter_level(log::LevelFilter::Info)
            .filter_module("lameduck::server::worker", log::LevelFilter::Trace)
            .filter_module("tiny_http", log::LevelFilter::Off)
            .init();
        let (trigger, _) = lameduck::trigger();
        lameduck::signal::install(&trigger).unwrap();
        let port: u16 = port.parse().unwrap();
        let server = lameduck::Server::bind(("127.0.0.1", port))
            .trigger(trigger)
            .workers(8)
            .readiness("/readyz")
            .lame_duck(Duration::from_millis(300))
            .deadline(Duration::from_secs(5))
            .build(move |request: &mut Request| {
                if let Err(e) = lameduck::read_body(request, 1024) {
                    return Response::from_string(format!("body: {e}"))
                        .with_status_code(400)
                        .boxed();
                }
                // Streamed in three chunks over ~15 ms: a response cut half-way is a failure
                // nginx cannot retry (it has already passed the head on).
                let body = Trickle {
                    parts: vec!["hello ".into(), "from ".into(), port.to_string()],
                };
                Response::new(200.into(), vec![], body, None, None).boxed()
            })
            .unwrap();
        println!("listening on http://{}", server.local_addr());
        let report = server.run().unwrap();
        println!("report: {report}");
        std::process::exit(0);
    }

    /// A body that comes in parts, a few milliseconds apart.
    struct Trickle {
        parts: Vec<String>,
    }

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.parts.is_empty() {
                return Ok(0);
            }
            thread::sleep(Duration::from_millis(5));
            let part = self.parts.remove(0);
            let n = part.len().min(buf.len());
            buf[..n].copy_from_slice(&part.as_bytes()[..n]);
            if n < part.len() {
                self.parts.insert(0, part[n..].to_owned());
            }
            Ok(n)
        }
    }

    /// A port free now, below the kernel's ephemeral range. An upstream restarts on its own
    /// port, and while it restarts a port of the ephemeral range can be taken by any outgoing
    /// connection on the machine (seen under load: the restart failed with `AddrInUse`).
    fn free_port() -> u16 {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let (low, span) = (10_000u16, ephemeral.saturating_sub(10_000).max(1));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let start = (std::process::id() ^ nanos) % u32::from(span);
        (0..u32::from(span))
            .map(|i| low + ((start + i) % u32::from(span)) as u16)
            .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
            .expect("a free port below the ephemeral range")
    }

    #[track_caller]
    fn start_upstream(port: u16) -> Proc {
        let port_text = port.to_string();
        let mut proc = Proc::spawn(support::child(&format!("rolling:{port_text}"), &[]));
        proc.wait_line("listening on http://", BOUND);
        proc
    }

    fn nginx_binary() -> Option<String> {
        ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .find(|bin| {
                Command::new(bin)
                    .arg("-v")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(str::to_owned)
    }

    /// nginx's config, as the README recommends it. `proxy_connect_timeout` is above one
    /// second: a connect that reaches an upstream in the milliseconds its socket is sealed
    /// (Linux; see the crate doc, "Stop accepting") is retried by the kernel after a second,
    /// and then reaches the restarted instance or is refused. With a timeout of exactly one
    /// second nginx gives up on it at that very moment and marks the address failed.
    fn nginx_config(dir: &std::path::Path, listen: u16, upstreams: [u16; 2]) -> String {
        let d = dir.display();
        format!(
            "daemon off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
        server 127.0.0.1:{a} max_fails=1 fail_timeout=1s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout=1s;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 5s;
        }}
    }}
}}
",
            a = upstreams[0],
            b = upstreams[1],
        )
    }

    /// Sets its flag when dropped.
    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[derive(Default)]
    struct Tally {
        ok: AtomicU64,
        failed: AtomicU64,
    }

    /// A client looping through nginx until `stop`; every outcome counted.
    fn client(addr: SocketAddr, tally: &Tally, stop: &AtomicBool) {
        let mut conn: Option<Conn> = None;
        while !stop.load(Ordering::Relaxed) {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::open_with_timeout(addr, Duration::from_secs(10)) {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        eprintln!("connect to nginx failed: {e}");
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            // Every other request a POST, which nginx never retries once sent upstream.
            let post = tally.ok.load(Ordering::Relaxed) % 2 == 0;
            let sent = if post {
                c.send("POST", "/", &[], b"order=42")
            } else {
                c.send("GET", "/", &[], b"")
            };
            match sent.and_then(|()| c.read_response(false)) {
                Ok(r) if r.status == 200 && r.text().starts_with("hello from ") => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    if r.closes() {
                        conn = None;
                    }
                }
                Ok(r) => {
                    eprintln!("failed: status {} {}", r.status, r.text());
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
        }
    }

    /// An upstream's output without its per-request lines.
    fn story(upstream: &mut Proc) -> String {
        let output = upstream.output();
        let lines: Vec<_> = output
            .lines()
            .filter(|l| !(l.contains(": 200 in ") || l.ends_with(": received")))
            .collect();
        lines.join("\n")
    }

    fn a_rolling_restart_behind_nginx_fails_no_request(nginx: &str) {
        let ports = [free_port(), free_port()];
        let mut upstreams = [start_upstream(ports[0]), start_upstream(ports[1])];

        let dir = scratch_dir("rolling");
        let listen = free_port();
        std::fs::write(dir.join("nginx.conf"), nginx_config(&dir, listen, ports)).unwrap();
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let mut nginx = Proc::spawn(cmd);
        let front: SocketAddr = ([127, 0, 0, 1], listen).into();
        let started = Instant::now();
        while Conn::open(front).is_err() {
            assert!(started.elapsed() < BOUND, "nginx did not start");
            thread::sleep(Duration::from_millis(20)); // nginx prints no readiness line
        }

        // What each stopped upstream said, to explain a failure.
        let mut stopped = Vec::new();
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        // The clients stop when the test ends, however it ends.
        let _stop_clients = StopOnDrop(Arc::clone(&stop));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
                thread::spawn(move || client(front, &tally, &stop))
            })
            .collect();

        for (i, port) in ports.into_iter().enumerate() {
            // Both instances serve before either is restarted.
            upstreams[i].wait_line("GET / from", BOUND);
            upstreams[(i + 1) % 2].wait_line("GET / from", BOUND);
            let before = tally.ok.load(Ordering::Relaxed);
            upstreams[i].signal("TERM");
            upstreams[i].wait_line("report: shutdown (signal)", BOUND);
            let status = upstreams[i].wait_exit(BOUND);
            assert_eq!(status.code(), Some(0), "{}", upstreams[i].output());
            stopped.push(story(&mut upstreams[i]));
            upstreams[i] = start_upstream(port);
            // nginx takes the address out for `fail_timeout` (counted in whole seconds: one
            // to two) after the connect it saw refused between the old instance's close and
            // the new one's bind; then it sends it its share again. A few requests can reach
            // the new instance before that, on connects that were waiting out a second in
            // the old socket's sealed milliseconds: wait for more than those.
            upstreams[i].wait_lines(": received", 100, BOUND);
            eprintln!(
                "instance {port} restarted; {} requests served through nginx meanwhile",
                tally.ok.load(Ordering::Relaxed) - before
            );
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let (ok, failed) = (
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        eprintln!("rolling restart behind nginx: {ok} requests ok, {failed} failed");
        if failed > 0 {
            stopped.extend(upstreams.iter_mut().map(story));
            let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            let errors: Vec<_> = errors
                .lines()
                .filter(|l| !l.contains("no live upstreams"))
                .collect();
            panic!(
                "{failed} requests failed\n-- upstreams, in the order they stopped:\n{}\n\
                 -- nginx's errors (without \"no live upstreams\"):\n{}",
                stopped.join("\n--\n"),
                errors.join("\n")
            );
        }
        assert!(ok > 100, "too little load to tell: {ok}");

        // An HTTP/2 prior-knowledge preface deadlocks a thread of tiny_http's for good when
        // it reaches lameduck directly. Through nginx, which speaks HTTP/1.1 upstream, it
        // reaches no upstream: nginx answers it itself, and the upstreams' drains find no
        // stuck connection.
        for _ in 0..20 {
            let mut conn = Conn::open(front).unwrap();
            conn.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
            let answer = conn.read_response(false).unwrap();
            assert_eq!(answer.status, 400, "nginx answers the preface");
        }
        for upstream in &mut upstreams {
            upstream.signal("TERM");
            let report = upstream.wait_line("report: shutdown (signal)", BOUND);
            assert_eq!(
                upstream.wait_exit(BOUND).code(),
                Some(0),
                "{}",
                upstream.output()
            );
            assert!(!upstream.output().contains("stuck:"), "{report}");
        }

        // A graceful stop: the master reaps its workers before it exits. (If the test fails
        // before this, dropping `nginx` kills its whole process group.)
        nginx.signal("QUIT");
        assert!(nginx.wait_exit(BOUND).success(), "{}", nginx.output());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
