//! Tests with processes of their own: real signals to real children, the examples and the
//! seed program run as their README says, triggers that end a child, a rolling restart
//! behind a real nginx, a child out of file descriptors, and the metrics read by Python's
//! parser of Prometheus' format.
//!
//! This binary has its own `main` (`harness = false`, with `libtest-mimic` for the usual
//! test-runner interface) for two reasons:
//!
//! - **Children are not tests.** A test that needs a child process runs this binary again
//!   with `LAMEDUCK_CHILD=module:mode` ([`support::child`]); `main` then runs that child and
//!   nothing else. No entry point shows up as a test that passes by doing nothing.
//! - **A skip is visible.** A test whose real component is missing (nginx) is reported
//!   `ignored` with its reason in the summary `cargo test` prints, or fails when `CI` is set,
//!   where the component must be there.

/// Trials from test functions of the calling module, named `module::function` as the
/// standard harness would name them.
macro_rules! trials {
    ($($test:ident),* $(,)?) => {
        vec![$(
            libtest_mimic::Trial::test(
                $crate::trial_name(module_path!(), stringify!($test)),
                || { $test(); Ok(()) },
            )
        ),*]
    };
}

#[path = "../support/mod.rs"]
mod support;

mod emfile;
mod examples;
mod hello;
mod inherit;
mod metrics;
mod notify;
mod python;
mod rolling;
mod signals;
mod triggers;
mod upgrade;

use libtest_mimic::{Arguments, Trial};

/// `module::function`, without this binary's own name in front.
pub fn trial_name(module: &str, test: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{module}::{test}")
}

fn main() {
    if let Ok(child) = std::env::var(support::CHILD) {
        let (module, mode) = child.split_once(':').unwrap_or((&child, ""));
        match module {
            "signals" => signals::child(mode),
            "triggers" => triggers::child(mode),
            "rolling" => rolling::child(mode),
            other => panic!("unknown child {other:?}"),
        }
    }
    let trials: Vec<Trial> = [
        emfile::trials(),
        examples::trials(),
        hello::trials(),
        inherit::trials(),
        metrics::trials(),
        notify::trials(),
        python::trials(),
        rolling::trials(),
        signals::trials(),
        triggers::trials(),
        upgrade::trials(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
