//! The server's shutdown timeline, driven in-process through its `Handle`, checked from the
//! client side with a real HTTP client on loopback.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::{connect_refused, get, Conn};
use crate::support::server::Running;
use crate::support::BOUND;
use crossbeam_channel::{Receiver, Sender};
use lameduck::tiny_http::{Request, Response, ResponseBox, StatusCode};
use lameduck::{Builder, Error, Reason, Server, ShutdownReport, Stopped};

/// The test's handler:
/// - `/slow?ms=N` sleeps N ms; `/stuck` blocks until [`Routes::release`] or the test ends;
/// - `/panic` panics; `/chunked` streams a body of unknown length; `/empty` is a 204;
/// - anything else answers `hello`.
///
/// Every call first sends its URL on `started`: the event that a request is in flight.
struct Routes {
    started: Receiver<String>,
    release: Option<Sender<()>>,
}

impl Routes {
    fn start(configure: impl FnOnce(Builder) -> Builder) -> (Running, Routes) {
        let (started_tx, started) = crossbeam_channel::unbounded();
        let (release, stuck) = crossbeam_channel::bounded::<()>(0);
        let running = Running::start(configure, move |request: &mut Request| -> ResponseBox {
            let url = request.url().to_owned();
            let _ = started_tx.send(url.clone());
            if let Some(ms) = url.strip_prefix("/slow?ms=") {
                thread::sleep(Duration::from_millis(ms.parse().unwrap()));
            } else if url == "/stuck" {
                let _ = stuck.recv();
            } else if url == "/panic" {
                panic!("handler failed on purpose");
            } else if url == "/chunked" {
                let body = std::io::Cursor::new(b"streamed body".to_vec());
                return Response::new(StatusCode(200), vec![], body, None, None).boxed();
            } else if url == "/empty" {
                return Response::empty(204).boxed();
            }
            Response::from_string("hello").boxed()
        });
        (
            running,
            Routes {
                started,
                release: Some(release),
            },
        )
    }

    /// Lets every `/stuck` handler return, now and from now on.
    fn release(&mut self) {
        self.release = None;
    }

    #[track_caller]
    fn wait_started(&self, url: &str) {
        let got = self
            .started
            .recv_timeout(BOUND)
            .expect("no request reached a handler");
        assert_eq!(got, url);
    }
}

#[track_caller]
fn report(outcome: Result<Stopped, Error>) -> ShutdownReport {
    match outcome {
        Ok(stopped) => stopped.report().clone(),
        Err(e) => panic!("run failed: {e}"),
    }
}

#[test]
fn shutdown_through_the_handle_drains_and_reports() {
    let (s, _routes) = Routes::start(|b| b.workers(2));
    let response = get(s.addr, "/").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));

    s.handle.shutdown();
    let outcome = s.finished();
    let report = report(outcome);
    assert_eq!(*report.reason(), Reason::Requested);
    assert_eq!(report.served_before(), 1);
    assert_eq!(report.served_during_drain(), 0);
    assert!(report.is_complete());
    assert!(connect_refused(s.addr));
}

/// Stop accepting first: new connects are refused while the request in flight is still in
/// its handler, which then finishes and is answered.
#[test]
fn new_connects_are_refused_while_the_request_in_flight_finishes() {
    let (s, mut routes) = Routes::start(|b| b);
    let mut conn = Conn::open(s.addr).unwrap();
    conn.send("GET", "/stuck", &[], b"").unwrap();
    routes.wait_started("/stuck");

    let fired = Instant::now();
    s.handle.shutdown();
    while !connect_refused(s.addr) {
        assert!(fired.elapsed() < BOUND, "connects still accepted");
        // Each check that connects is one more connection for the accept loop to take;
        // pausing lets its backlog run empty, which is what ends it.
        thread::sleep(Duration::from_millis(2));
    }
    let refused_after = fired.elapsed();

    routes.release();
    let response = conn.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.closes(), "no Connection: close during the drain");
    let outcome = s.finished();
    let report = report(outcome);
    assert_eq!(report.served_during_drain(), 1);
    eprintln!(
        "connects refused {refused_after:.1?} after the fire; the report says {:.1?}",
        report.stopped_accepting_after()
    );
}

#[test]
fn keep_alive_clients_are_told_to_close_and_every_body_stays_framed() {
    let (s, routes) = Routes::start(|b| b);
    let mut before = Conn::open(s.addr).unwrap();
    let first = before.request("GET", "/").unwrap();
    assert_eq!(first.status, 200);
    assert!(!first.closes(), "closed before shutdown");

    let mut conns: Vec<Conn> = (0..3).map(|_| Conn::open(s.addr).unwrap()).collect();
    let mut slow = Conn::open(s.addr).unwrap();
    slow.send("GET", "/slow?ms=300", &[], b"").unwrap();
    routes.wait_started("/");
    routes.wait_started("/slow?ms=300");
    s.handle.shutdown();

    // Sent during the drain, on connections opened before it.
    let head = before.request("HEAD", "/").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.closes() && head.body.is_empty());
    assert_eq!(head.header("Content-Length"), Some("5"));

    let chunked = conns[0].request("GET", "/chunked").unwrap();
    assert_eq!(chunked.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(chunked.text(), "streamed body");
    assert!(chunked.closes());

    let empty = conns[1].request("GET", "/empty").unwrap();
    assert_eq!(empty.status, 204);
    assert!(empty.closes() && empty.body.is_empty());

    let plain = conns[2].request("GET", "/").unwrap();
    assert!(plain.closes());

    let response = slow.read_response(false).unwrap();
    assert!(response.closes() && response.text() == "hello");
    let report = report(s.finished());
    assert_eq!(report.served_during_drain(), 5, "{report}");
}

#[test]
fn the_deadline_names_what_it_cut_and_answers_the_queue_503() {
    let deadline = Duration::from_millis(300);
    let (s, routes) = Routes::start(|b| {
        b.workers(1)
            .deadline(deadline)
            .retry_after(Duration::from_secs(7))
    });
    let mut stuck = Conn::open(s.addr).unwrap();
    stuck.send("GET", "/stuck", &[], b"").unwrap();
    routes.wait_started("/stuck");
    // The only worker is stuck: this one waits in the queue.
    let mut queued = Conn::open(s.addr).unwrap();
    queued.send("GET", "/queued", &[], b"").unwrap();

    let fired = Instant::now();
    s.handle.shutdown();
    let outcome = s.finished();
    let returned = fired.elapsed();
    assert!(
        returned >= deadline,
        "returned before the deadline: {returned:?}"
    );
    // It returned while the stuck handler still runs: the deadline ended the wait. By how
    // much it overruns is the benchmark's to measure (`-- --only deadline`).

    let report = match outcome {
        Err(Error::DeadlineExceeded(stopped)) => stopped.report().clone(),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    };
    let cut = &report.stragglers()[0];
    assert_eq!(report.unfinished(), 1);
    assert_eq!(cut.url(), "/stuck");
    assert_eq!(cut.method().as_str(), "GET");
    assert_eq!(cut.peer(), Some(stuck.stream().local_addr().unwrap()));
    assert_eq!(cut.worker(), "lameduck-worker-1");
    assert!(cut.age() >= deadline);
    assert_eq!(report.workers().running(), ["lameduck-worker-1"]);
    assert_eq!(report.rejected(), 1, "{report}");
    assert!(
        report.to_string().contains("GET /stuck from 127.0.0.1:"),
        "{report}"
    );

    let rejected = queued.read_response(false).unwrap();
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.header("Retry-After"), Some("7"));
    assert!(rejected.closes());
}

#[test]
fn a_late_request_on_an_old_keep_alive_connection_gets_503_not_silence() {
    let (s, _routes) = Routes::start(|b| b);
    let mut idle = Conn::open(s.addr).unwrap();
    assert!(!idle.request("GET", "/").unwrap().closes());

    s.handle.shutdown();
    let stopped = s.finished().expect("run");
    // `run` has returned; what it returned is alive: the late responder answers.
    let late = idle.request("GET", "/late").unwrap();
    assert_eq!(late.status, 503);
    assert!(late.closes());
    assert!(late.header("Retry-After").is_some());
    drop(stopped);
}

#[test]
fn a_panicking_handler_gets_500_and_its_worker_serves_on() {
    let (s, _routes) = Routes::start(|b| b.workers(1));
    let mut conn = Conn::open(s.addr).unwrap();
    let failed = conn.request("GET", "/panic").unwrap();
    assert_eq!(failed.status, 500);
    let next = conn.request("GET", "/").unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "hello"));
    s.handle.shutdown();
    let report = report(s.finished());
    assert_eq!(report.handler_panics(), 1);
    assert_eq!(report.served_before(), 2);
    assert!(report.workers().panicked().is_empty());
}

#[test]
fn shutdown_fired_before_run_ends_it_right_after_start() {
    let (trigger, _) = lameduck::trigger();
    trigger.fire(Reason::Signal);
    let server = Server::bind("127.0.0.1:0")
        .trigger(trigger)
        .build(|_: &mut Request| Response::from_string("x").boxed())
        .unwrap();
    let (done, stopped) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = done.send(server.run().unwrap());
    });
    let stopped = stopped.recv_timeout(BOUND).expect("run did not return");
    assert_eq!(*stopped.report().reason(), Reason::Signal);
    // A second `run` does not compile: `run` takes the server (see its doctest).
}

#[test]
fn binding_a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::bind(addr)
        .build(|_: &mut Request| Response::from_string("x").boxed())
        .unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("bind {addr}: ")), "{text}");
    assert!(std::error::Error::source(&err).is_some());
}
