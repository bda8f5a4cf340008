//! # 08 — archive what could not be served, and replay it
//!
//! **Teaches:** the seed's "archive the unprocessed requests, put them in the retry queue".
//! `Builder::on_unserved` receives every request the server read and did not serve: those
//! still queued at the deadline (answered `503`, archived whole, body included) and those
//! whose handler the deadline cut (archived without the body, which the handler holds).
//! Here they are written as JSON lines to a retry file, and `--replay` sends them again.
//!
//! **Run:** `cargo run --example 08_report_archive`, then in another terminal
//! `curl -d order=42 127.0.0.1:8080/slow & sleep 0.2; curl -d order=43 127.0.0.1:8080/pay &`
//! and Ctrl+C in the first (one worker, a 1 s deadline, `/slow` takes 5 s). Then start it
//! again and, in the other terminal, `cargo run --example 08_report_archive -- --replay
//! retry.jsonl --to 127.0.0.1:8080`.
//!
//! **You will see** `archived: POST /slow (cut)` and `archived: POST /pay (rejected)`, the
//! exit code 1, and `retry.jsonl` holding two lines such as
//! `{"why":"rejected","method":"POST","url":"/pay","headers":[["Host","127.0.0.1:8080"],…],"body":"b3JkZXI9NDM="}`;
//! then the replay prints `POST /pay -> 200` and the fresh server logs
//! `POST /pay: order=43`.
//!
//! Options: `--addr ADDR`, `--archive FILE` (default `retry.jsonl`), `--slow-ms N` (5000);
//! `--replay FILE --to ADDR`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::tiny_http::{Request, Response, ResponseBox};
use lameduck::{Error, Server, Unserved, Why};

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
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut archive = PathBuf::from("retry.jsonl");
    let mut slow = Duration::from_millis(5000);
    let mut replay: Option<PathBuf> = None;
    let mut to: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--archive" => archive = value.into(),
            "--slow-ms" => slow = Duration::from_millis(value.parse()?),
            "--replay" => replay = Some(value.into()),
            "--to" => to = Some(value),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    match (replay, to) {
        (Some(file), Some(to)) => return replay_file(&file, &to),
        (Some(_), None) | (None, Some(_)) => return Err("--replay needs --to, and back".into()),
        (None, None) => {}
    }

    let (trigger, _) = lameduck::trigger();
    lameduck::signal::install(&trigger)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&archive)?;
    let file = Arc::new(Mutex::new(file));
    let archived = Arc::clone(&file);
    let server = Server::bind(addr.as_str())
        .trigger(trigger)
        .workers(1)
        .deadline(Duration::from_secs(1))
        .on_unserved(move |unserved| {
            log::warn!(
                "archived: {} {} ({})",
                unserved.method(),
                unserved.url(),
                why(&unserved)
            );
            let mut file = archived.lock().unwrap();
            if let Err(e) = writeln!(file, "{}", to_json(&unserved)) {
                log::error!("writing the archive: {e}");
            }
        })
        .build(move |request: &mut Request| -> ResponseBox {
            let body = lameduck::read_body(request, 1 << 20).unwrap_or_default();
            log::info!(
                "{} {}: {}",
                request.method(),
                request.url(),
                String::from_utf8_lossy(&body)
            );
            if request.url() == "/slow" {
                std::thread::sleep(slow);
            }
            Response::from_string("done\n").boxed()
        })?;
    println!("listening on http://{}", server.local_addr());

    match server.run() {
        Ok(_) => Ok(()),
        Err(Error::DeadlineExceeded(stopped)) => {
            let report = stopped.report();
            file.lock().unwrap().flush()?;
            log::error!(
                "deadline exceeded: {} unfinished, {} answered 503; archived to {}",
                report.unfinished(),
                report.rejected(),
                archive.display()
            );
            std::process::exit(1);
        }
        Err(e) => Err(e.into()),
    }
}

fn why(unserved: &Unserved) -> &'static str {
    match unserved.why() {
        Why::Rejected => "rejected",
        Why::Cut(_) => "cut",
        _ => "other",
    }
}

/// One JSON line: `why`, `method`, `url`, `headers` as pairs, `body` in base64 (or null).
fn to_json(unserved: &Unserved) -> String {
    let headers: Vec<String> = unserved
        .headers()
        .iter()
        .map(|h| {
            format!(
                "[{},{}]",
                quote(h.field.as_str().as_str()),
                quote(h.value.as_str())
            )
        })
        .collect();
    let body = unserved
        .body()
        .map_or_else(|| "null".to_owned(), |b| quote(&base64(b)));
    format!(
        r#"{{"why":{},"method":{},"url":{},"headers":[{}],"body":{}}}"#,
        quote(why(unserved)),
        quote(unserved.method().as_str()),
        quote(unserved.url()),
        headers.join(","),
        body
    )
}

/// Sends every archived request in `file` again to `to`, one connection each.
fn replay_file(file: &PathBuf, to: &str) -> Result<(), Box<dyn std::error::Error>> {
    for line in BufReader::new(std::fs::File::open(file)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let json = Json::parse(&line)?;
        let field = |name: &str| json.get(name).and_then(Json::as_str).unwrap_or_default();
        let (method, url) = (field("method"), field("url"));
        let body = json
            .get("body")
            .and_then(Json::as_str)
            .map(unbase64)
            .transpose()?
            .unwrap_or_default();
        let mut head = format!("{method} {url} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
        if let Some(Json::Array(headers)) = json.get("headers") {
            for pair in headers {
                if let Json::Array(pair) = pair {
                    if let [Json::Str(name), Json::Str(value)] = pair.as_slice() {
                        if !["host", "connection", "content-length", "transfer-encoding"]
                            .contains(&name.to_ascii_lowercase().as_str())
                        {
                            head.push_str(&format!("{name}: {value}\r\n"));
                        }
                    }
                }
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut stream = TcpStream::connect(to)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).unwrap_or("?");
        println!("{method} {url} -> {status}");
    }
    Ok(())
}

fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                B64[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn unbase64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c).ok_or("bad base64")? as u32;
        n = n << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    Ok(out)
}

/// Just enough JSON to read back what `to_json` writes.
enum Json {
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    Null,
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut chars = text.trim().chars().peekable();
        let value = Json::value(&mut chars)?;
        match chars.next() {
            None => Ok(value),
            Some(c) => Err(format!("unexpected {c:?} after the value")),
        }
    }

    fn value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Json, String> {
        match chars.next().ok_or("unexpected end")? {
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next().ok_or("unterminated string")? {
                        '"' => return Ok(Json::Str(s)),
                        '\\' => match chars.next().ok_or("bad escape")? {
                            'u' => {
                                let hex: String = chars.by_ref().take(4).collect();
                                let code =
                                    u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                                s.push(char::from_u32(code).ok_or("bad \\u escape")?);
                            }
                            c => s.push(c),
                        },
                        c => s.push(c),
                    }
                }
            }
            '[' => {
                let mut items = Vec::new();
                if chars.peek() == Some(&']') {
                    chars.next();
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(Json::value(chars)?);
                    match chars.next() {
                        Some(',') => continue,
                        Some(']') => return Ok(Json::Array(items)),
                        other => return Err(format!("expected , or ] not {other:?}")),
                    }
                }
            }
            '{' => {
                let mut fields = Vec::new();
                loop {
                    let Json::Str(key) = Json::value(chars)? else {
                        return Err("expected a key".into());
                    };
                    if chars.next() != Some(':') {
                        return Err("expected :".into());
                    }
                    fields.push((key, Json::value(chars)?));
                    match chars.next() {
                        Some(',') => continue,
                        Some('}') => return Ok(Json::Object(fields)),
                        other => return Err(format!("expected , or }} not {other:?}")),
                    }
                }
            }
            'n' if chars.by_ref().take(3).collect::<String>() == "ull" => Ok(Json::Null),
            c => Err(format!("unexpected {c:?}")),
        }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}
