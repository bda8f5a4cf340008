//! Triggers besides signals: a heartbeat watchdog, a file that appears or disappears, and the
//! end of standard input. Whatever the trigger, the same shutdown does the final work.
//!
//! Each runs on a thread of its own (`lameduck-heartbeat-N`, `lameduck-file-N`,
//! `lameduck-stdin-N`), fires the [`Trigger`] it is given with its own [`Reason`], and stops
//! when that trigger fires for any reason (the stdin watcher excepted: a read from stdin
//! cannot be interrupted, so its thread waits on until the end of input or of the process,
//! without acting again).
//!
//! ```
//! use std::time::Duration;
//!
//! let (trigger, listener) = lameduck::trigger();
//! let heartbeat = lameduck::watch::Heartbeat::start(&trigger, Duration::from_millis(50))?;
//! heartbeat.beat(); // from the main loop, say; each beat restarts the watchdog
//! let fired = listener.wait(); // no beat for 50 ms
//! assert_eq!(*fired.reason(), lameduck::Reason::Heartbeat { missed: Duration::from_millis(50) });
//! # Ok::<(), lameduck::Error>(())
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{select, Sender};

use super::pool::Pool;
use super::trigger::{Listener, Reason, Trigger};
use crate::error::Error;

/// A watchdog: fires shutdown with [`Reason::Heartbeat`] when no [`beat`](Heartbeat::beat)
/// comes within its timeout, as a supervisor that stops hearing from a process would.
///
/// Clone it for every thread that beats. When every clone is dropped, the watchdog stops
/// watching (it does not fire).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    beats: Sender<()>,
}

impl Heartbeat {
    /// Starts the watchdog: from now on a beat is due at least every `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if its thread could not be started.
    pub fn start(trigger: &Trigger, timeout: Duration) -> Result<Heartbeat, Error> {
        let (beats, beaten) = crossbeam_channel::bounded::<()>(1);
        let trigger = trigger.clone();
        let listener = trigger.listener();
        Pool::with_prefix("lameduck-heartbeat").spawn(move || loop {
            select! {
                recv(beaten) -> beat => if beat.is_err() { return },
                recv(listener.receiver()) -> _ => return,
                default(timeout) => {
                    log::warn!("no heartbeat for {timeout:?}: shutting down");
                    trigger.fire(Reason::Heartbeat { missed: timeout });
                    return;
                }
            }
        })?;
        Ok(Heartbeat { beats })
    }

    /// A beat: the watchdog's timeout starts again. Never blocks.
    pub fn beat(&self) {
        let _ = self.beats.try_send(());
    }
}

/// Fires shutdown with [`Reason::File`] when a path appears (say, a file a deployment tool
/// or a Kubernetes `preStop` hook creates) or disappears (a lock or a lease removed), looked
/// at every [`poll`](FileTrigger::poll_every) (500 ms by default).
///
/// ```no_run
/// let (trigger, _listener) = lameduck::trigger();
/// lameduck::watch::FileTrigger::appears("/run/myapp/drain").start(&trigger)?;
/// # Ok::<(), lameduck::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FileTrigger {
    path: PathBuf,
    fire_when_present: bool,
    poll: Duration,
}

impl FileTrigger {
    /// Fires when `path` exists.
    pub fn appears(path: impl AsRef<Path>) -> FileTrigger {
        FileTrigger {
            path: path.as_ref().to_owned(),
            fire_when_present: true,
            poll: Duration::from_millis(500),
        }
    }

    /// Fires when `path` does not exist.
    pub fn disappears(path: impl AsRef<Path>) -> FileTrigger {
        FileTrigger {
            fire_when_present: false,
            ..FileTrigger::appears(path)
        }
    }

    /// How often to look (default 500 ms).
    pub fn poll_every(mut self, interval: Duration) -> FileTrigger {
        self.poll = interval;
        self
    }

    /// Starts watching.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if its thread could not be started.
    pub fn start(self, trigger: &Trigger) -> Result<(), Error> {
        let trigger = trigger.clone();
        let listener = trigger.listener();
        Pool::with_prefix("lameduck-file").spawn(move || loop {
            if self.path.exists() == self.fire_when_present {
                let reason = Reason::File {
                    path: self.path,
                    appeared: self.fire_when_present,
                };
                log::info!("{reason}: shutting down");
                trigger.fire(reason);
                return;
            }
            if listener.sleep(self.poll).is_err() {
                return;
            }
        })?;
        Ok(())
    }

    /// Runs `action` each time the condition holds, after undoing it (the file removed, or
    /// created), until `listener` fires: what
    /// [`Handle::upgrade_on_file`](crate::Handle::upgrade_on_file) does.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if its thread could not be started.
    pub(crate) fn watch(
        self,
        listener: &Listener,
        mut action: impl FnMut(Reason) + Send + 'static,
    ) -> Result<(), Error> {
        let listener = listener.clone();
        Pool::with_prefix("lameduck-file").spawn(move || loop {
            if self.path.exists() == self.fire_when_present {
                let undone = if self.fire_when_present {
                    std::fs::remove_file(&self.path)
                } else {
                    std::fs::File::create(&self.path).map(drop)
                };
                match undone {
                    Ok(()) => action(Reason::File {
                        path: self.path.clone(),
                        appeared: self.fire_when_present,
                    }),
                    Err(e) => {
                        // Acting without undoing would act again at once, and forever.
                        log::error!(
                            "{}: cannot undo it ({e}): not acting on it",
                            self.path.display()
                        );
                        return;
                    }
                }
            }
            if listener.sleep(self.poll).is_err() {
                return;
            }
        })?;
        Ok(())
    }
}

/// Fires shutdown with [`Reason::StdinClosed`] when standard input ends: for a program run
/// as a child process, the parent has exited or closed the pipe.
///
/// Everything read from stdin is discarded: do not use it in a program that reads its stdin.
/// The thread stays blocked on stdin after shutdown (a read cannot be interrupted), until
/// the input ends or the process exits; it does nothing more.
///
/// # Errors
///
/// [`Error::Spawn`] if its thread could not be started.
pub fn stdin_closed(trigger: &Trigger) -> Result<(), Error> {
    let trigger = trigger.clone();
    Pool::with_prefix("lameduck-stdin").spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        if !trigger.is_triggered() {
            log::info!("stdin closed: shutting down");
        }
        trigger.fire(Reason::StdinClosed);
    })?;
    Ok(())
}
