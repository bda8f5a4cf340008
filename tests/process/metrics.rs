//! The metrics endpoint read by the reference parser of Prometheus' text format, Python's
//! `prometheus_client` (`text_string_to_metric_families`): `examples/12_watch` scraped while
//! it serves and during its drain, as a Prometheus server would. Where `prometheus_client` is
//! missing the test is reported `ignored` with the reason, or fails when `CI` is set
//! (`.ci/run` installs it).

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

    use crate::support::http::Conn;
    use crate::support::{serve_example, Proc, BOUND};

    /// Prints each sample the parser read as `type name labels value`.
    const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print("sample:", family.type, sample.name, labels or "-", float(sample.value))
"#;

    pub fn trials() -> Vec<Trial> {
        let name = "metrics_read_by_prometheus_client_while_serving_and_draining";
        vec![Trial::ignorable_test(
            crate::trial_name(module_path!(), name),
            || {
                if !parser_present() {
                    return if std::env::var_os("CI").is_some() {
                        Err(
                            "python3's prometheus_client is missing, and under CI this test \
                             must run (.ci/run installs it)"
                                .into(),
                        )
                    } else {
                        Ok(Completion::ignored_with(
                            "python3's prometheus_client is not installed",
                        ))
                    };
                }
                metrics_read_by_prometheus_client_while_serving_and_draining();
                Ok(Completion::Completed)
            },
        )]
    }

    fn parser_present() -> bool {
        Command::new("python3")
            .args(["-c", "import prometheus_client.parser"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The samples Python's parser reads in `text`, one `type name labels value` each; fails
    /// if it cannot read it.
    #[track_caller]
    fn parse(text: &str) -> Vec<String> {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PARSE]);
        let mut python = Proc::spawn(cmd);
        for line in text.lines() {
            python.send_line(line);
        }
        python.close_stdin();
        let status = python.wait_exit(BOUND);
        let output = python.output();
        assert!(status.success(), "the parser refused:\n{output}\n{text}");
        output
            .lines()
            .filter_map(|l| l.strip_prefix("[stdout] sample: "))
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    fn has(samples: &[String], sample: &str) {
        assert!(
            samples.iter().any(|s| s == sample),
            "no {sample:?} in {samples:#?}"
        );
    }

    fn metrics_read_by_prometheus_client_while_serving_and_draining() {
        let (mut proc, addr) = serve_example("12_watch", &["--delay-ms", "3000"]);
        let mut scraper = Conn::open(addr).unwrap();
        let serving = scraper.request("GET", "/metrics").unwrap();
        assert_eq!(serving.status, 200);
        let samples = parse(&serving.text());
        has(&samples, "gauge lameduck_phase phase=serving 1.0");
        has(&samples, "gauge lameduck_phase phase=draining 0.0");
        has(&samples, "gauge lameduck_requests_in_handlers - 0.0");
        has(&samples, "counter lameduck_requests_served_total - 0.0");
        has(&samples, "counter lameduck_drains_total - 0.0");

        let mut work = Conn::open(addr).unwrap();
        work.send("GET", "/", &[], b"").unwrap();
        proc.wait_line(": received", BOUND);
        proc.signal("INT");
        // The drain has lasted a second: its first progress line.
        proc.wait_line("draining: 1 in handlers", BOUND);
        let draining = scraper.request("GET", "/metrics").unwrap();
        assert_eq!(draining.status, 200);
        assert!(
            draining.closes(),
            "a scrape during the drain kept its connection"
        );
        let samples = parse(&draining.text());
        has(&samples, "gauge lameduck_phase phase=draining 1.0");
        has(&samples, "gauge lameduck_phase phase=serving 0.0");
        has(&samples, "gauge lameduck_requests_in_handlers - 1.0");
        let left = samples
            .iter()
            .find_map(|s| s.strip_prefix("gauge lameduck_deadline_seconds_left - "))
            .unwrap_or_else(|| panic!("no deadline in {samples:#?}"));
        let left: f64 = left.parse().unwrap();
        assert!(left > 0.0 && left < 9.5, "{left}");

        let done = work.read_response(false).unwrap();
        assert_eq!(done.status, 200);
        assert_eq!(
            done.text(),
            "done; phase draining, 1 in handlers, 0 served before this one\n"
        );
        assert_eq!(proc.wait_exit(BOUND).code(), Some(0), "{}", proc.output());
    }
}
