//! What systemd is told, through `sd_notify(3)` (the `sd-notify` crate): a no-op unless the
//! process runs under a service manager that set `NOTIFY_SOCKET` (`Type=notify`).
//!
//! | when | sent |
//! |---|---|
//! | `run` serves | `READY=1`, `STATUS=serving http://…` |
//! | shutdown fires | `STOPPING=1`, `STATUS=shutting down (…)`, `EXTEND_TIMEOUT_USEC` |
//! | each progress line of a drain (once a second) | `STATUS=draining: …`, `EXTEND_TIMEOUT_USEC` |
//! | an upgrade's new process is ready | `MAINPID=` it, `STATUS=upgraded: …` (no `STOPPING=1`: the service goes on) |
//! | the report | `STATUS=` the report |
//!
//! `EXTEND_TIMEOUT_USEC` asks for the time left to the deadline plus [`EXTEND_MARGIN`], so
//! that a unit's `TimeoutStopSec` shorter than the deadline does not kill the drain; each
//! progress line renews it.

// Unix only so far: elsewhere most of this is compiled but not used.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::time::Duration;

/// What `EXTEND_TIMEOUT_USEC` asks beyond the deadline: time for `run` to return after it
/// (about 20 ms), and for the program to log and exit. A bound, not a measurement.
pub(crate) const EXTEND_MARGIN: Duration = Duration::from_secs(5);

/// `READY=1`: the server serves.
pub(crate) fn ready(status: &str) {
    send(&[Message::Ready, Message::Status(status)]);
}

/// `STOPPING=1`: shutdown fired, `left` is the time to the deadline.
pub(crate) fn stopping(status: &str, left: Duration) {
    send(&[
        Message::Stopping,
        Message::Status(status),
        Message::ExtendTimeout(left + EXTEND_MARGIN),
    ]);
}

/// `STATUS=` with the drain's progress, and the stop timeout renewed.
pub(crate) fn draining(status: &str, left: Duration) {
    send(&[
        Message::Status(status),
        Message::ExtendTimeout(left + EXTEND_MARGIN),
    ]);
}

/// `MAINPID=`: the new process of an upgrade is the service's main process now.
pub(crate) fn main_pid(pid: u32) {
    send(&[
        Message::MainPid(pid),
        Message::Status(&format!("upgraded: pid {pid} serves, this one drains")),
    ]);
}

/// `STATUS=` alone.
pub(crate) fn status(status: &str) {
    send(&[Message::Status(status)]);
}

enum Message<'a> {
    Ready,
    Stopping,
    Status(&'a str),
    ExtendTimeout(Duration),
    MainPid(u32),
}

#[cfg(unix)]
fn send(messages: &[Message<'_>]) {
    use sd_notify::NotifyState;
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let states: Vec<NotifyState<'_>> = messages
        .iter()
        .map(|message| match message {
            Message::Ready => NotifyState::Ready,
            Message::Stopping => NotifyState::Stopping,
            // One line: the protocol is one `KEY=value` per line.
            Message::Status(text) => NotifyState::Status(text.lines().next().unwrap_or("")),
            Message::MainPid(pid) => NotifyState::MainPid(*pid),
            Message::ExtendTimeout(time) => {
                NotifyState::ExtendTimeoutUsec(u32::try_from(time.as_micros()).unwrap_or(u32::MAX))
            }
        })
        .collect();
    if let Err(e) = sd_notify::notify(false, &states) {
        log::debug!("notify the service manager (NOTIFY_SOCKET): {e}");
    }
}

/// systemd is Linux's: elsewhere there is no one to tell.
#[cfg(not(unix))]
fn send(_messages: &[Message<'_>]) {}
