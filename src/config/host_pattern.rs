//! `Host` header values: splitting `host[:port]` (IPv6 in brackets) and matching a request's
//! host against an allowed one (`host` matches any port, `host:port` only that port). Used for
//! `allowed_hosts` and the public URL's own host (DNS-rebinding defence, see
//! `gateway::request_guard`).

use serde::{Serialize, Serializer};
use url::Host;

/// An allowed host: a lower-case host name or address, and optionally the one port it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

/// Splits `host[:port]` into a normalised (lower-case, IPv6 bracketed) host and its port.
/// `None` when the value is not a plain host with an optional port.
pub fn split_host_port(value: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&value[..inside.len() + 2], port)
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    if host.is_empty()
        || host
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b)))
    {
        return None;
    }
    let parsed = Host::parse(host).ok()?;
    Some((parsed.to_string().to_ascii_lowercase(), port))
}

// === impl HostPattern ===

impl HostPattern {
    /// `host` or `host:port`; `Err` says why not.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (host, port) =
            split_host_port(value.trim()).ok_or_else(|| format!("`{value}` is not a host or host:port"))?;
        Ok(Self { host, port })
    }

    /// The host and port of a URL (its port only when the URL names one explicitly or it is not
    /// the scheme's default).
    pub fn of_url(url: &url::Url) -> Option<Self> {
        Some(Self {
            host: url.host()?.to_string().to_ascii_lowercase(),
            port: url.port(),
        })
    }

    /// Whether a request's `host` (normalised by [`split_host_port`]) and port match. A pattern
    /// without a port matches every port.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && (self.port.is_none() || self.port == port)
    }

    /// The host part (lower-case; IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// This pattern with exactly `port` (or any port with `None`).
    pub fn with_port(&self, port: Option<u16>) -> Self {
        Self {
            host: self.host.clone(),
            port,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts_ports_and_ipv6() {
        assert_eq!(
            split_host_port("MCP.Example.com"),
            Some(("mcp.example.com".into(), None))
        );
        assert_eq!(
            split_host_port("127.0.0.1:8000"),
            Some(("127.0.0.1".into(), Some(8000)))
        );
        assert_eq!(split_host_port("[::1]:8000"), Some(("[::1]".into(), Some(8000))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]".into(), None)));
        for bad in [
            "",
            "a/b",
            "a b",
            "x:y",
            "x:",
            "::1",
            "[::1",
            "h:123456",
            "a@b",
            "evil.example/path",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn patterns_without_a_port_match_any_port() {
        let any = HostPattern::parse("mcp.example.com").unwrap();
        assert!(any.matches("mcp.example.com", Some(8443)));
        assert!(any.matches("mcp.example.com", None));
        assert!(!any.matches("evil.example.com", None));
        let one = HostPattern::parse("localhost:8000").unwrap();
        assert!(one.matches("localhost", Some(8000)));
        assert!(!one.matches("localhost", Some(8001)));
        assert!(HostPattern::parse("http://x").is_err());
        assert_eq!(one.to_string(), "localhost:8000");
    }
}
