//! Triggers besides signals, each shutting a real child process down (this test binary run
//! again as the child, with a real `Server`) with the right reason in its log and report.

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::{reexec, Proc};
use lameduck::tiny_http::{Request, Response};
use lameduck::watch::{FileTrigger, Heartbeat};

const CHILD: &str = "LAMEDUCK_TRIGGER_CHILD";
const BOUND: Duration = Duration::from_secs(20);

/// The child: a server shut down by the trigger named in `LAMEDUCK_TRIGGER_CHILD`.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .filter_module("tiny_http", log::LevelFilter::Off)
        .init();
    let (trigger, _listener) = lameduck::trigger();
    match mode.as_str() {
        "heartbeat" => {
            let heartbeat = Heartbeat::start(&trigger, Duration::from_millis(300)).unwrap();
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
    let mut vars = vec![(CHILD, mode)];
    vars.extend_from_slice(env);
    let mut child = Proc::spawn(reexec("child", &vars));
    child.wait_line("ready", BOUND);
    child
}

#[test]
fn a_missed_heartbeat_shuts_the_child_down() {
    let mut child = start("heartbeat", &[]);
    // Beating every 100 ms for 900 ms: three times the watchdog's timeout, and it holds.
    let beating = Instant::now();
    while beating.elapsed() < Duration::from_millis(900) {
        child.send_line("beat");
        std::thread::sleep(Duration::from_millis(100)); // the beat's pace, not a sync
    }
    assert!(!child.output().contains("report:"), "{}", child.output());
    let stopped = Instant::now();
    child.wait_line("shutdown (no heartbeat for 300ms): stop accepting", BOUND);
    let after = stopped.elapsed();
    child.wait_line("report: shutdown (no heartbeat for 300ms)", BOUND);
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
    assert!(after >= Duration::from_millis(200) && after < Duration::from_millis(1000));
}

#[test]
fn a_file_that_appears_shuts_the_child_down() {
    let path = std::env::temp_dir().join(format!("lameduck-drain-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = start("file", &[("LAMEDUCK_WATCH_FILE", path.to_str().unwrap())]);
    std::fs::write(&path, b"").unwrap();
    let line = child.wait_line("report: shutdown (file ", BOUND);
    assert!(
        line.contains(&format!("{} appeared", path.display())),
        "{line}"
    );
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_end_of_stdin_shuts_the_child_down() {
    let mut child = start("stdin", &[]);
    child.close_stdin();
    child.wait_line("stdin closed: shutting down", BOUND);
    child.wait_line("report: shutdown (stdin closed)", BOUND);
    assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
}
