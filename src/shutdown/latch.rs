//! The one idiom for "it has happened": a latch, opened once, seen at once by every clone.
//!
//! A flag for the cheap check, and a `crossbeam-channel` whose only sender is dropped when the
//! latch opens: every thread blocked on the receiver (alone or in a `select!`) wakes at once,
//! and a receiver that looks later sees it at once. The public [`Trigger`](crate::Trigger) is
//! a latch with a reason and a time; inside the server, latches mark the phases of the
//! shutdown and tell helper threads to stop.

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// A one-shot broadcast. Clones share it.
#[derive(Clone)]
pub(crate) struct Latch {
    inner: Arc<Inner>,
    receiver: Receiver<Infallible>,
}

struct Inner {
    /// Set once, never cleared: one load for hot paths.
    open: AtomicBool,
    /// The only sender; dropped when the latch opens.
    sender: Mutex<Option<Sender<Infallible>>>,
}

impl Latch {
    /// A closed latch.
    pub(crate) fn new() -> Latch {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        Latch {
            inner: Arc::new(Inner {
                open: AtomicBool::new(false),
                sender: Mutex::new(Some(sender)),
            }),
            receiver,
        }
    }

    /// Opens the latch. Returns `true` if this call opened it.
    pub(crate) fn open(&self) -> bool {
        self.open_with(|| {})
    }

    /// Opens the latch, running `first` before, in the call that opens it only: what `first`
    /// records is visible to whoever sees the latch open.
    pub(crate) fn open_with(&self, first: impl FnOnce()) -> bool {
        let mut sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if sender.is_none() {
            return false;
        }
        first();
        self.inner.open.store(true, Ordering::Release);
        drop(sender.take()); // the broadcast
        true
    }

    /// Whether it has opened.
    pub(crate) fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Blocks until it opens.
    pub(crate) fn wait(&self) {
        while !self.is_open() {
            // The message type is uninhabited: `recv` returns on disconnection only.
            let _ = self.receiver.recv();
        }
    }

    /// Blocks until it opens or `deadline`; returns whether it is open.
    pub(crate) fn wait_deadline(&self, deadline: Instant) -> bool {
        while !self.is_open() {
            if let Err(RecvTimeoutError::Timeout) = self.receiver.recv_deadline(deadline) {
                return self.is_open();
            }
        }
        true
    }

    /// Blocks until it opens or `timeout` has passed; returns whether it is open.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => {
                self.wait();
                true
            }
        }
    }

    /// The receiver that disconnects when it opens, for `select!`.
    pub(crate) fn receiver(&self) -> &Receiver<Infallible> {
        &self.receiver
    }
}

impl Default for Latch {
    fn default() -> Latch {
        Latch::new()
    }
}

impl fmt::Debug for Latch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latch")
            .field("open", &self.is_open())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_and_every_clone_sees_it() {
        let latch = Latch::new();
        let clone = latch.clone();
        assert!(!clone.wait_timeout(Duration::from_millis(1)));
        let waiter = std::thread::spawn(move || clone.wait());
        let mut ran = 0;
        assert!(latch.open_with(|| ran += 1));
        assert!(!latch.open_with(|| ran += 1));
        assert_eq!(ran, 1);
        waiter.join().unwrap();
        assert!(latch.is_open() && latch.wait_timeout(Duration::ZERO));
        assert!(latch.receiver().try_recv().is_err());
    }
}
