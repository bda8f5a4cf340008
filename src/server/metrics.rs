//! The metrics endpoint ([`Builder::metrics`](crate::Builder::metrics)): a server's
//! [`Stats`] in Prometheus' text exposition format, version 0.0.4.
//!
//! A `GET` on the path is answered by lameduck, never by the handler: while serving, during
//! the drain (with `Connection: close`, as every response then, so that a scraper's
//! keep-alive connection does not hold the drain), and after it while the
//! [`Stopped`](crate::Stopped) value lives. Its cost is a string comparison per request when
//! on, nothing when off.

use std::fmt::Write;

use tiny_http::{Header, Method, Request, Response, ResponseBox};

use super::phase::Phase;
use super::stats::Stats;

/// The content type of the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics, if `request` is a `GET` on `path` (its query ignored).
pub(crate) fn answer(
    path: Option<&str>,
    request: &Request,
    stats: impl FnOnce() -> Stats,
) -> Option<ResponseBox> {
    let path = path?;
    if *request.method() != Method::Get || request.url().split('?').next() != Some(path) {
        return None;
    }
    let header = Header::from_bytes("Content-Type", CONTENT_TYPE).ok()?;
    Some(
        Response::from_string(render(&stats()))
            .with_header(header)
            .boxed(),
    )
}

/// `stats` in the text format. A gauge lameduck does not know (the connections where there
/// is no table, the deadline before the fire, the drain's time before it is over) is left
/// out, as Prometheus expects of a value that does not exist.
pub(crate) fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "lameduck_phase",
        "gauge",
        "The server's phase: 1 for the phase it is in, 0 for the others.",
    );
    for phase in Phase::ALL {
        let now = u8::from(stats.phase() == phase);
        let _ = writeln!(out, "lameduck_phase{{phase=\"{phase}\"}} {now}");
    }
    let gauges: [(&str, &str, Option<f64>); 5] = [
        (
            "lameduck_requests_in_handlers",
            "Requests in a handler now.",
            Some(stats.in_handlers() as f64),
        ),
        (
            "lameduck_requests_waiting",
            "Requests read and waiting for a worker.",
            Some(stats.waiting() as f64),
        ),
        (
            "lameduck_connections_open",
            "Connections open on the port at the last look at the OS's table.",
            stats.connections_open().map(|n| n as f64),
        ),
        (
            "lameduck_deadline_seconds_left",
            "Seconds left to the shutdown deadline, once shutdown has fired.",
            stats.deadline_left().map(|d| d.as_secs_f64()),
        ),
        (
            "lameduck_last_drain_duration_seconds",
            "How long the last drain took, from the fire.",
            stats.drain_time().map(|d| d.as_secs_f64()),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    let counters: [(&str, &str, u64); 5] = [
        (
            "lameduck_requests_served_total",
            "Requests answered by the handler.",
            stats.served(),
        ),
        (
            "lameduck_requests_rejected_total",
            "Requests answered 503 because the server was shutting down.",
            stats.rejected(),
        ),
        (
            "lameduck_requests_shed_total",
            "Requests answered 503 at once because every worker was busy and the waiting \
             room full.",
            stats.shed(),
        ),
        (
            "lameduck_handler_panics_total",
            "Requests whose handler panicked (answered 500).",
            stats.handler_panics(),
        ),
        (
            "lameduck_drains_total",
            "Drains over.",
            u64::from(stats.drain_time().is_some()),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
