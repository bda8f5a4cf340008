//! An in-process server for tests: `run` on its own thread, its outcome (and the `Server`,
//! kept alive for the late responder) handed back through a channel, so that every wait is
//! bounded.

use std::net::SocketAddr;
use std::thread;

use crossbeam_channel::Receiver;
use lameduck::{Builder, Error, Handle, Handler, Server, ShutdownReport, Stopped};

use super::BOUND;

pub struct Running {
    pub addr: SocketAddr,
    pub handle: Handle,
    result: Receiver<Result<Stopped, Error>>,
}

impl Running {
    /// Builds a server on a free loopback port with `configure` and `handler`, and runs it.
    #[track_caller]
    pub fn start(configure: impl FnOnce(Builder) -> Builder, handler: impl Handler) -> Running {
        let server = configure(Server::bind("127.0.0.1:0"))
            .build(handler)
            .expect("build");
        let addr = server.local_addr();
        let handle = server.handle();
        let (result_tx, result) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            let _ = result_tx.send(server.run());
        });
        Running {
            addr,
            handle,
            result,
        }
    }

    /// Waits for `run` to return, and returns what it returned: the stopped server goes on
    /// answering late requests while that value lives.
    #[track_caller]
    pub fn finished(&self) -> Result<Stopped, Error> {
        self.result.recv_timeout(BOUND).expect("run did not return")
    }

    /// Shuts down and returns the report of a shutdown that must have drained in time.
    #[track_caller]
    pub fn shut_down(&self) -> ShutdownReport {
        self.handle.shutdown();
        match self.finished() {
            Ok(stopped) => stopped.report().clone(),
            Err(e) => panic!("run failed: {e}"),
        }
    }
}
