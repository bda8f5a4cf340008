//! The drain sees connections (Linux, through the OS's connection table): requests on their
//! way when shutdown fires are served, requests sent on idle keep-alive connections within
//! the idle linger are served, and what can smuggle a request is refused. Each case is one
//! Go's `Shutdown` loses or serves; see the README's Reliability table.
//!
//! The clients here send at their own pace (the `sleep`s are the client's, not a sync);
//! every read has a time bound.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::Conn;
use crate::support::server::Running;
use lameduck::tiny_http::{Request, Response, ResponseBox};
use lameduck::ShutdownReport;

/// Answers `hello`, or, for a request with a body, how many bytes it read.
fn echo_length(request: &mut Request) -> ResponseBox {
    match lameduck::read_body(request, 16 << 20) {
        Ok(body) if body.is_empty() => Response::from_string("hello").boxed(),
        Ok(body) => Response::from_string(format!("read {}", body.len())).boxed(),
        Err(e) => Response::from_string(format!("body: {e}"))
            .with_status_code(400)
            .boxed(),
    }
}

#[track_caller]
fn drained(s: &Running) -> ShutdownReport {
    match s.finished() {
        Ok(stopped) => stopped.report().clone(),
        Err(e) => panic!("run failed: {e}"),
    }
}

/// Sends `first`, fires shutdown, waits `gap` (the client's pace), sends `second`, and
/// returns the response.
fn split_around_the_fire(
    s: &Running,
    conn: &mut Conn,
    first: &[u8],
    gap: Duration,
    second: &[u8],
) -> crate::support::http::Response {
    conn.write_raw(first).unwrap();
    s.handle.shutdown();
    thread::sleep(gap);
    conn.write_raw(second).unwrap();
    conn.read_response(false).unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_head_split_around_the_fire_on_a_new_connection_is_served() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    let response = split_around_the_fire(
        &s,
        &mut conn,
        b"GET / HTTP/1.1\r\nHo",
        Duration::from_millis(100),
        b"st: x\r\n\r\n",
    );
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    assert!(response.closes());
    assert_eq!(drained(&s).served_during_drain(), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn the_second_request_of_a_keep_alive_connection_split_around_the_fire_is_served() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    assert!(!conn.request("GET", "/").unwrap().closes());
    // The client reads the first response and starts the next request a little later: the
    // kernel stamps data to a tick (4 ms here), and data within 10 ms of a request counts
    // as that request's.
    thread::sleep(Duration::from_millis(20));
    let response = split_around_the_fire(
        &s,
        &mut conn,
        b"GET /second HTTP/1.1\r\nHo",
        Duration::from_millis(100),
        b"st: x\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert!(response.closes());
    let report = drained(&s);
    assert_eq!(
        (report.served_before(), report.served_during_drain()),
        (1, 1)
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_small_post_body_trickling_in_over_500ms_is_served() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    conn.write_raw(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    s.handle.shutdown();
    for byte in b"0123456789" {
        thread::sleep(Duration::from_millis(50));
        conn.write_raw(&[*byte]).unwrap();
    }
    let response = conn.read_response(false).unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "read 10")
    );
    assert_eq!(drained(&s).served_during_drain(), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn a_5_mib_upload_in_progress_is_served() {
    const SIZE: usize = 5 << 20;
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    conn.write_raw(
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let chunk = vec![b'u'; 64 << 10];
    let mut sent = 0;
    while sent < SIZE {
        if sent == SIZE / 2 {
            s.handle.shutdown();
        }
        conn.write_raw(&chunk).unwrap();
        sent += chunk.len();
        thread::sleep(Duration::from_millis(2)); // a client on a slower link
    }
    let response = conn.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), format!("read {SIZE}"));
    assert_eq!(drained(&s).served_during_drain(), 1);
}

/// 20 rounds of 20 idle keep-alive connections, each sending its next request at a random
/// moment in the 100 ms after the fire (the default idle linger): every request sent before
/// the linger ends is served, `200` with `Connection: close`.
#[cfg(target_os = "linux")]
#[test]
fn requests_sent_on_idle_connections_within_the_linger_are_served() {
    let linger = lameduck::DEFAULT_IDLE_LINGER;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut in_time, mut late) = (0, 0);
    for round in 0..20 {
        let s = Running::start(|b| b, echo_length);
        let conns: Vec<Conn> = (0..20)
            .map(|_| {
                let mut conn = Conn::open(s.addr).unwrap();
                assert!(!conn.request("GET", "/").unwrap().closes());
                conn
            })
            .collect();
        let delays: Vec<Duration> = (0..20)
            .map(|_| Duration::from_micros(next() % linger.as_micros() as u64))
            .collect();
        let fired = Instant::now();
        s.handle.shutdown();
        let clients: Vec<_> = conns
            .into_iter()
            .zip(delays)
            .map(|(mut conn, delay)| {
                thread::spawn(move || {
                    thread::sleep(delay.saturating_sub(fired.elapsed()));
                    conn.send("GET", "/next", &[], b"").unwrap();
                    let sent_by = fired.elapsed();
                    (sent_by, conn.read_response(false))
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            let (sent_by, response) = client.join().unwrap();
            if sent_by >= linger {
                late += 1; // the client thread ran late: not a request sent in the linger
                continue;
            }
            in_time += 1;
            let response = response
                .unwrap_or_else(|e| panic!("round {round}: client {i}, sent by {sent_by:?}: {e}"));
            assert_eq!(
                response.status, 200,
                "round {round}: client {i} sent by {sent_by:?}"
            );
            assert!(response.closes());
        }
        drained(&s);
    }
    eprintln!("idle linger: {in_time} requests sent within it, all served; {late} sent late");
    assert!(in_time >= 300, "too few in time to tell: {in_time}");
}

#[test]
fn a_transfer_coding_other_than_chunked_is_501_and_the_connection_is_refused() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    conn.write_raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    let response = conn.read_response(false).unwrap();
    assert_eq!(response.status, 501);
    assert!(response.closes());
    // A client that does not close: what it sends next is not served, and the connection
    // is closed.
    let next = conn.request("GET", "/").unwrap();
    assert_eq!(next.status, 400, "{next:?}");
    assert!(conn.is_closed_by_server());
    s.shut_down();
}

#[test]
fn transfer_encoding_with_content_length_is_400_and_closes() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    conn.write_raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    let response = conn.read_response(false).unwrap();
    assert_eq!(response.status, 400);
    assert!(response.closes());
    let report = s.shut_down();
    assert_eq!(report.served_before(), 1);
}

/// An HTTP/2 prior-knowledge preface (what `curl --http2-prior-knowledge` sends) makes
/// tiny_http deadlock the connection's thread. At shutdown the drain gives up on it after a
/// second of silence, well before its deadline, and names it.
#[cfg(target_os = "linux")]
#[test]
fn an_http2_preface_is_named_stuck_and_does_not_hold_the_drain_to_its_deadline() {
    let s = Running::start(|b| b, echo_length);
    let mut conn = Conn::open(s.addr).unwrap();
    let peer = conn.stream().local_addr().unwrap();
    conn.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut nothing = [0u8; 1];
    conn.stream()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        conn.stream().read(&mut nothing).is_err(),
        "tiny_http answered the preface"
    );
    s.handle.shutdown();
    // `drained`: the drain ended before its deadline (the default, 10 s), the preface still
    // unanswered on its connection.
    let report = drained(&s);
    assert_eq!(report.connections_left().stuck(), [peer], "{report}");
}
