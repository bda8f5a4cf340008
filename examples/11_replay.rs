//! # 11 — replay the archive
//!
//! **Teaches:** the other half of the retry queue. `10_archive` wrote each request it could
//! not serve as the HTTP bytes a client sends; replaying one is sending those bytes as they
//! are and reading the answer. A request answered `2xx` leaves the queue (its file is
//! removed); any other answer, or none, keeps it for the next replay.
//!
//! **Run:** after the run of `10_archive` that filled `retry/`, start it again
//! (`cargo run --example 10_archive`), then in another terminal
//! `cargo run --example 11_replay`.
//!
//! **You will see** one line per request, such as `POST /pay -> 200`, then
//! `replayed 2, 0 left in retry`; the fresh server logs `POST /pay: order=43`. The exit code
//! is 1 if any request is left.
//!
//! Options: `--from DIR` (default `retry`), `--to ADDR` (default `127.0.0.1:8080`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut from, mut to) = ("retry".to_owned(), "127.0.0.1:8080".to_owned());
    let mut args = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--from" => from = value,
            "--to" => to = value,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&from)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "http") {
            files.push(path);
        }
    }
    files.sort();
    let mut left = 0;
    for file in &files {
        match replay(file, &to) {
            Ok((request, status)) => {
                println!("{request} -> {status}");
                if status.starts_with('2') {
                    std::fs::remove_file(file)?; // served: out of the queue
                    continue;
                }
            }
            Err(e) => eprintln!("{}: {e}", file.display()),
        }
        left += 1;
    }
    println!("replayed {}, {left} left in {from}", files.len() - left);
    std::process::exit(i32::from(left > 0));
}

/// Sends the file's bytes to `to` as they are; returns the request's method and URL and the
/// response's status code.
fn replay(file: &Path, to: &str) -> std::io::Result<(String, String)> {
    let request = std::fs::read(file)?;
    let mut stream = TcpStream::connect(to)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?; // the request asked the server to close
    let words = |bytes: &[u8]| -> Vec<String> {
        let text = String::from_utf8_lossy(bytes);
        let line = text.lines().next().unwrap_or_default();
        line.split(' ').map(str::to_owned).collect()
    };
    let (request, answer) = (words(&request), words(&answer));
    let status = answer.get(1).cloned().unwrap_or_else(|| "no answer".into());
    Ok((request[..2.min(request.len())].join(" "), status))
}
