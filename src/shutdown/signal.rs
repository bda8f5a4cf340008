//! Signal installation: the one place that talks to `ctrlc`.
//!
//! # What each platform delivers
//!
//! | platform | fires shutdown | second one (default) |
//! |---|---|---|
//! | Linux, macOS, other Unix | `SIGINT` (Ctrl+C in a terminal), `SIGTERM` (`kill`, systemd, Kubernetes, Docker), `SIGHUP` (terminal closed) | exit code 130 |
//! | Windows | Ctrl+C, Ctrl+Break | exit code 130 |
//! | Windows | console window closed, log-off, system shutdown | drained, within the 5 s Windows allows: see below |
//!
//! `SIGKILL` (Unix) and `TerminateProcess` (Windows, Task Manager's "End task") cannot be
//! caught by any program: the process ends at once, with no drain.
//!
//! **Windows console close, log-off, shutdown.** After `CTRL_CLOSE_EVENT`,
//! `CTRL_LOGOFF_EVENT` and `CTRL_SHUTDOWN_EVENT` Windows ends the process as soon as the
//! handler returns, and at the latest about 5 seconds later. `ctrlc`'s handler returns at
//! once, which would cut the drain at its start; so [`install`] also registers a handler of
//! lameduck's own for these three, which fires shutdown ([`Reason::Console`]) and returns
//! only once every server this trigger stops has returned from `run`, or the 5 s are nearly
//! spent. The deadline is cut to [`CONSOLE_DEADLINE`](crate::console::CONSOLE_DEADLINE)
//! (4.5 s) for such a fire, and the report says so ([`console`](crate::console)).
//!
//! **Handlers replaced.** Installing replaces whatever handled these signals before,
//! including an inherited "ignore" (`nohup` ignores `SIGHUP`; a non-interactive shell
//! starts background jobs with `SIGINT` ignored). lameduck then handles all three.
//!
//! **One per process.** `ctrlc` allows one handler per process, for its whole life: a
//! second [`Signals::install`], or one after the application installed its own `ctrlc`
//! handler, returns [`Error::SignalHandlerExists`]. Share one [`Trigger`] instead: it clones.

use std::fmt;
use std::io;

use super::trigger::{Reason, Trigger};
use crate::error::Error;

/// The line logged at `info` when the first signal arrives, as in Go's `signal.NotifyContext`
/// programs.
pub const FIRST_SIGNAL_LINE: &str = "shutting down gracefully, press Ctrl+C again to force stop";

/// The exit code of a process forced to stop by a second signal: 128 + `SIGINT` (2), what a
/// shell reports for a program killed by Ctrl+C.
pub const FORCED_EXIT_CODE: i32 = 130;

/// What a second (or later) signal does while the graceful shutdown is under way.
#[non_exhaustive]
pub enum SecondSignal {
    /// Log at `warn` and end the process at once with this exit code, without running
    /// destructors ([`std::process::exit`]). The default, with [`FORCED_EXIT_CODE`].
    Exit(i32),
    /// Log at `warn` and carry on with the graceful shutdown.
    Ignore,
    /// Call this on the signal thread, once per further signal, with the number of the
    /// signal (2 for the second).
    Run(Box<dyn FnMut(u64) + Send + 'static>),
}

impl fmt::Debug for SecondSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecondSignal::Exit(code) => f.debug_tuple("Exit").field(code).finish(),
            SecondSignal::Ignore => f.write_str("Ignore"),
            SecondSignal::Run(_) => f.write_str("Run(..)"),
        }
    }
}

/// Installs the process's signal handler, which fires a [`Trigger`].
///
/// The first signal logs [`FIRST_SIGNAL_LINE`] at `info`, then fires the trigger with
/// [`Reason::Signal`]. A later signal does what [`SecondSignal`] says: by default it ends the
/// process with exit code 130, Go's "press Ctrl+C again to force stop".
///
/// The handler runs on `ctrlc`'s own thread (named `ctrl-c`), not in signal context, so it
/// may log and allocate.
///
/// # Examples
///
/// ```no_run
/// use lameduck::{SecondSignal, Signals};
///
/// let (trigger, listener) = lameduck::trigger();
/// Signals::new().on_second(SecondSignal::Ignore).install(&trigger)?;
/// listener.wait(); // until Ctrl+C or SIGTERM
/// # Ok::<(), lameduck::Error>(())
/// ```
#[derive(Debug)]
pub struct Signals {
    second: SecondSignal,
}

impl Signals {
    /// The default behaviour: the second signal exits with code 130.
    pub fn new() -> Signals {
        Signals {
            second: SecondSignal::Exit(FORCED_EXIT_CODE),
        }
    }

    /// Sets what a second (or later) signal does.
    pub fn on_second(mut self, action: SecondSignal) -> Signals {
        self.second = action;
        self
    }

    /// Installs the handler: from now on the signals of this module's table fire `trigger`.
    ///
    /// Signals that arrived before the call are not seen.
    ///
    /// # Errors
    ///
    /// - [`Error::SignalHandlerExists`] if a handler was already installed in this process,
    ///   by lameduck or by the application through `ctrlc`.
    /// - [`Error::SignalInstall`] if the operating system refused.
    pub fn install(self, trigger: &Trigger) -> Result<(), Error> {
        let console_trigger = trigger.clone();
        let trigger = trigger.clone();
        let mut second = self.second;
        let mut count: u64 = 0;
        let handler = move || {
            count += 1;
            if count == 1 {
                // Logged before firing: a drain with nothing to do can end the process
                // before this thread would get to log afterwards.
                log::info!("{FIRST_SIGNAL_LINE}");
                trigger.fire(Reason::Signal);
                return;
            }
            trigger.fire(Reason::Signal); // counted; the first fire stays the record
            match &mut second {
                SecondSignal::Exit(code) => {
                    log::warn!("signal received again: forcing exit with code {code}");
                    std::process::exit(*code);
                }
                SecondSignal::Ignore => {
                    log::warn!(
                        "signal received again ({count}): ignored, still shutting down gracefully"
                    );
                }
                SecondSignal::Run(action) => action(count),
            }
        };
        ctrlc::set_handler(handler).map_err(|e| match e {
            ctrlc::Error::MultipleHandlers => Error::SignalHandlerExists,
            ctrlc::Error::System(source) => Error::SignalInstall(source),
            other => Error::SignalInstall(io::Error::other(other)),
        })?;
        // After ctrlc's: the handler registered last is called first (see `console`).
        #[cfg(windows)]
        crate::os::windows::install_console_handler(&console_trigger)
            .map_err(Error::SignalInstall)?;
        #[cfg(not(windows))]
        drop(console_trigger);
        Ok(())
    }
}

impl Default for Signals {
    fn default() -> Signals {
        Signals::new()
    }
}

/// Installs the default signal handling for `trigger`: [`Signals::new`]`.install(trigger)`.
///
/// # Errors
///
/// As [`Signals::install`].
pub fn install(trigger: &Trigger) -> Result<(), Error> {
    Signals::new().install(trigger)
}

/// Runs `action` on a thread of its own (`name`), that lives as long as the process, at
/// each `SIGUSR2`. `ctrlc` cannot tell signals apart, so this one goes through
/// `signal-hook`; SIGINT, SIGTERM and SIGHUP are not touched.
///
/// # Errors
///
/// [`Error::SignalInstall`] if the handler could not be installed, [`Error::Spawn`] if its
/// thread could not be started.
#[cfg(unix)]
pub(crate) fn on_sigusr2(
    name: &str,
    mut action: impl FnMut() + Send + 'static,
) -> Result<(), Error> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])
        .map_err(Error::SignalInstall)?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            for _ in signals.forever() {
                action();
            }
        })
        .map(drop)
        .map_err(|source| Error::Spawn {
            name: name.to_owned(),
            source,
        })
}
