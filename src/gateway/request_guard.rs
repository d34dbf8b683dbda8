//! Checks a request before anything else looks at it, and refuses it with a 4xx:
//!
//! - **Framing** (HTTP/1.1, RFC 9112): a request without `Host`, with several `Host`s, or with a
//!   `Transfer-Encoding` other than exactly `chunked` is refused with 400 and the connection
//!   closed — framing a front proxy could read differently is how requests are smuggled.
//! - **DNS rebinding** (MCP transport security): the MXCP core refuses a foreign `Host` or
//!   `Origin`, but mxgate rewrites `Host` and drops `Origin` on the way in, so it must check
//!   them itself for every request that would reach the core. `Host` must be the public URL's
//!   host, the listen address, or one of `allowed_hosts` (421 otherwise); an `Origin`, when
//!   present, must be the public URL's origin or one of `allowed_origins` (403 otherwise). On a
//!   loopback public URL the loopback names (`127.0.0.1`, `localhost`, `[::1]`) are
//!   interchangeable, as in the MCP SDKs. A request whose public URL a trusted proxy named
//!   (`trust_proxy` without a configured public URL) has had its host vouched for by that proxy.

use super::local_response::json_error;
use crate::config::host_pattern::{split_host_port, HostPattern};
use crate::config::Settings;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, Version};
use std::net::SocketAddr;
use url::Url;

const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// Which hosts and origins may reach the core.
pub struct RequestGuard {
    hosts: Vec<HostPattern>,
    /// Every allowed host as a `Host` header spells it (`host` or `host:port`, canonical): a
    /// `Host` equal to one of these (ignoring ASCII case) is allowed without parsing it, which
    /// is the common case and saves a URL host parse per request.
    literal_hosts: Vec<String>,
    /// Allowed origins, serialized `scheme://host[:port]`.
    origins: Vec<String>,
    any_origin: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed framing: 400, and the connection must not be reused.
    Framing(&'static str),
    /// A `Host` this server does not answer to: 421.
    Host,
    /// An `Origin` that may not reach the core: 403.
    Origin,
}

// === impl Refusal ===

impl Refusal {
    pub fn response(&self) -> Response<Bytes> {
        match self {
            Self::Framing(why) => json_error(StatusCode::BAD_REQUEST, "invalid_request", why),
            Self::Host => json_error(
                StatusCode::MISDIRECTED_REQUEST,
                "invalid_host",
                "this server does not answer to that Host (see allowed_hosts)",
            ),
            Self::Origin => json_error(
                StatusCode::FORBIDDEN,
                "invalid_origin",
                "requests from this Origin are not allowed (see allowed_origins)",
            ),
        }
    }

    /// Whether the connection must be closed after the refusal.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Self::Framing(_))
    }
}

/// Checks the framing headers of an HTTP/1.x request.
pub fn check_framing(version: Version, headers: &HeaderMap) -> Result<(), Refusal> {
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Ok(()); // HTTP/2 frames its own bodies and carries :authority
    }
    let hosts = headers.get_all(http::header::HOST).iter().count();
    if version == Version::HTTP_11 && hosts == 0 {
        return Err(Refusal::Framing("an HTTP/1.1 request needs a Host header"));
    }
    if hosts > 1 {
        return Err(Refusal::Framing("a request must have one Host header"));
    }
    let mut codings = headers.get_all(http::header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        let all: Vec<&[u8]> = codings.map(|v| v.as_bytes()).collect();
        let only_chunked = matches!(all.as_slice(), [one] if one.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !only_chunked {
            return Err(Refusal::Framing("Transfer-Encoding must be exactly `chunked`"));
        }
        if version == Version::HTTP_10 {
            return Err(Refusal::Framing("HTTP/1.0 has no chunked transfer coding"));
        }
    }
    Ok(())
}

// === impl RequestGuard ===

impl RequestGuard {
    pub fn new(settings: &Settings) -> Self {
        Self::from_parts(
            &settings.public_url,
            settings.listen,
            &settings.allowed_hosts,
            &settings.allowed_origins,
        )
    }

    fn from_parts(
        public_url: &str,
        listen: SocketAddr,
        allowed_hosts: &[HostPattern],
        allowed_origins: &[String],
    ) -> Self {
        let mut hosts = allowed_hosts.to_vec();
        let mut origins: Vec<String> = Vec::new();
        if let Ok(public) = Url::parse(public_url) {
            if let Some(host) = HostPattern::of_url(&public) {
                hosts.extend(with_loopback_aliases(&host, public.port()));
                origins.push(public.origin().ascii_serialization());
                if is_loopback_host(host.host()) {
                    let port = public.port().map(|p| format!(":{p}")).unwrap_or_default();
                    origins.extend(
                        LOOPBACK_NAMES
                            .iter()
                            .map(|name| format!("{}://{name}{port}", public.scheme())),
                    );
                }
            }
        }
        hosts.extend(listen_hosts(listen));
        let any_origin = allowed_origins.iter().any(|o| o == "*");
        origins.extend(allowed_origins.iter().filter(|o| *o != "*").cloned());
        origins.dedup();
        let mut literal_hosts: Vec<String> = hosts.iter().map(HostPattern::to_string).collect();
        literal_hosts.dedup();
        Self {
            hosts,
            literal_hosts,
            origins,
            any_origin,
        }
    }

    /// Whether a browser page at `origin` may call mxgate (CORS) and reach the core. `own` is
    /// the public URL a trusted proxy named for this request, if any.
    pub fn origin_allowed(&self, origin: &str, own: Option<&str>) -> bool {
        self.any_origin
            || own.is_some_and(|o| o.eq_ignore_ascii_case(origin))
            || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The checks for a request that would reach the core. `host` is the host the client used
    /// (see `proxy_trust`); `vouched` when a trusted proxy named this request's public URL.
    pub fn check_destination(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
        vouched_origin: Option<&str>,
    ) -> Result<(), Refusal> {
        let literal = |h: &str| self.literal_hosts.iter().any(|l| l.eq_ignore_ascii_case(h));
        if vouched_origin.is_none() && !host.is_some_and(literal) {
            let (name, port) = host.and_then(split_host_port).ok_or(Refusal::Host)?;
            if !self.hosts.iter().any(|h| h.matches(&name, port)) {
                return Err(Refusal::Host);
            }
        }
        match origin {
            Some(origin) if !self.origin_allowed(origin, vouched_origin) => Err(Refusal::Origin),
            _ => Ok(()),
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A loopback public host stands for every loopback name on the same port.
fn with_loopback_aliases(host: &HostPattern, port: Option<u16>) -> Vec<HostPattern> {
    let mut out = vec![host.clone()];
    if is_loopback_host(host.host()) {
        out.extend(
            LOOPBACK_NAMES
                .iter()
                .filter_map(|name| HostPattern::parse(name).ok())
                .map(|p| p.with_port(port)),
        );
    }
    out
}

/// The listen address, as clients on the same machine or pod may name it.
fn listen_hosts(listen: SocketAddr) -> Vec<HostPattern> {
    if listen.ip().is_unspecified() {
        return Vec::new();
    }
    let literal = match listen.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    HostPattern::parse(&literal)
        .map(|p| with_loopback_aliases(&p.with_port(Some(listen.port())), Some(listen.port())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::header_hygiene::header_map as headers;

    fn guard(public_url: &str, listen: &str, allowed_hosts: &[&str], allowed_origins: &[&str]) -> RequestGuard {
        let hosts: Vec<HostPattern> = allowed_hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect();
        let origins: Vec<String> = allowed_origins.iter().map(|o| o.to_string()).collect();
        RequestGuard::from_parts(public_url, listen.parse().unwrap(), &hosts, &origins)
    }

    #[test]
    fn framing_needs_one_host_and_plain_chunked() {
        assert_eq!(check_framing(Version::HTTP_11, &headers(&[("host", "a")])), Ok(()));
        assert!(check_framing(Version::HTTP_11, &headers(&[])).is_err());
        assert_eq!(check_framing(Version::HTTP_10, &headers(&[])), Ok(()));
        assert!(check_framing(Version::HTTP_11, &headers(&[("host", "a"), ("host", "b")])).is_err());
        let te = |v: &str| check_framing(Version::HTTP_11, &headers(&[("host", "a"), ("transfer-encoding", v)]));
        assert_eq!(te("chunked"), Ok(()));
        assert_eq!(te("Chunked"), Ok(()));
        for bad in [
            "identity, chunked",
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "chunked;x",
        ] {
            assert!(te(bad).is_err(), "{bad}");
        }
        let two_lines = headers(&[
            ("host", "a"),
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]);
        assert!(check_framing(Version::HTTP_11, &two_lines).is_err());
    }

    #[test]
    fn foreign_hosts_are_refused_and_the_public_and_listen_hosts_are_not() {
        let g = guard("https://mcp.example.com", "0.0.0.0:8000", &["internal.svc:8000"], &[]);
        assert_eq!(g.check_destination(Some("mcp.example.com"), None, None), Ok(()));
        assert_eq!(g.check_destination(Some("MCP.example.com:443"), None, None), Ok(()));
        assert_eq!(g.check_destination(Some("internal.svc:8000"), None, None), Ok(()));
        assert_eq!(
            g.check_destination(Some("internal.svc:9000"), None, None),
            Err(Refusal::Host)
        );
        assert_eq!(
            g.check_destination(Some("evil.example.com"), None, None),
            Err(Refusal::Host)
        );
        assert_eq!(g.check_destination(None, None, None), Err(Refusal::Host));
        assert_eq!(
            g.check_destination(Some("evil.example.com"), None, Some("https://evil.example.com")),
            Ok(()),
            "a trusted proxy vouched for it"
        );

        let local = guard("http://127.0.0.1:8000", "127.0.0.1:8000", &[], &[]);
        for ok in ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"] {
            assert_eq!(local.check_destination(Some(ok), None, None), Ok(()), "{ok}");
        }
        assert_eq!(
            local.check_destination(Some("localhost:9999"), None, None),
            Err(Refusal::Host)
        );
        assert_eq!(
            local.check_destination(Some("evil.example.com:8000"), None, None),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn the_literal_host_shortcut_answers_as_parsing_does() {
        let fast = guard(
            "https://mcp.example.com",
            "127.0.0.1:8000",
            &["internal.svc:8000", "[::1]"],
            &[],
        );
        let mut parsing = guard(
            "https://mcp.example.com",
            "127.0.0.1:8000",
            &["internal.svc:8000", "[::1]"],
            &[],
        );
        parsing.literal_hosts.clear();
        assert!(fast.literal_hosts.iter().any(|h| h == "mcp.example.com"));
        let sent = [
            "mcp.example.com",
            "MCP.Example.COM",
            "mcp.example.com:443",
            "mcp.example.com:0443",
            "mcp.example.com.",
            "mcp.example.com:8000",
            "internal.svc:8000",
            "INTERNAL.svc:8000",
            "internal.svc",
            "internal.svc:80",
            "127.0.0.1:8000",
            "127.0.0.1:8001",
            "localhost:8000",
            "[::1]",
            "[::1]:9",
            "[0:0::1]",
            "evil.example.com",
            "mcp.example.com@evil",
            "",
        ];
        for host in sent {
            assert_eq!(
                fast.check_destination(Some(host), None, None),
                parsing.check_destination(Some(host), None, None),
                "{host}"
            );
        }
    }

    #[test]
    fn origins_must_be_the_public_one_or_allowed() {
        let g = guard(
            "https://mcp.example.com",
            "127.0.0.1:8000",
            &[],
            &["https://app.example"],
        );
        let host = Some("mcp.example.com");
        assert_eq!(g.check_destination(host, Some("https://mcp.example.com"), None), Ok(()));
        assert_eq!(g.check_destination(host, Some("https://app.example"), None), Ok(()));
        assert_eq!(
            g.check_destination(host, Some("http://evil.example.com"), None),
            Err(Refusal::Origin)
        );
        assert_eq!(g.check_destination(host, Some("null"), None), Err(Refusal::Origin));
        let any = guard("https://mcp.example.com", "127.0.0.1:8000", &[], &["*"]);
        assert_eq!(
            any.check_destination(host, Some("http://evil.example.com"), None),
            Ok(())
        );
    }
}
