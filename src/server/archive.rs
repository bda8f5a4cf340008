//! Requests lameduck read and could not serve, handed to the application so that it can put
//! them in a retry queue or a log (the seed's "archive the unprocessed requests").

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tiny_http::{Header, Method, Request};

/// Bodies larger than this are not archived (the request still is, without its body).
pub(crate) const MAX_ARCHIVED_BODY: usize = 1 << 20;

/// A request the server read but did not serve, given to
/// [`Builder::on_unserved`](crate::Builder::on_unserved).
///
/// Two kinds: requests answered `503` because they were still queued at the deadline or
/// arrived after the drain ([`Why::Rejected`]: lameduck has the whole request, body included
/// up to 1 MiB), and requests whose handler was still running at the deadline
/// ([`Why::Cut`]: the handler holds the body, so only the method, URL and headers are here;
/// the client may or may not get a response later).
#[derive(Clone)]
pub struct Unserved {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<Header>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) why: Why,
}

/// Why a request was not served.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// Answered `503` + `Retry-After`: still queued when the deadline passed, or arrived
    /// after the drain.
    Rejected,
    /// Its handler was still running when the deadline passed, for this long.
    Cut(Duration),
}

impl Unserved {
    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's URL (path and query) as the client sent it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request's headers.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The request's body, if lameduck has it: for [`Why::Rejected`] requests whose body
    /// could be read whole and is at most 1 MiB.
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// The client's address, if known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Why it was not served.
    pub fn why(&self) -> &Why {
        &self.why
    }

    /// The request as an HTTP/1.1 client sends it, ready to be stored and sent again as it is:
    /// the request line, the headers (less those that frame the message or manage the
    /// connection: `Connection`, `Keep-Alive`, `Content-Length`, `Transfer-Encoding`, `TE`,
    /// `Upgrade`), then `Content-Length` for the body lameduck holds, `Connection: close`
    /// and the body.
    ///
    /// A [`Why::Cut`] request's body stays with its handler: its bytes carry an empty body.
    /// Look at [`body`](Unserved::body) before replaying a request that had one.
    ///
    /// ```
    /// # use lameduck::Unserved;
    /// fn archive(unserved: Unserved) {
    ///     let bytes = unserved.to_http();
    ///     assert!(bytes.ends_with(unserved.body().unwrap_or_default()));
    ///     // write `bytes` to a retry queue; replaying is writing them to a new connection
    /// }
    /// ```
    pub fn to_http(&self) -> Vec<u8> {
        const DROPPED: [&str; 6] = [
            "connection",
            "keep-alive",
            "content-length",
            "transfer-encoding",
            "te",
            "upgrade",
        ];
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.url);
        for header in &self.headers {
            let name = header.field.as_str().as_str();
            if !DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                head.push_str(&format!("{name}: {}\r\n", header.value));
            }
        }
        let body = self.body().unwrap_or_default();
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        [head.as_bytes(), body].concat()
    }

    /// Takes what a rejected request holds (its body too, read here).
    pub(crate) fn rejected(request: &mut Request) -> Unserved {
        let body = if request.body_length() == Some(0) {
            Some(Vec::new())
        } else {
            crate::tinyhttp::read_body(request, MAX_ARCHIVED_BODY).ok()
        };
        Unserved {
            method: request.method().clone(),
            url: request.url().to_owned(),
            headers: request.headers().to_vec(),
            body,
            peer: request.remote_addr().copied(),
            why: Why::Rejected,
        }
    }
}

impl fmt::Debug for Unserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unserved")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.len())
            .field("body", &self.body.as_ref().map(Vec::len))
            .field("peer", &self.peer)
            .field("why", &self.why)
            .finish()
    }
}
