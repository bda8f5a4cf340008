//! wrk, the widely used HTTP load generator (Debian's `wrk`), as a second client beside the
//! bench's own: one thread (`-t1`), keep-alive, `--latency` for its percentiles.
//!
//! wrk counts only the requests that completed: a connection the server never serves adds
//! nothing, not even a timeout, unless a request on it waits past wrk's `--timeout`. The
//! bench's own client tells how many connections were served.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What one wrk run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The slowest request that completed.
    pub max_ms: f64,
    /// Requests that waited past `--timeout` (wrk's "Socket errors: ... timeout").
    pub timeouts: u64,
    /// Connect, read and write errors, and responses other than 2xx or 3xx.
    pub errors: u64,
    /// Requests completed ("N requests in ...").
    pub requests: u64,
}

/// `wrk --version`'s first line, or `None` without wrk.
pub fn version() -> Option<String> {
    // wrk prints its version and usage, and exits 1.
    let out = Command::new("wrk").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .next()
        .filter(|line| line.starts_with("wrk"))
        .map(|line| line.split(" [").next().unwrap_or(line).to_owned())
}

/// Installs Debian's `wrk`.
///
/// # Errors
///
/// apt-get failed or is not there.
pub fn install() -> Result<(), String> {
    crate::apt::install(&["wrk"])
}

/// Runs wrk against `addr` with `conns` connections for `time`.
///
/// # Errors
///
/// wrk could not run, failed, or printed what this does not understand.
pub fn run(addr: SocketAddr, conns: usize, time: Duration) -> Result<WrkRun, String> {
    let out = Command::new("wrk")
        .args(["-t1", "--latency", "--timeout", "2s"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", time.as_secs().max(1)))
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&text).ok_or_else(|| format!("wrk printed what this does not read: {text}"))
}

/// Reads wrk's report.
fn parse(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let mut seen = (false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["Latency", _avg, _stdev, max, ..] => run.max_ms = millis(max)?,
            ["50%", value] => run.p50_ms = millis(value)?,
            ["99%", value] => {
                run.p99_ms = millis(value)?;
                seen.0 = true;
            }
            ["Requests/sec:", value] => {
                run.rps = value.parse().ok()?;
                seen.1 = true;
            }
            [n, "requests", "in", ..] => run.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse::<u64>().ok()?,
            _ if line.starts_with("Socket errors:") => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                for pair in line["Socket errors:".len()..].split(',') {
                    let mut parts = pair.split_whitespace();
                    let (what, n) = (parts.next()?, parts.next()?.parse::<u64>().ok()?);
                    if what == "timeout" {
                        run.timeouts += n;
                    } else {
                        run.errors += n;
                    }
                }
            }
            _ => {}
        }
    }
    (seen.0 && seen.1).then_some(run)
}

/// `12.34us`, `1.20ms`, `2.00s`, `1.00m` in milliseconds.
fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        _ => return None,
    };
    Some(number * scale)
}
