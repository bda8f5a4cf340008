//! The crate's only `unsafe`: one file per OS, each block with its `SAFETY:` comment.
//!
//! `unix.rs`: descriptor numbers from the environment made sockets (socket activation, an
//! upgrade), and sockets given to a child as descriptor numbers. `windows.rs`: a listening
//! socket described for another process and opened there (an upgrade), and the handler of
//! the console's close, log-off and shutdown.

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(windows)]
pub(crate) mod windows;
