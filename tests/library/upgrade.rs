//! Upgrades that do not happen, through [`Handle::upgrade`] with a command of the test's
//! own: the new process exits, is late, the shutdown comes first, another upgrade is under
//! way. In each case the server serves on (or shuts down as asked) and says why. Upgrades
//! that happen are in `tests/process/upgrade.rs`, with real programs. The first and the
//! last run on Windows (under wine) too, with `cmd.exe` for `sh`.

use std::process::Command;
use std::thread;
use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::{Reason, UpgradeError};

use crate::support::http::get;
use crate::support::server::Running;
use crate::support::{until, BOUND};

fn hello(_: &mut Request) -> lameduck::tiny_http::ResponseBox {
    Response::from_string("hello").boxed()
}

fn sh(script: &'static str) -> impl Fn() -> Command + Send + Sync + 'static {
    move || {
        let mut cmd = if cfg!(windows) {
            Command::new("cmd.exe")
        } else {
            Command::new("sh")
        };
        cmd.args([if cfg!(windows) { "/c" } else { "-c" }, script]);
        cmd
    }
}

/// Whether process `pid` is gone (or a zombie no one has reaped, which the kill makes it).
#[cfg(unix)]
fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

#[test]
fn a_new_process_that_exits_is_named_with_its_status_and_the_server_serves_on() {
    let server = Running::start(|b| b.upgrade_command(sh("exit 3")), hello);
    match server.handle.upgrade() {
        Err(UpgradeError::Exited { status, .. }) => assert_eq!(status.code(), Some(3)),
        other => panic!("{other:?}"),
    }
    assert!(server.handle.listener().fired().is_none());
    assert_eq!(get(server.addr, "/").unwrap().text(), "hello");
    server.shut_down();
}

#[cfg(unix)]
#[test]
fn a_new_process_not_ready_in_time_is_killed_and_the_server_serves_on() {
    let server = Running::start(
        |b| {
            b.upgrade_command(sh("exec sleep 30"))
                .upgrade_timeout(Duration::from_millis(200))
        },
        hello,
    );
    let (pid, timeout) = match server.handle.upgrade() {
        Err(UpgradeError::NotReady { pid, timeout }) => (pid, timeout),
        other => panic!("{other:?}"),
    };
    assert_eq!(timeout, Duration::from_millis(200));
    assert!(gone(pid), "the late process {pid} was not killed");
    assert_eq!(get(server.addr, "/").unwrap().text(), "hello");
    server.shut_down();
}

/// The second upgrade, asked for while the first one waits for its new process, is refused
/// with the first one's pid; a shutdown then kills that process, and the first upgrade
/// returns that the server is shutting down.
#[cfg(unix)]
#[test]
fn a_second_upgrade_is_refused_and_a_shutdown_that_comes_first_kills_the_new_process() {
    let (spawning, spawned) = crossbeam_channel::bounded(1);
    let command = move || {
        let _ = spawning.try_send(());
        sh("exec sleep 30")()
    };
    let server = Running::start(|b| b.upgrade_command(command), hello);
    let first = {
        let handle = server.handle.clone();
        thread::spawn(move || handle.upgrade())
    };
    spawned.recv_timeout(BOUND).unwrap();
    // The command is made just before the process starts: wait until it has.
    let mut pid = None;
    until("the new process started", || {
        match server.handle.upgrade() {
            Err(UpgradeError::UnderWay { pid: started }) => pid = started,
            other => panic!("{other:?}"),
        }
        pid.is_some()
    });
    let pid = pid.unwrap();
    server.handle.shutdown();
    match first.join().unwrap() {
        Err(UpgradeError::ShuttingDown) => {}
        other => panic!("{other:?}"),
    }
    assert!(gone(pid), "the new process {pid} outlived the shutdown");
    let report = server.finished().unwrap().report().clone();
    assert_eq!(*report.reason(), Reason::Requested);
    assert!(matches!(
        server.handle.upgrade(),
        Err(UpgradeError::ShuttingDown)
    ));
}

/// A file dropped by a deployment tool asks for an upgrade: it is removed first (so that the
/// new process would not upgrade in turn), the upgrade is tried, and, the new process having
/// failed, the server serves on and the next file tries again.
#[test]
fn a_file_asks_for_an_upgrade_and_is_removed_first() {
    let (tried, tries) = crossbeam_channel::unbounded();
    let command = move || {
        let _ = tried.send(());
        sh("exit 3")()
    };
    let server = Running::start(|b| b.upgrade_command(command), hello);
    let dir = crate::support::scratch_dir("upgrade-file");
    let path = dir.join("upgrade");
    server
        .handle
        .upgrade_on_file(
            lameduck::watch::FileTrigger::appears(&path).poll_every(Duration::from_millis(5)),
        )
        .unwrap();
    for _ in 0..2 {
        std::fs::write(&path, b"").unwrap();
        tries.recv_timeout(BOUND).expect("no upgrade tried");
        assert!(!path.exists(), "the file is removed before the upgrade");
        assert_eq!(get(server.addr, "/").unwrap().text(), "hello");
    }
    server.shut_down();
}
