//! The library through its API, in this process: the trigger, the pool, and servers driven
//! through their `Handle` and checked from the client side with a real HTTP client on
//! loopback. The tests here share the process; those that count its threads, descriptors or
//! memory, or that time a burst, have binaries of their own (`tests/*.rs`), and those that
//! need signals or processes of their own are in `tests/process`.

#[path = "../support/mod.rs"]
mod support;

mod connections;
mod deployment;
mod pool;
mod reliability;
mod server;
mod stats;
mod trigger;
mod upgrade;
