//! A burst of keep-alive connections and a shutdown at once: every request gets a whole
//! response. Alone in its test binary: it depends on timing, so other tests must not share
//! its cores.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use lameduck::tiny_http::{Request, Response, ResponseBox};
use support::http::Conn;
use support::server::Running;

fn hello(_: &mut Request) -> ResponseBox {
    Response::from_string("hello").boxed()
}

/// 64 keep-alive connections opened at once, one request each, on a cold server, and
/// shutdown at once, before lameduck's background rescue has looked:
/// every request gets a whole response, ten times. Connections tiny_http left without a
/// thread must be rescued before the socket closes: otherwise they wait, unread, until the
/// client gives up (or are reset when the process exits). A request that only reached the
/// queue after the drain would get `503` + `Retry-After`; the report accounts for all 64.
#[test]
fn a_burst_cut_short_by_shutdown_is_answered_whole_every_round() {
    let mut unavailable = 0;
    for round in 0..10 {
        let s = Running::start(|b| b.workers(4), hello);
        let mut conns: Vec<Conn> = (0..64).map(|_| Conn::open(s.addr).unwrap()).collect();
        for conn in &mut conns {
            conn.send("GET", "/", &[], b"").unwrap();
        }
        s.handle.shutdown();
        for (i, conn) in conns.iter_mut().enumerate() {
            conn.stream()
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            match conn.read_response(false) {
                Ok(r) if r.status == 200 => {}
                Ok(r) if r.status == 503 && r.header("retry-after").is_some() => unavailable += 1,
                Ok(r) => panic!("round {round}: connection {i}: status {}", r.status),
                Err(e) => panic!("round {round}: connection {i} got no whole response: {e}"),
            }
        }
        let stopped = s.finished().unwrap();
        let report = stopped.report();
        let answered = report.served_before()
            + report.served_during_drain()
            + report.rejected()
            + report.shed();
        assert_eq!(answered, 64, "round {round}: {report}");
    }
    eprintln!("burst cut by shutdown: 10 rounds of 64, {unavailable} answered 503");
}
