//! Upgrade in place: a running server starts a new copy of the program, hands it the
//! listening socket, and stops accepting only once the new one is ready, as nginx does on
//! SIGUSR2. No connection is refused: the socket never closes.
//!
//! 1. [`Handle::upgrade`](crate::Handle::upgrade) (or SIGUSR2, see
//!    [`Handle::upgrade_on_sigusr2`](crate::Handle::upgrade_on_sigusr2), or a file) starts the program
//!    again: the same path (the file now there: a new binary installed over the old one is
//!    the one started) and arguments, or [`Builder::upgrade_command`](crate::Builder::upgrade_command).
//!    The socket is its descriptor 3, the baton (`baton.rs`) its descriptor 4.
//! 2. The new process builds its server on the socket ([`Server::bind`](crate::Server::bind)
//!    takes it) and says ready; the old one waits for that up to
//!    [`Builder::upgrade_timeout`](crate::Builder::upgrade_timeout). If the new one exits,
//!    closes the baton or is late, it is killed, the old one logs why and serves on.
//! 3. Ready: the old process fires its shutdown with [`Reason::Upgrade`], stops accepting
//!    without closing the socket (it is the new one's now), releases the baton, and drains
//!    what it holds as on any shutdown. The report says it was an upgrade. Under systemd it
//!    says `MAINPID=` the new process first.
//!
//! One upgrade at a time: another one asked for meanwhile is refused, and said so.

// Unix only so far: elsewhere most of this is compiled but not used.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::shutdown::trigger::{Reason, Trigger};

/// How long the new process of an upgrade may take to be ready when no timeout is set. See
/// [`Builder::upgrade_timeout`](crate::Builder::upgrade_timeout). A bound, not a
/// measurement: `hello` is ready about 5 ms after it is started (`tests/process/upgrade.rs`).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upgrade did not happen. The server it was asked of serves on.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Another upgrade is under way.
    UnderWay {
        /// Its new process, once started.
        pid: Option<u32>,
    },
    /// The server is shutting down, or has (an upgrade that succeeded is one).
    ShuttingDown,
    /// Upgrades are Unix's so far.
    Unsupported,
    /// The new process could not be started.
    Spawn(io::Error),
    /// The new process exited before it was ready.
    Exited {
        /// The new process.
        pid: u32,
        /// How it exited.
        status: ExitStatus,
    },
    /// The new process was not ready within the timeout; it was killed.
    NotReady {
        /// The new process.
        pid: u32,
        /// [`Builder::upgrade_timeout`](crate::Builder::upgrade_timeout).
        timeout: Duration,
    },
    /// The line to the new process broke, or carried something else; it was killed.
    Baton {
        /// The new process.
        pid: u32,
        /// What happened.
        what: String,
    },
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::UnderWay { pid: Some(pid) } => {
                write!(f, "an upgrade is under way (to pid {pid}): refused")
            }
            UpgradeError::UnderWay { pid: None } => {
                f.write_str("an upgrade is under way (its new process starting): refused")
            }
            UpgradeError::ShuttingDown => f.write_str("the server is shutting down"),
            UpgradeError::Unsupported => f.write_str("upgrades are Unix's so far"),
            UpgradeError::Spawn(e) => write!(f, "start the new process: {e}"),
            UpgradeError::Exited { pid, status } => {
                write!(
                    f,
                    "the new process {pid} exited before it was ready: {status}"
                )
            }
            UpgradeError::NotReady { pid, timeout } => {
                write!(
                    f,
                    "the new process {pid} was not ready within {timeout:?}: killed"
                )
            }
            UpgradeError::Baton { pid, what } => {
                write!(f, "the new process {pid}: {what}: killed")
            }
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpgradeError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Makes the command that starts the new process ([`Builder::upgrade_command`](crate::Builder::upgrade_command)).
#[derive(Clone)]
pub(crate) struct CommandFn(pub(crate) Arc<dyn Fn() -> Command + Send + Sync>);

impl fmt::Debug for CommandFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommandFn(..)")
    }
}

/// The program again, with its arguments: the path of the running executable (on Linux,
/// without the ` (deleted)` that follows it once a new binary has been installed over it).
fn same_program() -> Command {
    let exe = std::env::current_exe()
        .map(|path| {
            let text = path.as_os_str().to_string_lossy();
            match text.strip_suffix(" (deleted)") {
                Some(installed) => installed.into(),
                None => path,
            }
        })
        .unwrap_or_else(|_| std::env::args_os().next().unwrap_or_default().into());
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1).collect::<Vec<OsString>>());
    cmd
}

/// Where the server's upgrades are.
#[derive(Debug, Default)]
pub(crate) struct Upgrades {
    state: Mutex<State>,
}

/// Ends a wait, from another thread.
struct Wake(Box<dyn FnOnce() + Send>);

impl fmt::Debug for Wake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wake(..)")
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// The new process is starting; the shutdown kills it if it comes first.
    Starting {
        child: Option<Child>,
        pid: Option<u32>,
        /// Ends the wait for the new process's ready (closes our end of the baton).
        wake: Option<Wake>,
    },
    /// The new process is ready: the shutdown hands the socket over.
    Handed {
        baton: super::baton::Baton,
        pid: u32,
    },
    /// Shutting down: no more upgrades.
    Stopping,
}

/// What the shutdown does with the socket.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Closes it, as always.
    Close,
    /// Leaves it to the new process `pid`, releasing `baton` once the accept loop ended.
    HandOver {
        baton: super::baton::Baton,
        pid: u32,
    },
}

/// What an upgrade needs of the server.
pub(crate) struct Setup<'a> {
    pub(crate) trigger: &'a Trigger,
    /// A copy of the listening socket, if it still listens.
    pub(crate) listener: Option<TcpListener>,
    /// The address the server was asked to bind (or the one it listens on).
    pub(crate) asked: SocketAddr,
    /// systemd holds the socket too.
    pub(crate) keep_open: bool,
    pub(crate) timeout: Duration,
    pub(crate) command: Option<&'a CommandFn>,
}

impl Upgrades {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shutdown begins: no upgrade from now on. A new process still starting is killed;
    /// one that is ready gets the socket.
    pub(crate) fn stopping(&self) -> Stop {
        match std::mem::replace(&mut *self.lock(), State::Stopping) {
            State::Handed { baton, pid } => Stop::HandOver { baton, pid },
            State::Starting { child, pid, wake } => {
                if let Some(wake) = wake {
                    (wake.0)();
                }
                if let (Some(mut child), Some(pid)) = (child, pid) {
                    log::warn!("upgrade: shutdown came first: killing the new process {pid}");
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Stop::Close
            }
            State::Idle | State::Stopping => Stop::Close,
        }
    }

    /// Upgrades: see the module doc. Returns the new process's id once it is ready and
    /// shutdown has fired.
    pub(crate) fn upgrade(&self, setup: Setup<'_>) -> Result<u32, UpgradeError> {
        let result = self.start_and_wait(setup);
        if let Err(e) = &result {
            match e {
                UpgradeError::UnderWay { .. } | UpgradeError::ShuttingDown => {
                    log::warn!("upgrade refused: {e}")
                }
                _ => log::error!("upgrade failed: {e}; serving on"),
            }
        }
        result
    }

    #[cfg(unix)]
    fn start_and_wait(&self, setup: Setup<'_>) -> Result<u32, UpgradeError> {
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixStream;

        use super::baton::Baton;
        use super::inherited::{UPGRADE_ADDR, UPGRADE_KEEP_OPEN, UPGRADE_PARENT};

        {
            let mut state = self.lock();
            match &*state {
                State::Idle if setup.trigger.fired().is_none() => {}
                State::Starting { pid, .. } => return Err(UpgradeError::UnderWay { pid: *pid }),
                _ => return Err(UpgradeError::ShuttingDown),
            }
            *state = State::Starting {
                child: None,
                pid: None,
                wake: None,
            };
        }
        let idle = |e| {
            *self.lock() = State::Idle;
            e
        };
        let listener = setup
            .listener
            .ok_or(UpgradeError::ShuttingDown)
            .map_err(idle)?;
        let (ours, theirs) = UnixStream::pair()
            .map_err(UpgradeError::Spawn)
            .map_err(idle)?;
        let mut cmd = match setup.command {
            Some(make) => (make.0)(),
            None => same_program(),
        };
        cmd.env(UPGRADE_PARENT, std::process::id().to_string())
            .env(UPGRADE_ADDR, setup.asked.to_string())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
        if setup.keep_open {
            cmd.env(UPGRADE_KEEP_OPEN, "1");
        } else {
            cmd.env_remove(UPGRADE_KEEP_OPEN);
        }
        let started = Instant::now();
        let child = super::unix::spawn_with_fds(&mut cmd, &[listener.as_fd(), theirs.as_fd()])
            .map_err(UpgradeError::Spawn)
            .map_err(idle)?;
        drop((listener, theirs));
        let pid = child.id();
        log::info!(
            "upgrade: started {:?} as pid {pid}; waiting up to {:?} for it to be ready",
            cmd.get_program(),
            setup.timeout
        );
        {
            let mut state = self.lock();
            match &mut *state {
                State::Starting {
                    child: slot,
                    pid: p,
                    wake,
                } => {
                    *slot = Some(child);
                    *p = Some(pid);
                    // A copy of our end: shut, it ends the read of the original.
                    if let Ok(copy) = ours.try_clone() {
                        *wake = Some(Wake(Box::new(move || {
                            let _ = copy.shutdown(std::net::Shutdown::Both);
                        })));
                    }
                }
                // The shutdown came meanwhile: it found no child to kill.
                _ => {
                    drop(state);
                    kill(child);
                    return Err(UpgradeError::ShuttingDown);
                }
            }
        }
        let mut baton = Baton::new(ours);
        let waited = baton.wait_ready(setup.timeout);
        let mut state = self.lock();
        let State::Starting { child, .. } = &mut *state else {
            // The shutdown came first and killed it.
            return Err(UpgradeError::ShuttingDown);
        };
        let child = child.take();
        match waited {
            Ok(()) => {
                *state = State::Handed { baton, pid };
                drop(state);
                drop(child); // not waited for: it is the server now
                log::info!(
                    "upgrade: pid {pid} is ready after {:?}; stop accepting and drain",
                    started.elapsed()
                );
                super::systemd::main_pid(pid);
                setup.trigger.fire(Reason::Upgrade { pid });
                Ok(pid)
            }
            Err(broken) => {
                *state = State::Idle;
                drop(state);
                let Some(child) = child else {
                    return Err(UpgradeError::ShuttingDown);
                };
                Err(failed(child, pid, broken, setup.timeout))
            }
        }
    }

    #[cfg(not(unix))]
    fn start_and_wait(&self, _setup: Setup<'_>) -> Result<u32, UpgradeError> {
        Err(UpgradeError::Unsupported)
    }
}

/// Why the new process did not get ready: its exit if it has exited (or does so within a
/// moment of closing the baton), otherwise what the baton said; it is killed.
#[cfg(unix)]
fn failed(
    mut child: Child,
    pid: u32,
    broken: super::baton::Broken,
    timeout: Duration,
) -> UpgradeError {
    use super::baton::Broken;
    if let Broken::Closed = broken {
        // It closed the baton: most likely it is exiting. Give it a moment to.
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return UpgradeError::Exited { pid, status };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Ok(Some(status)) = child.try_wait() {
        return UpgradeError::Exited { pid, status };
    }
    kill(child);
    match broken {
        Broken::TimedOut => UpgradeError::NotReady { pid, timeout },
        other => UpgradeError::Baton {
            pid,
            what: other.to_string(),
        },
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
