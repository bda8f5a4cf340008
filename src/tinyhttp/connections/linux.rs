//! The connection table on Linux: `sock_diag` over netlink.
//!
//! One request dumps the TCP sockets of one address family whose local port is the server's
//! (the kernel filters on `idiag_sport`, after walking its whole table), or looks up one
//! socket by its two ends (a hash lookup; many such requests go in one message); each
//! answer is an `inet_diag_msg`: state, both
//! ends, the receive queue (bytes not yet read) and the inode (0 while the connection waits
//! in the backlog, without a socket of the process's), followed by the connection's
//! `tcp_info` (`INET_DIAG_INFO`): the bytes received since it opened, and how long ago data
//! last arrived. The socket is a plain `socket2` socket; the messages are read and written
//! as bytes, so no `unsafe` is needed. Layouts: `linux/netlink.h`, `linux/sock_diag.h`,
//! `linux/inet_diag.h`, `linux/tcp.h`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::Connection;

const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_RECV: u8 = 3;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: u8 = 12;

/// `INET_DIAG_NOCOOKIE`: a lookup of one socket by its addresses, whatever its cookie.
const NO_COOKIE: u32 = !0;

/// `INET_DIAG_INFO`: the attribute that carries `tcp_info`; asked for as bit `1 << (2 - 1)`.
const INET_DIAG_INFO: u16 = 2;
/// Offsets in `tcp_info`: `tcpi_last_data_recv` (u32, ms) and `tcpi_bytes_received` (u64,
/// since Linux 4.1).
const LAST_DATA_SENT: usize = 44;
const LAST_DATA_RECV: usize = 52;
const BYTES_RECEIVED: usize = 128;

/// Sizes: `nlmsghdr`, `inet_diag_req_v2`, `inet_diag_msg`.
const NLMSG_HDR: usize = 16;
const REQ_V2: usize = 56;
const DIAG_MSG: usize = 72;

/// How long one dump may take before the look is given up: a bound, against waiting
/// forever. One dump takes about 0.7 ms here, whatever the number of connections (the
/// kernel walks its whole table).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// The listening socket, as one lookup shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Listening {
    pub(super) inode: u32,
    /// `idiag_cookie`: what `SO_COOKIE` gives for it (`os::unix::socket_cookie`).
    pub(super) cookie: u64,
    /// Connections whose handshake is complete, waiting in the backlog to be accepted.
    pub(super) backlog: u32,
}

pub(super) struct SockDiag {
    socket: Socket,
    local: SocketAddr,
    seq: u32,
    buf: Vec<u8>,
    /// What [`SockDiag::read_accepted`] learnt of this process's sockets, by cookie.
    known: std::collections::HashMap<u64, Known>,
}

/// A socket of this process's, as an earlier look left it.
#[derive(Clone, Copy)]
enum Known {
    /// Not a connection on the port (the listener, a connection of lameduck's own to it, a
    /// netlink socket), and never to be one: a socket's ends do not change once connected.
    Elsewhere,
    /// A connection on the port with bytes read from it: a thread of tiny_http's has it
    /// until it ends (it runs a connection on one thread from its first request to its
    /// last), so what the rescue and the parking look for in it is settled, and it is not
    /// looked up again. As it was then.
    Read(Connection),
}

impl SockDiag {
    pub(super) fn open(local: SocketAddr) -> io::Result<SockDiag> {
        let socket = Socket::new(
            Domain::from(AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(SockDiag {
            socket,
            local,
            seq: 0,
            buf: vec![0; 64 * 1024],
            known: std::collections::HashMap::new(),
        })
    }

    /// The listening socket on the address, from one lookup in the kernel's hash of
    /// listening sockets (microseconds, where a dump walks the whole table): `None` if
    /// there is none.
    pub(super) fn listening(&mut self) -> io::Result<Option<Listening>> {
        self.seq = self.seq.wrapping_add(1);
        (&self.socket).write_all(&lookup(self.local, self.seq))?;
        loop {
            let n = (&self.socket).read(&mut self.buf)?;
            let mut rest = &self.buf[..n];
            while rest.len() >= NLMSG_HDR {
                let len = u32_at(rest, 0) as usize;
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(bad("netlink message length"));
                }
                let (kind, seq) = (u16_at(rest, 4), u32_at(rest, 8));
                let body = &rest[NLMSG_HDR..len];
                rest = &rest[align(len).min(rest.len())..];
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return match -code {
                            libc::ENOENT => Ok(None),
                            _ => Err(io::Error::from_raw_os_error(-code)),
                        };
                    }
                    SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG => {
                        return Ok((body[1] == TCP_LISTEN).then(|| Listening {
                            inode: u32_at(body, 68),
                            cookie: cookie(body),
                            backlog: u32_at(body, 56),
                        }));
                    }
                    _ => return Err(bad("answer to a lookup")),
                }
            }
        }
    }

    /// Whether no connection is on the port, shown without a dump: the listening socket,
    /// one of this process's, has nothing in its backlog, and no socket of the process is
    /// a connection on the port. `false` when unsure.
    ///
    /// Each descriptor is asked for its socket's cookie, and a socket the looks while
    /// serving know (`Known`) is not asked for its ends: one system call for most, where
    /// the inode and the ends of each took four, on the path of every idle stop.
    pub(super) fn none_open(&mut self, ours: &dyn Fn(SocketAddr) -> bool) -> io::Result<bool> {
        let Some(listening) = self.listening()? else {
            return Ok(false);
        };
        if listening.backlog > 0 {
            return Ok(false);
        }
        let Some(fds) = own_descriptors() else {
            return Ok(false);
        };
        let a_client = |ends: Option<(SocketAddr, SocketAddr)>| {
            ends.is_some_and(|(local, peer)| self.on_port(local) && !ours(peer))
        };
        let mut listening_ours = false;
        for fd in fds {
            match crate::os::unix::socket_cookie(fd) {
                Some(cookie) if cookie == listening.cookie => listening_ours = true,
                Some(cookie) => match self.known.get(&cookie) {
                    Some(Known::Elsewhere) => {}
                    Some(Known::Read(c)) if !ours(c.peer) => return Ok(false),
                    Some(Known::Read(_)) => {}
                    None if a_client(crate::os::unix::tcp_ends(fd)) => return Ok(false),
                    None => {}
                },
                // Not a socket, closed meanwhile, or a kernel without cookies.
                None => {
                    listening_ours |=
                        crate::os::unix::socket_inode(fd).is_some_and(|i| i == listening.inode);
                    if a_client(crate::os::unix::tcp_ends(fd)) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(listening_ours)
    }

    /// Whether `end` is an end on the server's address.
    fn on_port(&self, end: SocketAddr) -> bool {
        end.port() == self.local.port()
            && (self.local.ip().is_unspecified() || same_ip(end.ip(), self.local.ip()))
    }

    /// The connections on the port that this process has accepted, each looked up by its
    /// two ends (a hash lookup in the kernel each, all in one message: about 0.1 ms for a
    /// few dozen, where a dump walks the kernel's whole table, 1.1–1.2 ms here, and tens of
    /// milliseconds with a hundred thousand sockets in `TIME_WAIT`), and how many wait in
    /// the listening socket's backlog (0 unless `backlog_matters`): those have no
    /// descriptor of the process's yet, and are counted, not listed. `None` when the
    /// listening socket is not found, or the descriptors cannot be listed or are more than
    /// [`MOST_DESCRIPTORS`].
    ///
    /// Each descriptor is asked for its socket's cookie (`SO_COOKIE`, one system call), and
    /// only a socket not seen before is asked for its ends; a connection seen read is not
    /// looked up again (`Known::Read`). So each look costs a system call per descriptor and
    /// a lookup per connection not read yet: in a burst of 256 connections, about 0.8 ms of
    /// CPU once they are read, where the ends and a lookup of each cost about as much as a
    /// dump past a few hundred descriptors.
    ///
    /// What a dump shows and this does not: the backlog's connections themselves, a
    /// handshake under way (a SYN answered, the client's last ACK not yet in: on loopback,
    /// none outlasts the client's `connect`), an accept under way (microseconds), and
    /// another process's connections on a shared socket.
    pub(super) fn read_accepted(
        &mut self,
        backlog_matters: bool,
    ) -> io::Result<Option<(Vec<Connection>, u32)>> {
        let backlog = if backlog_matters {
            match self.listening()? {
                Some(listening) => listening.backlog,
                None => return Ok(None),
            }
        } else {
            0
        };
        let Some(fds) = own_descriptors() else {
            return Ok(None);
        };
        // tiny_http holds two descriptors for each connection (one to read, a clone to
        // write), one socket: looked at once. A socket known from an earlier look is not
        // asked for its ends again, nor looked up if it was read.
        let mut seen = std::collections::HashSet::with_capacity(fds.len());
        let mut connections = Vec::new();
        let mut ends = Vec::new();
        for fd in fds {
            let Some(cookie) = crate::os::unix::socket_cookie(fd) else {
                // Not a socket, closed meanwhile, or a kernel without cookies: looked at
                // as before them.
                if let Some((local, peer)) = crate::os::unix::tcp_ends(fd) {
                    if self.on_port(local) {
                        ends.push((local, peer));
                    }
                }
                continue;
            };
            if !seen.insert(cookie) {
                continue;
            }
            match self.known.get(&cookie) {
                Some(Known::Elsewhere) => {}
                Some(Known::Read(c)) => connections.push((*c, cookie)),
                None => match crate::os::unix::tcp_ends(fd) {
                    Some((local, peer)) if self.on_port(local) => ends.push((local, peer)),
                    // A client's end (lameduck's own): a connected socket's ends stay.
                    Some(_) => {
                        self.known.insert(cookie, Known::Elsewhere);
                    }
                    // No ends (yet): a listener, a netlink socket, lameduck's own connect
                    // under way. A few: asked again at each look.
                    None => {}
                },
            }
        }
        self.known.retain(|cookie, _| seen.contains(cookie));
        ends.sort_unstable();
        ends.dedup();
        let looked_up = connections.len();
        for batch in ends.chunks(LOOKUPS_AT_ONCE) {
            self.look_up(batch, &mut connections)?;
        }
        for (c, cookie) in &connections[looked_up..] {
            let read = c.received.is_some_and(|r| r > u64::from(c.unread));
            if read && seen.contains(cookie) {
                self.known.insert(*cookie, Known::Read(*c));
            }
        }
        Ok(Some((
            connections.into_iter().map(|(c, _)| c).collect(),
            backlog,
        )))
    }

    /// How many connections the looks know as read, and do not look up again.
    #[cfg(test)]
    pub(super) fn known_read(&self) -> usize {
        self.known
            .values()
            .filter(|k| matches!(k, Known::Read(_)))
            .count()
    }

    /// Looks up each connection of `batch` (its local end, its peer's), all in one message,
    /// and adds those found to `connections`.
    fn look_up(
        &mut self,
        batch: &[(SocketAddr, SocketAddr)],
        connections: &mut Vec<(Connection, u64)>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut asked = Vec::with_capacity(batch.len() * (NLMSG_HDR + REQ_V2));
        for &(local, peer) in batch {
            asked.extend_from_slice(&lookup_connection(local, peer, self.seq));
        }
        // One answer per lookup: the socket, or an error (closed meanwhile: `ENOENT`).
        (&self.socket).write_all(&asked)?;
        let mut answers = 0;
        while answers < batch.len() {
            let n = (&self.socket).read(&mut self.buf)?;
            let mut rest = &self.buf[..n];
            while rest.len() >= NLMSG_HDR {
                let len = u32_at(rest, 0) as usize;
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(bad("netlink message length"));
                }
                let (kind, seq) = (u16_at(rest, 4), u32_at(rest, 8));
                let body = &rest[NLMSG_HDR..len];
                rest = &rest[align(len).min(rest.len())..];
                if seq != self.seq {
                    continue; // the answer to an earlier look that timed out
                }
                answers += 1;
                match kind {
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 && -code != libc::ENOENT {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                    }
                    // In the states a dump asks for only: a connection closed meanwhile
                    // is answered in another (`TIME_WAIT`), or with the listening socket,
                    // which the kernel's lookup falls back to.
                    SOCK_DIAG_BY_FAMILY
                        if body.len() >= DIAG_MSG
                            && matches!(body[1], TCP_ESTABLISHED | TCP_CLOSE_WAIT) =>
                    {
                        if let Some(c) = connection(body, self.local) {
                            connections.push((c, cookie(body)));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    pub(super) fn read(&mut self) -> io::Result<Vec<Connection>> {
        self.seq = self.seq.wrapping_add(1);
        (&self.socket).write_all(&request(self.local, self.seq))?;
        let mut connections = Vec::new();
        loop {
            let n = (&self.socket).read(&mut self.buf)?;
            let mut rest = &self.buf[..n];
            while rest.len() >= NLMSG_HDR {
                let len = u32_at(rest, 0) as usize;
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(bad("netlink message length"));
                }
                let (kind, seq) = (u16_at(rest, 4), u32_at(rest, 8));
                let body = &rest[NLMSG_HDR..len];
                rest = &rest[align(len).min(rest.len())..];
                if seq != self.seq {
                    continue; // the answer to an earlier look that timed out
                }
                match kind {
                    NLMSG_DONE => return Ok(connections),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        if let Some(c) = connection(body, self.local) {
                            connections.push(c);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A dump request for the TCP sockets of `local`'s family on `local`'s port: established,
/// closing by the client (`CLOSE_WAIT`), or still in their handshake (`SYN_RECV`).
fn request(local: SocketAddr, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_V2);
    m.extend_from_slice(&((NLMSG_HDR + REQ_V2) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.push(family(&local));
    m.push(IPPROTO_TCP);
    m.push(1 << (INET_DIAG_INFO - 1)); // tcp_info
    m.push(0);
    let states: u32 = (1 << TCP_ESTABLISHED)
        | (1 << TCP_CLOSE_WAIT)
        | (1 << TCP_SYN_RECV)
        | (1 << TCP_NEW_SYN_RECV);
    m.extend_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid: the kernel keeps the sockets whose local port is this one.
    m.extend_from_slice(&local.port().to_be_bytes());
    m.resize(NLMSG_HDR + REQ_V2, 0);
    m
}

/// A lookup of the one socket listening on `local` (no dump: `NLM_F_REQUEST` alone, both
/// ends given, the peer's as zero, which only a listening socket matches).
fn lookup(local: SocketAddr, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_V2);
    m.extend_from_slice(&((NLMSG_HDR + REQ_V2) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.push(family(&local));
    m.push(IPPROTO_TCP);
    m.push(0); // no tcp_info
    m.push(0);
    m.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    // inet_diag_sockid: local port, peer port 0, local address, peer address 0, any
    // interface, any cookie.
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&ip_bytes(local.ip()));
    m.extend_from_slice(&[0u8; 16]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    debug_assert_eq!(m.len(), NLMSG_HDR + REQ_V2);
    m
}

/// A lookup of the one connection from `local` to `peer`, with its `tcp_info`.
fn lookup_connection(local: SocketAddr, peer: SocketAddr, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + REQ_V2);
    m.extend_from_slice(&((NLMSG_HDR + REQ_V2) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    m.push(family(&local));
    m.push(IPPROTO_TCP);
    m.push(1 << (INET_DIAG_INFO - 1)); // tcp_info
    m.push(0);
    let states: u32 = (1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT);
    m.extend_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid: both ports, both addresses, any interface, any cookie.
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&peer.port().to_be_bytes());
    m.extend_from_slice(&ip_bytes(local.ip()));
    m.extend_from_slice(&ip_bytes(peer.ip()));
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    debug_assert_eq!(m.len(), NLMSG_HDR + REQ_V2);
    m
}

/// An address as `inet_diag_sockid` holds it: 16 bytes, an IPv4 one in the first 4.
fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

/// The connection an `inet_diag_msg` describes, if it is one of `local`'s.
fn connection(msg: &[u8], local: SocketAddr) -> Option<Connection> {
    if msg.len() < DIAG_MSG {
        return None;
    }
    let state = msg[1];
    let id = &msg[4..52];
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let src = address(msg[0], &id[4..20])?;
    let dst = address(msg[0], &id[20..36])?;
    if sport != local.port() || !(local.ip().is_unspecified() || same_ip(src, local.ip())) {
        return None;
    }
    let info = attribute(&msg[DIAG_MSG..], INET_DIAG_INFO);
    Some(Connection {
        peer: SocketAddr::new(dst, dport),
        established: state == TCP_ESTABLISHED,
        opening: state == TCP_SYN_RECV || state == TCP_NEW_SYN_RECV,
        accepted: u32_at(msg, 68) != 0,
        inode: u32_at(msg, 68),
        unread: u32_at(msg, 56),
        received: info.filter(|i| i.len() >= BYTES_RECEIVED + 8).map(|i| {
            u64::from_ne_bytes(
                i[BYTES_RECEIVED..BYTES_RECEIVED + 8]
                    .try_into()
                    .unwrap_or([0; 8]),
            )
        }),
        quiet_for: info
            .filter(|i| i.len() >= LAST_DATA_RECV + 4)
            .map(|i| Duration::from_millis(u64::from(u32_at(i, LAST_DATA_RECV)))),
        sent_for: info
            .filter(|i| i.len() >= LAST_DATA_SENT + 4)
            .map(|i| Duration::from_millis(u64::from(u32_at(i, LAST_DATA_SENT)))),
    })
}

/// The cookie in an `inet_diag_msg` (`idiag_cookie`, two `u32`, the low half first): what
/// `SO_COOKIE` gives for the socket (`os::unix::socket_cookie`).
fn cookie(msg: &[u8]) -> u64 {
    u64::from(u32_at(msg, 44)) | u64::from(u32_at(msg, 48)) << 32
}

/// How many connections one message looks up. Each answer waits in the netlink socket's
/// receive buffer until read, and takes about 900 bytes of it (the kernel's accounting):
/// 240 lookups at once overflowed the default 208 KiB (`ENOBUFS`), so they go in batches.
const LOOKUPS_AT_ONCE: usize = 64;

/// The most descriptors looked at one by one ([`own_descriptors`]): each is asked for its
/// socket's cookie (one system call), and only a socket not seen before for its ends, and
/// looked up if it is a connection not seen read (`Known`). Before the cookies, with two to
/// four system calls each and a lookup per connection, a look cost as much as a dump of the
/// table past a few hundred descriptors (0.09 / 0.30 / 0.53 ms for 16 / 64 / 120
/// connections on two descriptors each, a dump 1.15–1.19 ms, 300 looks each), and the
/// bound was 256.
const MOST_DESCRIPTORS: usize = 4096;

/// The numbers in `/proc/self/fd`: this process's descriptors, and the directory's own
/// while it is read. `None` if they cannot be listed, or if there are more than
/// [`MOST_DESCRIPTORS`] (known before any is looked at).
fn own_descriptors() -> Option<Vec<RawFd>> {
    own_descriptors_at_most(MOST_DESCRIPTORS)
}

/// [`own_descriptors`], with `most` for the bound.
pub(super) fn own_descriptors_at_most(most: usize) -> Option<Vec<RawFd>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut fds = Vec::new();
    for entry in dir {
        if fds.len() == most {
            return None;
        }
        let Ok(entry) = entry else { continue };
        if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    Some(fds)
}

/// The inodes of this process's sockets, of the descriptors in `/proc/self/fd`. Read at
/// each look while it is asked for: a few hundred descriptors take well under a
/// millisecond.
pub(super) fn own_socket_inodes() -> std::collections::HashSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return std::collections::HashSet::new();
    };
    dir.filter_map(|entry| {
        let fd = entry.ok()?.file_name().to_str()?.parse().ok()?;
        crate::os::unix::socket_inode(fd)
    })
    .collect()
}

/// The payload of the netlink attribute `kind` among `attrs` (`rtattr`s: u16 length, u16
/// type, payload, padded to 4 bytes).
fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0));
        if len < 4 || len > attrs.len() {
            return None;
        }
        if u16_at(attrs, 2) == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

fn family(addr: &SocketAddr) -> u8 {
    if addr.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn address(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The same address, an IPv4 one written as IPv6 (`::ffff:a.b.c.d`) included.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canonical(a) == canonical(b)
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: bad {what}"))
}
