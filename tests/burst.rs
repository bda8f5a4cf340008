//! A burst of keep-alive connections on a cold server: every request answered within a
//! second. Alone in its test binary: it measures time, so other tests must not share its
//! cores.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use lameduck::tiny_http::{Request, Response, ResponseBox};
use support::http::Conn;
use support::server::Running;

fn hello(_: &mut Request) -> ResponseBox {
    Response::from_string("hello").boxed()
}

/// 64 keep-alive connections opened at once, one request each, on a cold server, ten
/// times: every request is answered within 1 s. (Plain tiny_http leaves some of them
/// without a thread for as long as the others stay open; see `probe.rs`.)
#[test]
fn a_burst_of_64_keep_alive_connections_is_answered_within_1s_every_round() {
    let mut slowest = Duration::ZERO;
    for round in 0..10 {
        let s = Running::start(|b| b.workers(4), hello);
        let mut conns: Vec<Conn> = (0..64).map(|_| Conn::open(s.addr).unwrap()).collect();
        let start = Instant::now();
        for conn in &mut conns {
            conn.send("GET", "/", &[], b"").unwrap();
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            let left = Duration::from_secs(1).saturating_sub(start.elapsed());
            conn.stream()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match conn.read_response(false) {
                Ok(r) => assert_eq!(r.status, 200),
                Err(e) => panic!("round {round}: connection {i} not answered within 1 s: {e}"),
            }
        }
        slowest = slowest.max(start.elapsed());
        drop(conns);
        s.shut_down();
    }
    eprintln!("burst: 10 rounds of 64, slowest round answered in {slowest:.1?}");
}
