//! Restarting without refusing a connection: the listening sockets a process inherits, from
//! systemd's socket activation or from the lameduck process it replaces.
//!
//! The files: `inherited.rs` the sockets this process was given at its start, read once from
//! its environment and taken by [`Server::bind`](crate::Server::bind) and
//! [`Server::inherited`](crate::Server::inherited); `systemd.rs` what the service manager is
//! told (`READY=1`, `STOPPING=1`, …); `upgrade.rs` the new process started with the socket,
//! and `baton.rs` the line between the two. What needs `unsafe` is in `crate::os`.

#[cfg(any(unix, windows))]
pub(crate) mod baton;
/// Upgrades are Unix's and Windows': elsewhere there is no baton.
#[cfg(not(any(unix, windows)))]
pub(crate) mod baton {
    /// None can be made.
    #[derive(Debug)]
    pub(crate) enum Baton {}
}
pub(crate) mod inherited;
pub(crate) mod systemd;
pub(crate) mod upgrade;
