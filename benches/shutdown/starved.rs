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

/// How many of the established connections to `server` have received bytes and read none;
/// `None` if `ss` could not tell.
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
/// details starting with white space (`... bytes_received:N ...`, absent while 0).
fn parse(text: &str) -> usize {
    let mut starved = 0;
    let mut unread: Option<u64> = None;
    let mut close = |unread: Option<u64>, received: Option<u64>| {
        if let (Some(unread), Some(received)) = (unread, received) {
            if unread > 0 && unread == received {
                starved += 1;
            }
        }
    };
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            let received = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("bytes_received:"))
                .and_then(|n| n.parse().ok());
            close(unread.take(), received);
        } else {
            unread = line.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    starved
}
