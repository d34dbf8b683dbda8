//! HTTP/2 from clients (negotiated by ALPN on the TLS listener): how its connections are
//! bounded, and the one thing its requests carry differently from HTTP/1 that the checks need.
//!
//! Bounds (per connection; the connection itself is counted by the connection guard):
//! - an idle connection — no request in flight — is closed after `limits.idle_timeout`
//!   (Pingora's `h2_idle_timeout`); a client that starts a request header and never finishes it
//!   holds no request, so this cuts it off too;
//! - at most [`MAX_CONCURRENT_STREAMS`] requests at once, each header list at most
//!   [`MAX_HEADER_LIST_SIZE`] decoded;
//! - at most [`MAX_SEND_BUFFER_SIZE`] of response data queued per request (more waits for the
//!   client to read), and the h2 crate's defaults against reset floods (20 pending-accept
//!   resets, 50 concurrent resets, 1024 locally caused resets per connection).

use http::header::HOST;
use http::HeaderValue;
use pingora::apps::HttpServerOptions;
use pingora::http::RequestHeader;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use std::time::Duration;

/// Requests in flight on one connection (Pingora's default; nginx allows 128).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Decoded size of one request's header list (Pingora's default).
pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Response bytes queued per request before the proxy waits for the client (h2 default: 400 KiB).
pub const MAX_SEND_BUFFER_SIZE: usize = 64 * 1024;

/// The HTTP/2 settings mxgate's client connections use.
pub fn options() -> H2Options {
    let mut options = default_h2_options();
    options
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER_SIZE);
    options
}

/// Pingora's per-connection server options: the HTTP/2 idle timeout.
pub fn server_options(idle_timeout: Duration) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(idle_timeout);
    options
}

/// An HTTP/2 request names its host in `:authority`, usually without a `Host` header; the
/// destination and proxy checks read `Host`. Gives such a request the `Host` its `:authority`
/// says (Pingora has already refused requests whose two disagree).
pub fn host_from_authority(header: &mut RequestHeader) {
    if header.version != http::Version::HTTP_2 || header.headers.contains_key(HOST) {
        return;
    }
    let Some(authority) = header.uri.authority() else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
        // Cannot fail: the header map holds far fewer than its maximum entries.
        let _ = header.insert_header(HOST, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request header as Pingora's HTTP/2 server builds it: from the request's parts.
    fn request(version: http::Version, uri: &str, host: Option<&str>) -> RequestHeader {
        let request = http::Request::builder().uri(uri).version(version).body(()).unwrap();
        let mut header = RequestHeader::from(request.into_parts().0);
        if let Some(host) = host {
            header.insert_header(HOST, host).unwrap();
        }
        header
    }

    #[test]
    fn an_http2_request_gets_its_authority_as_host() {
        let mut header = request(http::Version::HTTP_2, "https://mcp.example.com:8443/mcp", None);
        host_from_authority(&mut header);
        assert_eq!(header.headers.get(HOST).unwrap(), "mcp.example.com:8443");
    }

    #[test]
    fn a_host_header_or_http1_is_left_alone() {
        let mut header = request(http::Version::HTTP_2, "https://a.example/mcp", Some("a.example"));
        host_from_authority(&mut header);
        assert_eq!(header.headers.get_all(HOST).iter().count(), 1);
        let mut header = request(http::Version::HTTP_11, "https://a.example/mcp", None);
        host_from_authority(&mut header);
        assert!(header.headers.get(HOST).is_none());
    }
}
