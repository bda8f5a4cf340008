//! What the seam shows of itself to a [`Stats`](crate::Stats) snapshot: the requests waiting
//! in the room for a worker, and the connections open at the last look at the OS's table.
//!
//! Atomics only: a snapshot takes no lock and never reads the kernel's table itself. The
//! room's count moves with each request put in or taken out; the connections are counted by
//! whoever looks at the table anyway: the supervisor while the server serves (every 10 ms
//! while connections arrive, every second otherwise), the drain at each of its looks.

use std::sync::atomic::{AtomicUsize, Ordering};

/// No look at the table yet, or no table to look at.
const UNKNOWN: usize = usize::MAX;

/// The seam's gauges.
pub(crate) struct Gauges {
    /// Requests in the waiting room: counted before each is put in (and uncounted if it did
    /// not go in), uncounted once taken out, so that the count never goes below zero.
    waiting: AtomicUsize,
    /// Connections accepted and open at the last look at the table, or [`UNKNOWN`].
    open: AtomicUsize,
}

impl Gauges {
    pub(crate) fn new() -> Gauges {
        Gauges {
            waiting: AtomicUsize::new(0),
            open: AtomicUsize::new(UNKNOWN),
        }
    }

    /// Requests waiting in the room for a worker now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A request is about to be put in the room.
    pub(crate) fn entering(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// A request left the room, or did not go in after [`Gauges::entering`].
    pub(crate) fn left(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open at the last look at the OS's table; `None` before the first look, or
    /// where there is no table.
    pub(crate) fn connections_open(&self) -> Option<usize> {
        match self.open.load(Ordering::Relaxed) {
            UNKNOWN => None,
            open => Some(open),
        }
    }

    /// A look at the table found `open` connections open.
    pub(crate) fn saw_open(&self, open: usize) {
        self.open.store(open.min(UNKNOWN - 1), Ordering::Relaxed);
    }

    /// The table can no longer be read.
    pub(crate) fn lost_sight(&self) {
        self.open.store(UNKNOWN, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_counts_in_and_out_and_connections_are_unknown_until_seen() {
        let gauges = Gauges::new();
        assert_eq!(gauges.connections_open(), None);
        gauges.entering();
        gauges.entering();
        gauges.left();
        assert_eq!(gauges.waiting(), 1);
        gauges.saw_open(3);
        assert_eq!(gauges.connections_open(), Some(3));
        gauges.saw_open(0);
        assert_eq!(gauges.connections_open(), Some(0));
        gauges.lost_sight();
        assert_eq!(gauges.connections_open(), None);
    }
}
