//! The listening sockets this process was given at its start, by systemd's socket activation
//! (`LISTEN_FDS`), or by the lameduck process it replaces (an upgrade).
//!
//! **The protocol** (`sd_listen_fds(3)`): the sockets are descriptors 3, 4, … ;
//! `LISTEN_FDS` counts them, `LISTEN_PID` is the process they are for (a child that inherits
//! the variables is not), `LISTEN_FDNAMES` names them, colon-separated (`FileDescriptorName=`
//! in the socket unit). lameduck reads the variables once, the first time a server is built,
//! and takes every announced socket then, checked and marked close-on-exec; each server built
//! after takes one of them (see [`take`]). Anything wrong is an [`InheritError`] from
//! `build`, for every server built after: nothing is bound by accident beside a socket the
//! service manager meant to hand over.
//!
//! **An upgrade** uses the same descriptors: the socket is descriptor 3, and the baton to
//! the old process (`baton.rs`) descriptor 4; `LAMEDUCK_UPGRADE_PARENT` names the old
//! process, which must be this one's parent (a grandchild that inherits the variable is not
//! meant), and `LAMEDUCK_UPGRADE_ADDR` the address it was asked to bind, so that the same
//! program with the same arguments (`--addr 127.0.0.1:0`) takes the socket;
//! `LAMEDUCK_UPGRADE_KEEP_OPEN` says that systemd holds the socket too.

// Unix only so far: elsewhere most of this is compiled but not used.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Why the listening sockets the environment announces could not be taken: returned by
/// [`Builder::build`](crate::Builder::build) as [`Error::Inherit`](crate::Error::Inherit).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InheritError {
    /// `LISTEN_PID` names another process: the variables were meant for it, and this
    /// process inherited them by accident (from a socket-activated parent that did not
    /// clear them).
    OtherProcess {
        /// The process `LISTEN_PID` names.
        listen_pid: u32,
        /// This process.
        pid: u32,
    },
    /// A variable is missing or not what the protocol says (`LISTEN_FDS=two`).
    Malformed {
        /// The variable.
        var: &'static str,
        /// What it holds (`"(unset)"` if it is missing).
        value: String,
    },
    /// `LISTEN_FDNAMES` names a different number of sockets than `LISTEN_FDS` counts.
    CountMismatch {
        /// `LISTEN_FDS`.
        fds: usize,
        /// How many names `LISTEN_FDNAMES` holds.
        names: usize,
    },
    /// An announced descriptor is not open.
    Closed {
        /// The descriptor.
        fd: i32,
    },
    /// An announced descriptor is open but not a listening TCP socket; it is left as it was.
    NotListening {
        /// The descriptor.
        fd: i32,
        /// What it is instead.
        what: String,
    },
    /// `LAMEDUCK_UPGRADE_PARENT` names a process other than this one's parent: the upgrade
    /// was not meant for it (a child of the new process that inherited the variable).
    NotTheParent {
        /// The process the variable names.
        named: u32,
        /// This process's parent.
        parent: u32,
    },
    /// The old process of an upgrade could not hand the socket over (Windows: the
    /// connection to it, or the socket it described).
    Handover {
        /// What went wrong.
        what: String,
    },
    /// [`Server::inherited`](crate::Server::inherited): the process inherited no listening
    /// socket, or every one has been taken by a server built before.
    Nothing,
}

impl fmt::Display for InheritError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritError::OtherProcess { listen_pid, pid } => write!(
                f,
                "LISTEN_PID={listen_pid} is another process (this is {pid}): the sockets were not \
                 meant for it; clear LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES for children"
            ),
            InheritError::NotTheParent { named, parent } => write!(
                f,
                "LAMEDUCK_UPGRADE_PARENT={named} is not this process's parent ({parent}): the \
                 upgrade was not meant for it"
            ),
            InheritError::Handover { what } => {
                write!(f, "the old process could not hand the socket over: {what}")
            }
            InheritError::Malformed { var, value } => write!(f, "{var}={value:?} is malformed"),
            InheritError::CountMismatch { fds, names } => write!(
                f,
                "LISTEN_FDS={fds} but LISTEN_FDNAMES holds {names} names"
            ),
            InheritError::Closed { fd } => write!(f, "descriptor {fd} is announced but not open"),
            InheritError::NotListening { fd, what } => write!(
                f,
                "descriptor {fd} is announced but is not a listening TCP socket: {what}"
            ),
            InheritError::Nothing => f.write_str(
                "no listening socket was inherited (LISTEN_FDS is not set, or every socket is taken)",
            ),
        }
    }
}

impl std::error::Error for InheritError {}

/// Where an inherited socket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// systemd's socket activation, or anything speaking its protocol.
    Systemd,
    /// The upgrade of the lameduck process `parent`.
    Upgrade {
        /// The old process.
        parent: u32,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Systemd => f.write_str("socket activation (LISTEN_FDS)"),
            Origin::Upgrade { parent } => write!(f, "the upgrade of pid {parent}"),
        }
    }
}

/// A listening socket this process inherited.
#[derive(Debug)]
pub(crate) struct Inherited {
    pub(crate) listener: TcpListener,
    /// Where it listens.
    pub(crate) local: SocketAddr,
    /// Its name (`LISTEN_FDNAMES`; `"unknown"` without one, as systemd says).
    pub(crate) name: String,
    pub(crate) origin: Origin,
    /// The address the old process was asked to bind (an upgrade).
    pub(crate) asked: Option<SocketAddr>,
    /// Someone else holds the socket too, and will hand it to the next process: systemd
    /// (socket activation, or an upgrade of a process that had it from systemd).
    pub(crate) keep_open: bool,
    /// The line to the old process (an upgrade), until the server is built on the socket.
    #[cfg(any(unix, windows))]
    pub(crate) baton: Option<super::baton::Baton>,
}

impl Inherited {
    /// Whether a server asked to bind one of `asked` should take this socket instead: the
    /// same address, or the same port where either address is the unspecified one (a socket
    /// unit's `ListenStream=8080` listens on `[::]:8080`).
    fn serves(&self, asked: &[SocketAddr]) -> bool {
        asked.iter().any(|addr| {
            *addr == self.local
                || Some(*addr) == self.asked
                || (addr.port() == self.local.port()
                    && (addr.ip().is_unspecified() || self.local.ip().is_unspecified()))
        })
    }
}

/// Which inherited socket a server takes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pick<'a> {
    /// One that serves one of these addresses ([`Server::bind`](crate::Server::bind)).
    Serving(&'a [SocketAddr]),
    /// The first one left ([`Server::inherited`](crate::Server::inherited)).
    First,
}

type Sockets = Result<Vec<Inherited>, InheritError>;

static SOCKETS: OnceLock<Mutex<Sockets>> = OnceLock::new();

/// Takes the inherited socket `pick` asks for, reading the environment if no server has
/// yet. `Ok(None)`: none is left that fits.
///
/// # Errors
///
/// What was wrong with the environment, for every call.
pub(crate) fn take(pick: Pick<'_>) -> Result<Option<Inherited>, InheritError> {
    let sockets = SOCKETS.get_or_init(|| Mutex::new(from_env()));
    let mut sockets = sockets.lock().unwrap_or_else(PoisonError::into_inner);
    let sockets = sockets.as_mut().map_err(|e| e.clone())?;
    let index = match pick {
        Pick::Serving(asked) => sockets.iter().position(|s| s.serves(asked)),
        Pick::First => (!sockets.is_empty()).then_some(0),
    };
    Ok(index.map(|i| sockets.remove(i)))
}

const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// The old process of an upgrade: this one's parent.
pub(crate) const UPGRADE_PARENT: &str = "LAMEDUCK_UPGRADE_PARENT";
/// The address the old process was asked to bind.
pub(crate) const UPGRADE_ADDR: &str = "LAMEDUCK_UPGRADE_ADDR";
/// Set when systemd holds the socket too (the old process had it from socket activation).
pub(crate) const UPGRADE_KEEP_OPEN: &str = "LAMEDUCK_UPGRADE_KEEP_OPEN";
/// Windows: where the old process waits for the new one's connection.
#[cfg(windows)]
pub(crate) const UPGRADE_BATON: &str = "LAMEDUCK_UPGRADE_BATON";
/// Windows: what the new process says first on that connection.
#[cfg(windows)]
pub(crate) const UPGRADE_TOKEN: &str = "LAMEDUCK_UPGRADE_TOKEN";

/// The first descriptor of socket activation (`SD_LISTEN_FDS_START`).
#[cfg(unix)]
const FIRST_FD: i32 = 3;

/// Reads `LISTEN_*` (or an upgrade's variables) and takes the sockets.
fn from_env() -> Sockets {
    let var = |name| std::env::var(name).ok();
    #[cfg(unix)]
    if let Some(parent) = var(UPGRADE_PARENT) {
        return from_parent(&parent, var(UPGRADE_ADDR), var(UPGRADE_KEEP_OPEN).is_some());
    }
    #[cfg(windows)]
    if let Some(parent) = var(UPGRADE_PARENT) {
        return from_parent_windows(
            &parent,
            var(UPGRADE_ADDR),
            var(UPGRADE_KEEP_OPEN).is_some(),
            var(UPGRADE_BATON),
            var(UPGRADE_TOKEN),
        );
    }
    let Some(fds) = var(LISTEN_FDS) else {
        return Ok(Vec::new());
    };
    let malformed = |var: &'static str, value: Option<String>| InheritError::Malformed {
        var,
        value: value.unwrap_or_else(|| "(unset)".to_owned()),
    };
    let listen_pid = var(LISTEN_PID);
    let listen_pid = listen_pid
        .as_deref()
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or_else(|| malformed(LISTEN_PID, listen_pid.clone()))?;
    let pid = std::process::id();
    if listen_pid != pid {
        return Err(InheritError::OtherProcess { listen_pid, pid });
    }
    let count = fds
        .parse::<usize>()
        .ok()
        .filter(|&n| n < 65_536)
        .ok_or_else(|| malformed(LISTEN_FDS, Some(fds.clone())))?;
    let names: Vec<String> = match var(LISTEN_FDNAMES) {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); count],
    };
    if names.len() != count {
        return Err(InheritError::CountMismatch {
            fds: count,
            names: names.len(),
        });
    }
    take_all(names)
}

/// An upgrade: the socket is descriptor 3, the baton 4.
#[cfg(unix)]
fn from_parent(named: &str, asked: Option<String>, keep_open: bool) -> Sockets {
    let named = named.parse::<u32>().map_err(|_| InheritError::Malformed {
        var: UPGRADE_PARENT,
        value: named.to_owned(),
    })?;
    let parent = std::os::unix::process::parent_id();
    if named != parent {
        return Err(InheritError::NotTheParent { named, parent });
    }
    let asked = match asked {
        Some(text) => Some(text.parse().map_err(|_| InheritError::Malformed {
            var: UPGRADE_ADDR,
            value: text,
        })?),
        None => None,
    };
    let mut sockets = take_all(vec!["upgrade".to_owned()])?;
    let baton =
        crate::os::unix::take_unix_stream(FIRST_FD + 1).map_err(|e| not_taken(FIRST_FD + 1, e))?;
    if let Some(socket) = sockets.first_mut() {
        socket.origin = Origin::Upgrade { parent };
        socket.asked = asked;
        socket.keep_open = keep_open;
        socket.baton = Some(super::baton::Baton::new(baton));
    }
    Ok(sockets)
}

/// An upgrade on Windows: connects to the old process, says the token, and opens the socket
/// it describes in answer.
#[cfg(windows)]
fn from_parent_windows(
    parent: &str,
    asked: Option<String>,
    keep_open: bool,
    baton: Option<String>,
    token: Option<String>,
) -> Sockets {
    use std::time::Duration;

    use super::baton::Baton;
    let parent = parent.parse::<u32>().map_err(|_| InheritError::Malformed {
        var: UPGRADE_PARENT,
        value: parent.to_owned(),
    })?;
    let malformed = |var: &'static str, value: Option<String>| InheritError::Malformed {
        var,
        value: value.unwrap_or_else(|| "(unset)".to_owned()),
    };
    let addr: SocketAddr = baton
        .as_deref()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| malformed(UPGRADE_BATON, baton.clone()))?;
    let token = token.ok_or_else(|| malformed(UPGRADE_TOKEN, None))?;
    let asked = match asked {
        Some(text) => Some(text.parse().map_err(|_| InheritError::Malformed {
            var: UPGRADE_ADDR,
            value: text,
        })?),
        None => None,
    };
    let handover = |what: String| InheritError::Handover { what };
    // Bounds, not measurements: the old process waits for this connection, on loopback.
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| handover(format!("connect to pid {parent} at {addr}: {e}")))?;
    let mut baton = Baton::new(stream);
    baton
        .say(&format!("hello {token}"))
        .map_err(|e| handover(format!("write to pid {parent}: {e}")))?;
    let line = baton
        .hear(Duration::from_secs(10))
        .map_err(|e| handover(format!("pid {parent} did not describe the socket: {e}")))?;
    let bytes = line
        .strip_prefix("socket ")
        .and_then(unhex)
        .ok_or_else(|| handover(format!("pid {parent} said {line:?}")))?;
    let listener = crate::os::windows::listener_from(&bytes)
        .map_err(|e| handover(format!("open the socket pid {parent} described: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| handover(format!("read the socket's address: {e}")))?;
    log::debug!("socket from pid {parent}: listening on {local}");
    Ok(vec![Inherited {
        listener,
        local,
        name: "upgrade".to_owned(),
        origin: Origin::Upgrade { parent },
        asked,
        keep_open,
        baton: Some(baton),
    }])
}

/// Lowercase or uppercase hexadecimal as bytes.
#[cfg(windows)]
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What `fd`, announced, was when it could not be taken.
#[cfg(unix)]
fn not_taken(fd: i32, why: crate::os::unix::NotTaken) -> InheritError {
    match why {
        crate::os::unix::NotTaken::Closed => InheritError::Closed { fd },
        crate::os::unix::NotTaken::Wrong(what) => InheritError::NotListening { fd, what },
    }
}

/// Takes descriptors 3, 4, … as the listening sockets `names` names.
#[cfg(unix)]
fn take_all(names: Vec<String>) -> Sockets {
    let mut sockets = Vec::with_capacity(names.len());
    for (fd, name) in (FIRST_FD..).zip(names) {
        let listener = crate::os::unix::take_listener(fd).map_err(|e| not_taken(fd, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| InheritError::NotListening {
                fd,
                what: format!("a socket whose address cannot be read: {e}"),
            })?;
        log::debug!("inherited socket {fd} ({name}): listening on {local}");
        sockets.push(Inherited {
            listener,
            local,
            name,
            origin: Origin::Systemd,
            asked: None,
            keep_open: true,
            baton: None,
        });
    }
    Ok(sockets)
}

/// Socket activation is Unix's: elsewhere the variables announce nothing this process can
/// take.
#[cfg(not(unix))]
fn take_all(names: Vec<String>) -> Sockets {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Err(InheritError::Malformed {
        var: LISTEN_FDS,
        value: format!("{} (socket activation is Unix's)", names.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited(local: &str) -> Inherited {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Inherited {
            listener,
            local: local.parse().unwrap(),
            name: "http".to_owned(),
            origin: Origin::Systemd,
            asked: None,
            keep_open: true,
            #[cfg(any(unix, windows))]
            baton: None,
        }
    }

    #[test]
    fn a_socket_serves_its_address_and_its_port_on_any_address() {
        let on_any = inherited("[::]:8080");
        assert!(on_any.serves(&["0.0.0.0:8080".parse().unwrap()]));
        assert!(on_any.serves(&["127.0.0.1:8080".parse().unwrap()]));
        assert!(!on_any.serves(&["127.0.0.1:8081".parse().unwrap()]));
        let on_loopback = inherited("127.0.0.1:8080");
        assert!(on_loopback.serves(&["127.0.0.1:8080".parse().unwrap()]));
        assert!(on_loopback.serves(&["0.0.0.0:8080".parse().unwrap()]));
        assert!(!on_loopback.serves(&["192.0.2.1:8080".parse().unwrap()]));
        assert!(!on_loopback.serves(&["127.0.0.1:0".parse().unwrap()]));
    }
}
