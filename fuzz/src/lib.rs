//! The input format shared by the header targets (`forwarded_view`, `header_hygiene`): a request
//! as a peer sends it, written as text so that seeds are easy to write and crashes easy to read.
//!
//! ```text
//! ta 10.0.0.2                  <- flags and peer: `t` trust_proxy on, `a` authentication on;
//!                                 the peer address, or `-` for none
//! Host: mcp.example.com        <- then one `name: value` header per line, in order; lines that
//! X-Forwarded-For: 203.0.113.9    are no valid header are skipped (`\r\n` ends lines too)
//! ```

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

/// The trusted proxies of the scenarios: mxgate's default (loopback) and a private range.
pub const TRUSTED_PROXIES: &[&str] = &["127.0.0.0/8", "::1/128", "10.0.0.0/8"];

/// One request as a peer sends it.
#[derive(Debug)]
pub struct Scenario {
    pub trust_proxy: bool,
    pub auth_enabled: bool,
    pub peer: Option<IpAddr>,
    /// Names as sent (their case kept) and values, in order.
    pub headers: Vec<(String, HeaderValue)>,
}

pub fn trusted_proxies() -> Vec<IpNet> {
    TRUSTED_PROXIES.iter().map(|n| n.parse().expect("a CIDR")).collect()
}

// === impl Scenario ===

impl Scenario {
    pub fn parse(data: &[u8]) -> Self {
        let mut lines = data.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let mut words = first.split_whitespace();
        let flags = words.next().unwrap_or_default();
        let peer = words.next().and_then(|p| p.parse().ok());
        let headers = lines.filter_map(header).collect();
        Self {
            trust_proxy: flags.contains('t'),
            auth_enabled: flags.contains('a'),
            peer,
            headers,
        }
    }

    /// The headers as `http` keeps them (names lower-cased).
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                map.append(name, value.clone());
            }
        }
        map
    }
}

fn header(line: &[u8]) -> Option<(String, HeaderValue)> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = std::str::from_utf8(&line[..colon]).ok()?;
    HeaderName::from_bytes(name.as_bytes()).ok()?;
    let value = line[colon + 1..]
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .map_or(&[][..], |start| &line[colon + 1 + start..]);
    Some((name.to_string(), HeaderValue::from_bytes(value).ok()?))
}

/// A header name as a lenient server may read it: lower-cased, `_` taken for `-`.
pub fn normalized(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase().replace('_', "-")
}
