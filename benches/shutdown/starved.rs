//! Connections a server left without a thread, seen from outside: wrk cannot tell them (it
//! counts only what completed), the kernel can. A connection whose every byte received is
//! still unread has never been read by anyone: its server never ran it. Read with `ss`
//! (Debian's `iproute2`), which shows each connection's bytes unread (`Recv-Q`) and bytes
//! received (`bytes_received`, from the kernel's `tcp_info`).
//!
//! Taken while wrk's load is on, after its connections have had time to be served: plain
//! tiny_http's such connections stay unread for the whole run; lameduck's are rescued in
//! milliseconds.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Whether `ss` is there.
pub fn available() -> bool {
    Command::new("ss")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian's `iproute2`, which has `ss`.
///
/// # Errors
///
/// apt-get failed or is not there.
pub fn install() -> Result<(), String> {
    crate::apt::install(&["iproute2"])
}

/// What lameduck's parked connections send: one byte.
const PARKED: u64 = 1;

/// How many of the established connections to `server` have received bytes and read none
/// (lameduck's own parked connections left out); `None` if `ss` could not tell.
pub fn count(server: SocketAddr) -> Option<usize> {
    let out = Command::new("ss")
        .args(["-tniH", "state", "established"])
        .arg(format!("( sport = :{} )", server.port()))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// `ss -tniH` prints a line per connection (`Recv-Q Send-Q local peer`), then a line of
/// details starting with white space (`... bytes_received:N ... lastrcv:MS ...`,
/// `bytes_received` absent while 0).
fn parse(text: &str) -> usize {
    let mut starved = 0;
    let mut unread: Option<u64> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            unread = line.split_whitespace().next().and_then(|n| n.parse().ok());
            continue;
        }
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .and_then(|n| n.parse().ok())
        };
        let (Some(unread), Some(received)) = (unread.take(), field("bytes_received:")) else {
            continue;
        };
        // One byte: a connection lameduck parks one of tiny_http's idle threads on (its
        // `tinyhttp/parking.rs`), not a client's; a request is never one byte. And a
        // request that arrived in the last moments may only be waiting for its thread to
        // run: a connect whose first packet the full backlog dropped is sent again a second
        // into the load, just before the look. `ss` leaves `lastrcv` out while it is 0 (the
        // bytes came within the last millisecond): lameduck's own ping of its accept loop,
        // two bytes sent every 300 ms, was caught so in about one run in 50 and counted as
        // a connection never served.
        let quiet_for = field("lastrcv:").unwrap_or(0);
        if unread > 0 && unread == received && received != PARKED && quiet_for >= STILL_ARRIVING_MS
        {
            starved += 1;
        }
    }
    starved
}

/// A connection whose bytes arrived less than this long ago (ms) does not count as never
/// read: its thread may not have run yet (on 2 busy cores, up to about 150 ms was seen).
const STILL_ARRIVING_MS: u64 = 300;
