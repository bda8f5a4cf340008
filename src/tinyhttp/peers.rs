//! What lameduck knows of the clients whose requests came out of tiny_http's queue: when
//! the last request of each connection came out. The timed rescue uses it to tell the first
//! request of a connection from the others (its sign that a kick freed a connection); the
//! drain, held against the OS's connection table, to tell a connection whose next request is
//! on its way from an idle one (`connections.rs`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

/// Slots in the table of connections (a power of two). A connection whose slot another
/// takes is kept apart, exactly, until its next request or until it is gone.
const SLOTS: usize = 4096;

/// When the last request of each connection came out of tiny_http's queue.
///
/// A fixed table indexed by a hash of the client's address (a connection is one client
/// address for as long as it is open), with the time of its last request. On the request
/// path: one hash, one atomic load and one store for a known connection. A connection new to
/// its slot pushes the one there into a map of its own, so that what is known is never lost
/// to a collision, only made slower to find.
pub(crate) struct Peers {
    slots: Box<[Slot]>,
    /// The zero of the slots' times.
    epoch: Instant,
    /// Connections pushed out of their slot by another: their key and last time.
    evicted: Mutex<HashMap<u64, u64>>,
    /// Connections whose requests are no longer served (a request that could smuggle).
    refused: Mutex<HashSet<u64>>,
    /// Some connection was ever refused: until then, a request looks at nothing more.
    any_refused: AtomicBool,
    seen_new: AtomicBool,
    /// No rescue has found nothing to free since the last new connection (or ever): some
    /// connections may be waiting for a thread.
    unsure: AtomicBool,
    new_tx: Sender<()>,
    new_rx: Receiver<()>,
}

/// One connection's place: its key (0 for none) and when its last request came out, in
/// nanoseconds since [`Peers::epoch`].
struct Slot {
    key: AtomicU64,
    last: AtomicU64,
}

impl Peers {
    pub(crate) fn new() -> Peers {
        let (new_tx, new_rx) = crossbeam_channel::bounded(1);
        Peers {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    key: AtomicU64::new(0),
                    last: AtomicU64::new(0),
                })
                .collect(),
            epoch: Instant::now(),
            evicted: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
            any_refused: AtomicBool::new(false),
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

    /// Notes that a request from `peer` came out of the queue now.
    pub(crate) fn note(&self, peer: Option<&SocketAddr>) {
        let Some(peer) = peer else { return };
        let key = key(peer);
        let now = self.now();
        let slot = &self.slots[index(key)];
        if slot.key.load(Ordering::Acquire) == key {
            slot.last.store(now, Ordering::Release);
            return;
        }
        let pushed_out = slot.key.swap(key, Ordering::AcqRel);
        let pushed_out_last = slot.last.swap(now, Ordering::AcqRel);
        let known = {
            let mut evicted = lock(&self.evicted);
            if pushed_out != 0 {
                evicted.insert(pushed_out, pushed_out_last);
            }
            evicted.remove(&key).is_some()
        };
        if !known {
            let _ = self.new_tx.try_send(());
            self.unsure.store(true, Ordering::SeqCst);
            self.seen_new.store(true, Ordering::Relaxed);
        }
    }

    /// When the last request of the connection from `peer` came out, if one did.
    pub(crate) fn last_request(&self, peer: &SocketAddr) -> Option<Instant> {
        let key = key(peer);
        let slot = &self.slots[index(key)];
        let last = if slot.key.load(Ordering::Acquire) == key {
            Some(slot.last.load(Ordering::Acquire))
        } else {
            lock(&self.evicted).get(&key).copied()
        };
        last.map(|nanos| self.epoch + Duration::from_nanos(nanos))
    }

    /// From now on the connection from `peer` is not served: its requests are refused.
    pub(crate) fn refuse(&self, peer: Option<&SocketAddr>) {
        if let Some(peer) = peer {
            lock(&self.refused).insert(key(peer));
            self.any_refused.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the connection from `peer` was refused.
    pub(crate) fn is_refused(&self, peer: Option<&SocketAddr>) -> bool {
        // One load on the request path; the set is locked only once a refusal was noted.
        if !self.any_refused.load(Ordering::SeqCst) {
            return false;
        }
        let refused = lock(&self.refused);
        !refused.is_empty() && peer.is_some_and(|p| refused.contains(&key(p)))
    }

    /// Forgets what is kept apart for connections that are gone: those not in `open`.
    pub(crate) fn forget_all_but(&self, open: impl Iterator<Item = SocketAddr>) {
        let open: HashSet<u64> = open.map(|p| key(&p)).collect();
        lock(&self.evicted).retain(|key, _| open.contains(key));
        lock(&self.refused).retain(|key| open.contains(key));
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
    fn a_connection_pushed_out_of_its_slot_is_still_known() {
        let peers = Peers::new();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b = (2..u16::MAX)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .find(|b| index(key(b)) == index(key(&a)))
            .expect("two ports in one slot");
        assert!(peers.last_request(&a).is_none());
        peers.note(Some(&a));
        let at_a = peers.last_request(&a).unwrap();
        peers.note(Some(&b));
        assert_eq!(peers.last_request(&a), Some(at_a));
        assert!(peers.last_request(&b).unwrap() >= at_a);
        while peers.new_rx.try_recv().is_ok() {}
        peers.note(Some(&a)); // back in its slot: known, not new
        assert!(peers.new_rx.try_recv().is_err());
        assert!(peers.last_request(&a).unwrap() >= at_a);
        assert!(peers.last_request(&b).is_some());
        peers.forget_all_but([a].into_iter());
        assert!(peers.last_request(&b).is_none());
    }

    #[test]
    fn a_refused_connection_stays_refused_while_it_is_open() {
        let peers = Peers::new();
        let a: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert!(!peers.is_refused(Some(&a)));
        peers.refuse(Some(&a));
        assert!(peers.is_refused(Some(&a)));
        assert!(!peers.is_refused(Some(&"127.0.0.1:8".parse().unwrap())));
        peers.forget_all_but(std::iter::empty());
        assert!(!peers.is_refused(Some(&a)));
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
