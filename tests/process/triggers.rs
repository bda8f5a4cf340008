//! Triggers besides signals, each shutting a real child process down (this test binary run
//! again as the child, with a real `Server`) with the right reason in its log and report.

use std::io::BufRead;
use std::time::{Duration, Instant};

use lameduck::tiny_http::{Request, Response};
use lameduck::watch::{FileTrigger, Heartbeat};
use libtest_mimic::Trial;

use crate::support::{self, scratch_dir, Proc, BOUND};

pub fn trials() -> Vec<Trial> {
    trials![
        a_missed_heartbeat_shuts_the_child_down,
        a_file_that_appears_shuts_the_child_down,
        the_end_of_stdin_shuts_the_child_down,
    ]
}

/// The child (`LAMEDUCK_CHILD=triggers:MODE`): a server shut down by the trigger `mode`.
pub fn child(mode: &str) -> ! {
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .filter_module("tiny_http", log::LevelFilter::Off)
        .init();
    let (trigger, _listener) = lameduck::trigger();
    match mode {
        "heartbeat" => {
            let heartbeat = Heartbeat::start(&trigger, Duration::from_secs(1)).unwrap();
            // Beats come from the test, one per line on stdin.
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() {
                        break;
                    }
                    heartbeat.beat();
                }
                // Stdin closed: the heartbeat handle is dropped with this thread... after
                // the watchdog has fired, which the test waits for first.
                std::thread::park();
            });
        }
        "file" => {
            let path = std::env::var("LAMEDUCK_WATCH_FILE").unwrap();
            FileTrigger::appears(path)
                .poll_every(Duration::from_millis(20))
                .start(&trigger)
                .unwrap();
        }
        "stdin" => lameduck::watch::stdin_closed(&trigger).unwrap(),
        other => panic!("unknown mode {other}"),
    }
    let server = lameduck::Server::bind("127.0.0.1:0")
        .trigger(trigger)
        .build(|_: &mut Request| Response::from_string("x").boxed())
        .unwrap();
    println!("ready");
    let report = server.run().unwrap();
    println!("report: {report}");
    std::process::exit(0);
}

#[track_caller]
fn start(mode: &str, env: &[(&str, &str)]) -> Proc {
    let mut child = Proc::spawn(support::child(&format!("triggers:{mode}"), env));
    child.wait_line("ready", BOUND);
    child
}

fn a_missed_heartbeat_shuts_the_child_down() {
    let mut child = start("heartbeat", &[]);
    // Beating every 100 ms for 2 s, twice the watchdog's timeout, and it holds. (The margin
    // of 900 ms between beats is for a busy machine.)
    let beating = Instant::now();
    while beating.elapsed() < Duration::from_secs(2) {
        child.send_line("beat");
        std::thread::sleep(Duration::from_millis(100)); // the beat's pace, not a sync
    }
    assert!(!child.output().contains("shutdown"), "{}", child.output());
    // The beats stop, and the watchdog shuts the child down, with the reason.
    child.wait_line("shutdown (no heartbeat for 1s): stop accepting", BOUND);
    child.wait_line("report: shutdown (no heartbeat for 1s)", BOUND);
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
}

fn a_file_that_appears_shuts_the_child_down() {
    let dir = scratch_dir("file-trigger");
    let path = dir.join("drain");
    let mut child = start("file", &[("LAMEDUCK_WATCH_FILE", path.to_str().unwrap())]);
    std::fs::write(&path, b"").unwrap();
    let line = child.wait_line("report: shutdown (file ", BOUND);
    assert!(
        line.contains(&format!("{} appeared", path.display())),
        "{line}"
    );
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn the_end_of_stdin_shuts_the_child_down() {
    let mut child = start("stdin", &[]);
    child.close_stdin();
    child.wait_line("stdin closed: shutting down", BOUND);
    child.wait_line("report: shutdown (stdin closed)", BOUND);
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
}
