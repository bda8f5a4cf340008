//! What works without HTTP: the trigger and its listeners, the signals and other watchers
//! that fire it, and the pool of threads joined with a deadline. A program without a server
//! uses these alone (`examples/01_flag.rs` to `03_timed_join.rs`).

pub mod console;
pub(crate) mod helper;
pub(crate) mod join;
pub(crate) mod latch;
pub(crate) mod pool;
pub mod service;
pub mod signal;
pub(crate) mod trigger;
pub mod watch;
