//! The load generator: std threads, one blocking keep-alive `TcpStream` each, reading whole
//! HTTP/1.1 responses and counting every outcome.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What every client sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// How long a read may block: no client waits longer for a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A response, read whole.
#[derive(Clone, Copy, Debug)]
pub struct Response {
    pub status: u16,
    /// The server said `Connection: close` (or closes by HTTP/1.0 rules).
    pub close: bool,
}

/// One client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    pub fn connect(addr: SocketAddr, read_timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.set_write_timeout(Some(read_timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes `GET /`.
    pub fn send(&mut self) -> io::Result<()> {
        self.reader.get_mut().write_all(REQUEST)
    }

    /// Sends `GET /` and reads its response.
    pub fn get(&mut self) -> io::Result<Response> {
        self.send()?;
        self.read_response()
    }

    /// Reads one whole response: status line, headers, then a body by Content-Length, by
    /// chunks, or to the end of the stream. Anything less is an error.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let status_line = self.read_line()?;
        let mut words = status_line.split_whitespace();
        let version = words.next().unwrap_or("");
        let status = words
            .next()
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut close = version == "HTTP/1.0";
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid(format!("bad header {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<u64>().map_err(|e| invalid(e.to_string()))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if matches!(status, 100..=199 | 204 | 304) {
            // No body.
        } else if chunked {
            self.read_chunks()?;
        } else if let Some(length) = length {
            self.skip(length)?;
        } else {
            io::copy(&mut self.reader, &mut io::sink())?;
            close = true;
        }
        Ok(Response { status, close })
    }

    /// A line without its CRLF; end of stream is an error.
    fn read_line(&mut self) -> io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a whole response",
            ));
        }
        if !self.line.ends_with('\n') {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "partial line"));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_chunks(&mut self) -> io::Result<()> {
        loop {
            let size_line = self.read_line()?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16).map_err(|e| invalid(e.to_string()))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            self.skip(size)?;
            if !self.read_line()?.is_empty() {
                return Err(invalid("no CRLF after a chunk".to_owned()));
            }
        }
    }

    fn skip(&mut self, length: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.reader).take(length), &mut io::sink())?;
        if copied < length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        }
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Every outcome of a load run.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// 2xx responses.
    pub ok: u64,
    /// 503 responses.
    pub unavailable: u64,
    /// Any other status.
    pub other_status: u64,
    /// Connects refused: the server stopped accepting.
    pub refused: u64,
    /// Connects that failed otherwise (timeout, reset).
    pub connect_failed: u64,
    /// Requests that could not be written: not sent, not lost.
    pub write_failed: u64,
    /// Requests written whose whole response never came (end of stream, reset, partial
    /// response, read timeout).
    pub lost: u64,
    /// The lost requests by what the client saw: the error's kind, and whether the request
    /// was the first on its connection.
    pub lost_by: BTreeMap<String, u64>,
    /// The failed connects by the error's kind.
    pub connect_failed_by: BTreeMap<String, u64>,
    /// Requests cut by the end of a timed run: still waiting when time was up.
    pub cut: u64,
    /// Clients (connections) that got at least one 2xx response.
    pub clients_served: usize,
    /// Latency of every 2xx response, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.other_status += other.other_status;
        self.refused += other.refused;
        self.connect_failed += other.connect_failed;
        self.write_failed += other.write_failed;
        self.lost += other.lost;
        for (kind, n) in other.lost_by {
            *self.lost_by.entry(kind).or_default() += n;
        }
        for (kind, n) in other.connect_failed_by {
            *self.connect_failed_by.entry(kind).or_default() += n;
        }
        self.cut += other.cut;
        self.clients_served += other.clients_served;
        self.latencies_us.extend(other.latencies_us);
    }

    fn record_lost(&mut self, error: &io::Error, first_on_connection: bool) {
        self.lost += 1;
        let on = if first_on_connection {
            "new connection"
        } else {
            "keep-alive connection"
        };
        let key = format!("{:?} on a {on}", error.kind());
        *self.lost_by.entry(key).or_default() += 1;
    }

    fn record_connect_failed(&mut self, error: &io::Error) {
        self.connect_failed += 1;
        let key = format!("{:?}", error.kind());
        *self.connect_failed_by.entry(key).or_default() += 1;
    }

    fn record(&mut self, response: Response, latency: Duration) {
        match response.status {
            200..=299 => {
                self.ok += 1;
                self.latencies_us
                    .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            }
            503 => self.unavailable += 1,
            _ => self.other_status += 1,
        }
    }
}

/// What the clients of one run share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    responses: AtomicU64,
    /// A clone of every connection, to unblock its client when a timed run ends.
    streams: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn register(&self, conn: &Conn) {
        if let Ok(clone) = conn.stream().try_clone() {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(clone);
        }
    }

    fn stop_all(&self) {
        self.stop.store(true, Ordering::Release);
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for stream in streams.iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Clients in a loop on keep-alive connections, until stopped or refused.
pub struct Load {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<Tally>>,
    started: Instant,
}

impl Load {
    /// Starts `clients` clients on `addr`. Each keeps a connection, sends `GET /`, reads the
    /// whole response, and again; it reconnects after `Connection: close` or an error, and
    /// ends when a connect is refused (or fails) or the run is stopped.
    pub fn start(addr: SocketAddr, clients: usize) -> Load {
        let shared = Arc::new(Shared::default());
        let clients = (0..clients)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || client(addr, &shared))
            })
            .collect();
        Load {
            shared,
            clients,
            started: Instant::now(),
        }
    }

    /// Responses (any status) so far.
    pub fn responses(&self) -> u64 {
        self.shared.responses.load(Ordering::Relaxed)
    }

    /// Waits until `n` responses have come, at most `bound`; says whether they did.
    pub fn wait_responses(&self, n: u64, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        while self.responses() < n {
            if Instant::now() > until || self.clients.iter().all(JoinHandle::is_finished) {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Runs for `duration`, then stops: returns the tally and the time it ran.
    pub fn run_for(self, duration: Duration) -> (Tally, Duration) {
        thread::sleep(duration.saturating_sub(self.started.elapsed()));
        let elapsed = self.started.elapsed();
        (self.stop(), elapsed)
    }

    /// Waits (at most `bound`) for every client to end on its own, then stops the rest.
    pub fn finish(self, bound: Duration) -> Tally {
        let until = Instant::now() + bound;
        while Instant::now() < until && !self.clients.iter().all(JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(1));
        }
        self.stop()
    }

    /// Stops every client (those blocked in a read are unblocked) and adds up their tallies.
    pub fn stop(self) -> Tally {
        self.shared.stop_all();
        let until = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1);
        let mut total = Tally::default();
        for client in self.clients {
            while !client.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(1));
            }
            if client.is_finished() {
                if let Ok(tally) = client.join() {
                    total.absorb(tally);
                }
            }
        }
        total
    }
}

/// One client's loop.
fn client(addr: SocketAddr, shared: &Shared) -> Tally {
    let mut tally = Tally::default();
    'connect: while !shared.stopped() {
        let mut conn = match Conn::connect(addr, READ_TIMEOUT) {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tally.refused += 1;
                break;
            }
            Err(e) => {
                tally.record_connect_failed(&e);
                break;
            }
        };
        shared.register(&conn);
        let mut first = true;
        while !shared.stopped() {
            let start = Instant::now();
            if conn.send().is_err() {
                tally.write_failed += 1;
                continue 'connect;
            }
            let read = conn.read_response();
            let first_on_connection = std::mem::replace(&mut first, false);
            match read {
                Ok(response) => {
                    tally.record(response, start.elapsed());
                    shared.responses.fetch_add(1, Ordering::Relaxed);
                    if response.close {
                        continue 'connect;
                    }
                }
                Err(_) if shared.stopped() => {
                    tally.cut += 1;
                    break 'connect;
                }
                Err(e) => {
                    tally.record_lost(&e, first_on_connection);
                    continue 'connect;
                }
            }
        }
    }
    tally.clients_served = usize::from(tally.ok > 0);
    tally
}
