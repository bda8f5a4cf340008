//! The supervisor thread, `lameduck-supervisor-1`: it rescues connections tiny_http leaves
//! without a thread (`rescue.rs`), checks that tiny_http's accept loop is alive, and starts a
//! new one when it has died.
//!
//! **Rescue.** Every [`INTERVAL`] when new connections were seen (a burst always gets some
//! served), and every tenth round anyway.
//!
//! **A live accept loop.** Every [`PING_EVERY`] rounds it sends a bad request line, which
//! tiny_http answers `400` at once; a loop that died without a word (tiny_http's accept
//! thread can panic when the process is out of descriptors) answers nothing, even after a
//! rescue. A dead loop, found so or reported by the error it left in the queue, is replaced
//! by a new tiny_http server on the same socket (`socket.rs`); until one can start, the
//! connections waiting in the backlog are answered `503`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::select;

use super::peers::Peers;
use super::queue::Queue;
use super::rescue::{self, CONNECT_TIMEOUT, RESCUE_WAIT};
use super::socket::Socket;
use crate::error::Error;
use crate::shutdown::helper::Helper;
use crate::shutdown::latch::Latch;

/// How often the background rescue may run.
const INTERVAL: Duration = Duration::from_millis(100);

/// A rescue runs even without new connections seen every this many rounds (a burst whose
/// served connections have not sent anything yet gives no sign).
const UNCONDITIONAL_EVERY: u64 = 10;

/// How often (in rounds) the supervisor checks that the accept loop still answers.
const PING_EVERY: u64 = 3;

/// How long a ping may wait for its `400`. A live loop answers in microseconds.
const PING_WAIT: Duration = Duration::from_millis(300);

/// While the accept loop cannot be restarted, how often to try again.
const RESTART_RETRY: Duration = Duration::from_millis(20);

/// What the supervisor looks after.
pub(crate) struct Watched {
    pub(crate) queue: Arc<Queue>,
    pub(crate) socket: Arc<Mutex<Socket>>,
    pub(crate) peers: Arc<Peers>,
    /// Where to connect to reach the listening socket.
    pub(crate) addr: SocketAddr,
    /// The `Retry-After` of the 503s for the backlog while no accept loop runs.
    pub(crate) retry_after: Duration,
}

/// The running supervisor.
pub(crate) struct Supervisor {
    helper: Helper,
}

impl Supervisor {
    /// Starts supervising until [`Supervisor::stop`].
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(watched: Watched) -> Result<Supervisor, Error> {
        let helper = Helper::start("lameduck-supervisor", move |stop| supervise(&watched, stop))?;
        Ok(Supervisor { helper })
    }

    /// Stops it and waits (boundedly) for it: it stops at once, or after a rescue, ping or
    /// restart under way.
    pub(crate) fn stop(self) {
        let bound = (RESCUE_WAIT + CONNECT_TIMEOUT) * 4 + PING_WAIT * 2 + Duration::from_secs(1);
        self.helper.stop(bound);
    }
}

fn supervise(w: &Watched, stop: &Latch) {
    let go_on = || !stop.is_open();
    for round in 1u64.. {
        select! {
            recv(stop.receiver()) -> _ => return,
            recv(w.queue.deaths()) -> dead => {
                if dead.is_ok_and(|n| n == w.queue.current().number()) {
                    restart(w, stop);
                }
            }
            default(INTERVAL) => {}
        }
        if stop.is_open() {
            return;
        }
        if w.peers.take_seen_new() || round % UNCONDITIONAL_EVERY == 0 {
            rescue::rescue(w.addr, &w.peers, &go_on);
        }
        if round % PING_EVERY == 0 && !accept_loop_answers(w.addr, &w.peers) {
            let gen = w.queue.current();
            w.queue
                .report_death(&gen, "it stopped answering (tiny_http gave no error)");
        }
    }
}

/// Starts a new generation after the current one's accept loop died; sheds the backlog with
/// 503s until it can (descriptors free again), or until stopped.
fn restart(w: &Watched, stop: &Latch) {
    let mut shed = 0;
    let mut reported = false;
    let lock = || w.socket.lock().unwrap_or_else(|p| p.into_inner());
    while !stop.is_open() {
        let attempt = lock().new_server();
        match attempt {
            Ok(http) => {
                match w.queue.install(http) {
                    Ok(number) => log::warn!(
                        "accepting again (tiny_http server {number}); {shed} connections were \
                         answered 503 meanwhile"
                    ),
                    Err(e) => log::warn!("{e}: the old connections wait until shutdown"),
                }
                return;
            }
            Err(e) => {
                if !reported {
                    log::warn!("cannot start a new accept loop yet ({e}); answering 503 meanwhile");
                    reported = true;
                }
                shed += lock().shed_backlog(w.retry_after);
                stop.wait_timeout(RESTART_RETRY);
            }
        }
    }
}

/// Sends a bad request line, which tiny_http answers `400` as soon as a thread reads it.
/// `Ok(true)` if answered within [`PING_WAIT`].
///
/// # Errors
///
/// If the ping could not connect or write (say, this process is out of descriptors too):
/// no answer either way.
fn ping(addr: SocketAddr) -> io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.write_all(b"\r\n")?;
    stream.set_read_timeout(Some(PING_WAIT))?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `false` if tiny_http's accept loop no longer answers: a ping goes unanswered, and still
/// does after a rescue (a starved pool answers once rescued).
fn accept_loop_answers(addr: SocketAddr, peers: &Peers) -> bool {
    match ping(addr) {
        Ok(false) => {
            rescue::rescue(addr, peers, &|| true);
            !matches!(ping(addr), Ok(false))
        }
        _ => true,
    }
}
