//! Client ID Metadata Documents (MCP authorization 2025-11-25): a client whose `client_id` is an
//! `https` URL publishes its metadata there, and mxgate fetches it instead of asking it to
//! register. Fetching a URL a stranger names is an SSRF risk, so: the host must resolve only to
//! public addresses (unless `allow_private_addresses`), the connection goes to the address that
//! was checked (no second DNS answer), no redirects, 5 s, 16 KiB. The document's `client_id`
//! must equal the URL, it may carry no secret (the client is public), and its redirect URIs are
//! checked like a registration's. Documents are cached as their `Cache-Control` says (5 min when
//! it says nothing, 24 h at most).

use super::client_metadata::{metadata_error, ClientMetadata};
use super::clients::ClientRecord;
use super::error::OAuthError;
use crate::config::ClientDocumentSettings;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use url::Url;

const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MAX_CACHED: usize = 10_000;

pub struct MetadataDocuments {
    settings: ClientDocumentSettings,
    supported_scopes: Vec<String>,
    cache: RwLock<HashMap<String, (ClientRecord, Instant)>>,
}

/// Whether an address may be fetched: not loopback, private, link-local, shared (CGNAT),
/// multicast, documentation or otherwise reserved.
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
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
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
            cache: RwLock::new(HashMap::new()),
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
                if cache.len() >= MAX_CACHED {
                    let now = Instant::now();
                    cache.retain(|_, (_, until)| *until > now);
                }
                cache.insert(client_id.to_string(), (record.clone(), Instant::now() + ttl));
            }
        }
        Ok(record)
    }

    fn cached(&self, client_id: &str) -> Option<ClientRecord> {
        let cache = self.cache.read().ok()?;
        let (record, until) = cache.get(client_id)?;
        (*until > Instant::now()).then(|| record.clone())
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
        let url = Url::parse(client_id).map_err(|e| metadata_error(format!("client_id is not a URL: {e}")))?;
        let addrs = self.resolve(&url).await?;
        let host = url.host_str().unwrap_or_default();
        let http = reqwest::Client::builder()
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
        record.client_id_issued_at = crate::store::now();
        tracing::info!(client_id, "client metadata document fetched");
        Ok((record, ttl))
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
