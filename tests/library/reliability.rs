//! Serving reliably before the shutdown: bursts of connections, bad input, faulty handlers.
//! Each test bounds its waits; figures printed with `--nocapture` are quoted in the README.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::{get, Conn};
use crate::support::server::Running;
use crate::support::{quiet_panics, BOUND};
use lameduck::tiny_http::{Header, Request, Response, ResponseBox};
use lameduck::Error;

fn hello(_: &mut Request) -> ResponseBox {
    Response::from_string("hello").boxed()
}

#[test]
fn a_malformed_request_line_gets_400_and_the_server_carries_on() {
    let s = Running::start(|b| b, hello);
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.set_read_timeout(Some(BOUND)).unwrap();
    raw.write_all(b"NOT AN HTTP REQUEST LINE\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap(); // tiny_http closes after a 400
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    s.shut_down();
}

#[test]
fn invalid_utf8_in_the_path_closes_the_connection_and_the_server_carries_on() {
    let s = Running::start(|b| b, hello);
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.set_read_timeout(Some(BOUND)).unwrap();
    raw.write_all(b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    s.shut_down();
}

/// A body shorter than its Content-Length reaches the handler as an error.
#[test]
fn a_short_body_is_an_error_in_the_handler_not_a_short_body() {
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let s = Running::start(
        |b| b,
        move |request: &mut Request| -> ResponseBox {
            let result = lameduck::read_body(request, 1 << 20);
            let _ = seen_tx.send(result.as_ref().map(Vec::len).map_err(|e| e.kind()));
            match result {
                Ok(body) => Response::from_string(format!("{} bytes", body.len())).boxed(),
                Err(e) => Response::from_string(e.to_string())
                    .with_status_code(400)
                    .boxed(),
            }
        },
    );
    // A whole body first, for contrast.
    let mut whole = Conn::open(s.addr).unwrap();
    whole.send("POST", "/", &[], &[b'x'; 5000]).unwrap();
    assert_eq!(whole.read_response(false).unwrap().text(), "5000 bytes");
    assert_eq!(seen.recv_timeout(BOUND).unwrap(), Ok(5000));

    // Then a client that promises 5000 bytes, sends 100 and stops sending.
    let mut short = Conn::open(s.addr).unwrap();
    let stream = short.stream().try_clone().unwrap();
    let mut writer = &stream;
    writer
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    writer.write_all(&[b'x'; 100]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        seen.recv_timeout(BOUND).unwrap(),
        Err(std::io::ErrorKind::UnexpectedEof)
    );
    let response = short.read_response(false).unwrap();
    assert_eq!(response.status, 400);
    assert!(
        response.text().contains("after 100 of 5000 bytes"),
        "{}",
        response.text()
    );
    s.shut_down();
}

/// A client that stops reading a large response holds its worker only until the write
/// timeout.
#[test]
fn a_client_that_stops_reading_frees_its_worker_after_the_write_timeout() {
    let write_timeout = Duration::from_millis(300);
    let (started_tx, started) = crossbeam_channel::unbounded();
    let s = Running::start(
        |b| b.workers(1).write_timeout(write_timeout),
        move |request: &mut Request| -> ResponseBox {
            if request.url() == "/big" {
                started_tx.send(()).unwrap();
                Response::from_data(vec![b'x'; 64 << 20]).boxed()
            } else {
                Response::from_string("small").boxed()
            }
        },
    );
    let mut stalled = Conn::open(s.addr).unwrap();
    stalled.send("GET", "/big", &[], b"").unwrap(); // and never read
    started.recv_timeout(BOUND).unwrap();
    let start = Instant::now();
    // The only worker is busy writing /big until the write times out; then it serves this.
    let next = get(s.addr, "/small").unwrap();
    let took = start.elapsed();
    assert_eq!(next.text(), "small");
    eprintln!("stalled reader: next request served after {took:.1?}");
    // Freed, not held for good (the client never reads 64 MiB). How soon is a timing, not
    // asserted here: measured 1.2 times the timeout on Linux, 2 times under wine (where a
    // send first completes after 0.7 times, then the next times out); 3.3 times without the
    // rule that a write after a failed one fails at once, which
    // `tinyhttp::response::tests::after_a_failed_write_every_write_fails_at_once` asserts.
    // A bound of 2.5 times failed once beside two busy loops.
    assert!(took < write_timeout * 10, "worker held for {took:?}");
    s.shut_down();
    drop(stalled);
}

/// A client that sends its head one byte at a time holds a tiny_http connection thread,
/// never a worker. At shutdown its request is on its way: where the drain sees connections
/// (Linux) it waits for it, as Go's `Shutdown` waits for an active connection, up to the
/// deadline and no longer, and the report names it; elsewhere the drain does not see it.
#[test]
fn a_slow_sender_holds_no_worker_and_the_shutdown_only_to_the_deadline() {
    let deadline = Duration::from_millis(500);
    let s = Running::start(|b| b.workers(1).deadline(deadline), hello);
    let mut slow = TcpStream::connect(s.addr).unwrap();
    let slow_peer = slow.local_addr().unwrap();
    let trickle = Arc::new(AtomicBool::new(true));
    let t = {
        let trickle = Arc::clone(&trickle);
        thread::spawn(move || {
            for byte in b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: ".iter() {
                if !trickle.load(Ordering::Relaxed) || slow.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(20)); // the client's pace, not a sync
            }
            while trickle.load(Ordering::Relaxed) && slow.write_all(b"a").is_ok() {
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for _ in 0..5 {
        assert_eq!(get(s.addr, "/").unwrap().status, 200);
    }
    let start = Instant::now();
    s.handle.shutdown();
    let outcome = s.finished();
    let took = start.elapsed();
    trickle.store(false, Ordering::Relaxed);
    t.join().unwrap();
    let report = match outcome {
        Err(Error::DeadlineExceeded(stopped)) if cfg!(target_os = "linux") => {
            assert!(took >= deadline, "{took:?}");
            // Named as on its way, or as bytes no thread has read yet: which of the two,
            // at the instant of the last look, is the scheduler's choice on a busy machine.
            let left = stopped.report().connections_left();
            let named: Vec<_> = left.arriving().iter().chain(left.unread()).collect();
            assert_eq!(named, [&slow_peer], "{}", stopped.report());
            stopped.report().clone()
        }
        Ok(stopped) if !cfg!(target_os = "linux") => stopped.report().clone(),
        other => panic!("unexpected outcome: {other:?}"),
    };
    // The trickle stops only once the server has returned: that it returned at all shows
    // the deadline, not the client, ended the wait.
    assert_eq!(report.served_before(), 5);
}

#[test]
fn a_response_header_with_cr_or_lf_is_refused() {
    let s = Running::start(
        |b| b,
        |request: &mut Request| -> ResponseBox {
            // A handler echoing user input into a header: the classic splitting bug.
            let value = format!("{}\r\nSet-Cookie: session=stolen", request.url());
            Response::from_string("x")
                .with_header(Header::from_bytes("X-Echo", value.as_bytes()).unwrap())
                .boxed()
        },
    );
    let response = get(s.addr, "/echo").unwrap();
    assert_eq!(response.status, 500);
    assert!(response.header("Set-Cookie").is_none());
    assert!(response.header("X-Echo").is_none());
    s.shut_down();
}

/// Every request panics: every one is answered 500, no worker dies, and once the fault is
/// gone the same workers serve again.
#[test]
fn a_panic_storm_keeps_every_worker_alive_and_answering() {
    quiet_panics();
    let failing = Arc::new(AtomicBool::new(true));
    let s = {
        let failing = Arc::clone(&failing);
        Running::start(
            |b| b.workers(4),
            move |_: &mut Request| -> ResponseBox {
                if failing.load(Ordering::Relaxed) {
                    panic!("storm");
                }
                Response::from_string("calm").boxed()
            },
        )
    };
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = s.addr;
            thread::spawn(move || {
                let mut conn = Conn::open(addr).unwrap();
                for _ in 0..25 {
                    assert_eq!(conn.request("GET", "/").unwrap().status, 500);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    failing.store(false, Ordering::Relaxed);
    let mut conn = Conn::open(s.addr).unwrap();
    for _ in 0..8 {
        assert_eq!(conn.request("GET", "/").unwrap().text(), "calm");
    }
    drop(conn);
    let report = s.shut_down();
    assert_eq!(report.handler_panics(), 200);
    // The crew starts workers as requests need them (two at first, at most four here): on a
    // busy machine the storm may not need all four. Every worker started is joined as
    // finished, none died, and none was started in the place of one that did: the names are
    // the first slots, each once.
    let workers = report.workers();
    assert!(workers.panicked().is_empty(), "{report:?}");
    assert!(workers.running().is_empty(), "{report:?}");
    let mut names = workers.finished().to_vec();
    names.sort();
    let expected: Vec<String> = (1..=names.len())
        .map(|n| format!("lameduck-worker-{n}"))
        .collect();
    assert!((2..=4).contains(&names.len()), "{report:?}");
    assert_eq!(names, expected, "{report:?}");
}

/// Under overload (handlers slower than arrivals), at most `max_waiting` requests wait for a
/// worker; the others are answered 503 with Retry-After at once: while every handler is
/// still busy.
#[test]
fn beyond_the_waiting_room_requests_get_503_at_once() {
    // `/slow` handlers are held until `release` is dropped.
    let (release, held) = crossbeam_channel::bounded::<()>(0);
    let s = Running::start(
        |b| {
            b.workers(2)
                .max_waiting(3)
                .retry_after(Duration::from_secs(2))
        },
        move |request: &mut Request| -> ResponseBox {
            if request.url() == "/slow" {
                let _ = held.recv();
            }
            Response::from_string("done").boxed()
        },
    );
    // Twelve keep-alive connections, each served once, so that tiny_http runs all of them.
    let mut conns: Vec<Conn> = (0..12).map(|_| Conn::open(s.addr).unwrap()).collect();
    for conn in &mut conns {
        assert_eq!(conn.request("GET", "/fast").unwrap().status, 200);
    }
    // Then all twelve at once: 2 in the handlers, 3 waiting, 7 turned away.
    for conn in &mut conns {
        conn.send("GET", "/slow", &[], b"").unwrap();
    }
    let (responses, arrived) = crossbeam_channel::unbounded();
    for mut conn in conns {
        let responses = responses.clone();
        thread::spawn(move || responses.send(conn.read_response(false)));
    }
    // The seven 503s come while both handlers are still held.
    for _ in 0..7 {
        let response = arrived.recv_timeout(BOUND).expect("no 503").unwrap();
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("Retry-After"), Some("2"));
        assert!(
            response.text().contains("overloaded"),
            "{}",
            response.text()
        );
    }
    drop(release);
    for _ in 0..5 {
        let response = arrived.recv_timeout(BOUND).expect("no 200").unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let report = s.shut_down();
    assert_eq!(report.shed(), 7, "{report}");
    assert_eq!(report.served_before(), 12 + 5);
}

/// A panic while the response body is read (the handler's `Read`, run as the response is
/// written) is caught like one in the handler: the worker lives on.
#[test]
fn a_panicking_response_body_does_not_kill_its_worker() {
    quiet_panics();
    struct Exploding;
    impl std::io::Read for Exploding {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("body reader failed")
        }
    }
    let s = Running::start(
        |b| b.workers(1),
        |request: &mut Request| -> ResponseBox {
            if request.url() == "/explode" {
                Response::new(200.into(), vec![], Exploding, None, None).boxed()
            } else {
                Response::from_string("fine").boxed()
            }
        },
    );
    let mut conn = Conn::open(s.addr).unwrap();
    conn.send("GET", "/explode", &["Connection: close"], b"")
        .unwrap();
    assert!(
        conn.read_response(false).is_err(),
        "a cut response, not a whole one"
    );
    assert_eq!(get(s.addr, "/").unwrap().text(), "fine");
    let report = s.shut_down();
    assert_eq!(report.handler_panics(), 1);
    assert!(report.workers().panicked().is_empty(), "{report:?}");
}
