//! Writing responses: `Connection: close` during shutdown, and the 503 and 500 lameduck sends
//! itself.
//!
//! tiny_http drops a `Connection` header a handler adds (`Response::add_header` ignores it),
//! so a response that must tell the client to close is written with
//! `Response::raw_print` on the request's raw writer, through [`ResponseWriter`], which inserts
//! `Connection: close` right after the status line.

use std::cell::Cell;
use std::io::{self, ErrorKind, Write};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, ResponseBox, StatusCode};

/// Bytes gathered before they are written: a whole head, and small bodies with it.
const HEAD_BUFFER: usize = 4096;

thread_local! {
    /// Each thread's buffer for [`Gathered`], kept from one response to the next.
    static GATHER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Gathers the small writes of a response in [`HEAD_BUFFER`] bytes and writes them to
/// `inner` at once; larger writes go straight through.
///
/// A `BufWriter` does the same, with a buffer of its own allocated for each response. An
/// allocation that large (over 1 KiB) makes glibc's allocator first sort out the small
/// chunks freed since the last one (`malloc_consolidate`), and tiny_http frees a dozen per
/// request: under `wrk -c64`, lameduck spent 10.7 % of its CPU in the allocator against
/// plain tiny_http's 5.0 % (`perf`, `benches/NOTES.md`). The buffer here is the thread's own,
/// taken for the response and given back when it is done.
///
/// Nothing is written when it is dropped: [`send`] flushes it once the response is whole,
/// and a response cut by an error has nothing more worth sending.
struct Gathered<W: Write> {
    buf: Vec<u8>,
    inner: W,
}

impl<W: Write> Gathered<W> {
    fn new(inner: W) -> Gathered<W> {
        let mut buf = GATHER.try_with(Cell::take).unwrap_or_default();
        buf.clear();
        buf.reserve(HEAD_BUFFER);
        Gathered { buf, inner }
    }

    fn write_gathered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.inner.write_all(&self.buf);
        self.buf.clear();
        result
    }
}

impl<W: Write> Write for Gathered<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > HEAD_BUFFER {
            self.write_gathered()?;
        }
        if data.len() >= HEAD_BUFFER {
            return self.inner.write(data);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_gathered()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Gathered<W> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Gone only while the thread itself ends: the buffer goes with it.
        let _ = GATHER.try_with(|gather| gather.set(buf));
    }
}

/// The header line inserted after the status line.
const CONNECTION_CLOSE: &[u8] = b"Connection: close\r\n";

/// Writes `response` to `request`'s client, with `Connection: close` if `close`.
///
/// HEAD gets headers only; chunked and empty bodies are framed by tiny_http as usual. Errors
/// that only mean the client has gone are not errors.
///
/// The response is written through [`ResponseWriter`], so that a write that fails (say,
/// after the write timeout, to a client that stopped reading) fails every later one at once:
/// tiny_http's chunked encoder would otherwise write twice more while it is dropped, each
/// waiting out the timeout again. Getting that writer means dropping the request's body
/// reader first, which reads what is left of the body; so a request with a body keeps
/// tiny_http's own `respond` (response first, then the rest of the body) unless it must say
/// `Connection: close`.
///
/// # Errors
///
/// Any other write error.
pub(crate) fn send(
    request: Request,
    response: ResponseBox,
    close: bool,
    write_timeout: Duration,
) -> io::Result<()> {
    if !close && has_body(&request) {
        return request.respond(response);
    }
    let mut request = request;
    // A client that sent `Expect: 100-continue` waits for `100 Continue` before sending the
    // body, and the body must be read before the connection can be left (tiny_http reads
    // what is left of it when the request is consumed below). `as_reader` sends the
    // `100 Continue` only if the handler did not read the body; otherwise it does nothing.
    let _ = request.as_reader();
    let version = request.http_version().clone();
    let head = *request.method() == Method::Head;
    // raw_print looks at the request's headers only for `TE`.
    let te: Vec<Header> = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("TE"))
        .cloned()
        .collect();
    // tiny_http writes the head in many small pieces, each through a mutex: gather them.
    let writer = ResponseWriter::new(request.into_writer(), close).stall_after(write_timeout);
    let mut writer = Gathered::new(writer);
    let result = response
        .raw_print(&mut writer, version, &te, head, None)
        .and_then(|()| writer.flush());
    ignore_client_gone(result)
}

/// `true` if `request` may carry a body (a `Content-Length` above zero, or chunked).
fn has_body(request: &Request) -> bool {
    match request.body_length() {
        Some(length) => length > 0,
        None => request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding")),
    }
}

/// The 503 lameduck answers once the drain is over or its deadline has passed, or when the
/// waiting room is full; `why` ends its text ("shutting down", "overloaded").
pub(crate) fn unavailable(retry_after: Duration, why: &str) -> ResponseBox {
    let seconds = retry_after.as_secs().max(1);
    Response::from_string(format!("503 Service Unavailable: the server is {why}\n"))
        .with_status_code(StatusCode(503))
        .with_header(header("Retry-After", &seconds.to_string()))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

/// A short text response with `status`.
pub(crate) fn plain(status: u16, text: &str) -> ResponseBox {
    Response::from_string(text)
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

/// The 500 lameduck answers when a handler panics.
pub(crate) fn internal_error() -> ResponseBox {
    Response::from_string("500 Internal Server Error\n")
        .with_status_code(StatusCode(500))
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

/// The 431 lameduck answers when a request's head (request line and headers) is larger than
/// the server allows.
pub(crate) fn head_too_large(limit: usize) -> ResponseBox {
    Response::from_string(format!(
        "431 Request Header Fields Too Large: the request line and headers exceed {limit} bytes\n"
    ))
    .with_status_code(StatusCode(431))
    .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    .boxed()
}

/// Size of a request's head as sent: request line and header lines, with their CRLFs.
pub(crate) fn head_size(request: &Request) -> usize {
    let line = request.method().as_str().len() + request.url().len() + " HTTP/1.1\r\n".len() + 1;
    request.headers().iter().fold(line, |size, h| {
        size + h.field.as_str().as_str().len() + ": ".len() + h.value.as_str().len() + 2
    }) + 2
}

/// The first header of `response` whose name or value holds a CR or LF, which would let
/// it end the header early and write one of its own (response splitting); tiny_http does
/// not check.
pub(crate) fn splitting_header(response: &ResponseBox) -> Option<&Header> {
    response.headers().iter().find(|h| {
        [h.field.as_str().as_bytes(), h.value.as_bytes()]
            .iter()
            .any(|bytes| bytes.iter().any(|&b| b == b'\r' || b == b'\n'))
    })
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static ASCII header")
}

fn ignore_client_gone(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The writer every response lameduck writes itself goes through. It inserts
/// `Connection: close\r\n` after the first line (the status line) if asked to, and after a
/// write fails it fails every later write and flush at once with the same kind of error. It
/// writes nothing while its thread unwinds from a panic (in the body's reader).
///
/// A write that took the whole write timeout counts as failed too, even if it wrote a few
/// bytes: the socket's timeout bounds each `send`, and a client that has stopped reading
/// still lets a few partial sends through, each after the full timeout (measured on Linux:
/// three of them for one stalled client).
pub(crate) struct ResponseWriter<W> {
    inner: W,
    /// `Connection: close` still to insert.
    insert_close: bool,
    failed: Option<ErrorKind>,
    stall: Option<Duration>,
}

impl<W: Write> ResponseWriter<W> {
    pub(crate) fn new(inner: W, close: bool) -> ResponseWriter<W> {
        ResponseWriter {
            inner,
            insert_close: close,
            failed: None,
            stall: None,
        }
    }

    /// Counts a write that blocks for (nine tenths of) `timeout`, the socket's write
    /// timeout, as failed. Nine tenths: a partial send ends a little before the timeout on
    /// some systems (wine).
    pub(crate) fn stall_after(mut self, timeout: Duration) -> ResponseWriter<W> {
        self.stall = (!timeout.is_zero()).then_some(timeout * 9 / 10);
        self
    }

    fn check<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            self.failed = Some(e.kind());
        }
        result
    }

    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.insert_close {
            return self.inner.write(buf);
        }
        match buf.iter().position(|&b| b == b'\n') {
            None => {
                self.inner.write_all(buf)?;
                Ok(buf.len())
            }
            Some(end) => {
                self.inner.write_all(&buf[..=end])?;
                self.inner.write_all(CONNECTION_CLOSE)?;
                self.insert_close = false;
                Ok(end + 1)
            }
        }
    }
}

impl<W: Write> Write for ResponseWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Unwinding from a panic in the body's reader: tiny_http's chunked encoder would
        // write its last chunk while dropped, making a cut body look complete.
        if std::thread::panicking() {
            self.failed = Some(ErrorKind::Other);
        }
        if let Some(kind) = self.failed {
            return Err(io::Error::new(
                kind,
                "an earlier write of this response failed",
            ));
        }
        let start = self.stall.map(|_| Instant::now());
        let result = self.write_some(buf);
        if let (Some(start), Some(stall), Ok(_)) = (start, self.stall, &result) {
            if start.elapsed() >= stall {
                self.failed = Some(ErrorKind::TimedOut);
            }
        }
        self.check(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(
                kind,
                "an earlier write of this response failed",
            ));
        }
        let result = self.inner.flush();
        self.check(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each write it is given apart.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gathered_writes_small_pieces_at_once_and_large_ones_through_in_order() {
        let big = vec![b'b'; HEAD_BUFFER + 1];
        let mut sink = Writes::default();
        let mut w = Gathered::new(&mut sink);
        w.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        w.write_all(b"Content-Length: 4097\r\n\r\n").unwrap();
        w.write_all(&big).unwrap();
        w.write_all(b"tail").unwrap();
        w.flush().unwrap();
        drop(w);
        let expected: Vec<&[u8]> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 4097\r\n\r\n",
            &big,
            b"tail",
        ];
        assert_eq!(sink.0, expected);
        // And the thread's buffer is kept for the next response, empty.
        let kept = GATHER.with(Cell::take);
        assert!(kept.is_empty() && kept.capacity() >= HEAD_BUFFER);
    }

    #[test]
    fn gathered_fills_its_buffer_before_it_writes() {
        let mut sink = Writes::default();
        let mut w = Gathered::new(&mut sink);
        let piece = [b'x'; 1000];
        for _ in 0..5 {
            w.write_all(&piece).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let sizes: Vec<usize> = sink.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4000, 1000]);
    }

    fn print(response: ResponseBox, head: bool, version: (u8, u8)) -> String {
        let mut out = Vec::new();
        let mut w = ResponseWriter::new(&mut out, true);
        response
            .raw_print(&mut w, version.into(), &[], head, None)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn inserted_once_after_the_status_line() {
        let text = print(Response::from_string("hello").boxed(), false, (1, 1));
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nConnection: close\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("Connection:").count(), 1);
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }

    #[test]
    fn head_empty_and_chunked_bodies_stay_framed() {
        let head = print(Response::from_string("hello").boxed(), true, (1, 1));
        assert!(
            head.contains("Content-Length: 5\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        let empty = print(Response::empty(204).boxed(), false, (1, 1));
        assert!(empty.starts_with("HTTP/1.1 204 No Content\r\nConnection: close\r\n"));
        assert!(empty.ends_with("\r\n\r\n"), "{empty}");

        let body = std::io::Cursor::new(b"chunky".to_vec());
        let chunked = print(
            Response::new(StatusCode(200), vec![], body, None, None).boxed(),
            false,
            (1, 1),
        );
        assert!(chunked.contains("Connection: close\r\n"), "{chunked}");
        assert!(
            chunked.contains("Transfer-Encoding: chunked\r\n"),
            "{chunked}"
        );
        assert!(chunked.ends_with("6\r\nchunky\r\n0\r\n\r\n"), "{chunked}");
    }

    #[test]
    fn the_503_carries_retry_after() {
        let text = print(
            unavailable(Duration::from_secs(7), "shutting down"),
            false,
            (1, 0),
        );
        assert!(text.starts_with("HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n"));
        assert!(text.contains("Retry-After: 7\r\n"), "{text}");
    }

    #[test]
    fn headers_with_cr_or_lf_are_found() {
        let clean = Response::from_string("x")
            .with_header(header("X-Ok", "fine"))
            .boxed();
        assert!(splitting_header(&clean).is_none());
        let split = Response::from_string("x")
            .with_header(header("X-Evil", "a\r\nSet-Cookie: stolen=1"))
            .boxed();
        assert_eq!(
            splitting_header(&split).unwrap().field.as_str().as_str(),
            "X-Evil"
        );
        let lf_only = Response::from_string("x")
            .with_header(header("X-Evil", "a\nb"))
            .boxed();
        assert!(splitting_header(&lf_only).is_some());
    }

    #[test]
    fn after_a_failed_write_every_write_fails_at_once() {
        struct Fails(usize);
        impl Write for Fails {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                if self.0 == 2 {
                    Err(io::Error::new(ErrorKind::WouldBlock, "timed out"))
                } else {
                    Ok(buf.len())
                }
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = ResponseWriter::new(Fails(0), false);
        assert!(w.write(b"a").is_ok());
        assert_eq!(w.write(b"b").unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(w.write(b"c").unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(w.flush().unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(w.inner.0, 2, "the inner writer was tried again");
    }

    #[test]
    fn without_close_nothing_is_inserted() {
        let mut out = Vec::new();
        let mut w = ResponseWriter::new(&mut out, false);
        w.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(out, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn writes_split_anywhere_still_insert_once() {
        let mut out = Vec::new();
        let mut w = ResponseWriter::new(&mut out, true);
        for piece in ["HTT", "P/1.1 200", " OK\r", "\nA: b\r\n", "\r\n"] {
            w.write_all(piece.as_bytes()).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nA: b\r\n\r\n"
        );
    }
}

/// The seeded generator, for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_rng {
    pub(crate) use super::generated::Rng;
}

/// Randomised checks (a seeded generator; a failure names its case) of the bytes lameduck
/// writes or inspects itself: the `Connection: close` insertion under any split of writes,
/// framing of every kind of body, the response-splitting check, the request head size.
#[cfg(test)]
mod generated {
    use std::io::{self, Cursor, Write};

    use tiny_http::{HTTPVersion, Header, Method, Request, Response, ResponseBox, StatusCode};

    use super::{head_size, splitting_header, ResponseWriter};

    /// xorshift64*: small, seeded, good enough to vary inputs.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn text(&mut self, alphabet: &[u8], max: usize) -> String {
            let len = self.below(max + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())] as char)
                .collect()
        }
    }

    const TOKEN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    const PRINTABLE: &[u8] =
        b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

    /// A sink that takes a random number of bytes per `write`: every split of the output.
    struct Choppy<'a> {
        out: Vec<u8>,
        rng: &'a mut Rng,
    }

    impl Write for Choppy<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            let n = 1 + self.rng.below(buf.len());
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Case {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        known_length: bool,
        version: (u8, u8),
        head: bool,
    }

    impl Case {
        fn new(rng: &mut Rng) -> Case {
            let statuses = [200, 201, 204, 304, 404, 500, 503];
            let body_len = match rng.below(4) {
                0 => 0,
                1 => rng.below(100),
                2 => rng.below(40_000),
                _ => 30_000 + rng.below(10_000),
            };
            Case {
                status: statuses[rng.below(statuses.len())],
                headers: (0..rng.below(4))
                    .map(|_| {
                        let name = format!("X-{}", rng.text(TOKEN, 10));
                        (name, rng.text(PRINTABLE, 20).trim().to_owned())
                    })
                    .collect(),
                body: (0..body_len).map(|_| rng.next() as u8).collect(),
                known_length: rng.chance(60),
                version: if rng.chance(20) { (1, 0) } else { (1, 1) },
                head: rng.chance(15),
            }
        }

        fn response(&self) -> ResponseBox {
            let headers = self
                .headers
                .iter()
                .map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).unwrap())
                .collect();
            let length = self.known_length.then_some(self.body.len());
            let data = Cursor::new(self.body.clone());
            Response::new(StatusCode(self.status), headers, data, length, None).boxed()
        }

        fn print(&self, out: &mut dyn Write) {
            self.response()
                .raw_print(out, HTTPVersion::from(self.version), &[], self.head, None)
                .unwrap();
        }
    }

    fn without_date(bytes: &[u8]) -> Vec<u8> {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of head")
            + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let mut out: Vec<u8> = head
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("Date: "))
            .collect::<String>()
            .into_bytes();
        out.extend_from_slice(&bytes[end..]);
        out
    }

    /// Parses `bytes` as one response; returns its head lines and its decoded body.
    fn parse(bytes: &[u8], head_only: bool) -> (Vec<String>, Vec<u8>) {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let lines: Vec<String> = String::from_utf8(bytes[..end].to_vec())
            .unwrap()
            .split("\r\n")
            .map(str::to_owned)
            .collect();
        let rest = &bytes[end + 4..];
        let header = |name: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        };
        let status: u16 = lines[0].split(' ').nth(1).unwrap().parse().unwrap();
        if head_only || matches!(status, 204 | 304) {
            assert!(rest.is_empty(), "body after a bodiless head");
            return (lines, Vec::new());
        }
        if header("Transfer-Encoding").as_deref() == Some("chunked") {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                let eol = at + rest[at..].windows(2).position(|w| w == b"\r\n").unwrap();
                let size = usize::from_str_radix(std::str::from_utf8(&rest[at..eol]).unwrap(), 16)
                    .unwrap();
                at = eol + 2;
                if size == 0 {
                    assert_eq!(&rest[at..], b"\r\n", "trailing bytes after the last chunk");
                    return (lines, body);
                }
                body.extend_from_slice(&rest[at..at + size]);
                assert_eq!(&rest[at + size..at + size + 2], b"\r\n");
                at += size + 2;
            }
        }
        let length: usize = header("Content-Length").unwrap().parse().unwrap();
        assert_eq!(rest.len(), length, "Content-Length and body differ");
        (lines, rest.to_vec())
    }

    #[test]
    fn connection_close_is_inserted_once_under_any_split_and_framing_holds() {
        for case_number in 0..1500 {
            let mut rng = Rng::new(case_number);
            let case = Case::new(&mut rng);

            let mut plain = Vec::new();
            case.print(&mut plain);

            let mut choppy = Choppy {
                out: Vec::new(),
                rng: &mut rng,
            };
            let mut writer = ResponseWriter::new(&mut choppy, true);
            case.print(&mut writer);
            writer.flush().unwrap();
            let closed = choppy.out;

            let (lines, body) = parse(&closed, case.head);
            assert_eq!(lines[1], "Connection: close", "case {case_number}");
            assert_eq!(
                lines.iter().filter(|l| l.starts_with("Connection")).count(),
                1,
                "case {case_number}"
            );
            if !case.head && !matches!(case.status, 204 | 304) {
                assert_eq!(body, case.body, "case {case_number}: body");
            }
            // Apart from the inserted line, byte for byte what tiny_http writes.
            let insert = b"Connection: close\r\n";
            let at = closed.iter().position(|&b| b == b'\n').unwrap() + 1;
            let mut removed = closed[..at].to_vec();
            removed.extend_from_slice(&closed[at + insert.len()..]);
            assert_eq!(
                without_date(&removed),
                without_date(&plain),
                "case {case_number}"
            );

            // And without `close`, nothing changes at all.
            let mut same = Vec::new();
            let mut writer = ResponseWriter::new(&mut same, false);
            case.print(&mut writer);
            assert_eq!(
                without_date(&same),
                without_date(&plain),
                "case {case_number}"
            );
        }
    }

    #[test]
    fn a_header_is_splitting_exactly_when_it_holds_cr_or_lf() {
        for case_number in 0..5000 {
            let mut rng = Rng::new(case_number);
            let value: Vec<u8> = (0..rng.below(30)).map(|_| rng.below(128) as u8).collect();
            let Ok(header) = Header::from_bytes(&b"X-Value"[..], value.clone()) else {
                continue;
            };
            let response = Response::from_string("x").with_header(header).boxed();
            let expected = value.iter().any(|&b| b == b'\r' || b == b'\n');
            assert_eq!(
                splitting_header(&response).is_some(),
                expected,
                "case {case_number}: {value:?}"
            );
        }
    }

    #[test]
    fn the_head_size_is_the_size_of_the_head_as_sent() {
        let methods = [Method::Get, Method::Post, Method::Head, Method::Delete];
        for case_number in 0..2000 {
            let mut rng = Rng::new(case_number);
            let method = methods[rng.below(methods.len())].clone();
            let path = format!("/{}", rng.text(&PRINTABLE[1..], 200));
            let mut test = tiny_http::TestRequest::new()
                .with_method(method.clone())
                .with_path(&path);
            let mut sent = format!("{method} {path} HTTP/1.1\r\nContent-Length: 0\r\n");
            for _ in 0..rng.below(6) {
                let name = format!("X-{}", rng.text(TOKEN, 12));
                let value = rng.text(PRINTABLE, 40).trim().to_owned();
                sent.push_str(&format!("{name}: {value}\r\n"));
                test = test.with_header(Header::from_bytes(name, value).unwrap());
            }
            sent.push_str("\r\n");
            let request: Request = test.into();
            assert_eq!(
                head_size(&request),
                sent.len(),
                "case {case_number}: {sent:?}"
            );
        }
    }
}
