//! Client ID Metadata Documents (MCP authorization 2025-11-25): a client whose `client_id` is an
//! `https` URL publishes its metadata there, and mxgate fetches it instead of asking it to
//! register. Fetching a URL a stranger names is an SSRF risk, so: the host must resolve only to
//! public addresses (unless `allow_private_addresses`), the connection goes to the address that
//! was checked (no second DNS answer, and no proxy from `HTTP(S)_PROXY`/`ALL_PROXY`, which would
//! connect wherever it likes), no redirects, 5 s, 16 KiB. The document's `client_id` must equal
//! the URL, it may carry no secret (the client is public), and its redirect URIs are checked like
//! a registration's. Documents are cached as their `Cache-Control` says (5 min when it says
//! nothing, 24 h at most), at most [`MAX_CACHED`] of them.

use super::client_metadata::{metadata_error, ClientMetadata, MAX_CLIENT_ID_BYTES};
use super::clients::ClientRecord;
use super::error::OAuthError;
use crate::config::ClientDocumentSettings;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use url::Url;

const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Documents kept in memory; with records of at most 8 KiB, at most about 8 MiB.
const MAX_CACHED: usize = 1_000;

pub struct MetadataDocuments {
    settings: ClientDocumentSettings,
    supported_scopes: Vec<String>,
    cache: RwLock<DocumentCache>,
}

/// Fetched clients until their documents' lifetimes end; never more than `capacity`: when full,
/// expired entries go first, then the one that would expire soonest.
struct DocumentCache {
    entries: HashMap<String, (ClientRecord, Instant)>,
    capacity: usize,
}

/// Whether an address may be fetched: not loopback, private, link-local, shared (CGNAT),
/// multicast, documentation or otherwise reserved; an IPv6 address that carries an IPv4 one
/// (mapped, NAT64, 6to4) is judged by the IPv4 address it leads to.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_multicast()
                // ::/96, IPv4-compatible (deprecated, RFC 4291 §2.5.5.1), with :: and ::1.
                || s[..6] == [0; 6]
                // ::ffff:0:0:0/96, IPv4-translated (RFC 2765).
                || s[..6] == [0, 0, 0, 0, 0xffff, 0]
                // 64:ff9b::/32 beyond the well-known NAT64 /96: 64:ff9b:1::/48 is local-use
                // (RFC 8215), translating to whatever the local translator chooses.
                || s[..2] == [0x0064, 0xff9b]
                // 100::/64, discard-only (RFC 6666).
                || s[..4] == [0x0100, 0, 0, 0]
                // 2001::/23, IETF protocol assignments: Teredo 2001::/32 (tunnels to an
                // IPv4 address), benchmarking, ORCHID; no web server lives there.
                || (s[0] == 0x2001 && s[1] < 0x0200)
                // Documentation: 2001:db8::/32 and 3fff::/20 (RFC 9637).
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x3fff && s[1] < 0x1000)
                // 5f00::/16, SRv6 segment identifiers (RFC 9602).
                || s[0] == 0x5f00
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10 (deprecated).
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

/// The IPv4 address an IPv6 one leads to: IPv4-mapped `::ffff:a.b.c.d`, the well-known NAT64
/// prefix `64:ff9b::/96` (RFC 6052) and 6to4 `2002:AABB:CCDD::/48` (RFC 3056).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |high: u16, low: u16| Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    if s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        return v4(s[6], s[7]);
    }
    if s[0] == 0x2002 {
        return v4(s[1], s[2]);
    }
    None
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::CACHE_CONTROL)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    if directives.iter().any(|d| *d == "no-store" || *d == "no-cache") {
        return Some(Duration::ZERO);
    }
    directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age="))
        .and_then(|s| s.parse().ok())
        .map(|s: u64| Duration::from_secs(s).min(MAX_MAX_AGE))
}

// === impl MetadataDocuments ===

impl MetadataDocuments {
    pub fn new(settings: ClientDocumentSettings, supported_scopes: Vec<String>) -> Self {
        Self {
            settings,
            supported_scopes,
            cache: RwLock::new(DocumentCache::new(MAX_CACHED)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether a `client_id` names a metadata document (an `https` URL with a path).
    pub fn is_document_url(&self, client_id: &str) -> bool {
        let Ok(url) = Url::parse(client_id) else { return false };
        let scheme_ok = url.scheme() == "https" || (self.settings.allow_private_addresses && url.scheme() == "http");
        self.settings.enabled && scheme_ok && url.path() != "/" && url.fragment().is_none() && url.username().is_empty()
    }

    /// The client the document at `client_id` describes, from the cache or fetched now.
    pub async fn client(&self, client_id: &str) -> Result<ClientRecord, OAuthError> {
        if let Some(record) = self.cached(client_id) {
            return Ok(record);
        }
        let (record, ttl) = self.fetch(client_id).await?;
        if !ttl.is_zero() {
            if let Ok(mut cache) = self.cache.write() {
                cache.insert(client_id, record.clone(), Instant::now() + ttl);
            }
        }
        Ok(record)
    }

    fn cached(&self, client_id: &str) -> Option<ClientRecord> {
        self.cache.read().ok()?.get(client_id, Instant::now())
    }

    async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, OAuthError> {
        let host = url
            .host_str()
            .ok_or_else(|| metadata_error("the client_id URL has no host"))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| metadata_error(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(metadata_error(format!("{host} has no address")));
        }
        if !self.settings.allow_private_addresses {
            if let Some(bad) = addrs.iter().find(|a| !is_public_address(a.ip())) {
                return Err(metadata_error(format!(
                    "{host} resolves to {}, which is not a public address",
                    bad.ip()
                )));
            }
        }
        Ok(addrs)
    }

    async fn fetch(&self, client_id: &str) -> Result<(ClientRecord, Duration), OAuthError> {
        if client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(metadata_error(format!(
                "client_id: a metadata document URL may be at most {MAX_CLIENT_ID_BYTES} bytes"
            )));
        }
        let url = Url::parse(client_id).map_err(|e| metadata_error(format!("client_id is not a URL: {e}")))?;
        let addrs = self.resolve(&url).await?;
        let host = url.host_str().unwrap_or_default();
        let http = reqwest::Client::builder()
            // A proxy would make its own connection, past the address checked above.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .resolve_to_addrs(host, &addrs)
            .user_agent(concat!("mxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| metadata_error(format!("cannot build the HTTP client: {e}")))?;
        let failed = |what: String| metadata_error(format!("the client metadata document at {client_id}: {what}"));
        let mut response = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(format!("cannot be fetched ({e})")))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let ttl = max_age(response.headers()).unwrap_or(DEFAULT_MAX_AGE);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(format!("read failed ({e})")))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(failed(format!("is larger than {MAX_DOCUMENT_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| failed(format!("is not JSON ({e})")))?;
        if document.get("client_id").and_then(|v| v.as_str()) != Some(client_id) {
            return Err(failed("its client_id is not its own URL".into()));
        }
        if document.get("client_secret").is_some() || document.get("client_secret_expires_at").is_some() {
            return Err(failed(
                "it carries a client secret; a metadata-document client is public".into(),
            ));
        }
        let metadata: ClientMetadata =
            serde_json::from_value(document).map_err(|e| failed(format!("has wrongly typed metadata ({e})")))?;
        let mut record = metadata.into_record(&self.supported_scopes, "none", &["none"])?;
        record.client_id = client_id.to_string();
        record.client_id_issued_at = crate::support::now();
        tracing::info!(client_id, "client metadata document fetched");
        Ok((record, ttl))
    }
}

// === impl DocumentCache ===

impl DocumentCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    fn get(&self, client_id: &str, now: Instant) -> Option<ClientRecord> {
        let (record, until) = self.entries.get(client_id)?;
        (*until > now).then(|| record.clone())
    }

    fn insert(&mut self, client_id: &str, record: ClientRecord, until: Instant) {
        if !self.entries.contains_key(client_id) && self.entries.len() >= self.capacity {
            let now = Instant::now();
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= self.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, (_, until))| *until);
                if let Some(key) = soonest.map(|(key, _)| key.clone()) {
                    self.entries.remove(&key);
                }
            }
        }
        if self.capacity > 0 {
            self.entries.insert(client_id.to_string(), (record, until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_may_be_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::",
            "2001:db8::1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn ipv6_ranges_that_lead_to_private_or_special_addresses_are_refused() {
        for private in [
            // IPv4-compatible (::/96), deprecated but still routed to the IPv4 address by some stacks.
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            // Site-local (fec0::/10).
            "fec0::1",
            "feff::1",
            // 6to4 embedding a private IPv4 address.
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            // NAT64: the well-known prefix with a private address, the local-use prefix with any.
            "64:ff9b::7f00:1",
            "64:ff9b:1::808:808",
            // Teredo, benchmarking, ORCHIDv2, discard-only, documentation, SRv6, IPv4-translated.
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:20::1",
            "100::1",
            "3fff::1",
            "5f00::1",
            "::ffff:0:a00:1",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
        // The same mechanisms towards a public IPv4 address lead to the public internet.
        for public in [
            "2002:808:808::1",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
            "2c0f:fb50::1",
        ] {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        // Through serde, so that fields with defaults may be added to the record.
        let record = |id: &str| -> ClientRecord {
            serde_json::from_value(serde_json::json!({
                "client_id": id, "redirect_uris": [], "grant_types": [], "response_types": [],
                "token_endpoint_auth_method": "none", "scopes": [], "client_id_issued_at": 0,
            }))
            .unwrap()
        };
        let now = Instant::now();
        let hours = |h: u64| now + Duration::from_secs(h * 3600);
        let mut cache = DocumentCache::new(3);
        let insert = |cache: &mut DocumentCache, id: &str, until: Instant| {
            cache.insert(id, record(id), until);
            assert!(cache.entries.len() <= 3, "{} entries", cache.entries.len());
        };
        insert(&mut cache, "a", hours(3));
        insert(&mut cache, "b", hours(1));
        insert(&mut cache, "c", hours(2));
        // Full, nothing expired: the entry expiring soonest (b) makes room.
        insert(&mut cache, "d", hours(4));
        let mut ids: Vec<&str> = cache.entries.keys().map(String::as_str).collect();
        ids.sort();
        assert_eq!(ids, ["a", "c", "d"]);
        // Replacing a cached id evicts nothing.
        insert(&mut cache, "a", hours(5));
        assert!(["a", "c", "d"].iter().all(|id| cache.get(id, now).is_some()));
        // Many documents with long lifetimes: the bound holds and the newest is always kept.
        for i in 0..100u64 {
            let id = format!("https://c{i}.example/client.json");
            insert(&mut cache, &id, hours(24 + i % 7));
            assert!(cache.get(&id, now).is_some());
        }
    }

    #[test]
    fn a_too_long_client_id_url_is_refused_before_any_fetch() {
        let docs = MetadataDocuments::new(
            ClientDocumentSettings {
                enabled: true,
                allow_private_addresses: true,
            },
            vec![],
        );
        let long = format!("https://127.0.0.1:1/{}", "a".repeat(MAX_CLIENT_ID_BYTES));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime.block_on(docs.client(&long)).unwrap_err();
        assert!(err.description.contains("at most 1024 bytes"), "{}", err.description);
    }

    #[test]
    fn cache_control_sets_the_lifetime() {
        let h = |v: &str| {
            let mut m = reqwest::header::HeaderMap::new();
            m.insert(reqwest::header::CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(max_age(&h("public, max-age=60")), Some(Duration::from_secs(60)));
        assert_eq!(max_age(&h("max-age=99999999")), Some(MAX_MAX_AGE));
        assert_eq!(max_age(&h("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn document_urls_are_https_with_a_path() {
        let docs = |allow: bool| {
            MetadataDocuments::new(
                ClientDocumentSettings {
                    enabled: true,
                    allow_private_addresses: allow,
                },
                vec![],
            )
        };
        assert!(docs(false).is_document_url("https://app.example/oauth/client.json"));
        assert!(!docs(false).is_document_url("https://app.example/"));
        assert!(!docs(false).is_document_url("http://app.example/client.json"));
        assert!(!docs(false).is_document_url("mxc_0123"));
        assert!(
            docs(true).is_document_url("http://127.0.0.1:9/client.json"),
            "development only"
        );
    }
}
