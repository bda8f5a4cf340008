//! Descriptor numbers from the environment, made sockets, sockets handed to a child as
//! descriptor numbers, and the addresses of the process's own sockets: the crate's only
//! `unsafe` on Unix.
//!
//! A number in `LISTEN_FDS` is a promise by whoever started the process, not a fact: the
//! descriptor may be closed, a file, a datagram socket, a socket that does not listen. Each
//! is looked at through a borrowed descriptor first, and owned only once it is known to be a
//! listening TCP socket: a wrong one is left as it was and named in the error.

#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use socket2::{SockRef, Type};

/// Why a descriptor announced by the environment could not be taken.
#[derive(Debug)]
pub(crate) enum NotTaken {
    /// It is not open.
    Closed,
    /// It is open, but not what was asked for: what it is instead. It is left as it was.
    Wrong(String),
}

/// Takes descriptor `fd`, announced by the environment, as a listening TCP socket, and
/// marks it close-on-exec so that children do not inherit it by accident.
///
/// # Errors
///
/// [`NotTaken::Closed`] if `fd` is not open; [`NotTaken::Wrong`] if it is not a listening
/// TCP socket (and it is then left open and untouched).
pub(crate) fn take_listener(fd: RawFd) -> Result<TcpListener, NotTaken> {
    // SAFETY: `fcntl(F_GETFD)` reads the flags of a descriptor number and touches no memory;
    // on a number that is not open it fails with EBADF, which is what it is asked here.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(NotTaken::Closed);
    }
    // SAFETY: `fd` is open (checked just above), and the borrow does not outlive this
    // function, during which nothing in lameduck closes it: the environment is read once,
    // under a lock, and each number taken once.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    check_listening(SockRef::from(&borrowed)).map_err(|what| NotTaken::Wrong(what.to_owned()))?;
    // SAFETY: `fd` is open and a listening TCP socket (checked above), announced to this
    // process by its parent for it to own; nothing else in the process owns it, since the
    // environment is read once and each number taken once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = socket2::Socket::from(owned);
    if let Err(e) = socket.set_cloexec(true) {
        log::warn!("inherited socket {fd}: could not mark it close-on-exec: {e}");
    }
    Ok(socket.into())
}

/// Says what `socket` is if it is not a listening TCP socket.
fn check_listening(socket: SockRef<'_>) -> Result<(), &'static str> {
    let not_a_socket = |e: io::Error| {
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            "not a socket"
        } else {
            "a descriptor whose socket type cannot be read"
        }
    };
    let kind = socket.r#type().map_err(not_a_socket)?;
    if kind != Type::STREAM {
        return Err("a socket, but not a stream (TCP) socket");
    }
    match socket.local_addr().map(|addr| addr.as_socket()) {
        Ok(Some(_)) => {}
        Ok(None) => return Err("a stream socket, but not an IP (TCP) one: a Unix socket?"),
        Err(_) => return Err("a socket whose address cannot be read"),
    }
    listening(socket)
}

/// Whether the socket listens, where the OS says so (`SO_ACCEPTCONN`).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn listening(socket: SockRef<'_>) -> Result<(), &'static str> {
    match socket.is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => Err("a TCP socket that is not listening (a connection?)"),
        Err(_) => Err("a TCP socket whose listening state cannot be read"),
    }
}

/// Elsewhere a socket that does not listen is found out by its first `accept`.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn listening(_socket: SockRef<'_>) -> Result<(), &'static str> {
    Ok(())
}

/// Takes descriptor `fd`, announced by the environment, as a connected Unix stream socket
/// (the baton of an upgrade), close-on-exec.
///
/// # Errors
///
/// As [`take_listener`], for a descriptor that is not a Unix stream socket.
pub(crate) fn take_unix_stream(fd: RawFd) -> Result<UnixStream, NotTaken> {
    // SAFETY: as in `take_listener`: a flags read on a number, no memory touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(NotTaken::Closed);
    }
    // SAFETY: as in `take_listener`: open, and borrowed for this function only.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    let unix_stream = socket.r#type().ok() == Some(Type::STREAM)
        && socket
            .local_addr()
            .is_ok_and(|addr| addr.family() == libc::AF_UNIX as libc::sa_family_t);
    if !unix_stream {
        return Err(NotTaken::Wrong(
            "the upgrade's baton should be a Unix stream socket, and is not".to_owned(),
        ));
    }
    // SAFETY: as in `take_listener`: open, the right kind, announced for this process to
    // own, and taken once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = socket2::Socket::from(owned);
    if let Err(e) = socket.set_cloexec(true) {
        log::warn!("inherited socket {fd}: could not mark it close-on-exec: {e}");
    }
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// Spawns `cmd` with `fds[i]` as descriptor `3 + i` in the child, the protocol of socket
/// activation; nothing else of this process's is inherited beyond what `cmd` sets up
/// (std opens every descriptor close-on-exec).
///
/// # Errors
///
/// If the descriptors could not be copied, or the child could not be started.
pub(crate) fn spawn_with_fds(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let first = 3 + fds.len() as RawFd;
    // Copies numbered above every target, so that no `dup2` in the child overwrites a
    // source it has yet to copy; close-on-exec, so that only the targets reach the program.
    let copies = fds
        .iter()
        .map(|fd| {
            // SAFETY: `fd` is borrowed, so open for this call; `F_DUPFD_CLOEXEC` makes a new
            // descriptor and touches no memory.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, first) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` was just made by `fcntl` and is owned by no one else.
            Ok(unsafe { OwnedFd::from_raw_fd(copy) })
        })
        .collect::<io::Result<Vec<OwnedFd>>>()?;
    let raw: Vec<RawFd> = copies.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe calls are allowed: it calls `dup2` (async-signal-safe) and reads
    // `errno`, and allocates nothing (`raw` was built before the fork and is only read).
    unsafe {
        cmd.pre_exec(move || {
            for (target, source) in (3..).zip(raw.iter()) {
                // `dup2` clears close-on-exec on the target: it survives `exec`.
                if libc::dup2(*source, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(copies);
    child
}

/// The inode of the socket on descriptor `fd`, a number from `/proc/self/fd` (Linux): the
/// number its link there names (`socket:[inode]`), and the OS's connection table too.
/// `None` if it is not a socket, or was closed meanwhile. A socket option and an `fstat`,
/// where reading the link walks a path: for the few dozen descriptors of a server, about a
/// tenth of a millisecond less at each look.
///
/// No file system is touched: the option fails at once (`ENOTSOCK`) for anything but a
/// socket, and only a socket, whose metadata is in memory, is `fstat`ed (on a file of a
/// network file system `fstat` could wait for its server). Only a descriptor closed and
/// opened again as such a file between the two calls, microseconds apart, would be. As
/// for [`tcp_ends`], the number is only read from.
#[cfg(target_os = "linux")]
pub(crate) fn socket_inode(fd: RawFd) -> Option<u32> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes at `kind`, which has room for them;
    // `fd` is a number it only reads the socket of, and one that is not an open socket makes
    // it fail.
    let is_socket = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            std::ptr::addr_of_mut!(kind).cast(),
            &mut len,
        )
    } == 0;
    if !is_socket {
        return None;
    }
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` writes one `stat` where `stat` points, which has room for one; `fd`
    // is a number it only reads the metadata of, and one not open makes it fail.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: `fstat` succeeded, so it wrote the whole `stat`.
    let stat = unsafe { stat.assume_init() };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    u32::try_from(stat.st_ino).ok()
}

/// The cookie of the socket on descriptor `fd`, a number from `/proc/self/fd` (Linux): a
/// number the kernel gives each socket once and never again (`SO_COOKIE`, Linux 4.13),
/// also in its connection table. `None` if it is not a socket, was closed meanwhile, or the
/// kernel is older. One system call, where [`socket_inode`] takes two: what a look while
/// serving reads for each descriptor, to know the sockets it looked up before.
///
/// As for [`socket_inode`], no file system is touched (the option fails at once for
/// anything but a socket), and the number is only read from.
#[cfg(target_os = "linux")]
pub(crate) fn socket_cookie(fd: RawFd) -> Option<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes at `cookie`, which has room for them;
    // `fd` is a number it only reads the socket of, and one that is not an open socket makes
    // it fail.
    let read = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            std::ptr::addr_of_mut!(cookie).cast(),
            &mut len,
        )
    } == 0;
    (read && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
}

/// The two ends of the TCP connection on descriptor `fd`, a number from `/proc/self/fd`
/// (Linux): `None` if it is not a connected TCP socket (a listener, a Unix socket, closed
/// meanwhile).
///
/// The number is only read from: a descriptor another thread closes meanwhile, or one
/// opened again under the same number, gives `None` or the ends of that other socket, which
/// the caller allows for (`tinyhttp/connections/linux.rs`).
#[cfg(target_os = "linux")]
pub(crate) fn tcp_ends(fd: RawFd) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let end = |get: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int| {
        // SAFETY: `getsockname`/`getpeername` write at most `*len` bytes at `storage`, which
        // `try_init` provides for any address and whose length it passes; `fd` is a number
        // the calls only read the socket of, and one not open (or not a connection) makes
        // them fail, which is an answer here.
        let ((), addr) = unsafe {
            socket2::SockAddr::try_init(|storage, len| {
                if get(fd, storage.cast(), len) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
        }
        .ok()?;
        addr.as_socket()
    };
    Some((end(libc::getsockname)?, end(libc::getpeername)?))
}

/// The CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`), or `None`
/// where the clock cannot be read: what a look at the connection table costs, apart from
/// the time the thread waited for a core.
#[cfg(target_os = "linux")]
pub(crate) fn thread_cpu_time() -> Option<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` where `now` points, which is one.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (read == 0).then(|| {
        std::time::Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpStream, UdpSocket};
    use std::os::unix::net::UnixListener;

    #[test]
    fn only_a_listening_tcp_socket_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening(SockRef::from(&listener)), Ok(()));
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            check_listening(SockRef::from(&udp)),
            Err("a socket, but not a stream (TCP) socket")
        );
        let dir = std::env::temp_dir().join(format!("lameduck-unix-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = UnixListener::bind(&dir).unwrap();
        let found = check_listening(SockRef::from(&unix));
        let _ = std::fs::remove_file(&dir);
        assert_eq!(
            found,
            Err("a stream socket, but not an IP (TCP) one: a Unix socket?")
        );
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            assert_eq!(
                check_listening(SockRef::from(&stream)),
                Err("a TCP socket that is not listening (a connection?)")
            );
        }
        let file = std::fs::File::open("/dev/null").unwrap();
        let borrowed = std::os::fd::AsFd::as_fd(&file);
        assert_eq!(
            check_listening(SockRef::from(&borrowed)),
            Err("not a socket")
        );
    }

    /// A socket's inode, from one `fstat`, is the number its link in `/proc/self/fd` names;
    /// a file has none, nor a number that cannot be open.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sockets_inode_is_the_one_its_link_names() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(
            socket_inode(fd).map(|inode| format!("socket:[{inode}]")),
            link.to_str().map(str::to_owned)
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(socket_inode(file.as_raw_fd()), None);
        assert_eq!(socket_inode(-1), None);
    }
}
