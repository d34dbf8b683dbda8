//! `trust_proxy`, done safely: `X-Forwarded-For/-Proto/-Host` are believed only when the
//! connection comes from a configured trusted proxy (a CIDR list; loopback by default), and only
//! with `transport.http.trust_proxy: true`. Otherwise they are ignored (and replaced towards the
//! core). The client address is the rightmost `X-Forwarded-For` hop that is not itself a
//! trusted proxy; `X-Forwarded-Proto/-Host` are read by the same rule: of a list, the value the
//! outermost trusted proxy added (values further left were sent by the client). No Pingora here.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// What mxgate believes about the original request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    /// The real client, as far as it can be known.
    pub client_ip: Option<IpAddr>,
    /// `X-Forwarded-For` to send on: the trusted chain plus the connecting peer.
    pub forwarded_for: Option<String>,
    /// The scheme the client used, from a trusted `X-Forwarded-Proto`.
    pub forwarded_proto: Option<String>,
    /// The host the client used: a trusted `X-Forwarded-Host`, else `Host`.
    pub host: Option<String>,
    pub via_trusted_proxy: bool,
}

#[derive(Clone, Debug)]
pub struct ProxyTrust {
    enabled: bool,
    trusted: Vec<IpNet>,
}

fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    value.split(',').next().map(str::trim).filter(|v| !v.is_empty())
}

/// Of the comma-separated values of every `name` header, the one added by the outermost of
/// `trusted_hops` trusted proxies that each appended one (or the leftmost, when fewer values
/// were sent: a proxy that overwrites leaves one). `None` when a value is unreadable.
fn value_from_trusted_hop<'a>(headers: &'a HeaderMap, name: &str, trusted_hops: usize) -> Option<&'a str> {
    let mut values = Vec::new();
    for line in headers.get_all(name) {
        values.extend(line.to_str().ok()?.split(',').map(str::trim));
    }
    let index = values.len().saturating_sub(trusted_hops.max(1));
    values.get(index).copied().filter(|v| !v.is_empty())
}

/// `host`, `host:port`, `[v6]:port`: nothing that could smuggle a path or a scheme.
fn plausible_host(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

// === impl ProxyTrust ===

impl ProxyTrust {
    pub fn new(enabled: bool, trusted: Vec<IpNet>) -> Self {
        Self { enabled, trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    pub fn view(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientView {
        let own_host = first_value(headers, "host")
            .filter(|h| plausible_host(h))
            .map(str::to_string);
        let direct = ClientView {
            client_ip: peer,
            forwarded_for: peer.map(|p| p.to_string()),
            forwarded_proto: None,
            host: own_host.clone(),
            via_trusted_proxy: false,
        };
        let Some(peer_ip) = peer.filter(|p| self.enabled && self.is_trusted(*p)) else {
            return direct;
        };
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        // The client is the rightmost hop that is not a trusted proxy (the leftmost when all are).
        let client_index = hops.iter().rposition(|ip| !self.is_trusted(*ip)).unwrap_or(0);
        let client_ip = hops.get(client_index).copied().unwrap_or(peer_ip);
        // Trusted proxies between that client and mxgate, the connecting one included.
        let trusted_hops = hops.len().saturating_sub(client_index + 1) + 1;
        let mut chain: Vec<String> = hops.iter().map(IpAddr::to_string).collect();
        chain.push(peer_ip.to_string());
        ClientView {
            client_ip: Some(client_ip),
            forwarded_for: Some(chain.join(", ")),
            forwarded_proto: value_from_trusted_hop(headers, "x-forwarded-proto", trusted_hops)
                .map(str::to_ascii_lowercase)
                .filter(|p| p == "http" || p == "https"),
            host: value_from_trusted_hop(headers, "x-forwarded-host", trusted_hops)
                .filter(|h| plausible_host(h))
                .map(str::to_string)
                .or(own_host),
            via_trusted_proxy: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::header_hygiene::header_map as headers;

    fn trust(enabled: bool) -> ProxyTrust {
        ProxyTrust::new(
            enabled,
            vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
        )
    }

    const FORWARDED: &[(&str, &str)] = &[
        ("host", "internal:8000"),
        ("x-forwarded-for", "203.0.113.9, 10.0.0.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "mcp.example.com"),
    ];

    #[test]
    fn forwarded_headers_from_a_trusted_proxy_are_believed() {
        let view = trust(true).view(Some("10.0.0.2".parse().unwrap()), &headers(FORWARDED));
        assert!(view.via_trusted_proxy);
        assert_eq!(
            view.client_ip,
            Some("203.0.113.9".parse().unwrap()),
            "rightmost untrusted hop"
        );
        assert_eq!(view.forwarded_for.as_deref(), Some("203.0.113.9, 10.0.0.7, 10.0.0.2"));
        assert_eq!(view.forwarded_proto.as_deref(), Some("https"));
        assert_eq!(view.host.as_deref(), Some("mcp.example.com"));
    }

    #[test]
    fn forwarded_headers_from_anyone_else_or_with_trust_off_are_ignored() {
        for (t, peer) in [(trust(true), "198.51.100.1"), (trust(false), "10.0.0.2")] {
            let view = t.view(Some(peer.parse().unwrap()), &headers(FORWARDED));
            assert!(!view.via_trusted_proxy);
            assert_eq!(view.client_ip, Some(peer.parse().unwrap()));
            assert_eq!(view.forwarded_for.as_deref(), Some(peer));
            assert_eq!(view.forwarded_proto, None);
            assert_eq!(view.host.as_deref(), Some("internal:8000"));
        }
    }

    #[test]
    fn spoofed_hops_and_odd_values_do_not_win() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example/path"),
            ("host", "mcp.example.com"),
        ]);
        let view = trust(true).view(Some("127.0.0.1".parse().unwrap()), &h);
        assert_eq!(
            view.client_ip,
            Some("203.0.113.9".parse().unwrap()),
            "the leftmost hop is client-controlled"
        );
        assert_eq!(view.forwarded_proto, None);
        assert_eq!(view.host.as_deref(), Some("mcp.example.com"));
    }

    #[test]
    fn forwarded_proto_and_host_follow_the_rightmost_untrusted_rule() {
        // The client prepended its own values; the one trusted proxy (10.0.0.7 → peer 10.0.0.2
        // are both trusted, so two trusted hops) appended theirs.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7"),
            ("x-forwarded-proto", "http, https, https"),
            ("x-forwarded-host", "evil.example, mcp.example.com, mcp.example.com"),
        ]);
        let view = trust(true).view(Some("10.0.0.2".parse().unwrap()), &h);
        assert_eq!(view.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(view.forwarded_proto.as_deref(), Some("https"));
        assert_eq!(view.host.as_deref(), Some("mcp.example.com"));

        // A client-sent value to the left of what one trusted proxy appended is not believed.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-host", "mcp.example.com"),
        ]);
        let view = trust(true).view(Some("10.0.0.2".parse().unwrap()), &h);
        assert_eq!(view.host.as_deref(), Some("mcp.example.com"));

        // A proxy that overwrites leaves one value: that one is the proxy's.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let view = trust(true).view(Some("10.0.0.2".parse().unwrap()), &h);
        assert_eq!(view.forwarded_proto.as_deref(), Some("https"));
    }
}
