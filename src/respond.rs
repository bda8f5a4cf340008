//! Writing responses: `Connection: close` during shutdown, and the 503 and 500 lameduck sends
//! itself.
//!
//! tiny_http drops a `Connection` header a handler adds (`Response::add_header` ignores it),
//! so a response that must tell the client to close is written with
//! `Response::raw_print` on the request's raw writer, through [`ResponseWriter`], which inserts
//! `Connection: close` right after the status line.

use std::io::{self, ErrorKind, Write};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, ResponseBox, StatusCode};

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
    let mut writer = ResponseWriter::new(request.into_writer(), close).stall_after(write_timeout);
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
/// write fails it fails every later write and flush at once with the same kind of error.
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
