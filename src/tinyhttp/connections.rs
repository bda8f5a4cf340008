//! The operating system's table of the TCP connections on the server's port: lameduck's one
//! window on the connections tiny_http holds and does not show.
//!
//! tiny_http hands over a request once it has read it whole; of a connection it shows
//! nothing. The kernel keeps, for every connection on the listening port, its peer, its TCP
//! state and the bytes it has received and not yet handed to a reader. From that lameduck
//! sees what the request queue cannot:
//!
//! | what the table shows | what it means |
//! |---|---|
//! | bytes waiting unread, and they stay | a connection tiny_http left without a thread (its thread pool miscounts in a burst): it needs a rescue |
//! | established, not yet accepted (no socket of the process's) | in the listening socket's backlog: tiny_http's accept loop is about to take it |
//!
//! Where it comes from, per OS:
//!
//! - **Linux**: `sock_diag` over netlink (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`), one
//!   dump per look, filtered by port in the kernel; through `socket2`, without `unsafe`.
//! - **Elsewhere**: not read yet; lameduck falls back to what it did without a table (see
//!   each user).

use std::io;
use std::net::SocketAddr;

#[cfg(target_os = "linux")]
#[path = "connections/linux.rs"]
mod os;

/// One TCP connection on the server's port, as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Established (not closing).
    pub(crate) established: bool,
    /// Accepted: the process has a socket for it. `false` while it waits in the backlog.
    pub(crate) accepted: bool,
    /// Bytes received and not yet read by the process.
    pub(crate) unread: u32,
}

/// A reader of the connection table for one listening address.
pub(crate) struct Table {
    #[cfg(target_os = "linux")]
    os: os::SockDiag,
}

impl Table {
    /// A reader for the connections whose local end is `local` (the listening address).
    ///
    /// # Errors
    ///
    /// `Unsupported` where lameduck cannot read the table on this OS; the OS's error where
    /// it refuses (a sandbox without netlink, say).
    pub(crate) fn open(local: SocketAddr) -> io::Result<Table> {
        #[cfg(target_os = "linux")]
        return Ok(Table {
            os: os::SockDiag::open(local)?,
        });
        #[cfg(not(target_os = "linux"))]
        {
            let _ = local;
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the connection table is read on Linux only",
            ))
        }
    }

    /// The connections on the port now.
    ///
    /// # Errors
    ///
    /// If the OS did not answer (within a second).
    pub(crate) fn read(&mut self) -> io::Result<Vec<Connection>> {
        #[cfg(target_os = "linux")]
        return self.os.read();
        #[cfg(not(target_os = "linux"))]
        Ok(Vec::new())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn find(table: &mut Table, peer: SocketAddr, ok: impl Fn(&Connection) -> bool) -> Connection {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let all = table.read().unwrap();
            if let Some(c) = all.iter().find(|c| c.peer == peer && ok(c)) {
                return *c;
            }
            assert!(
                Instant::now() < until,
                "{peer} never as expected in {all:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_table_shows_the_backlog_then_unread_bytes_then_none() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(local) else {
                continue; // no IPv6 here
            };
            let addr = listener.local_addr().unwrap();
            let mut table = Table::open(addr).unwrap();
            let mut client = TcpStream::connect(addr).unwrap();
            let peer = client.local_addr().unwrap();

            let waiting = find(&mut table, peer, |_| true);
            assert!(waiting.established && !waiting.accepted, "{waiting:?}");

            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            let unread = find(&mut table, peer, |c| c.unread > 0);
            assert!(unread.accepted && unread.established, "{unread:?}");
            assert_eq!(unread.unread, 16);

            let mut buf = [0u8; 16];
            std::io::Read::read_exact(&mut server, &mut buf).unwrap();
            assert_eq!(find(&mut table, peer, |c| c.unread == 0).unread, 0);

            // Another port's connections are not in the table.
            let other = TcpListener::bind(local).unwrap();
            let _o = TcpStream::connect(other.local_addr().unwrap()).unwrap();
            assert!(table
                .read()
                .unwrap()
                .iter()
                .all(|c| c.peer != _o.local_addr().unwrap()));
        }
    }
}
