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

// Unix and Windows: elsewhere most of this is compiled but not used.
#![cfg_attr(not(any(unix, windows)), allow(dead_code, unused_imports))]

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[cfg(any(unix, windows))]
use super::baton::Baton;
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
    /// Upgrades are not supported on this platform (they are on Unix and Windows).
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
            UpgradeError::Unsupported => f.write_str("upgrades are not supported on this platform"),
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

    #[cfg(any(unix, windows))]
    fn start_and_wait(&self, setup: Setup<'_>) -> Result<u32, UpgradeError> {
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
        let until = started + setup.timeout;
        let (child, pending) = Pending::spawn(&mut cmd, listener)
            .map_err(UpgradeError::Spawn)
            .map_err(idle)?;
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
                    *wake = pending.waker();
                }
                // The shutdown came meanwhile: it found no child to kill.
                _ => {
                    drop(state);
                    kill(child);
                    return Err(UpgradeError::ShuttingDown);
                }
            }
        }
        let waited = pending
            .baton(pid, until, || self.gone())
            .and_then(|mut baton| {
                baton
                    .wait_ready(until.saturating_duration_since(Instant::now()))
                    .map(|()| baton)
            });
        let mut state = self.lock();
        let State::Starting { child, .. } = &mut *state else {
            // The shutdown came first and killed it.
            return Err(UpgradeError::ShuttingDown);
        };
        let child = child.take();
        match waited {
            Ok(baton) => {
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

    /// Whether the new process under way is gone: exited, or killed by the shutdown.
    #[cfg(any(unix, windows))]
    fn gone(&self) -> bool {
        match &mut *self.lock() {
            State::Starting {
                child: Some(child), ..
            } => !matches!(child.try_wait(), Ok(None)),
            _ => true,
        }
    }

    #[cfg(not(any(unix, windows)))]
    fn start_and_wait(&self, _setup: Setup<'_>) -> Result<u32, UpgradeError> {
        Err(UpgradeError::Unsupported)
    }
}

/// The new process, started, and how its baton comes to the old one.
#[cfg(any(unix, windows))]
enum Pending {
    /// Unix: a socket pair, whose other end is the new process's descriptor 4.
    #[cfg(unix)]
    Ready(Baton),
    /// Windows: the new process connects to `control` and says `token`; it is answered with
    /// `listener`, described for it.
    #[cfg(windows)]
    Connect {
        control: std::net::TcpListener,
        token: String,
        listener: TcpListener,
    },
}

#[cfg(any(unix, windows))]
impl Pending {
    /// Starts `cmd` with `listener` handed over as the platform does it.
    #[cfg(unix)]
    fn spawn(cmd: &mut Command, listener: TcpListener) -> io::Result<(Child, Pending)> {
        use std::os::fd::AsFd;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let child = crate::os::unix::spawn_with_fds(cmd, &[listener.as_fd(), theirs.as_fd()])?;
        Ok((child, Pending::Ready(Baton::new(ours))))
    }

    /// Starts `cmd` with `listener` handed over as the platform does it.
    #[cfg(windows)]
    fn spawn(cmd: &mut Command, listener: TcpListener) -> io::Result<(Child, Pending)> {
        use super::inherited::{UPGRADE_BATON, UPGRADE_TOKEN};
        let control = std::net::TcpListener::bind("127.0.0.1:0")?;
        let token = token();
        cmd.env(UPGRADE_BATON, control.local_addr()?.to_string())
            .env(UPGRADE_TOKEN, &token);
        let child = cmd.spawn()?;
        Ok((
            child,
            Pending::Connect {
                control,
                token,
                listener,
            },
        ))
    }

    /// What ends a wait on the baton from another thread, where it can be had now.
    fn waker(&self) -> Option<Wake> {
        match self {
            #[cfg(unix)]
            Pending::Ready(baton) => baton.try_clone_line().ok().map(|copy| {
                Wake(Box::new(move || {
                    let _ = copy.shutdown(std::net::Shutdown::Both);
                }))
            }),
            // Killing the new process closes its connection, which ends the wait.
            #[cfg(windows)]
            Pending::Connect { .. } => None,
        }
    }

    /// The baton to the new process `pid`, by `until`; `gone` says whether the process is.
    #[cfg_attr(unix, allow(unused_variables))]
    fn baton(
        self,
        pid: u32,
        until: Instant,
        gone: impl Fn() -> bool,
    ) -> Result<Baton, super::baton::Broken> {
        match self {
            #[cfg(unix)]
            Pending::Ready(baton) => Ok(baton),
            #[cfg(windows)]
            Pending::Connect {
                control,
                token,
                listener,
            } => connect(&control, &token, &listener, pid, until, gone),
        }
    }
}

/// Windows: waits for the new process's connection (one that says the token: another is
/// dropped), and sends it the listening socket, described for it.
#[cfg(windows)]
fn connect(
    control: &std::net::TcpListener,
    token: &str,
    listener: &TcpListener,
    pid: u32,
    until: Instant,
    gone: impl Fn() -> bool,
) -> Result<Baton, super::baton::Broken> {
    use super::baton::Broken;
    let other = |e: io::Error| Broken::Other(e.to_string());
    control.set_nonblocking(true).map_err(other)?;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match control.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(other)?;
                let mut baton = Baton::new(stream);
                match baton.hear(left.min(Duration::from_secs(1))) {
                    Ok(line) if line == format!("hello {token}") => {
                        let info =
                            crate::os::windows::describe_for(listener, pid).map_err(other)?;
                        baton
                            .say(&format!("socket {}", hex(&info)))
                            .map_err(other)?;
                        return Ok(baton);
                    }
                    _ => log::warn!("upgrade: a connection without the token: dropped"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if gone() {
                    return Err(Broken::Closed);
                }
                if left.is_zero() {
                    return Err(Broken::TimedOut);
                }
                // Polled: std has no accept with a timeout. A bound on the new process's
                // start, not a measurement.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(other(e)),
        }
    }
}

/// A token for the new process to say: not secret from this machine's users (it is in the
/// new process's environment), only unlikely to be guessed by a stray connection.
#[cfg(windows)]
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Bytes as lowercase hexadecimal.
#[cfg(windows)]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the new process did not get ready: its exit if it has exited (or does so within a
/// moment of closing the baton), otherwise what the baton said; it is killed.
#[cfg(any(unix, windows))]
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
