//! The targets, with PASS or MISS for lameduck (plain, naive and Go beside it, for
//! reference), and the smoke checks.

use crate::child::Kind;
use crate::measure::{self, Drain, Throughput};
use crate::process::Sig;
use crate::table::{self, num, Table};
use crate::{Plan, Results};

/// One target: what each server measured, and whether lameduck met it.
struct Row {
    target: String,
    /// lameduck, plain, naive, Go.
    values: [String; 4],
    verdict: &'static str,
}

const COLUMNS: [Kind; 4] = [Kind::Lameduck, Kind::Plain, Kind::Naive, Kind::Go];

/// A row from `check`, which gives each server's value and whether it meets the target
/// (`None`: not measured).
fn row(target: String, check: impl Fn(Kind) -> Option<(String, bool)>) -> Row {
    let results = COLUMNS.map(&check);
    let verdict = match &results[0] {
        None => "not run",
        Some((_, true)) => "PASS",
        Some((_, false)) => "MISS",
    };
    Row {
        target,
        values: results.map(|r| r.map_or("-".to_owned(), |(value, _)| value)),
        verdict,
    }
}

pub fn print(plan: &Plan, results: &Results) {
    println!("\nSummary: targets for lameduck (plain, naive and Go for reference)");
    let mut table = Table::new(&["target", "lameduck", "verdict", "plain", "naive", "go"]);
    for row in rows(plan, results) {
        let [lameduck, plain, naive, go] = row.values;
        table.row(vec![
            row.target,
            lameduck,
            row.verdict.to_owned(),
            plain,
            naive,
            go,
        ]);
    }
    table.print();
}

fn rows(plan: &Plan, results: &Results) -> Vec<Row> {
    let t = results.throughput.as_ref();
    let w = results.latency.as_ref();
    let drain = results.drain.as_ref();
    let conns: Vec<String> = plan.conns.iter().map(usize::to_string).collect();
    let wrk_conns: Vec<String> = plan.wrk_conns.iter().map(usize::to_string).collect();
    let exit = |kind, sig| table::median(results.exit.as_ref()?.after(sig).get(&kind)?);
    let mut rows = vec![
        row(
            format!("throughput >= 1.0x plain ({} conns)", conns.join("/")),
            |kind| throughput_ratios(plan, t?, kind),
        ),
        row(
            format!(
                "wrk: throughput >= 1.0x plain ({} conns; paired: in the rounds where plain \
                 served every conn, x plain's there (rounds))",
                wrk_conns.join("/")
            ),
            |kind| {
                let w = w?;
                let ratios: Vec<Option<f64>> =
                    plan.wrk_conns.iter().map(|&c| w.ratio(c, kind)).collect();
                let texts: Vec<String> = ratios.iter().map(|r| num(*r, 2)).collect();
                let pass = ratios.iter().all(|r| r.is_some_and(|r| r >= 1.0));
                // For reference: the same in the rounds where plain served every connection.
                let paired: Vec<String> = plan
                    .wrk_conns
                    .iter()
                    .map(|&c| match w.paired_rps(c, kind) {
                        Some(p) => format!("{:.2} ({})", p.median / p.plain, p.rounds),
                        None => "- (0)".to_owned(),
                    })
                    .collect();
                let text = format!("{}; paired: {}", texts.join(" / "), paired.join(" / "));
                Some((text, pass))
            },
        ),
        row(
            format!(
                "wrk: p99 <= plain's, in the rounds where plain served every conn ({} conns), \
                 ms vs plain's (rounds)",
                wrk_conns.join("/")
            ),
            |kind| {
                let w = w?;
                let texts: Vec<String> = plan
                    .wrk_conns
                    .iter()
                    .map(|&c| match w.paired_p99(c, kind) {
                        Some(p) if kind == Kind::Plain => format!("{:.2} ({})", p.plain, p.rounds),
                        Some(p) => format!("{:.2} vs {:.2} ({})", p.median, p.plain, p.rounds),
                        None => "- (0)".to_owned(),
                    })
                    .collect();
                let pass = plan
                    .wrk_conns
                    .iter()
                    .all(|&c| w.paired_p99(c, kind).is_some_and(|p| p.median <= p.plain));
                Some((texts.join(" / "), pass))
            },
        ),
        row(
            format!(
                "wrk: rescue waits <= 50 ms at {WRK_MOST} conns (worst run; since accepted, at \
                 most; threads' own slowest first read)"
            ),
            |kind| {
                if kind != Kind::Lameduck {
                    return None;
                }
                let w = w?;
                let worst = table::max(w.rescue_waits.get(&(WRK_MOST, Kind::Lameduck))?)?;
                let own = w
                    .late_waits
                    .get(&(WRK_MOST, Kind::Lameduck))
                    .and_then(|l| table::max(l));
                let queued = w
                    .queued_waits
                    .get(&(WRK_MOST, Kind::Lameduck))
                    .and_then(|q| table::max(q));
                Some((
                    format!("{worst:.1} ms ({} ms; {} ms)", num(queued, 1), num(own, 1)),
                    worst <= 50.0,
                ))
            },
        ),
        row(
            format!(
                "stats + metrics on: throughput >= 0.97x lameduck ({} conns)",
                conns.join("/")
            ),
            |kind| watched_ratios(plan, t?, kind),
        ),
        row(
            format!("p99 <= 2.5 ms at {BURST} conns, all served"),
            |kind| p99_served(t?, kind),
        ),
        row(
            "idle signal->exit <= naive's + 1 ms (median, SIGINT / SIGTERM)".to_owned(),
            |kind| {
                let (int, term) = (exit(kind, Sig::Int)?, exit(kind, Sig::Term)?);
                let naive = (exit(Kind::Naive, Sig::Int)?, exit(Kind::Naive, Sig::Term)?);
                Some((
                    format!("{int:.2} / {term:.2} ms"),
                    int <= naive.0 + 1.0 && term <= naive.1 + 1.0,
                ))
            },
        ),
        row(
            format!("under load (50 ms handler) exit <= linger ({LINGER_MS:.0} ms) + 20 ms"),
            |kind| exit_under_load(drain?, kind),
        ),
        row("lost = 0 (0 ms / 50 ms handler)".to_owned(), |kind| {
            lost(drain?, kind)
        }),
        row(
            format!("burst {BURST}/{BURST} within 1 s, every round"),
            |kind| {
                let min = *results.burst.as_ref()?.get(&kind)?.iter().min()?;
                Some((format!("min {min}/{BURST}"), min == BURST))
            },
        ),
        row("deadline overrun <= 20 ms".to_owned(), |kind| {
            deadline_overrun(results, kind)
        }),
        row(
            format!("exit with {} idle conns <= linger + 50 ms", plan.idle_conns),
            |kind| {
                let runs = results.idle.as_ref()?.get(&kind)?;
                let exits: Vec<f64> = runs.iter().filter_map(|r| r.exit_ms).collect();
                let median = table::median(&exits)?;
                let all = exits.len() == runs.len();
                Some((format!("{median:.1} ms"), all && median <= LINGER_MS + 50.0))
            },
        ),
        row("idle RSS <= 3 MiB".to_owned(), |kind| {
            let mib = measure::median_rss(results.rss.as_ref()?.get(&kind)?)?;
            Some((format!("{mib:.2} MiB"), mib <= 3.0))
        }),
    ];
    // After the paired p99, the row it is read beside.
    if let Some(row) = plain_again(plan, results) {
        rows.insert(3, row);
    }
    rows
}

/// Plain tiny_http against itself (`--plain-twice`): how far apart the same server comes out
/// in this run, beside which lameduck's ratios and paired p99 are read. No verdict.
fn plain_again(plan: &Plan, results: &Results) -> Option<Row> {
    if !crate::child::has_plain_again() {
        return None;
    }
    let kind = Kind::PlainAgain;
    let mut parts = Vec::new();
    if let Some(t) = results.throughput.as_ref() {
        let ratios: Vec<String> = plan
            .conns
            .iter()
            .map(|&c| num(t.ratio(c, kind), 2))
            .collect();
        parts.push(format!("own client {} x plain", ratios.join(" / ")));
    }
    if let Some(w) = results.latency.as_ref() {
        let ratios: Vec<String> = plan
            .wrk_conns
            .iter()
            .map(|&c| {
                let paired = w
                    .paired_rps(c, kind)
                    .map_or("-".to_owned(), |p| format!("{:.2}", p.median / p.plain));
                format!("{} (paired {paired})", num(w.ratio(c, kind), 2))
            })
            .collect();
        let p99: Vec<String> = plan
            .wrk_conns
            .iter()
            .map(|&c| match w.paired_p99(c, kind) {
                Some(p) => format!("{:.2} vs {:.2} ({})", p.median, p.plain, p.rounds),
                None => "- (0)".to_owned(),
            })
            .collect();
        parts.push(format!(
            "wrk {} x plain; p99 {}",
            ratios.join(" / "),
            p99.join(" / ")
        ));
    }
    Some(Row {
        target: "for reference: plain tiny_http again, beside plain, as in the rows above \
                 (the same code's spread in this run)"
            .to_owned(),
        values: [parts.join("; "), "-".into(), "-".into(), "-".into()],
        verdict: "-",
    })
}

/// The connection count of the p99 and burst targets.
const BURST: usize = 64;

/// The connection count of the slowest-request target under wrk.
const WRK_MOST: usize = 256;

/// The ratios of the medians over all runs (the target), then, for reference, over the runs
/// in which every connection was served (with how many such runs plain had).
fn throughput_ratios(plan: &Plan, t: &Throughput, kind: Kind) -> Option<(String, bool)> {
    let all: Vec<Option<f64>> = plan.conns.iter().map(|&c| t.ratio(c, kind)).collect();
    let served: Vec<String> = plan
        .conns
        .iter()
        .map(|&c| {
            let runs = t.all_served_runs(c, Kind::Plain);
            format!("{} (n={runs})", num(t.ratio_all_served(c, kind), 2))
        })
        .collect();
    let texts: Vec<String> = all.iter().map(|r| num(*r, 2)).collect();
    let pass = all.iter().all(|r| r.is_some_and(|r| r >= 1.0));
    let text = format!("{}; all served: {}", texts.join(" / "), served.join(" / "));
    Some((text, pass))
}

/// For lameduck's column: the throughput with what watches a drain turned on (metrics path,
/// stats taken every millisecond), as a ratio to lameduck's own, per connection count.
fn watched_ratios(plan: &Plan, t: &Throughput, kind: Kind) -> Option<(String, bool)> {
    if kind != Kind::Lameduck {
        return None;
    }
    let ratios: Vec<Option<f64>> = plan
        .conns
        .iter()
        .map(|&c| Some(t.median_rps(c, Kind::Watched)? / t.median_rps(c, Kind::Lameduck)?))
        .collect();
    let texts: Vec<String> = ratios.iter().map(|r| num(*r, 3)).collect();
    let pass = ratios.iter().all(|r| r.is_some_and(|r| r >= 0.97));
    Some((texts.join(" / "), pass))
}

fn p99_served(t: &Throughput, kind: Kind) -> Option<(String, bool)> {
    let p99 = t.median_p99(BURST, kind)?;
    let served = t.min_served(BURST, kind)?;
    let mut text = format!("{p99:.2} ms, {served}/{BURST} served");
    if served < BURST {
        let all = t.median_p99_all_served(BURST, kind);
        text.push_str(&format!(" (all-served runs: {})", num(all, 2)));
    }
    Some((text, p99 <= 2.5 && served == BURST))
}

/// lameduck's idle linger (the default): idle keep-alive connections get that long after the
/// signal to send one more request, so an exit with connections open comes no sooner.
const LINGER_MS: f64 = lameduck::DEFAULT_IDLE_LINGER.as_millis() as f64;

fn exit_under_load(drain: &Drain, kind: Kind) -> Option<(String, bool)> {
    let exits = drain.exit_ms(50, kind);
    let median = table::median(&exits)?;
    let max = table::max(&exits)?;
    let stuck = drain.stuck(50, kind);
    let mut text = format!("{median:.1} ms (max {max:.1})");
    if stuck > 0 {
        text.push_str(&format!(", {stuck} did not exit"));
    }
    Some((text, stuck == 0 && median <= LINGER_MS.max(50.0) + 20.0))
}

fn lost(drain: &Drain, kind: Kind) -> Option<(String, bool)> {
    let total = |delay| Some(drain.lost(delay, kind)?.iter().sum::<f64>());
    let (fast, slow) = (total(0)?, total(50)?);
    Some((format!("{fast:.0} / {slow:.0}"), fast == 0.0 && slow == 0.0))
}

fn deadline_overrun(results: &Results, kind: Kind) -> Option<(String, bool)> {
    let runs = results.deadline.as_ref()?.get(&kind)?;
    if runs.iter().any(|r| r.exit_ms.is_none()) {
        return Some(("did not exit".to_owned(), false));
    }
    let worst = table::max(&measure::overruns(runs))?;
    let text = if worst < 0.0 {
        "exits at once, request lost".to_owned()
    } else {
        format!("+{worst:.1} ms")
    };
    Some((text, (0.0..=20.0).contains(&worst)))
}

/// What smoke mode asserts: lameduck lost nothing (both handlers), and every server answered
/// in its throughput runs. Returns the failures.
pub fn smoke_failures(plan: &Plan, results: &Results) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(drain) = &results.drain {
        for &(delay, _) in &plan.drain_cases {
            match drain.lost(delay, Kind::Lameduck) {
                Some(lost) if lost.iter().sum::<f64>() == 0.0 => {}
                Some(lost) => failures.push(format!(
                    "lameduck lost {} request(s) during shutdown with a {delay} ms handler",
                    lost.iter().sum::<f64>()
                )),
                None => failures.push(format!("no shutdown run with a {delay} ms handler")),
            }
        }
    }
    if let Some(t) = &results.throughput {
        for kind in Kind::ALL {
            if t.total_ok(kind) == 0 {
                failures.push(format!(
                    "{} answered no request in its throughput run",
                    kind.name()
                ));
            }
        }
    }
    failures
}
