//! # 13 — a Windows service that drains on STOP
//!
//! **Teaches:** running as a Windows service, where there are no signals and no console:
//! the service control manager says STOP (`sc stop`, the Services console) or PRESHUTDOWN
//! (the machine shuts down), and `lameduck::service::run` turns either into the same drain
//! as Ctrl+C, telling the manager `StopPending` every second while it lasts and then
//! `Stopped`, with the service-specific exit code 1 if the deadline cut the drain. Build it
//! with the `service` feature, on Windows.
//!
//! **Run** (an administrator's console, from the crate's folder):
//! ```text
//! cargo build --example 13_service --features service
//! sc create lameduck-demo binPath= "%CD%\target\debug\examples\13_service.exe"
//! sc start lameduck-demo
//! curl 127.0.0.1:8080
//! sc stop lameduck-demo       (while a curl waits: it gets its answer)
//! sc query lameduck-demo      (STATE: STOPPED, WIN32_EXIT_CODE 0)
//! sc delete lameduck-demo
//! ```
//! **You will see** in `13_service.log`, beside the executable:
//! ```text
//! INFO  lameduck::shutdown::service] service stop: shutting down gracefully
//! INFO  lameduck::server::drain] shutdown (service stop): stop accepting, drain (deadline 10s)
//! INFO  lameduck::shutdown::service] service lameduck-demo stopped: shutdown (service stop) took 2.1s: ...
//! ```
//! Elsewhere, or without the feature, it says so and exits.

#[cfg(all(windows, feature = "service"))]
fn main() {
    use std::time::Duration;

    use lameduck::tiny_http::{Request, Response};

    // A service has no console: the log goes to a file beside the executable.
    let log = std::env::current_exe()
        .unwrap()
        .with_file_name("13_service.log");
    let file = std::fs::File::create(log).expect("create the log file");
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tiny_http=off"),
    )
    .target(env_logger::Target::Pipe(Box::new(file)))
    .init();

    let result = lameduck::service::run("lameduck-demo", |trigger| {
        lameduck::Server::bind("127.0.0.1:8080")
            .trigger(trigger)
            .deadline(Duration::from_secs(10))
            .build(|_: &mut Request| {
                std::thread::sleep(Duration::from_secs(2));
                Response::from_string("Hello World").boxed()
            })?
            .run()
    });
    if let Err(e) = result {
        log::error!("{e}");
        std::process::exit(1);
    }
}

#[cfg(not(all(windows, feature = "service")))]
fn main() {
    println!("13_service runs as a Windows service: build it on Windows with --features service");
}
