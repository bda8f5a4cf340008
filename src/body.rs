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
