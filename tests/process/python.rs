//! Nothing lost under keep-alive load from Python's `http.client`, which sends on a kept
//! connection without looking whether the server closed it, and from a client that looks
//! first (as urllib3 does): 32 clients against the seed program, SIGTERM mid-run, handler
//! 0 ms and 50 ms. Every request written gets its whole response. `.ci/run` runs them again
//! against the Windows build under wine, where the connection table is not read: the drain's
//! fallback (the idle linger after the last keep-alive response) is what they check there.
//!
//! Rounds per case: `LAMEDUCK_PYTHON_ROUNDS` (2 by default; the README quotes a run of 50).
//! Where `python3` is missing the cases are reported `ignored` with the reason, or fail when
//! `CI` is set.

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(unix)]
    return unix::trials();
    #[cfg(not(unix))]
    Vec::new()
}

#[cfg(unix)]
mod unix {
    use std::process::Command;

    use libtest_mimic::{Completion, Trial};

    use crate::support::{serve_example, Proc, BOUND};

    const CLIENT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/process/keep_alive_client.py"
    );

    pub fn trials() -> Vec<Trial> {
        [
            ("reuse", "0"),
            ("reuse", "50"),
            ("check", "0"),
            ("check", "50"),
        ]
        .into_iter()
        .map(|(mode, delay)| {
            let name = format!("nothing_lost_python_{mode}_handler_{delay}ms");
            Trial::ignorable_test(crate::trial_name(module_path!(), &name), move || {
                if !python_present() {
                    return if std::env::var_os("CI").is_some() {
                        Err("python3 is missing, and under CI this test must run".into())
                    } else {
                        Ok(Completion::ignored_with("python3 is not installed"))
                    };
                }
                for round in 0..rounds() {
                    nothing_lost(mode, delay, round);
                }
                Ok(Completion::Completed)
            })
        })
        .collect()
    }

    fn python_present() -> bool {
        Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn rounds() -> usize {
        std::env::var("LAMEDUCK_PYTHON_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2)
    }

    fn nothing_lost(mode: &str, delay_ms: &str, round: usize) {
        let (mut hello, addr) = serve_example("hello", &["--delay-ms", delay_ms]);
        let mut client = Command::new("python3");
        client.args([
            CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "32",
            mode,
        ]);
        let mut client = Proc::spawn(client);
        client.wait_line("responses 200", BOUND);
        // Under wine (`.ci/run`'s Windows pass) only SIGINT arrives, as CTRL_C_EVENT.
        let under_wine = std::env::var_os("LAMEDUCK_EXAMPLE_RUNNER").is_some();
        hello.signal(if under_wine { "INT" } else { "TERM" });
        assert_eq!(hello.wait_exit(BOUND).code(), Some(0), "{}", hello.output());
        client.close_stdin();
        let tally = client.wait_line("tally ", BOUND);
        client.wait_exit(BOUND);
        eprintln!("{mode}, {delay_ms} ms, round {round}: {tally}");
        let count = |key: &str| -> u64 {
            tally
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {tally:?}"))
        };
        assert_eq!(count("lost"), 0, "{tally}\n{}", client.output());
        assert_eq!(count("other"), 0, "{tally}\n{}", client.output());
        assert!(count("ok") >= 200, "{tally}");
    }
}
