//! # 10 — archive what could not be served
//!
//! **Teaches:** the seed's "archive the unprocessed requests, put them in the retry queue".
//! `Builder::on_unserved` receives each request the server read and did not serve: queued
//! at the deadline (answered `503`; archived whole) or cut in its handler (its body stays
//! with the handler). `Unserved::to_http` gives it as the bytes a client sends: one file
//! each in a retry folder, which `11_replay` sends again.
//!
//! **Run:** `cargo run --example 10_archive`, then in another terminal
//! `curl -d order=42 127.0.0.1:8080/slow & sleep 0.2; curl -d order=43 127.0.0.1:8080/pay &`
//! and Ctrl+C in the first (one worker, a 1 s deadline, `/slow` takes 5 s).
//!
//! **You will see** `archived: POST /pay (rejected) in retry/…-1-rejected.http`, then
//! `/slow (cut)`, exit code 1; `cat retry/*` shows `POST /pay HTTP/1.1`, headers, `order=43`.
//! Options: `--addr ADDR`, `--archive DIR` (default `retry`), `--slow-ms N` (5000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lameduck::tiny_http::{Request, Response, ResponseBox};
use lameduck::{Server, Why};

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
    let (mut addr, mut dir, mut slow) = ("127.0.0.1:8080".to_owned(), "retry".to_owned(), 5000);
    let mut args = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--addr" => addr = value,
            "--archive" => dir = value,
            "--slow-ms" => slow = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;
    std::fs::create_dir_all(&dir)?;
    let (archive, count) = (std::path::PathBuf::from(dir), AtomicUsize::new(0));
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .workers(1)
        .deadline(Duration::from_secs(1))
        .on_unserved(move |unserved| {
            let why = match unserved.why() {
                Why::Rejected => "rejected",
                _ => "cut",
            };
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            let file = archive.join(format!("{}-{n}-{why}.http", std::process::id()));
            let (method, url) = (unserved.method(), unserved.url());
            match std::fs::write(&file, unserved.to_http()) {
                Ok(()) => log::warn!("archived: {method} {url} ({why}) in {}", file.display()),
                Err(e) => log::error!("archiving {method} {url} in {}: {e}", file.display()),
            }
        })
        .build(move |request: &mut Request| -> ResponseBox {
            let body = lameduck::read_body(request, 1 << 20).unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            log::info!("{} {}: {body}", request.method(), request.url());
            if request.url() == "/slow" {
                std::thread::sleep(Duration::from_millis(slow));
            }
            Response::from_string("done\n").boxed()
        })?;
    println!("listening on http://{}", server.local_addr());

    server.run()?; // a missed deadline is an error (exit code 1) that carries the report
    Ok(())
}
