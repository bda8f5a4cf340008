//! What lameduck knows of the clients whose requests came out of tiny_http's queue: enough
//! to tell the first request of a connection from the others, which is how the timed rescue
//! sees that a kick freed a connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

/// Slots in the table of recently seen connections (a power of two).
const SLOTS: usize = 1024;

/// Recently seen connections, to tell the first request of a connection from the others.
///
/// A fixed table indexed by a hash of the client's address; a connection is "new" when its
/// slot holds another address. Collisions and long-idle connections make false "new"s,
/// which only cost a needless kick. On the request path: one hash and one atomic load for a
/// known connection.
pub(crate) struct Peers {
    slots: Box<[AtomicU64]>,
    seen_new: AtomicBool,
    /// No rescue has found nothing to free since the last new connection (or ever): some
    /// connections may be waiting for a thread.
    unsure: AtomicBool,
    new_tx: Sender<()>,
    new_rx: Receiver<()>,
}

impl Peers {
    pub(crate) fn new() -> Peers {
        let (new_tx, new_rx) = crossbeam_channel::bounded(1);
        Peers {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            seen_new: AtomicBool::new(false),
            // Until a rescue has looked, a first burst may be waiting unseen.
            unsure: AtomicBool::new(true),
            new_tx,
            new_rx,
        }
    }

    /// `true` if a new connection was seen since the last call.
    pub(crate) fn take_seen_new(&self) -> bool {
        self.seen_new.swap(false, Ordering::Relaxed)
    }

    /// `true` unless a rescue has found nothing to free since the last new connection.
    pub(crate) fn is_unsure(&self) -> bool {
        self.unsure.load(Ordering::SeqCst)
    }

    /// A kick freed nothing: no connection is waiting for a thread, unless a new one was
    /// seen meanwhile. (`note` sends before it marks, and this clears before it looks.)
    pub(super) fn settle(&self) {
        self.unsure.store(false, Ordering::SeqCst);
        if self.new_rx.try_recv().is_ok() {
            self.unsure.store(true, Ordering::SeqCst);
        }
    }

    /// Ready (once) after a new connection was seen.
    pub(super) fn new_seen(&self) -> &Receiver<()> {
        &self.new_rx
    }

    /// Notes a request from `peer`.
    pub(crate) fn note(&self, peer: Option<&SocketAddr>) {
        let Some(peer) = peer else { return };
        let key = key(peer);
        let slot = &self.slots[index(key)];
        if slot.load(Ordering::Relaxed) != key {
            slot.store(key, Ordering::Relaxed);
            let _ = self.new_tx.try_send(());
            self.unsure.store(true, Ordering::SeqCst);
            self.seen_new.store(true, Ordering::Relaxed);
        }
    }
}

/// A non-zero 64-bit digest of an address.
fn key(peer: &SocketAddr) -> u64 {
    let ip = match peer.ip() {
        IpAddr::V4(ip) => u64::from(u32::from(ip)),
        IpAddr::V6(ip) => {
            let bits = u128::from(ip);
            (bits as u64) ^ ((bits >> 64) as u64).rotate_left(17)
        }
    };
    (ip << 16 | u64::from(peer.port())) | 1 << 63
}

fn index(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_new_once() {
        let peers = Peers::new();
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "[::1]:40001".parse().unwrap();
        peers.note(Some(&a));
        assert!(peers.new_rx.try_recv().is_ok());
        peers.note(Some(&a));
        assert!(peers.new_rx.try_recv().is_err());
        peers.note(Some(&b));
        assert!(peers.new_rx.try_recv().is_ok());
        assert!(peers.seen_new.load(Ordering::Relaxed));
    }

    #[test]
    fn keys_differ_by_port_and_family() {
        let v4: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let v4b: SocketAddr = "10.0.0.1:2".parse().unwrap();
        let v6: SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        assert_ne!(key(&v4), key(&v4b));
        assert_ne!(key(&v4), 0);
        assert!(index(key(&v6)) < SLOTS);
    }
}
