//! What servers behind a load balancer need: readiness that flips at once, a lame-duck delay
//! that keeps serving, shutdown hooks, and the archive of what could not be served.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::{connect_refused, get, Conn};
use crate::support::server::Running;
use crate::support::{quiet_panics, BOUND};
use lameduck::tiny_http::{Header, Request, Response, ResponseBox};
use lameduck::{Error, HookOutcome, Why};

fn hello(_: &mut Request) -> ResponseBox {
    Response::from_string("hello").boxed()
}

#[test]
fn readiness_flips_at_once_and_the_lame_duck_serves_until_its_delay_is_over() {
    // Long enough for the checks made during the delay, on a busy machine.
    let delay = Duration::from_secs(1);
    let s = Running::start(
        |b| b.readiness("/readyz").liveness("/livez").lame_duck(delay),
        hello,
    );
    // The balancer's probe connection, kept open: what is timed below is the flip, not a
    // connect (which takes a millisecond or more under wine).
    let mut probe = Conn::open(s.addr).unwrap();
    let ready = probe.request("GET", "/readyz").unwrap();
    assert_eq!((ready.text().as_str(), ready.closes()), ("ready\n", false));
    assert_eq!(get(s.addr, "/livez").unwrap().status, 200);
    let mut keep_alive = Conn::open(s.addr).unwrap();
    assert!(!keep_alive.request("GET", "/").unwrap().closes());

    let fired = Instant::now();
    s.handle.shutdown();
    // The first probe after the fire sees the flip: it comes with the fire, not after a
    // poll.
    let ready = probe.request("GET", "/readyz").unwrap();
    let flipped = fired.elapsed();
    assert_eq!(ready.status, 503);

    // The lame duck: still accepting and serving, telling every client to reconnect.
    let served = get(s.addr, "/").unwrap();
    assert_eq!((served.status, served.closes()), (200, true));
    let on_old_connection = keep_alive.request("GET", "/").unwrap();
    assert_eq!(
        (on_old_connection.status, on_old_connection.closes()),
        (200, true)
    );
    assert_eq!(get(s.addr, "/livez").unwrap().status, 200);
    assert!(
        !connect_refused(s.addr),
        "stopped accepting during the delay"
    );

    // Then the drain: connects refused.
    while !connect_refused(s.addr) {
        assert!(fired.elapsed() < BOUND, "connects still accepted");
        thread::sleep(Duration::from_millis(5)); // each check is a connection: leave gaps
    }
    let refused_after = fired.elapsed();
    assert!(
        refused_after >= delay,
        "refused after {refused_after:?}, before the delay"
    );

    let report = match s.finished() {
        Ok(stopped) => stopped.report().clone(),
        Err(e) => panic!("{e}"),
    };
    assert!(report.lame_duck_time() >= delay);
    assert_eq!(report.health_checks(), 4);
    assert_eq!(report.served_before(), 1);
    assert_eq!(report.served_during_drain(), 2);
    eprintln!(
        "readiness 503 {flipped:.1?} after the fire; connects refused after {refused_after:.1?}"
    );
}

#[test]
fn hooks_run_in_order_and_one_that_fails_or_overruns_stops_none_of_the_others() {
    quiet_panics();
    let (order_tx, order) = crossbeam_channel::unbounded();
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    let (first, last) = (order_tx.clone(), order_tx);
    let s = Running::start(
        move |b| {
            // Time for the panic to be caught before the deadline: under wine, a thread's
            // first panic took longer than what 300 ms left (reported as overrun, in CI).
            b.deadline(Duration::from_millis(1000))
                .on_shutdown("first", move |_| first.send("first").unwrap())
                .on_shutdown("panics", |_| panic!("hook failed"))
                .on_shutdown("overruns", move |_| {
                    let _ = stuck.recv();
                })
                .on_shutdown("last", move |_| last.send("last").unwrap())
        },
        hello,
    );
    let fired = Instant::now();
    s.handle.shutdown();
    let report = match s.finished() {
        Err(Error::DeadlineExceeded(stopped)) => stopped.report().clone(),
        other => panic!("expected the overrunning hook to exceed the deadline: {other:?}"),
    };
    // `stuck` is still held (`release` is dropped at the end): the deadline, not the hook,
    // ended the wait.
    eprintln!("returned {:.1?} after the fire", fired.elapsed());
    assert_eq!(order.try_iter().collect::<Vec<_>>(), ["first", "last"]);
    let outcomes: Vec<(&str, &HookOutcome)> = report
        .hooks()
        .iter()
        .map(|h| (h.name(), h.outcome()))
        .collect();
    assert!(matches!(outcomes[0], ("first", HookOutcome::Finished(_))));
    assert_eq!(
        outcomes[1],
        ("panics", &HookOutcome::Panicked("hook failed".into()))
    );
    assert_eq!(outcomes[2], ("overruns", &HookOutcome::Overran));
    assert!(
        matches!(outcomes[3], ("last", HookOutcome::Finished(_))),
        "{outcomes:?}"
    );
    drop(release);
}

#[test]
fn the_archive_gets_what_was_rejected_whole_and_what_was_cut() {
    let (archived_tx, archived) = crossbeam_channel::unbounded();
    let (started_tx, started) = crossbeam_channel::unbounded();
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    let s = Running::start(
        move |b| {
            b.workers(1)
                .deadline(Duration::from_millis(300))
                .on_unserved(move |unserved| archived_tx.send(unserved).unwrap())
        },
        move |request: &mut Request| -> ResponseBox {
            if request.url() == "/stuck" {
                started_tx.send(()).unwrap();
                let _ = stuck.recv();
            }
            Response::from_string("x").boxed()
        },
    );
    let mut cut = Conn::open(s.addr).unwrap();
    cut.send("GET", "/stuck", &["X-Job: 42"], b"").unwrap();
    started.recv_timeout(BOUND).unwrap();
    let mut queued = Conn::open(s.addr).unwrap();
    queued
        .send("POST", "/queued?n=1", &["X-Job: 43"], b"payload")
        .unwrap();
    s.handle.shutdown();
    assert_eq!(queued.read_response(false).unwrap().status, 503);
    assert!(matches!(s.finished(), Err(Error::DeadlineExceeded(_))));

    let mut got: Vec<_> = archived.try_iter().collect();
    got.sort_by_key(|u| u.url().to_owned());
    assert_eq!(got.len(), 2, "{got:?}");
    let job = |u: &lameduck::Unserved| {
        u.headers()
            .iter()
            .find(|h: &&Header| h.field.equiv("X-Job"))
            .map(|h| h.value.as_str().to_owned())
    };
    assert_eq!(
        (got[0].method().as_str(), got[0].url()),
        ("POST", "/queued?n=1")
    );
    assert_eq!(got[0].body(), Some(&b"payload"[..]));
    assert_eq!(*got[0].why(), Why::Rejected);
    assert_eq!(job(&got[0]).as_deref(), Some("43"));
    assert_eq!(got[1].url(), "/stuck");
    assert_eq!(got[1].body(), None);
    assert!(matches!(got[1].why(), Why::Cut(age) if *age >= Duration::from_millis(300)));
    assert_eq!(job(&got[1]).as_deref(), Some("42"));

    // As bytes to replay: framed anew, once, with the body held (none for the cut one).
    let http = |u: &lameduck::Unserved| String::from_utf8(u.to_http()).unwrap();
    let queued = http(&got[0]);
    assert!(
        queued.starts_with("POST /queued?n=1 HTTP/1.1\r\n"),
        "{queued}"
    );
    assert!(queued.contains("\r\nX-Job: 43\r\n"), "{queued}");
    assert_eq!(queued.matches("Content-Length").count(), 1, "{queued}");
    let end = "\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload";
    assert!(queued.ends_with(end), "{queued}");
    let cut = http(&got[1]);
    assert!(cut.starts_with("GET /stuck HTTP/1.1\r\n"), "{cut}");
    assert!(
        cut.ends_with("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        "{cut}"
    );
    drop(release);
}
