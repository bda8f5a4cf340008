//! Shutdown hooks (Go's `RegisterOnShutdown`): callbacks run in order after the drain, each
//! on its own thread (`lameduck-hook-N`), sharing what is left of the deadline.

use std::time::{Duration, Instant};

use super::report::{HookOutcome, HookReport};
use crate::shutdown::pool::Pool;

/// Every hook is waited for at least this long from when its thread starts running it,
/// even when an earlier one used up the deadline: one that returns at once is then reported
/// as finished, not as cut. A floor, not a tuning; the nearest measured: waking and joining
/// all 32 workers of an idle shutdown takes about 2.3 ms on 2 cores (`benches/NOTES.md`).
/// Timed from the spawn instead, a hook that only sends on a channel was reported as
/// overrun under wine on a loaded CI machine (its thread took longer than this to start).
const MIN_WAIT: Duration = Duration::from_millis(10);

/// The longest a hook's thread is waited for to start, past the deadline. A bound: threads
/// start in microseconds here, in milliseconds under wine.
const START_BOUND: Duration = Duration::from_secs(1);

/// A hook and its name.
pub(crate) struct Hook {
    pub(crate) name: String,
    pub(crate) run: Box<dyn FnOnce(Instant) + Send + 'static>,
}

/// Runs `hooks` in order, each given `deadline`. A hook still running at the deadline is
/// left running (`Overran`) and the next one starts at once, with what is left (at least
/// [`MIN_WAIT`]); a panic is caught and named; neither stops the others.
pub(crate) fn run(hooks: Vec<Hook>, deadline: Instant) -> Vec<HookReport> {
    let mut reports = Vec::with_capacity(hooks.len());
    let mut pool = Pool::with_prefix("lameduck-hook");
    for Hook { name, run } in hooks {
        log::info!("shutdown hook {name:?}");
        let (running_tx, running) = crossbeam_channel::bounded::<Instant>(1);
        let spawned = Instant::now();
        let outcome = match pool.spawn(move || {
            let _ = running_tx.send(Instant::now());
            run(deadline);
        }) {
            Err(e) => HookOutcome::Panicked(e.to_string()),
            Ok(thread) => {
                let thread = thread.to_owned();
                let started = running
                    .recv_deadline(deadline.max(spawned + START_BOUND))
                    .unwrap_or(spawned);
                let joined = pool.join_deadline(deadline.max(started + MIN_WAIT));
                if let Some(p) = joined.panicked().iter().find(|p| p.name() == thread) {
                    HookOutcome::Panicked(p.message().to_owned())
                } else if joined.finished().contains(&thread) {
                    HookOutcome::Finished(started.elapsed())
                } else {
                    HookOutcome::Overran
                }
            }
        };
        match &outcome {
            HookOutcome::Finished(_) => {}
            HookOutcome::Panicked(message) => {
                log::error!("shutdown hook {name:?} panicked: {message}")
            }
            HookOutcome::Overran => {
                log::warn!("shutdown hook {name:?} still running at the deadline; left running")
            }
        }
        reports.push(HookReport { name, outcome });
    }
    reports
}
