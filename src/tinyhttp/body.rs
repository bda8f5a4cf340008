//! Reading a request body without being fooled by a client that left early.
//!
//! tiny_http's body reader ends quietly when the connection closes before `Content-Length`
//! bytes have come: the handler sees a short body as if it were whole. [`Body`] turns that
//! into an error.

use std::io::{self, Read};

use tiny_http::Request;

/// A request's body, read through tiny_http, that fails with
/// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) if it ends before its `Content-Length`.
///
/// Chunked bodies are checked by tiny_http's decoder, which fails on a missing last chunk.
///
/// # Examples
///
/// ```no_run
/// use std::io::Read;
/// use lameduck::tiny_http::{Request, Response, ResponseBox};
///
/// fn handle(request: &mut Request) -> ResponseBox {
///     let mut text = String::new();
///     match lameduck::Body::new(request).read_to_string(&mut text) {
///         Ok(_) => Response::from_string(format!("got {} bytes", text.len())).boxed(),
///         Err(e) => Response::from_string(format!("bad body: {e}")).with_status_code(400).boxed(),
///     }
/// }
/// ```
pub struct Body<'a> {
    inner: &'a mut dyn Read,
    expected: Option<usize>,
    read: usize,
}

impl<'a> Body<'a> {
    /// The body of `request`. With `Expect: 100-continue`, the first read sends the
    /// `100 Continue` the client waits for.
    pub fn new(request: &'a mut Request) -> Body<'a> {
        let expected = request.body_length();
        Body {
            inner: request.as_reader(),
            expected,
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> usize {
        self.read
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        if n == 0 && !buf.is_empty() {
            if let Some(expected) = self.expected {
                if self.read < expected {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "request body ended after {} of {expected} bytes (Content-Length)",
                            self.read
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Reads the whole body of `request`, up to `limit` bytes.
///
/// # Errors
///
/// - [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) if the body ended before its
///   `Content-Length`;
/// - [`InvalidData`](io::ErrorKind::InvalidData) if it is longer than `limit` (nothing past
///   the limit is read into memory);
/// - any error reading from the connection.
pub fn read_body(request: &mut Request, limit: usize) -> io::Result<Vec<u8>> {
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(too_long(limit));
    }
    let mut body = Vec::new();
    let read = Body::new(request)
        .take(limit as u64 + 1)
        .read_to_end(&mut body)?;
    if read > limit {
        return Err(too_long(limit));
    }
    Ok(body)
}

fn too_long(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("request body longer than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use tiny_http::{Header, Request};

    use super::{read_body, Body};
    use crate::tinyhttp::response::tests_rng::Rng;

    /// A request whose body stops after `sent` of its `length` bytes (a client gone early).
    /// tiny_http reads bodies up to 1024 bytes before the handler sees the request, so the
    /// lengths here are larger.
    fn request(length: usize, sent: usize) -> Request {
        let body: &'static str = Box::leak("b".repeat(sent).into_boxed_str());
        tiny_http::TestRequest::new()
            .with_header(Header::from_bytes("Content-Length", length.to_string()).unwrap())
            .with_body(body)
            .into()
    }

    #[test]
    fn a_whole_body_reads_whole_and_a_short_one_fails() {
        for case_number in 0..400 {
            let mut rng = Rng::new(case_number);
            let length = 1025 + rng.below(8000);
            let sent = if rng.below(2) == 0 {
                length
            } else {
                rng.below(length)
            };
            let mut request = request(length, sent);
            let mut body = Body::new(&mut request);
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1 + rng.below(3000)];
            let outcome = loop {
                match body.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e.kind()),
                }
            };
            assert_eq!(got.len(), sent, "case {case_number}");
            if sent == length {
                assert_eq!(outcome, Ok(()), "case {case_number}");
            } else {
                assert_eq!(
                    outcome,
                    Err(std::io::ErrorKind::UnexpectedEof),
                    "case {case_number}"
                );
            }
        }
    }

    #[test]
    fn read_body_enforces_its_limit() {
        let mut whole = request(3000, 3000);
        assert_eq!(read_body(&mut whole, 3000).unwrap().len(), 3000);
        let mut over = request(3000, 3000);
        let err = read_body(&mut over, 2999).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let mut short = request(3000, 10);
        let err = read_body(&mut short, 5000).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
