//! What the core learns about the original request, and the rewrites the core needs: `Host`
//! becomes the upstream's own (MXCP answers 421 to a foreign Host), `Origin` is dropped (MXCP
//! answers 403 to a foreign Origin; mxgate has checked it, see `request_guard`), and
//! `X-Forwarded-For/-Proto/-Host` and `X-Real-IP` are set by mxgate. Every client-sent header a
//! framework might read as proxy information — any `X-Forwarded-*`, `Forwarded`, `X-Real-IP`,
//! `X-Original-URL`, `X-Rewrite-URL`, the client-IP headers of CDNs, in any case and with `_`
//! for `-` — is removed first: what a trusted proxy said was already read into the
//! [`super::proxy_trust::ClientView`].

use super::header_hygiene::{canonical_name, remove_headers_where};
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// Client-sent headers that are never passed on (compared by canonical name).
const PROXY_HEADERS: [&str; 14] = [
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-proxyuser-ip",
    "origin",
];
const FORWARDED_PREFIX: &str = "x-forwarded-";

pub struct ForwardedFacts<'a> {
    /// The real client (see `proxy_trust`).
    pub client_ip: Option<IpAddr>,
    /// The `X-Forwarded-For` chain to send (trusted hops plus the connecting peer).
    pub forwarded_for: Option<&'a str>,
    /// `http` or `https`: how the client reached mxgate (trusted `X-Forwarded-Proto`, else the
    /// scheme of the public URL).
    pub proto: &'a str,
    /// The host the client used.
    pub original_host: Option<&'a str>,
    /// `host:port` of the core.
    pub upstream_host: &'a str,
}

/// Whether a client-sent header is proxy information that must not reach the core.
pub fn is_proxy_header(name: &str) -> bool {
    let name = canonical_name(name);
    name.starts_with(FORWARDED_PREFIX) || PROXY_HEADERS.contains(&name.as_ref())
}

pub fn apply_forwarded(request: &mut RequestHeader, facts: &ForwardedFacts<'_>) -> pingora::Result<()> {
    remove_headers_where(request, is_proxy_header);
    if let Some(chain) = facts.forwarded_for {
        request.insert_header("x-forwarded-for", chain)?;
    }
    if let Some(ip) = facts.client_ip {
        request.insert_header("x-real-ip", ip.to_string())?;
    }
    request.insert_header("x-forwarded-proto", facts.proto)?;
    if let Some(host) = facts.original_host {
        request.insert_header("x-forwarded-host", host)?;
    }
    request.insert_header(http::header::HOST, facts.upstream_host)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ForwardedFacts<'static> {
        ForwardedFacts {
            client_ip: Some("10.1.2.3".parse().unwrap()),
            forwarded_for: Some("10.1.2.3"),
            original_host: Some("mcp.example.com"),
            proto: "https",
            upstream_host: "127.0.0.1:8001",
        }
    }

    #[test]
    fn rewrites_host_drops_origin_and_replaces_forwarded_headers() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.insert_header("host", "mcp.example.com").unwrap();
        req.insert_header("origin", "https://evil.example").unwrap();
        req.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        req.insert_header("forwarded", "for=6.6.6.6").unwrap();
        apply_forwarded(&mut req, &facts()).unwrap();
        assert_eq!(req.headers["host"], "127.0.0.1:8001");
        assert!(req.headers.get("origin").is_none());
        assert!(req.headers.get("forwarded").is_none());
        assert_eq!(req.headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(req.headers["x-real-ip"], "10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "mcp.example.com");
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn every_spelling_of_proxy_information_is_removed() {
        let mut req = RequestHeader::build("GET", b"/mcp", None).unwrap();
        let sent = [
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-uri",
            "x-forwarded-server",
            "x-original-url",
            "x-rewrite-url",
            "x-real-ip",
            "x_real_ip",
            "x_forwarded_for",
            "x_forwarded_host",
            "X_Forwarded_Proto",
            "true-client-ip",
            "cf-connecting-ip",
        ];
        for name in sent {
            req.append_header(name.to_string(), "6.6.6.6").unwrap();
        }
        req.append_header("x-request-id", "kept").unwrap();
        apply_forwarded(&mut req, &facts()).unwrap();
        for (name, value) in req.headers.iter() {
            assert_ne!(value, "6.6.6.6", "{name} survived");
        }
        assert_eq!(req.headers["x-request-id"], "kept");
    }
}
