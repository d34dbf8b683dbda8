//! What the core learns about the original request, and the rewrites the core needs: `Host`
//! becomes the upstream's own (MXCP answers 421 to a foreign Host), `Origin` is dropped (MXCP
//! answers 403 to a foreign Origin), and `X-Forwarded-For/-Proto/-Host` and `X-Real-IP` are
//! set by mxgate — client-sent copies, and `Forwarded`, are replaced, never trusted.

use pingora::http::RequestHeader;
use std::net::IpAddr;

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

pub fn apply_forwarded(request: &mut RequestHeader, facts: &ForwardedFacts<'_>) -> pingora::Result<()> {
    for name in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "origin",
    ] {
        request.remove_header(name);
    }
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

    #[test]
    fn rewrites_host_drops_origin_and_replaces_forwarded_headers() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.insert_header("host", "mcp.example.com").unwrap();
        req.insert_header("origin", "https://evil.example").unwrap();
        req.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        req.insert_header("forwarded", "for=6.6.6.6").unwrap();
        apply_forwarded(
            &mut req,
            &ForwardedFacts {
                client_ip: Some("10.1.2.3".parse().unwrap()),
                forwarded_for: Some("10.1.2.3"),
                original_host: Some("mcp.example.com"),
                proto: "https",
                upstream_host: "127.0.0.1:8001",
            },
        )
        .unwrap();
        assert_eq!(req.headers["host"], "127.0.0.1:8001");
        assert!(req.headers.get("origin").is_none());
        assert!(req.headers.get("forwarded").is_none());
        assert_eq!(req.headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(req.headers["x-real-ip"], "10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "mcp.example.com");
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
    }
}
