//! Where a request's body ends, as the client framed it, checked where tiny_http trusts it.
//!
//! tiny_http reads a body as chunked whenever a `Transfer-Encoding` header is there, whatever
//! its value, and then ignores `Content-Length`. A proxy in front that reads the same bytes
//! another way (by `Content-Length`, or rejecting an unknown coding) would see a different
//! second request in them: request smuggling (tiny_http issues #287, #288). RFC 9112 §6.1:
//! a coding the server does not know is answered `501`; `Transfer-Encoding` together with
//! `Content-Length` may be rejected, and the connection must then be closed. lameduck does
//! both, and refuses whatever else comes on that connection (tiny_http goes on reading it).

use tiny_http::{Header, Request, ResponseBox};

use super::response;

/// The answer to a request whose framing lameduck refuses, if it does.
pub(crate) fn refusal(request: &Request) -> Option<ResponseBox> {
    refusal_for(request.headers())
}

fn refusal_for(headers: &[Header]) -> Option<ResponseBox> {
    let mut codings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"))
        .flat_map(|h| h.value.as_str().split(','))
        .map(str::trim)
        .peekable();
    codings.peek()?;
    if headers.iter().any(|h| h.field.equiv("Content-Length")) {
        return Some(response::plain(
            400,
            "400 Bad Request: Transfer-Encoding together with Content-Length\n",
        ));
    }
    let only_chunked = codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        && codings.next().is_none();
    (!only_chunked).then(|| {
        response::plain(
            501,
            "501 Not Implemented: the only transfer coding served is chunked\n",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(headers: &[(&str, &str)]) -> Option<u16> {
        let headers: Vec<Header> = headers
            .iter()
            .map(|(name, value)| Header::from_bytes(*name, *value).unwrap())
            .collect();
        refusal_for(&headers).map(|r| r.status_code().0)
    }

    #[test]
    fn only_plain_chunked_passes() {
        assert_eq!(status(&[]), None);
        assert_eq!(status(&[("Content-Length", "4")]), None);
        assert_eq!(status(&[("Transfer-Encoding", "chunked")]), None);
        assert_eq!(status(&[("Transfer-Encoding", " Chunked ")]), None);
        assert_eq!(status(&[("Transfer-Encoding", "xchunked")]), Some(501));
        assert_eq!(status(&[("Transfer-Encoding", "gzip, chunked")]), Some(501));
        assert_eq!(
            status(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ]),
            Some(501)
        );
        assert_eq!(
            status(&[("Transfer-Encoding", "chunked"), ("Content-Length", "4")]),
            Some(400)
        );
    }
}
