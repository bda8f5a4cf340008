//! Writing responses: `Connection: close` during shutdown, and the 503 and 500 lameduck sends
//! itself.
//!
//! tiny_http drops a `Connection` header a handler adds (`Response::add_header` ignores it),
//! so a response that must tell the client to close is written with
//! `Response::raw_print` on the request's raw writer, through [`CloseWriter`], which inserts
//! `Connection: close` right after the status line.

use std::io::{self, ErrorKind, Write};
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, ResponseBox, StatusCode};

/// The header line inserted after the status line.
const CONNECTION_CLOSE: &[u8] = b"Connection: close\r\n";

/// Writes `response` to `request`'s client, with `Connection: close` if `close`.
///
/// HEAD gets headers only; chunked and empty bodies are framed by tiny_http as usual. Errors
/// that only mean the client has gone are not errors.
///
/// # Errors
///
/// Any other write error.
pub(crate) fn send(request: Request, response: ResponseBox, close: bool) -> io::Result<()> {
    if !close {
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
    let mut writer = CloseWriter::new(request.into_writer());
    let result = response
        .raw_print(&mut writer, version, &te, head, None)
        .and_then(|()| writer.flush());
    ignore_client_gone(result)
}

/// The 503 lameduck answers once the drain is over or its deadline has passed.
pub(crate) fn unavailable(retry_after: Duration) -> ResponseBox {
    let seconds = retry_after.as_secs().max(1);
    Response::from_string("503 Service Unavailable: the server is shutting down\n")
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

/// A writer that inserts `Connection: close\r\n` after the first line written through it
/// (the status line) and passes everything else through unchanged.
pub(crate) struct CloseWriter<W> {
    inner: W,
    inserted: bool,
}

impl<W: Write> CloseWriter<W> {
    pub(crate) fn new(inner: W) -> CloseWriter<W> {
        CloseWriter {
            inner,
            inserted: false,
        }
    }
}

impl<W: Write> Write for CloseWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inserted {
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
                self.inserted = true;
                Ok(end + 1)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(response: ResponseBox, head: bool, version: (u8, u8)) -> String {
        let mut out = Vec::new();
        let mut w = CloseWriter::new(&mut out);
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
        let text = print(unavailable(Duration::from_secs(7)), false, (1, 0));
        assert!(text.starts_with("HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n"));
        assert!(text.contains("Retry-After: 7\r\n"), "{text}");
    }

    #[test]
    fn writes_split_anywhere_still_insert_once() {
        let mut out = Vec::new();
        let mut w = CloseWriter::new(&mut out);
        for piece in ["HTT", "P/1.1 200", " OK\r", "\nA: b\r\n", "\r\n"] {
            w.write_all(piece.as_bytes()).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nA: b\r\n\r\n"
        );
    }
}
