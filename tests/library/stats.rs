//! What a running server shows: `Handle::stats` while it serves, during the drain and after,
//! and the metrics endpoint's values (its format is read by Python's `prometheus_client` in
//! `tests/process/metrics.rs`).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use lameduck::tiny_http::{Request, Response, ResponseBox};
use lameduck::{Builder, Error, Phase};

use crate::support::http::{get, Conn};
use crate::support::server::Running;
use crate::support::{quiet_panics, until, BOUND};

/// A server whose `/hold` handlers say that they have started and then wait until the test
/// lets them go; `/panic` panics; anything else answers `ok`.
struct Held {
    s: Running,
    entered: Receiver<()>,
    gate: Option<Sender<()>>,
}

impl Held {
    #[track_caller]
    fn start(configure: impl FnOnce(Builder) -> Builder) -> Held {
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (gate, held) = crossbeam_channel::bounded::<()>(0);
        let s = Running::start(configure, move |request: &mut Request| -> ResponseBox {
            match request.url() {
                "/hold" => {
                    let _ = entered_tx.send(());
                    let _ = held.recv();
                }
                "/panic" => panic!("on purpose"),
                _ => {}
            }
            Response::from_string("ok").boxed()
        });
        Held {
            s,
            entered,
            gate: Some(gate),
        }
    }

    /// Sends `/hold` on a connection of its own; returns it once the request is in its
    /// handler.
    #[track_caller]
    fn hold(&self) -> Conn {
        let mut conn = Conn::open(self.s.addr).unwrap();
        conn.send("GET", "/hold", &[], b"").unwrap();
        self.entered
            .recv_timeout(BOUND)
            .expect("/hold never reached its handler");
        conn
    }

    /// Lets every `/hold` handler return, now and from now on.
    fn release(&mut self) {
        self.gate = None;
    }
}

/// The snapshot follows the server through its life: its counts while it serves; during the
/// drain what it holds, the connections and the deadline left; at the end the report's
/// numbers, for as long as a handle lives, the server gone.
#[test]
fn stats_follow_the_server_from_serving_through_the_drain_to_the_report() {
    quiet_panics();
    let deadline = Duration::from_secs(20);
    let mut h = Held::start(|b| b.workers(2).deadline(deadline));
    let handle = h.s.handle.clone();

    let fresh = handle.stats();
    assert_eq!(fresh.phase(), Phase::Serving);
    assert_eq!(
        (fresh.served(), fresh.in_handlers(), fresh.waiting()),
        (0, 0, 0)
    );
    assert_eq!((fresh.deadline_left(), fresh.drain_time()), (None, None));

    assert_eq!(get(h.s.addr, "/").unwrap().status, 200);
    assert_eq!(get(h.s.addr, "/panic").unwrap().status, 500);
    // Counted once the response is written: a moment after the client may have read it.
    until("two requests counted", || handle.stats().served() == 2);
    assert_eq!(handle.stats().handler_panics(), 1);

    let mut first = h.hold();
    let mut second = h.hold();
    let mut third = Conn::open(h.s.addr).unwrap();
    third.send("GET", "/", &[], b"").unwrap();
    // Both workers held: the third waits (the shedder takes it into the waiting room).
    until("a request waiting", || handle.stats().waiting() == 1);
    assert_eq!(handle.stats().in_handlers(), 2);

    let fired = Instant::now();
    handle.shutdown();
    until("draining", || handle.stats().phase() == Phase::Draining);
    let draining = handle.stats();
    let since_fire = fired.elapsed();
    let left = draining
        .deadline_left()
        .expect("no deadline during the drain");
    assert!(
        left <= deadline && left + since_fire >= deadline,
        "{left:?} left {since_fire:?} after the fire"
    );
    assert_eq!((draining.in_handlers(), draining.waiting()), (2, 1));
    assert_eq!(draining.drain_time(), None);
    if cfg!(target_os = "linux") {
        // The drain looks at the table once a second: the three connections held.
        until("three connections seen open", || {
            handle.stats().connections_open() == Some(3)
        });
    }

    h.release();
    for conn in [&mut first, &mut second, &mut third] {
        let response = conn.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert!(response.closes());
    }
    let stopped = h.s.finished().expect("the drain did not finish in time");
    let report = stopped.report().clone();
    let after = handle.stats();
    assert_eq!(after.phase(), Phase::Done);
    assert_eq!(after.served(), 5);
    assert_eq!(
        after.served(),
        report.served_before() + report.served_during_drain()
    );
    assert_eq!(after.handler_panics(), report.handler_panics());
    assert_eq!(
        (after.rejected(), after.shed()),
        (report.rejected(), report.shed())
    );
    assert_eq!(after.drain_time(), Some(report.drain_time()));
    assert_eq!((after.in_handlers(), after.waiting()), (0, 0));

    drop(stopped);
    drop(h);
    let later = handle.stats();
    assert_eq!((later.phase(), later.served()), (Phase::Done, 5));
}

/// A drain cut by its deadline: the request still waiting is answered 503 and counted
/// rejected, in the snapshot as in the report; the handler still running is still counted.
#[test]
fn stats_count_what_the_deadline_rejected() {
    let mut h = Held::start(|b| b.workers(1).deadline(Duration::from_millis(500)));
    let handle = h.s.handle.clone();
    let mut held = h.hold();
    let mut waiting = Conn::open(h.s.addr).unwrap();
    waiting.send("GET", "/", &[], b"").unwrap();
    until("a request waiting", || handle.stats().waiting() == 1);

    handle.shutdown();
    let stopped = match h.s.finished() {
        Err(Error::DeadlineExceeded(stopped)) => stopped,
        other => panic!("the deadline did not cut the drain: {other:?}"),
    };
    assert_eq!(waiting.read_response(false).unwrap().status, 503);
    let stats = handle.stats();
    assert_eq!(stats.phase(), Phase::Done);
    assert_eq!(stats.rejected(), 1);
    assert_eq!(stats.rejected(), stopped.report().rejected());
    assert_eq!((stats.in_handlers(), stats.waiting()), (1, 0));
    assert_eq!(stats.deadline_left(), Some(Duration::ZERO));

    h.release();
    assert_eq!(held.read_response(false).unwrap().status, 200);
}

/// A scrape read line by line: each family's `# HELP` and `# TYPE` first, then its samples
/// `name{labels} value`. Only the values matter here; the format itself is checked by the
/// reference parser, Python's `prometheus_client`, in `tests/process/metrics.rs`.
struct Metrics {
    /// Name, labels as written (`phase="done"`, or empty), type, value.
    samples: Vec<(String, String, String, f64)>,
    text: String,
}

impl Metrics {
    #[track_caller]
    fn parse(text: &str) -> Metrics {
        let mut typed: Vec<(String, String)> = Vec::new();
        let mut helped: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                helped.push(help.split(' ').next().unwrap_or("").to_owned());
            } else if let Some(kind) = line.strip_prefix("# TYPE ") {
                let (name, kind) = kind.split_once(' ').expect("# TYPE name type");
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                typed.push((name.to_owned(), kind.to_owned()));
            } else {
                let (series, value) = line.rsplit_once(' ').expect("name value");
                let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.strip_suffix('}').expect("}")),
                    None => (series, ""),
                };
                // The family's HELP and TYPE come just before its first sample.
                let (family, kind) = typed.last().expect("a sample before any # TYPE");
                assert_eq!(
                    (family.as_str(), helped.last()),
                    (name, Some(family)),
                    "{line}"
                );
                samples.push((name.to_owned(), labels.to_owned(), kind.clone(), value));
            }
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    fn find(&self, name: &str, kind: &str) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| s.0 == name);
        let (_, _, of_kind, value) = found.next()?;
        assert!(found.next().is_none(), "{name} twice in:\n{}", self.text);
        assert_eq!(of_kind, kind, "{name}");
        Some(*value)
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.find(name, "gauge")
    }

    #[track_caller]
    fn counter(&self, name: &str) -> f64 {
        self.find(name, "counter")
            .unwrap_or_else(|| panic!("no {name} in:\n{}", self.text))
    }

    /// The phase at 1; every phase must be there, the others at 0.
    #[track_caller]
    fn phase(&self) -> String {
        let phases: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.0 == "lameduck_phase" && s.2 == "gauge")
            .collect();
        assert_eq!(phases.len(), 6, "{}", self.text);
        let at_one: Vec<_> = phases.iter().filter(|s| s.3 == 1.0).collect();
        let at_zero = phases.iter().filter(|s| s.3 == 0.0).count();
        assert_eq!((at_one.len(), at_zero), (1, 5), "{}", self.text);
        let label = &at_one[0].1;
        label
            .strip_prefix("phase=\"")
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("label {label}"))
            .to_owned()
    }
}

/// The metrics endpoint: Prometheus' text format, answered by lameduck (not the handler, and
/// not counted as served), with `Connection: close` during the drain, and after the drain
/// while the stopped server lives, with the drain's numbers.
#[test]
fn metrics_are_prometheus_text_while_serving_during_the_drain_and_after() {
    let mut h = Held::start(|b| b.workers(2).metrics("/metrics"));
    let handle = h.s.handle.clone();
    let mut scraper = Conn::open(h.s.addr).unwrap();
    let mut late_scraper = Conn::open(h.s.addr).unwrap();

    let serving = scraper.request("GET", "/metrics?x=1").unwrap();
    assert_eq!(serving.status, 200);
    let content_type = serving.header("Content-Type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!serving.closes());
    let m = Metrics::parse(&serving.text());
    assert_eq!(m.phase(), "serving");
    assert_eq!(m.gauge("lameduck_requests_in_handlers"), Some(0.0));
    assert_eq!(m.gauge("lameduck_requests_waiting"), Some(0.0));
    assert_eq!(m.gauge("lameduck_deadline_seconds_left"), None);
    assert_eq!(m.gauge("lameduck_last_drain_duration_seconds"), None);
    assert_eq!(m.counter("lameduck_requests_served_total"), 0.0);
    assert_eq!(m.counter("lameduck_drains_total"), 0.0);
    // Another method on the path is the handler's.
    scraper.send("POST", "/metrics", &[], b"x").unwrap();
    assert_eq!(scraper.read_response(false).unwrap().text(), "ok");
    // Served once, so that tiny_http reads from it after the drain too.
    assert_eq!(late_scraper.request("GET", "/").unwrap().status, 200);
    until("two requests counted", || handle.stats().served() == 2);

    let mut held = h.hold();
    handle.shutdown();
    until("draining", || handle.stats().phase() == Phase::Draining);
    let during = scraper.request("GET", "/metrics").unwrap();
    assert_eq!(during.status, 200);
    assert!(
        during.closes(),
        "a scrape during the drain kept its connection"
    );
    let m = Metrics::parse(&during.text());
    assert_eq!(m.phase(), "draining");
    assert_eq!(m.gauge("lameduck_requests_in_handlers"), Some(1.0));
    let left = m
        .gauge("lameduck_deadline_seconds_left")
        .expect("no deadline during the drain");
    assert!(left > 0.0 && left <= 10.0, "{left}");
    assert_eq!(m.counter("lameduck_requests_served_total"), 2.0);
    assert_eq!(m.counter("lameduck_drains_total"), 0.0);

    h.release();
    assert_eq!(held.read_response(false).unwrap().status, 200);
    let stopped = h.s.finished().expect("the drain did not finish in time");
    let after = late_scraper.request("GET", "/metrics").unwrap();
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(after.closes());
    let m = Metrics::parse(&after.text());
    assert_eq!(m.phase(), "done");
    assert_eq!(m.counter("lameduck_requests_served_total"), 3.0);
    assert_eq!(m.counter("lameduck_drains_total"), 1.0);
    assert_eq!(
        m.gauge("lameduck_last_drain_duration_seconds"),
        Some(stopped.report().drain_time().as_secs_f64())
    );
}

/// With the `serde` feature, the report is one JSON line a log pipeline can keep: what the
/// deadline cut and what it rejected included.
#[cfg(feature = "serde")]
#[test]
fn the_report_is_one_json_line() {
    let mut h = Held::start(|b| {
        b.workers(1)
            .deadline(Duration::from_millis(300))
            .on_shutdown("flush", |_| {})
    });
    let held = h.hold();
    let mut waiting = Conn::open(h.s.addr).unwrap();
    waiting.send("GET", "/queued", &[], b"").unwrap();
    until("a request waiting", || h.s.handle.stats().waiting() == 1);
    h.s.handle.shutdown();
    let stopped = match h.s.finished() {
        Err(Error::DeadlineExceeded(stopped)) => stopped,
        other => panic!("the deadline did not cut the drain: {other:?}"),
    };
    let report = stopped.report();
    let line = serde_json::to_string(report).unwrap();
    eprintln!("{line}");
    assert!(!line.contains('\n'), "{line}");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["reason"], "requested", "{line}");
    assert_eq!(json["complete"], false, "{line}");
    assert_eq!(json["deadline_seconds"], 0.3, "{line}");
    assert_eq!(json["drain_seconds"], report.drain_time().as_secs_f64());
    assert_eq!(json["rejected"], 1, "{line}");
    assert_eq!(json["served_before"], 0, "{line}");
    let straggler = &json["stragglers"][0];
    assert_eq!(
        (&straggler["method"], &straggler["url"]),
        (&"GET".into(), &"/hold".into()),
        "{line}"
    );
    let peer = held.stream().local_addr().unwrap().to_string();
    assert_eq!(straggler["peer"], peer.as_str(), "{line}");
    assert_eq!(straggler["worker"], "lameduck-worker-1", "{line}");
    assert_eq!(json["workers"]["running"][0], "lameduck-worker-1", "{line}");
    assert_eq!(json["hooks"][0]["name"], "flush", "{line}");
    assert_eq!(json["hooks"][0]["outcome"], "finished", "{line}");
    assert!(json["connections_left"]["arriving"].is_array(), "{line}");
    h.release();
}
