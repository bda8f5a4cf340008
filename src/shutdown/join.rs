//! What a timed join of a [`Pool`](super::pool::Pool) found: who finished, who panicked
//! (with the message), who is still running.

use std::any::Any;
use std::fmt;

/// The text of a panic payload: `panic!("...")` gives a `&str` or a `String`.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// What a timed join found: who finished, who panicked, who is still running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinReport {
    pub(super) finished: Vec<String>,
    pub(super) panicked: Vec<Panicked>,
    pub(super) running: Vec<String>,
}

impl JoinReport {
    /// Workers whose closure returned, by name, in start order.
    pub fn finished(&self) -> &[String] {
        &self.finished
    }

    /// Workers whose closure panicked, with the panic message, in start order.
    pub fn panicked(&self) -> &[Panicked] {
        &self.panicked
    }

    /// Workers still running at the deadline, by name, in start order.
    pub fn running(&self) -> &[String] {
        &self.running
    }

    /// Adds what a later join of the same pool found.
    pub(crate) fn absorb(&mut self, later: JoinReport) {
        self.finished.extend(later.finished);
        self.panicked.extend(later.panicked);
        self.running = later.running;
    }

    /// `true` if every worker ended (finished or panicked) before the deadline.
    pub fn is_complete(&self) -> bool {
        self.running.is_empty()
    }
}

/// A worker that panicked: its thread name and the panic message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    pub(super) name: String,
    pub(super) message: String,
}

impl Panicked {
    /// The worker's thread name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} panicked: {}", self.name, self.message)
    }
}
