//! The schema of `mxgate.yml`: the sidecar's own settings. Authentication itself (provider,
//! clients, scopes, transport) comes from the MXCP user config this file points at.

use super::lenient;
use super::limits::{DynamicClientsFile, Limits, RateLimits};
use super::mxcp_user::ProviderKind;
use super::secret::Secret;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Address mxgate listens on, `host:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The admin listener, `host:port`: `/metrics` (Prometheus) and the health probes, never on
    /// the public port. Unset: no admin listener. Must not be reachable from outside.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// The MXCP core, e.g. `http://127.0.0.1:8001`.
    pub upstream: String,
    /// The URL clients use to reach mxgate; overrides `transport.http.base_url` of the MXCP config.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed when MXCP's `transport.http.trust_proxy`
    /// is on: addresses or CIDRs. Default: loopback only.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// The path of the MCP endpoint on the core (used for the protected-resource URL).
    #[serde(default = "default_mcp_path")]
    pub mcp_path: String,
    /// Where keys and the embedded store live (relative paths are taken from this file's folder).
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Worker threads of the proxy.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Whether idle worker threads take tasks from busy ones (Pingora's `work_stealing`). Unset:
    /// on with more than one thread, off with one (see `Settings::work_stealing`).
    #[serde(default)]
    pub work_stealing: Option<bool>,
    #[serde(default)]
    pub store: StoreFile,
    #[serde(default)]
    pub assertion: AssertionFile,
    #[serde(default)]
    pub tokens: TokensFile,
    #[serde(default)]
    pub consent: ConsentFile,
    /// The MXCP user config; default `$MXCP_CONFIG`, else `~/.mxcp/config.yml`.
    #[serde(default)]
    pub mxcp_config: Option<String>,
    /// Project and profile inside the MXCP user config (as in `mxcp-site.yml`).
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// Provider API endpoints other than the real ones (a private GitHub Enterprise, a test
    /// fixture): `provider_overrides: {github: {api_url: …}}`. Each provider names its keys.
    #[serde(default)]
    pub client_metadata_documents: ClientDocumentsFile,
    /// More identity providers next to the MXCP config's, each written like MXCP's `auth`
    /// block (`provider: google` plus its `google:` settings). People choose at login.
    #[serde(default)]
    pub extra_providers: Vec<super::mxcp_user::AuthConfig>,
    #[serde(default)]
    pub provider_overrides: BTreeMap<ProviderKind, BTreeMap<String, String>>,
    /// Resource bounds: connections, slow clients, in-memory tables, logins in flight.
    #[serde(default)]
    pub limits: Limits,
    /// Requests per minute to the OAuth endpoints, per client address and per OAuth client.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// What self-registered and metadata-document clients may hold.
    #[serde(default)]
    pub dynamic_clients: DynamicClientsFile,
    /// More `Host` values (besides the public URL's and the listen address) under which requests
    /// may reach the core: `host` (any port) or `host:port`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins (besides the public URL's own) that may call mxgate cross-origin (CORS)
    /// and whose requests may reach the core; `*` for any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Per provider name (as the core sees it): whether an email address the provider gives
    /// without an `email_verified` flag counts as verified. Default: it does not.
    #[serde(default, deserialize_with = "bool_map")]
    pub assume_email_verified: BTreeMap<String, bool>,
    /// mxgate terminates TLS itself: certificate and key files (PEM), oldest TLS version, an
    /// optional plain-HTTP redirect listener.
    #[serde(default)]
    pub tls: Option<super::tls::TlsFile>,
    /// The endpoint a proxy asks before it forwards a request to the core itself (nginx
    /// `auth_request`, Traefik `ForwardAuth`).
    #[serde(default)]
    pub forward_auth: ForwardAuthFile,
    /// Per provider: claim path → claim value → `{role, permissions, groups}` it grants.
    #[serde(default)]
    pub role_mappings: super::access_policy::RoleMappingsFile,
    /// Rules evaluated at login and on each request; the first whose condition is true decides.
    #[serde(default)]
    pub policies: Vec<super::access_policy::PolicyRule>,
    /// The audit log of authentication events (a JSON-lines file).
    #[serde(default)]
    pub audit: super::audit::AuditFile,
    /// OpenID Connect Back-Channel Logout: per OpenID provider name, the endpoint its IdP posts
    /// logout tokens to (`{}` or no value: `/backchannel-logout/<name>`).
    #[serde(default)]
    pub backchannel_logout: BTreeMap<String, Option<BackchannelLogoutFile>>,
}

/// One provider's back-channel logout endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackchannelLogoutFile {
    /// Default `/backchannel-logout/<provider name>`.
    #[serde(default)]
    pub path: Option<String>,
}

/// A map of booleans, each also accepted as a string (`${VAR}` references resolve to strings).
fn bool_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, bool>, D::Error> {
    #[derive(Deserialize)]
    struct Flag(#[serde(deserialize_with = "lenient::bool")] bool);
    let map = BTreeMap::<String, Flag>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(key, Flag(value))| (key, value)).collect())
}

fn default_listen() -> String {
    "127.0.0.1:8000".into()
}
fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_mcp_path() -> String {
    "/mcp".into()
}
fn default_data_dir() -> String {
    "./data".into()
}
fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    #[serde(default = "default_store_kind", rename = "type")]
    pub kind: String,
    /// redb file; default `<data_dir>/mxgate.redb`.
    #[serde(default)]
    pub path: Option<String>,
    /// Redis: one server (`redis://` or `rediss://` for TLS).
    #[serde(default)]
    pub url: Option<String>,
    /// Redis Cluster: some of its nodes' URLs.
    #[serde(default)]
    pub cluster: Option<Vec<String>>,
    /// Redis behind Sentinel.
    #[serde(default)]
    pub sentinel: Option<SentinelFile>,
    /// Redis: what every key starts with, so several deployments can share a server.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Redis password (when the URLs carry none).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Redis over TLS (`rediss://`) with a private CA: its certificate(s), PEM.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Redis: how long a replica that hears no revocations from the others (lost subscription,
    /// Redis down) keeps serving sessions it has cached.
    #[serde(default = "default_outage_grace", deserialize_with = "duration")]
    pub outage_grace: Duration,
    /// How often expired states, codes, tokens and sessions are removed.
    #[serde(default = "default_purge_interval", deserialize_with = "duration")]
    pub purge_interval: Duration,
}

impl Default for StoreFile {
    fn default() -> Self {
        Self {
            kind: default_store_kind(),
            path: None,
            url: None,
            cluster: None,
            sentinel: None,
            key_prefix: default_key_prefix(),
            password: None,
            ca_file: None,
            outage_grace: default_outage_grace(),
            purge_interval: default_purge_interval(),
        }
    }
}

fn default_purge_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_outage_grace() -> Duration {
    Duration::from_secs(60)
}

fn default_key_prefix() -> String {
    "mxgate:".into()
}

/// `store.sentinel`: the Sentinels' URLs and the name of the monitored primary.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelFile {
    pub urls: Vec<String>,
    pub service: String,
}

fn default_store_kind() -> String {
    "redb".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AssertionAlgorithm {
    EdDSA,
    HS256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionFile {
    #[serde(default = "default_algorithm")]
    pub algorithm: AssertionAlgorithm,
    /// Shared secret for HS256.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_assertion_ttl", deserialize_with = "duration")]
    pub ttl: Duration,
    /// Put the provider access token into the `ext` claim (for `get_user_external_token()`).
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub include_external_token: bool,
    /// Timings of `mxgate keys rotate` (EdDSA).
    #[serde(default)]
    pub key_rotation: KeyRotationFile,
}

impl Default for AssertionFile {
    fn default() -> Self {
        Self {
            algorithm: default_algorithm(),
            secret: None,
            audience: default_audience(),
            ttl: default_assertion_ttl(),
            include_external_token: true,
            key_rotation: KeyRotationFile::default(),
        }
    }
}

/// `assertion.key_rotation`: how a new signing key is brought in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotationFile {
    /// How long a new key is in the JWKS before it signs.
    #[serde(default = "default_publish_before", deserialize_with = "duration")]
    pub publish_before: Duration,
    /// How long the old key stays in the JWKS after the new one signs.
    #[serde(default = "default_overlap", deserialize_with = "duration")]
    pub overlap: Duration,
}

impl Default for KeyRotationFile {
    fn default() -> Self {
        Self {
            publish_before: default_publish_before(),
            overlap: default_overlap(),
        }
    }
}

/// Past the core adapter's JWKS cache lifetime (5 min), the JWKS response's HTTP cache lifetime
/// (1 min) and a replica's periodic re-read of the ring (30 s).
fn default_publish_before() -> Duration {
    Duration::from_secs(7 * 60)
}
/// Well past an assertion's lifetime (5 min by default) and clock skew.
fn default_overlap() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_algorithm() -> AssertionAlgorithm {
    AssertionAlgorithm::EdDSA
}
fn default_audience() -> String {
    "mxcp-core".into()
}
fn default_assertion_ttl() -> Duration {
    Duration::from_secs(300)
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default = "default_access_ttl", deserialize_with = "duration")]
    pub access_token_ttl: Duration,
    #[serde(default = "default_refresh_ttl", deserialize_with = "duration")]
    pub refresh_token_ttl: Duration,
    /// Absolute lifetime of a login; no token outlives it.
    #[serde(default = "default_session_ttl", deserialize_with = "duration")]
    pub session_ttl: Duration,
    #[serde(default = "default_code_ttl", deserialize_with = "duration")]
    pub authorization_code_ttl: Duration,
    /// After a refresh token is used, one retry with it is allowed for this long (a client that
    /// lost the response); any other reuse revokes the session.
    #[serde(default = "default_refresh_grace", deserialize_with = "duration")]
    pub refresh_token_reuse_grace: Duration,
    /// How long a login may take at the provider (the `state` lifetime).
    #[serde(default = "default_login_ttl", deserialize_with = "duration")]
    pub login_ttl: Duration,
}

impl Default for TokensFile {
    fn default() -> Self {
        Self {
            access_token_ttl: default_access_ttl(),
            refresh_token_ttl: default_refresh_ttl(),
            session_ttl: default_session_ttl(),
            authorization_code_ttl: default_code_ttl(),
            refresh_token_reuse_grace: default_refresh_grace(),
            login_ttl: default_login_ttl(),
        }
    }
}

fn default_access_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_refresh_ttl() -> Duration {
    Duration::from_secs(30 * 86400)
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 86400)
}
fn default_code_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_refresh_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_login_ttl() -> Duration {
    Duration::from_secs(600)
}

/// Client ID Metadata Documents (an `https` URL as `client_id`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDocumentsFile {
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Fetch documents from loopback/private addresses, and over plain http (development only).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub allow_private_addresses: bool,
}

impl Default for ClientDocumentsFile {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_addresses: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentFile {
    /// How long a browser remembers that its user approved a client (0s: ask every time).
    #[serde(default = "default_consent_memory", deserialize_with = "duration")]
    pub remember: Duration,
}

impl Default for ConsentFile {
    fn default() -> Self {
        Self {
            remember: default_consent_memory(),
        }
    }
}

fn default_consent_memory() -> Duration {
    Duration::from_secs(30 * 86400)
}

/// Forward authentication: a proxy in front of the core asks mxgate whether to let a request
/// through, and copies the assertion from the answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Where mxgate answers the proxy's checks (never forwarded to the core).
    #[serde(default = "default_forward_auth_path")]
    pub path: String,
}

impl Default for ForwardAuthFile {
    fn default() -> Self {
        Self {
            enabled: false,
            path: default_forward_auth_path(),
        }
    }
}

fn default_forward_auth_path() -> String {
    "/_mxgate/forward-auth".into()
}

/// A size written as a number of bytes or with a unit (`100MiB`, `1 GB`, `512KiB`).
pub fn byte_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => t
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|s| s.as_u64())
            .map_err(|e| D::Error::custom(format!("`{t}` is not a size like 100MiB, 1GB or 4096: {e}"))),
    }
}

/// A duration written as `90s`, `5m`, `1h`, `30d` (humantime), or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(t.trim())
            .map_err(|e| D::Error::custom(format!("`{t}` is not a duration like 90s, 5m, 1h or 30d: {e}"))),
    }
}
