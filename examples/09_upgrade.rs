//! # 09 — upgrade in place: a new copy takes over, no connection refused
//!
//! **Teaches:** restarting a server without refusing a connection, as nginx does on SIGUSR2.
//! `Handle::upgrade_on_sigusr2` makes SIGUSR2 call `Handle::upgrade`: the program starts again
//! (the same path and arguments: a new binary installed over the old one is what starts)
//! with the listening socket handed over. Its `Server::bind` takes that socket instead of
//! binding, and says it is ready; only then does the old process stop accepting and drain,
//! while the new one serves. The socket never closes: no connect is refused. A new process
//! that fails, or is not ready in time, is killed; the old one says why and serves on.
//!
//! **Run:** `cargo run --example 09_upgrade`, then in another terminal
//! `while sleep 0.2; do curl -s 127.0.0.1:8080; done`, and `kill -USR2 <pid>` with the pid
//! it printed. **You will see** the answers go from one pid to the next, no error between:
//! ```text
//! INFO  lameduck::restart::upgrade] upgrade: started ".../09_upgrade" as pid 4243; waiting up to 10s for it to be ready
//! INFO  lameduck::server::config] listening on 127.0.0.1:8080, inherited from the upgrade of pid 4242, instead of binding 127.0.0.1:8080
//! INFO  lameduck::restart::upgrade] upgrade: pid 4243 is ready after 2.9ms; stop accepting and drain
//! INFO  lameduck::server] shutdown (upgrade: pid 4243 serves) took 104.2ms: served 2 before and 0 during the drain, ...
//! INFO  09_upgrade] pid 4242: upgraded to pid 4243, exiting
//! ```
//! Ctrl+C stops whichever process serves. Windows has no SIGUSR2: there (and anywhere),
//! `--upgrade-file upgrade` upgrades when a file `upgrade` appears (`echo > upgrade`), which
//! is removed first. Options: `--addr ADDR`, `--upgrade-file PATH`.

use std::time::Duration;

use lameduck::tiny_http::{Request, Response};
use lameduck::watch::FileTrigger;
use lameduck::{Reason, Server};

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tiny_http=off"),
    )
    .init();
    if let Err(e) = run() {
        log::error!("{e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut addr, mut file) = ("127.0.0.1:8080".to_owned(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--upgrade-file" => file = Some(value),
            _ => return Err("usage: 09_upgrade [--addr ADDR] [--upgrade-file PATH]".into()),
        }
    }
    let (trigger, _listener) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;

    let pid = std::process::id();
    // In the new process of an upgrade, `bind` takes the socket handed over.
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .build(move |_: &mut Request| {
            Response::from_string(format!("served by pid {pid}\n")).boxed()
        })?;
    // SIGUSR2 (Unix), or a file (anywhere): upgrade.
    #[cfg(unix)]
    server.handle().upgrade_on_sigusr2()?;
    if let Some(file) = file {
        let appears = FileTrigger::appears(file).poll_every(Duration::from_millis(50));
        server.handle().upgrade_on_file(appears)?;
    }
    println!("pid {pid} listening on http://{}", server.local_addr());

    let stopped = server.run()?;
    match stopped.report().reason() {
        Reason::Upgrade { pid: new } => log::info!("pid {pid}: upgraded to pid {new}, exiting"),
        other => log::info!("pid {pid}: stopped ({other}), exiting"),
    }
    Ok(())
}
