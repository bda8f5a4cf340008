//! Memory stays bounded under oversized requests. Alone in its test binary: it reads this
//! process's resident memory, which other tests would disturb.

#[path = "support/mod.rs"]
mod support;

use lameduck::tiny_http::{Request, Response, ResponseBox};
use support::http::{get, Conn};
use support::server::Running;

fn hello(_: &mut Request) -> ResponseBox {
    Response::from_string("hello").boxed()
}

/// Resident memory of this process, from /proc (Linux).
#[cfg(target_os = "linux")]
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_oversized_head_gets_431_and_memory_stays_bounded() {
    let s = Running::start(|b| b, hello);
    let big = format!("X-Big: {}", "a".repeat(1 << 20));
    let send_big = || {
        let mut conn = Conn::open(s.addr).unwrap();
        conn.send("GET", "/", &[&big], b"").unwrap();
        conn.read_response(false).unwrap()
    };
    let first = send_big();
    assert_eq!(first.status, 431);
    assert!(first.text().contains("65536 bytes"), "{}", first.text());
    #[cfg(target_os = "linux")]
    {
        // tiny_http reads each head into memory on one of its connection threads; the
        // allocator keeps some of it for reuse. Bounded means: it levels off.
        let mut rss = vec![rss_kib()];
        for _ in 0..4 {
            for _ in 0..25 {
                assert_eq!(send_big().status, 431);
            }
            rss.push(rss_kib());
        }
        eprintln!("oversized heads: RSS after each 25 of 1 MiB (KiB): {rss:?}");
        let first_batch = rss[1].saturating_sub(rss[0]);
        let last_three = rss[4].saturating_sub(rss[1]);
        assert!(
            first_batch < 32 * 1024,
            "first 25 grew RSS by {first_batch} KiB"
        );
        assert!(
            last_three < 8 * 1024,
            "75 more grew RSS by {last_three} KiB: {rss:?}"
        );
    }
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    s.shut_down();
}
