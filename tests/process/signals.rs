//! Real signals to a real child process: this test binary runs itself again as the child
//! (`LAMEDUCK_CHILD=signals:MODE`, see [`child`]), waits for its readiness line, sends
//! signals with `kill`, and checks what it prints and how it exits.
//!
//! Sending a console event from inside wine is not possible (`GenerateConsoleCtrlEvent` needs
//! a real console there), so the tests that send signals are Unix-only; the Windows build's
//! Ctrl+C path is checked end to end from the Linux side by `.ci/run`, which sends SIGINT to
//! the wine process of an example. Installing twice is checked on both.

use std::io::BufRead;

use lameduck::{Error, Reason, SecondSignal, Signals};
use libtest_mimic::Trial;

use crate::support::{self, Proc, BOUND};

pub fn trials() -> Vec<Trial> {
    let mut trials = trials![
        installing_twice_is_an_error_not_a_panic,
        an_applications_own_ctrlc_handler_is_reported,
    ];
    #[cfg(unix)]
    trials.extend(unix::trials());
    trials
}

/// The child side. Modes:
/// - `graceful`: default handling; after the fire, a short cleanup, exit 0.
/// - `slow-cleanup`: default handling; the cleanup waits for stdin to close (a second signal
///   must end it with 130 first).
/// - `no-force`: second signal ignored; the cleanup waits for stdin to close, then exit 0.
/// - `twice`: installs twice, prints what the second install returned.
/// - `ctrlc-first`: the application installs its own `ctrlc` handler, then lameduck's.
/// - `early`: a signal arrives before the server is even built; once told (a line on
///   stdin), it builds and runs one, which must shut down right after it starts.
pub fn child(mode: &str) -> ! {
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .init();
    let (trigger, listener) = lameduck::trigger();
    match mode {
        "twice" => {
            lameduck::signal::install(&trigger).expect("first install");
            let second = lameduck::signal::install(&trigger);
            println!("second install: {}", describe(second));
            std::process::exit(0);
        }
        "ctrlc-first" => {
            ctrlc::set_handler(|| {}).expect("application's own handler");
            println!(
                "lameduck install: {}",
                describe(lameduck::signal::install(&trigger))
            );
            std::process::exit(0);
        }
        "early" => {
            lameduck::signal::install(&trigger).unwrap();
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let server = lameduck::Server::bind("127.0.0.1:0")
                .trigger(trigger)
                .build(|_: &mut lameduck::tiny_http::Request| {
                    lameduck::tiny_http::Response::from_string("x").boxed()
                })
                .unwrap();
            let report = server.run().unwrap();
            println!("report: {report}");
            std::process::exit(0);
        }
        "graceful" | "slow-cleanup" => lameduck::signal::install(&trigger).unwrap(),
        "no-force" => Signals::new()
            .on_second(SecondSignal::Ignore)
            .install(&trigger)
            .unwrap(),
        other => panic!("unknown child mode {other}"),
    }
    println!("ready");
    let fired = listener.wait();
    println!("fired reason={}", fired.reason());
    assert_eq!(*fired.reason(), Reason::Signal);
    if mode != "graceful" {
        // Blocks until the test closes our stdin.
        for _ in std::io::stdin().lock().lines() {}
    }
    println!("cleanup done fires={}", trigger.fire_count());
    std::process::exit(0);
}

fn describe(result: Result<(), Error>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(Error::SignalHandlerExists) => {
            format!("SignalHandlerExists: {}", Error::SignalHandlerExists)
        }
        Err(other) => format!("other error: {other}"),
    }
}

#[cfg(unix)]
#[track_caller]
fn start(mode: &str) -> Proc {
    let mut child = Proc::spawn(support::child(&format!("signals:{mode}"), &[]));
    child.wait_line("ready", BOUND);
    child
}

fn installing_twice_is_an_error_not_a_panic() {
    let mut child = Proc::spawn(support::child("signals:twice", &[]));
    let line = child.wait_line("second install:", BOUND);
    assert!(line.contains("SignalHandlerExists"), "{line}");
    assert!(child.wait_exit(BOUND).success());
}

fn an_applications_own_ctrlc_handler_is_reported() {
    let mut child = Proc::spawn(support::child("signals:ctrlc-first", &[]));
    let line = child.wait_line("lameduck install:", BOUND);
    assert!(line.contains("SignalHandlerExists"), "{line}");
    assert!(child.wait_exit(BOUND).success());
}

#[cfg(unix)]
mod unix {
    use super::*;

    pub fn trials() -> Vec<Trial> {
        trials![
            sigint_fires_once_and_the_child_exits_0,
            sigterm_fires_once_and_the_child_exits_0,
            sighup_fires_once_and_the_child_exits_0,
            a_second_signal_forces_exit_130_before_the_cleanup_ends,
            a_signal_before_the_server_starts_shuts_it_down_right_after_start,
            a_hundred_signals_fire_once_and_clean_up_once,
            with_forcing_off_the_child_survives_a_second_signal,
        ]
    }

    #[track_caller]
    fn fires_once_then_exits_cleanly(signal: &str) {
        let mut child = start("graceful");
        child.signal(signal);
        child.wait_line(lameduck::signal::FIRST_SIGNAL_LINE, BOUND);
        child.wait_line("fired reason=signal", BOUND);
        child.wait_line("cleanup done fires=1", BOUND);
        let status = child.wait_exit(BOUND);
        assert_eq!(status.code(), Some(0), "{}", child.output());
    }

    fn sigint_fires_once_and_the_child_exits_0() {
        fires_once_then_exits_cleanly("INT");
    }

    fn sigterm_fires_once_and_the_child_exits_0() {
        fires_once_then_exits_cleanly("TERM");
    }

    fn sighup_fires_once_and_the_child_exits_0() {
        fires_once_then_exits_cleanly("HUP");
    }

    /// The cleanup waits for stdin to close, which the test never does: only the forced
    /// exit can end the child.
    fn a_second_signal_forces_exit_130_before_the_cleanup_ends() {
        for second in ["INT", "TERM"] {
            let mut child = start("slow-cleanup");
            child.signal("TERM");
            child.wait_line("fired reason=signal", BOUND);
            child.signal(second);
            let status = child.wait_exit(BOUND);
            assert_eq!(status.code(), Some(130), "{}", child.output());
            child.wait_line("forcing exit with code 130", BOUND);
            assert!(
                !child.output().contains("cleanup done"),
                "{}",
                child.output()
            );
        }
    }

    fn a_signal_before_the_server_starts_shuts_it_down_right_after_start() {
        let mut child = start("early");
        child.signal("TERM");
        child.wait_line(lameduck::signal::FIRST_SIGNAL_LINE, BOUND);
        child.send_line("go");
        child.wait_line("report: shutdown (signal)", BOUND);
        assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
    }

    /// 100 signals in quick succession (one `kill` sending them back to back): one fire,
    /// one cleanup, no deadlock.
    fn a_hundred_signals_fire_once_and_clean_up_once() {
        let mut child = start("no-force");
        let pid = child.pid.to_string();
        let status = std::process::Command::new("kill")
            .arg("-INT")
            .args(std::iter::repeat(pid.as_str()).take(100))
            .status()
            .unwrap();
        assert!(status.success());
        child.wait_line("fired reason=signal", BOUND);
        // The kernel merges a signal into one already pending, so how many of the 100 reach
        // the handler varies. One more, now that the first has been handled, must: the
        // handler still works after the storm.
        child.signal("INT");
        child.wait_line("ignored, still shutting down gracefully", BOUND);
        child.close_stdin();
        let status = child.wait_exit(BOUND);
        assert_eq!(status.code(), Some(0), "{}", child.output());
        let output = child.output();
        assert_eq!(output.matches("fired reason=").count(), 1, "{output}");
        assert_eq!(output.matches("cleanup done").count(), 1, "{output}");
        assert_eq!(output.matches("shutting down gracefully, press").count(), 1);
    }

    fn with_forcing_off_the_child_survives_a_second_signal() {
        let mut child = start("no-force");
        child.signal("INT");
        child.wait_line("fired reason=signal", BOUND);
        child.signal("INT");
        // The handler's own log line is the event: the second signal has been handled.
        child.wait_line("ignored, still shutting down gracefully", BOUND);
        child.close_stdin();
        child.wait_line("cleanup done fires=2", BOUND);
        assert_eq!(child.wait_exit(BOUND).code(), Some(0), "{}", child.output());
    }
}
