//! Running as a Windows service: the service control manager's STOP, PRESHUTDOWN and
//! SHUTDOWN fire the same drain as a signal, the manager is told `StopPending` about every
//! second while it lasts (a checkpoint that grows, and a wait hint), then `Stopped` with an
//! exit code: 0 when the drain finished, service-specific 1 when the deadline cut it, 2 when
//! the server failed otherwise. A log-off reaches a service's console handler too: it is
//! ignored there, as a service outlives the session.
//!
//! `service::run` (Windows, feature `service`, through the `windows-service` crate)
//! registers with the manager and calls the application's `serve` with the trigger to
//! build its server on; `examples/13_service.rs` shows it, with `sc.exe` to install it. The
//! sequence itself (`Session`) is the same on every OS, and is tested on every OS with
//! controls of the tests' own; CI runs the example as a service under wine's `sc.exe`.

// The sequence is compiled everywhere, for its tests; only Windows with the `service`
// feature runs it.
#![cfg_attr(not(all(windows, feature = "service")), allow(dead_code))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::latch::Latch;
use super::trigger::{Reason, Trigger};
use crate::error::Error;
use crate::server::stopped::Stopped;

/// How often the manager is told `StopPending` while the drain lasts.
pub(crate) const PENDING_EVERY: Duration = Duration::from_secs(1);

/// The wait hint of each `StopPending`: the manager may think the service hung if nothing
/// comes within it. Twice [`PENDING_EVERY`]: a bound, not a measurement.
pub(crate) const WAIT_HINT: Duration = Duration::from_secs(2);

/// A request of the service control manager that stops the service ([`Reason::Service`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceStop {
    /// `SERVICE_CONTROL_STOP`: `sc stop`, the Services console, `Stop-Service`.
    Stop,
    /// `SERVICE_CONTROL_PRESHUTDOWN`: the system is about to shut down, and waits for the
    /// services that asked for it (lameduck does).
    Preshutdown,
    /// `SERVICE_CONTROL_SHUTDOWN`: the system is shutting down.
    Shutdown,
}

impl std::fmt::Display for ServiceStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceStop::Stop => "service stop",
            ServiceStop::Preshutdown => "service preshutdown",
            ServiceStop::Shutdown => "service shutdown",
        })
    }
}

/// What the service tells the manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    StopPending {
        checkpoint: u32,
        wait_hint: Duration,
    },
    /// `service_specific`: 0 for none (the service ended well).
    Stopped {
        service_specific: u32,
    },
}

/// Set while the process runs as a service: the console handler ignores a log-off.
static SERVICE_MODE: AtomicBool = AtomicBool::new(false);

/// Whether the process runs as a service (a log-off is then none of its business).
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn service_mode() -> bool {
    SERVICE_MODE.load(Ordering::Relaxed)
}

/// One run of the service: the trigger the manager's requests fire, and the sequence of
/// statuses.
pub(crate) struct Session {
    trigger: Trigger,
}

impl Session {
    pub(crate) fn new() -> Session {
        SERVICE_MODE.store(true, Ordering::Relaxed);
        Session {
            trigger: super::trigger::trigger().0,
        }
    }

    /// What the manager's requests do (called on its thread): fire the drain.
    pub(crate) fn stopper(&self) -> impl Fn(ServiceStop) + Send + Sync + 'static {
        let trigger = self.trigger.clone();
        move |stop| {
            log::info!("{stop}: shutting down gracefully");
            trigger.fire(Reason::Service { stop });
        }
    }

    /// Runs `serve` with the trigger, telling `set` the statuses: `Running`, then, once
    /// the trigger fires, `StopPending` every [`PENDING_EVERY`] until `serve` returns, then
    /// `Stopped` with its exit code.
    pub(crate) fn run(
        self,
        serve: impl FnOnce(Trigger) -> Result<Stopped, Error>,
        set: impl FnMut(Status) + Send + 'static,
    ) -> Result<Stopped, Error> {
        let set = std::sync::Arc::new(std::sync::Mutex::new(set));
        let tell = {
            let set = std::sync::Arc::clone(&set);
            move |status| (set.lock().unwrap_or_else(|p| p.into_inner()))(status)
        };
        tell(Status::Running);
        let done = Latch::new();
        let pending = {
            let (listener, done, tell) = (self.trigger.listener(), done.clone(), tell.clone());
            std::thread::Builder::new()
                .name("lameduck-service".to_owned())
                .spawn(move || {
                    // The fire, or the end of `serve` without one (it failed).
                    crossbeam_channel::select! {
                        recv(listener.receiver()) -> _ => {}
                        recv(done.receiver()) -> _ => {}
                    }
                    let mut checkpoint = 0;
                    while !done.is_open() {
                        checkpoint += 1;
                        tell(Status::StopPending {
                            checkpoint,
                            wait_hint: WAIT_HINT,
                        });
                        done.wait_timeout(PENDING_EVERY);
                    }
                })
        };
        let result = serve(self.trigger.clone());
        done.open();
        if let Ok(thread) = pending {
            let _ = thread.join();
        }
        tell(Status::Stopped {
            service_specific: exit_code(&result),
        });
        result
    }
}

/// The service-specific exit code of a server's run: 0 drained, 1 the deadline cut the
/// drain, 2 another failure.
pub(crate) fn exit_code(result: &Result<Stopped, Error>) -> u32 {
    match result {
        Ok(_) => 0,
        Err(Error::DeadlineExceeded(_)) => 1,
        Err(_) => 2,
    }
}

/// What the application gives [`run`]: builds its server on the trigger and runs it.
#[cfg(all(windows, feature = "service"))]
type Serve = Box<dyn FnOnce(Trigger) -> Result<Stopped, Error> + Send>;

/// The service's name and what it serves, from [`run`] to the manager's call of the
/// service's main function.
#[cfg(all(windows, feature = "service"))]
static SERVICE: std::sync::Mutex<Option<(&'static str, Serve)>> = std::sync::Mutex::new(None);

/// Runs this process as the Windows service `name` (feature `service`): registers with the
/// service control manager, calls `serve` with the trigger to build the server on, and
/// returns when the service has stopped. `serve` builds the server with
/// [`Builder::trigger`](crate::Builder::trigger) and returns what
/// [`Server::run`](crate::Server::run) returned.
///
/// STOP and PRESHUTDOWN fire the drain ([`Reason::Service`]); while it lasts the manager is
/// told `StopPending` every second; then `Stopped`, with the service-specific exit code 1
/// if the deadline cut the drain (2 if the server failed otherwise). A log-off is ignored.
/// Do not call [`signal::install`](crate::signal::install) in a service: there is no
/// console.
///
/// ```no_run
/// use lameduck::tiny_http::{Request, Response};
///
/// lameduck::service::run("myapp", |trigger| {
///     lameduck::Server::bind("127.0.0.1:8080")
///         .trigger(trigger)
///         .build(|_: &mut Request| Response::from_string("Hello World").boxed())?
///         .run()
/// })?;
/// # Ok::<(), lameduck::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Service`] if the process was not started by the service control manager (run
/// from a console, say), or could not register with it.
#[cfg(all(windows, feature = "service"))]
pub fn run(
    name: &'static str,
    serve: impl FnOnce(Trigger) -> Result<Stopped, Error> + Send + 'static,
) -> Result<(), Error> {
    *SERVICE.lock().unwrap_or_else(|p| p.into_inner()) = Some((name, Box::new(serve)));
    windows_service::service_dispatcher::start(name, ffi_service_main)
        .map_err(|e| Error::Service(Box::new(e)))
}

#[cfg(all(windows, feature = "service"))]
windows_service::define_windows_service!(ffi_service_main, service_main);

/// The service's main function, called by the manager on a thread of its own.
#[cfg(all(windows, feature = "service"))]
fn service_main(_arguments: Vec<std::ffi::OsString>) {
    use windows_service::service::ServiceControl;
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};

    let Some((name, serve)) = SERVICE.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let session = Session::new();
    let stop = session.stopper();
    // A log-off reaches a service's console handler, and the default one ends the process:
    // lameduck's ignores it in service mode (its console events fire this session's trigger).
    if let Err(e) = crate::os::windows::install_console_handler(&session.trigger) {
        log::warn!("service {name}: no console handler, a log-off may end the service: {e}");
    }
    let handler = move |control| match control {
        ServiceControl::Stop => {
            stop(ServiceStop::Stop);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Preshutdown => {
            stop(ServiceStop::Preshutdown);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Shutdown => {
            stop(ServiceStop::Shutdown);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(name, handler) {
        Ok(status) => status,
        Err(e) => {
            log::error!("service {name}: cannot register with the service control manager: {e}");
            return;
        }
    };
    let set = move |s: Status| {
        if let Err(e) = status.set_service_status(windows_status(s)) {
            log::warn!("service {name}: cannot tell the manager {s:?}: {e}");
        }
    };
    match session.run(serve, set) {
        Ok(stopped) => log::info!("service {name} stopped: {}", stopped.report()),
        Err(e) => log::error!("service {name} stopped: {e}"),
    }
}

/// A status, as the manager takes it.
#[cfg(all(windows, feature = "service"))]
fn windows_status(status: Status) -> windows_service::service::ServiceStatus {
    use windows_service::service::{
        ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
    };
    let (state, accept, checkpoint, wait_hint, exit) = match status {
        Status::Running => (
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN,
            0,
            Duration::ZERO,
            ServiceExitCode::Win32(0),
        ),
        Status::StopPending {
            checkpoint,
            wait_hint,
        } => (
            ServiceState::StopPending,
            ServiceControlAccept::empty(),
            checkpoint,
            wait_hint,
            ServiceExitCode::Win32(0),
        ),
        Status::Stopped { service_specific } => (
            ServiceState::Stopped,
            ServiceControlAccept::empty(),
            0,
            Duration::ZERO,
            if service_specific == 0 {
                ServiceExitCode::Win32(0)
            } else {
                ServiceExitCode::ServiceSpecific(service_specific)
            },
        ),
    };
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: exit,
        checkpoint,
        wait_hint,
        process_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_http::{Request, Response};
    use crate::Server;
    use std::io::Write;
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Instant;

    /// Runs a session whose server's handler sleeps `sleep` with `deadline`; a request is
    /// sent, and once it is in the handler the manager's STOP comes. Returns the statuses.
    fn stopped_during_a_request(deadline: Duration, sleep: Duration) -> Vec<Status> {
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&statuses);
        let session = Session::new();
        let stop = session.stopper();
        let (handle_tx, handle_rx) = mpsc::channel();
        let runner = std::thread::spawn(move || {
            session.run(
                move |trigger| {
                    let server = Server::bind("127.0.0.1:0")
                        .trigger(trigger)
                        .deadline(deadline)
                        .build(move |_: &mut Request| {
                            std::thread::sleep(sleep);
                            Response::from_string("done").boxed()
                        })?;
                    handle_tx.send(server.handle()).unwrap();
                    server.run()
                },
                move |status| seen.lock().unwrap().push(status),
            )
        });
        let handle = handle_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let mut conn = std::net::TcpStream::connect(handle.local_addr()).unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while handle.stats().in_handlers() == 0 {
            assert!(
                Instant::now() < until,
                "the request never reached the handler"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        stop(ServiceStop::Stop);
        let result = runner.join().unwrap();
        assert_eq!(
            result.as_ref().map_or_else(
                |e| e.report().unwrap().reason().clone(),
                |s| s.report().reason().clone()
            ),
            Reason::Service {
                stop: ServiceStop::Stop
            }
        );
        let statuses = statuses.lock().unwrap().clone();
        statuses
    }

    /// Running, then StopPending with checkpoints 1, 2, … while the drain lasts, then
    /// Stopped: exit code 0 for a drain that finished.
    #[test]
    fn a_stop_reports_pending_with_growing_checkpoints_then_stopped_0() {
        let statuses =
            stopped_during_a_request(Duration::from_secs(10), Duration::from_millis(1500));
        assert_eq!(statuses.first(), Some(&Status::Running), "{statuses:?}");
        assert_eq!(
            statuses.last(),
            Some(&Status::Stopped {
                service_specific: 0
            }),
            "{statuses:?}"
        );
        let pending: Vec<u32> = statuses[1..statuses.len() - 1]
            .iter()
            .map(|s| match s {
                Status::StopPending {
                    checkpoint,
                    wait_hint,
                } => {
                    assert_eq!(*wait_hint, WAIT_HINT);
                    *checkpoint
                }
                other => panic!("{other:?} among the pending: {statuses:?}"),
            })
            .collect();
        assert!(!pending.is_empty(), "{statuses:?}");
        assert_eq!(pending, (1..=pending.len() as u32).collect::<Vec<_>>());
    }

    /// A drain the deadline cut: Stopped with the service-specific exit code 1.
    #[test]
    fn a_drain_the_deadline_cut_stops_with_code_1() {
        let statuses = stopped_during_a_request(Duration::from_millis(200), Duration::from_secs(3));
        assert_eq!(
            statuses.last(),
            Some(&Status::Stopped {
                service_specific: 1
            }),
            "{statuses:?}"
        );
    }
}
