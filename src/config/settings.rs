//! The effective settings: everything `serve` runs with, validated. `mxgate check` prints this
//! (secrets redacted).

use super::access_policy::{PolicyRule, RoleMappingsFile};
use super::gateway_file::{AssertionAlgorithm, ForwardAuthFile, GatewayFile};
use super::host_pattern::HostPattern;
use super::limits::{DynamicClients, Limits, RateLimits};
use super::mxcp_user::{self, AuthMode, ProviderKind, StaticClientConfig, UserConfig};
use super::tls::TlsSettings;
use super::{relative_to, ConfigError, Secret};
use ipnet::IpNet;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The longest `assertion.key_rotation.publish_before` or `overlap` accepted.
const MAX_KEY_ROTATION_STEP: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub config_file: PathBuf,
    pub mxcp_config_file: PathBuf,
    pub project: String,
    pub profile: String,
    pub listen: SocketAddr,
    /// Where `/metrics` and the health probes are served for operators (`admin_listen`); `None`:
    /// nowhere.
    pub admin_listen: Option<SocketAddr>,
    pub upstream: Upstream,
    /// Scheme, host and port clients use to reach mxgate; no trailing slash. Also the issuer.
    pub public_url: String,
    /// Whether `public_url` was configured (`public_url` or MXCP's `base_url`); when it was only
    /// derived from `listen`, a trusted proxy's `X-Forwarded-Proto/-Host` may name it per request.
    pub public_url_configured: bool,
    pub mcp_path: String,
    pub data_dir: PathBuf,
    pub threads: usize,
    /// Pingora's `work_stealing` between the worker threads. By default on with more than one
    /// thread: without it, Pingora puts the watcher of each pooled upstream connection on a
    /// random worker thread, so reusing the connection waits for a wake-up of the other thread
    /// and sometimes loses a race with it and connects anew (BENCHMARKS.md, "SSE time to first
    /// event"). With one thread, off (one runtime, no scheduler overhead).
    pub work_stealing: bool,
    pub store: StoreSettings,
    #[serde(serialize_with = "as_humantime")]
    pub purge_interval: Duration,
    pub assertion: AssertionSettings,
    pub tokens: TokenLifetimes,
    #[serde(serialize_with = "as_humantime")]
    pub consent_memory: Duration,
    pub client_documents: ClientDocumentSettings,
    pub auth: AuthSettings,
    pub transport: TransportSettings,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub dynamic_clients: DynamicClients,
    /// `Host` values under which requests may reach the core, besides the public URL's and the
    /// listen address.
    pub allowed_hosts: Vec<HostPattern>,
    /// Browser origins (`scheme://host[:port]`, or `*`) allowed besides the public URL's own.
    pub allowed_origins: Vec<String>,
    /// mxgate terminates TLS on `listen` itself (`tls:`); `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// The path of the forward-auth endpoint, when it is on (`forward_auth`).
    pub forward_auth_path: Option<String>,
    /// `role_mappings`, in file order (bounds checked; applied by `policy::role_mappings`).
    pub role_mappings: RoleMappingsFile,
    /// `policies`, in file order (bounds checked; compiled by `policy::PolicySet`).
    pub policies: Vec<PolicyRule>,
    /// The audit log (`audit:`).
    pub audit: super::audit::AuditSettings,
    /// The back-channel logout endpoints (`backchannel_logout`), one per OpenID provider that
    /// has one.
    pub backchannel_logout: Vec<BackchannelLogout>,
}

/// Where a provider's IdP posts back-channel logout tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackchannelLogout {
    /// The provider's name (as the core sees it).
    pub provider: String,
    pub path: String,
}

/// Client ID Metadata Documents.
#[derive(Debug, Clone, Serialize)]
pub struct ClientDocumentSettings {
    pub enabled: bool,
    pub allow_private_addresses: bool,
}

/// Endpoints a provider calls, with `provider_overrides` applied over the real defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderEndpoints(BTreeMap<String, String>);

// === impl ProviderEndpoints ===

impl ProviderEndpoints {
    /// The endpoint named `key` (one of the provider's `overridable_endpoints`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub url: String,
    /// Resolved once at start-up.
    pub address: SocketAddr,
    /// The `Host` header the core expects (`host:port` of `url`).
    pub host_header: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreSettings {
    Redb { path: PathBuf },
    Redis(RedisSettings),
}

/// `store.type: redis`: where Redis is and how keys are named.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSettings {
    #[serde(flatten)]
    pub topology: RedisTopology,
    pub key_prefix: String,
    pub password: Option<Secret>,
    /// The CA that signed the Redis servers' certificates, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    #[serde(serialize_with = "as_humantime")]
    pub outage_grace: Duration,
}

/// How Redis is deployed. URLs are printed without their passwords.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisTopology {
    Single {
        #[serde(serialize_with = "redacted_url")]
        url: String,
    },
    Cluster {
        #[serde(serialize_with = "redacted_urls")]
        urls: Vec<String>,
    },
    Sentinel {
        #[serde(serialize_with = "redacted_urls")]
        urls: Vec<String>,
        service: String,
    },
}

fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::redact_url(url))
}

fn redacted_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| crate::store::redact_url(u)))
}

#[derive(Debug, Clone, Serialize)]
pub struct AssertionSettings {
    pub algorithm: AssertionAlgorithm,
    pub secret: Option<Secret>,
    pub audience: String,
    #[serde(serialize_with = "as_humantime")]
    pub ttl: Duration,
    pub include_external_token: bool,
    pub key_rotation: KeyRotationSettings,
}

/// `assertion.key_rotation` (see `identity::key_ring`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KeyRotationSettings {
    #[serde(serialize_with = "as_humantime")]
    pub publish_before: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub overlap: Duration,
}

// === impl KeyRotationSettings ===

impl KeyRotationSettings {
    pub fn timing(&self) -> crate::identity::key_ring::RotationTiming {
        crate::identity::key_ring::RotationTiming {
            publish_before: self.publish_before,
            overlap: self.overlap,
        }
    }
}

impl Default for KeyRotationSettings {
    fn default() -> Self {
        let file = super::gateway_file::KeyRotationFile::default();
        Self {
            publish_before: file.publish_before,
            overlap: file.overlap,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLifetimes {
    #[serde(serialize_with = "as_humantime")]
    pub access_token: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub refresh_token: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub session: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub authorization_code: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub login: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub refresh_reuse_grace: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportSettings {
    pub trust_proxy: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub stateless: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthSettings {
    pub provider: ProviderSettings,
    pub endpoints: ProviderEndpoints,
    /// `extra_providers` of mxgate.yml, with their endpoints.
    pub extra_providers: Vec<(ProviderSettings, ProviderEndpoints)>,
    pub clients: Vec<StaticClientConfig>,
    pub required_scopes: Vec<String>,
    /// MXCP's `persistence.auth_encryption_key`; when unset mxgate keeps its own key in `data_dir`.
    pub encryption_key: Option<Secret>,
    /// Per configured provider (by name; not GitHub, which flags every address): whether an
    /// email without an `email_verified` flag counts as verified (`assume_email_verified`).
    pub assume_email_verified: BTreeMap<String, bool>,
}

// === impl AuthSettings ===

impl AuthSettings {
    /// Whether the provider named `provider` is trusted to give only verified email addresses
    /// when it leaves `email_verified` out.
    pub fn assumes_email_verified(&self, provider: &str) -> bool {
        self.assume_email_verified.get(provider).copied().unwrap_or(false)
    }
}

/// The upstream identity provider, with its MXCP configuration block.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderSettings {
    None,
    Github(mxcp_user::GithubConfig),
    Atlassian(mxcp_user::AtlassianConfig),
    Salesforce(mxcp_user::SalesforceConfig),
    Keycloak(mxcp_user::KeycloakConfig),
    Google(mxcp_user::GoogleConfig),
    Oidc(mxcp_user::OidcConfig),
}

// === impl ProviderSettings ===

impl ProviderSettings {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::None => ProviderKind::None,
            Self::Github(_) => ProviderKind::Github,
            Self::Atlassian(_) => ProviderKind::Atlassian,
            Self::Salesforce(_) => ProviderKind::Salesforce,
            Self::Keycloak(_) => ProviderKind::Keycloak,
            Self::Google(_) => ProviderKind::Google,
            Self::Oidc(_) => ProviderKind::Oidc,
        }
    }

    /// The provider's name as the core sees it (`get_user_provider()`): the kind, or an OIDC
    /// `provider_name`.
    pub fn name(&self) -> String {
        match self {
            Self::Oidc(c) => c.provider_name.clone().unwrap_or_else(|| "oidc".into()),
            other => other.kind().as_str().to_string(),
        }
    }

    /// The path on mxgate where the provider redirects back to.
    pub fn callback_path(&self) -> Option<&str> {
        match self {
            Self::None => None,
            Self::Github(c) => Some(&c.callback_path),
            Self::Atlassian(c) => Some(&c.callback_path),
            Self::Salesforce(c) => Some(&c.callback_path),
            Self::Keycloak(c) => Some(&c.callback_path),
            Self::Google(c) => Some(&c.callback_path),
            Self::Oidc(c) => c.callback_path.as_deref(),
        }
    }
}

impl Settings {
    pub fn auth_enabled(&self) -> bool {
        !matches!(self.auth.provider, ProviderSettings::None)
    }

    /// The canonical URI of the protected MCP resource (RFC 8707 / MCP authorization).
    pub fn resource_url(&self) -> String {
        format!("{}{}", self.public_url, self.mcp_path)
    }

    /// Plain-http public URLs are only for loopback development.
    pub fn public_url_is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

pub(super) struct SettingsInput<'a> {
    pub gateway_path: &'a Path,
    pub base_dir: &'a Path,
    pub gateway: GatewayFile,
    pub mxcp_path: &'a Path,
    pub user: UserConfig,
    pub project: String,
    pub profile: String,
    /// Whether `listen` and `upstream` may name hosts (looked up in DNS); else IP literals only.
    pub resolve_host_names: bool,
}

pub(super) fn build(input: SettingsInput<'_>) -> Result<Settings, ConfigError> {
    let SettingsInput {
        gateway_path,
        base_dir,
        gateway,
        mxcp_path,
        user,
        project,
        profile,
        resolve_host_names,
    } = input;
    let gw_err = |key: &str, message: String| ConfigError::invalid(gateway_path, key, message);

    let profile_config = user
        .projects
        .get(&project)
        .and_then(|p| p.profiles.get(&profile))
        .cloned()
        .unwrap_or_default();
    let auth_key = format!("projects.{project}.profiles.{profile}.auth");
    let auth = profile_config.auth;
    if auth.mode == Some(AuthMode::Verifier) {
        return Err(ConfigError::invalid(
            mxcp_path,
            format!("{auth_key}.mode"),
            "`verifier` mode is not supported: mxgate is the authorization server (mode `issuer`)",
        ));
    }
    let provider = provider_settings(&auth, mxcp_path, &auth_key)?;
    let endpoints = provider_endpoints(&gateway, gateway_path, provider.kind())?;
    let extra_providers = extra_providers(&gateway, gateway_path, &provider)?;
    let assume_email_verified = assume_email_verified(&gateway, gateway_path, &provider, &extra_providers)?;
    let backchannel_logout = backchannel_logout(&gateway, gateway_path, &provider, &extra_providers)?;

    let listen = parse_listen(&gateway.listen, resolve_host_names).map_err(|m| gw_err("listen", m))?;
    let upstream = parse_upstream(&gateway.upstream, resolve_host_names).map_err(|m| gw_err("upstream", m))?;
    let tls = match gateway.tls.clone() {
        // Loading from text (fuzzing) reads no file, and TLS is made of files.
        Some(_) if !resolve_host_names => {
            return Err(gw_err(
                "tls",
                "not available when the configuration is loaded from text".into(),
            ))
        }
        Some(file) => Some(TlsSettings::build(file, base_dir, listen, gateway_path)?),
        None => None,
    };
    let admin_listen =
        admin_listen(&gateway, listen, tls.as_ref(), resolve_host_names).map_err(|m| gw_err("admin_listen", m))?;
    let transport = &user.transport.http;
    let public_url = match (&gateway.public_url, &transport.base_url) {
        (Some(url), _) => normalize_public_url(url).map_err(|m| gw_err("public_url", m))?,
        (None, Some(url)) => {
            normalize_public_url(url).map_err(|m| ConfigError::invalid(mxcp_path, "transport.http.base_url", m))?
        }
        (None, None) => derive_public_url(listen, tls.is_some()).map_err(|m| gw_err("public_url", m))?,
    };
    if tls.is_some() && !public_url.starts_with("https://") {
        let (file, key) = match gateway.public_url {
            Some(_) => (gateway_path, "public_url"),
            None => (mxcp_path, "transport.http.base_url"),
        };
        return Err(ConfigError::invalid(
            file,
            key,
            format!("`{public_url}` is plain http, but `tls` is set and mxgate serves https: use an https:// URL"),
        ));
    }
    let public_url_configured = gateway.public_url.is_some() || transport.base_url.is_some();
    let trusted_proxies = gateway
        .trusted_proxies
        .iter()
        .map(|p| parse_net(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| gw_err("trusted_proxies", m))?;
    if !gateway.mcp_path.starts_with('/') {
        return Err(gw_err("mcp_path", "must start with `/`".into()));
    }
    if let Some(callback) = provider.callback_path() {
        if !callback.starts_with('/') {
            return Err(ConfigError::invalid(
                mxcp_path,
                format!("{auth_key}.{}.callback_path", provider.kind().as_str()),
                "must be a path starting with `/`, like /callback",
            ));
        }
    }
    if gateway.threads == 0 {
        return Err(gw_err("threads", "must be at least 1".into()));
    }

    let data_dir = relative_to(base_dir, &gateway.data_dir);
    let store = match gateway.store.kind.as_str() {
        "redb" => StoreSettings::Redb {
            path: gateway
                .store
                .path
                .as_deref()
                .map(|p| relative_to(base_dir, p))
                .unwrap_or_else(|| data_dir.join("mxgate.redb")),
        },
        "redis" => StoreSettings::Redis(redis_settings(&gateway.store, base_dir).map_err(|(key, m)| gw_err(key, m))?),
        other => {
            return Err(gw_err(
                "store.type",
                format!("unknown store `{other}` (supported: redb, redis)"),
            ))
        }
    };

    let assertion = gateway.assertion;
    match (assertion.algorithm, &assertion.secret) {
        (AssertionAlgorithm::HS256, None) => {
            return Err(gw_err("assertion.secret", "HS256 needs a shared secret".into()))
        }
        (AssertionAlgorithm::HS256, Some(s)) if s.expose().len() < 32 => {
            return Err(gw_err(
                "assertion.secret",
                "an HS256 secret must be at least 32 bytes".into(),
            ))
        }
        (AssertionAlgorithm::EdDSA, Some(_)) => {
            return Err(gw_err("assertion.secret", "only used with `algorithm: HS256`".into()))
        }
        _ => {}
    }
    if assertion.ttl < Duration::from_secs(30) {
        return Err(gw_err("assertion.ttl", "must be at least 30s".into()));
    }
    let rotation = &assertion.key_rotation;
    for (field, value) in [
        ("assertion.key_rotation.publish_before", rotation.publish_before),
        ("assertion.key_rotation.overlap", rotation.overlap),
    ] {
        if value.is_zero() || value > MAX_KEY_ROTATION_STEP {
            return Err(gw_err(field, "must be between 1s and 7d".into()));
        }
    }

    let tokens = gateway.tokens;
    if tokens.refresh_token_ttl > tokens.session_ttl || tokens.access_token_ttl > tokens.session_ttl {
        return Err(gw_err(
            "tokens",
            "access_token_ttl and refresh_token_ttl must not exceed session_ttl".into(),
        ));
    }

    let required_scopes = auth.authorization.map(|a| a.required_scopes).unwrap_or_default();
    gateway.limits.validate().map_err(|(key, m)| gw_err(key, m))?;
    let dynamic_clients = gateway
        .dynamic_clients
        .validate(&required_scopes)
        .map_err(|(key, m)| gw_err(key, m))?;
    if dynamic_clients.idle_ttl < tokens.refresh_token_ttl {
        return Err(gw_err(
            "dynamic_clients.idle_ttl",
            "must not be shorter than tokens.refresh_token_ttl (a client's refresh tokens would outlive it)".into(),
        ));
    }
    let allowed_hosts = gateway
        .allowed_hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| gw_err("allowed_hosts", m))?;
    let allowed_origins = gateway
        .allowed_origins
        .iter()
        .map(|o| parse_allowed_origin(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| gw_err("allowed_origins", m))?;
    let audit = super::audit::AuditSettings::build(gateway.audit, base_dir, &data_dir, gateway_path)?;
    let forward_auth_path = forward_auth_path(&gateway.forward_auth, gateway_path, &provider, &gateway.mcp_path)?;
    super::access_policy::validate(&gateway.role_mappings, &gateway.policies).map_err(|(key, m)| gw_err(&key, m))?;
    let encryption_key = auth
        .persistence
        .and_then(|p| p.auth_encryption_key)
        .filter(|k| !k.is_empty());
    if let Some(key) = &encryption_key {
        let key_name = format!("{auth_key}.persistence.auth_encryption_key");
        super::encryption_key::check(key).map_err(|m| ConfigError::invalid(mxcp_path, key_name, m))?;
    }
    if matches!(store, StoreSettings::Redis(_)) && encryption_key.is_none() {
        return Err(ConfigError::invalid(
            mxcp_path,
            format!("{auth_key}.persistence.auth_encryption_key"),
            "is required with `store.type: redis`: every replica must open the sessions the others \
             sealed, and sign the same cookies (generate one with `openssl rand -base64 32`)",
        ));
    }

    Ok(Settings {
        config_file: gateway_path.to_path_buf(),
        mxcp_config_file: mxcp_path.to_path_buf(),
        project,
        profile,
        listen,
        admin_listen,
        upstream,
        public_url,
        public_url_configured,
        mcp_path: gateway.mcp_path,
        data_dir,
        threads: gateway.threads,
        work_stealing: gateway.work_stealing.unwrap_or(gateway.threads > 1),
        store,
        purge_interval: gateway.store.purge_interval.max(Duration::from_secs(1)),
        assertion: AssertionSettings {
            algorithm: assertion.algorithm,
            secret: assertion.secret,
            audience: assertion.audience,
            ttl: assertion.ttl,
            include_external_token: assertion.include_external_token,
            key_rotation: KeyRotationSettings {
                publish_before: assertion.key_rotation.publish_before,
                overlap: assertion.key_rotation.overlap,
            },
        },
        tokens: TokenLifetimes {
            access_token: tokens.access_token_ttl,
            refresh_token: tokens.refresh_token_ttl,
            session: tokens.session_ttl,
            authorization_code: tokens.authorization_code_ttl,
            login: tokens.login_ttl,
            refresh_reuse_grace: tokens.refresh_token_reuse_grace,
        },
        consent_memory: gateway.consent.remember,
        client_documents: ClientDocumentSettings {
            enabled: gateway.client_metadata_documents.enabled,
            allow_private_addresses: gateway.client_metadata_documents.allow_private_addresses,
        },
        auth: AuthSettings {
            provider,
            endpoints,
            extra_providers,
            clients: auth.clients,
            required_scopes,
            encryption_key,
            assume_email_verified,
        },
        transport: TransportSettings {
            trust_proxy: transport.trust_proxy,
            trusted_proxies,
            stateless: transport.stateless,
        },
        limits: gateway.limits,
        rate_limits: gateway.rate_limits,
        dynamic_clients,
        allowed_hosts,
        allowed_origins,
        tls,
        forward_auth_path,
        role_mappings: gateway.role_mappings,
        policies: gateway.policies,
        audit,
        backchannel_logout,
    })
}

/// `backchannel_logout`: each key names a configured OpenID provider (`oidc`, `keycloak`,
/// `google`); each path is absolute, without query, and no other endpoint's (the MCP endpoint,
/// a callback, forward auth, another provider's). Clashes with mxgate's fixed endpoints are
/// refused when the gateway is built.
fn backchannel_logout(
    gateway: &GatewayFile,
    file: &Path,
    primary: &ProviderSettings,
    extra: &[(ProviderSettings, ProviderEndpoints)],
) -> Result<Vec<BackchannelLogout>, ConfigError> {
    let configured: Vec<&ProviderSettings> = std::iter::once(primary)
        .chain(extra.iter().map(|(settings, _)| settings))
        .collect();
    let mut taken: Vec<String> = configured
        .iter()
        .filter_map(|settings| settings.callback_path().map(str::to_string))
        .chain([gateway.mcp_path.clone()])
        .chain(gateway.forward_auth.enabled.then(|| gateway.forward_auth.path.clone()))
        .collect();
    let mut out = Vec::new();
    for (name, endpoint) in &gateway.backchannel_logout {
        let key = format!("backchannel_logout.{name}");
        match configured.iter().find(|settings| settings.name() == *name) {
            Some(ProviderSettings::Oidc(_) | ProviderSettings::Keycloak(_) | ProviderSettings::Google(_)) => {}
            Some(other) => {
                return Err(ConfigError::invalid(
                    file,
                    key,
                    format!(
                        "provider `{name}` ({}) is not an OpenID Connect provider and sends no logout tokens",
                        other.kind().as_str()
                    ),
                ))
            }
            None => {
                let names: Vec<String> = configured.iter().map(|settings| settings.name()).collect();
                return Err(ConfigError::invalid(
                    file,
                    key,
                    format!(
                        "no configured provider is named `{name}` (configured: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
        let path = endpoint
            .as_ref()
            .and_then(|e| e.path.clone())
            .unwrap_or_else(|| format!("/backchannel-logout/{name}"));
        if !path.starts_with('/') || path.len() > 256 || path.contains(['?', '#']) || path.contains(char::is_whitespace)
        {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.path"),
                format!("`{path}` must be a path starting with `/`, without query or spaces"),
            ));
        }
        if taken.contains(&path) {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.path"),
                format!("`{path}` is already another endpoint's (MCP, a callback, forward auth or another provider's logout)"),
            ));
        }
        taken.push(path.clone());
        out.push(BackchannelLogout {
            provider: name.clone(),
            path,
        });
    }
    Ok(out)
}

/// `forward_auth.path` when forward auth is on: an absolute path (no query), not the MCP
/// endpoint, and only with a provider (there is nothing to check with `provider: none`).
/// Clashes with mxgate's own endpoints are refused when the gateway is built.
fn forward_auth_path(
    forward_auth: &ForwardAuthFile,
    file: &Path,
    provider: &ProviderSettings,
    mcp_path: &str,
) -> Result<Option<String>, ConfigError> {
    if !forward_auth.enabled {
        return Ok(None);
    }
    let path = forward_auth.path.as_str();
    let err = |m: &str| Err(ConfigError::invalid(file, "forward_auth.path", m));
    if !path.starts_with('/') || path.len() > 256 || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
        return err("must be a path starting with `/`, without query or spaces, like /_mxgate/forward-auth");
    }
    if path == mcp_path {
        return err("must not be the MCP endpoint (mcp_path)");
    }
    if matches!(provider, ProviderSettings::None) {
        return Err(ConfigError::invalid(
            file,
            "forward_auth.enabled",
            "the MXCP config has `provider: none`; forward auth needs authentication on",
        ));
    }
    Ok(Some(path.to_string()))
}

fn provider_settings(
    auth: &mxcp_user::AuthConfig,
    file: &Path,
    auth_key: &str,
) -> Result<ProviderSettings, ConfigError> {
    fn block<T: Clone>(value: &Option<T>, file: &Path, auth_key: &str, name: &str) -> Result<T, ConfigError> {
        value.clone().ok_or_else(|| {
            ConfigError::invalid(
                file,
                format!("{auth_key}.{name}"),
                format!("`provider: {name}` needs an `{name}:` block with its settings"),
            )
        })
    }
    Ok(match auth.provider {
        ProviderKind::None => ProviderSettings::None,
        ProviderKind::Github => ProviderSettings::Github(block(&auth.github, file, auth_key, "github")?),
        ProviderKind::Atlassian => ProviderSettings::Atlassian(block(&auth.atlassian, file, auth_key, "atlassian")?),
        ProviderKind::Salesforce => {
            ProviderSettings::Salesforce(block(&auth.salesforce, file, auth_key, "salesforce")?)
        }
        ProviderKind::Keycloak => ProviderSettings::Keycloak(block(&auth.keycloak, file, auth_key, "keycloak")?),
        ProviderKind::Google => ProviderSettings::Google(block(&auth.google, file, auth_key, "google")?),
        ProviderKind::Oidc => {
            let oidc = block(&auth.oidc, file, auth_key, "oidc")?;
            if oidc.callback_path.is_none() {
                return Err(ConfigError::invalid(
                    file,
                    format!("{auth_key}.oidc.callback_path"),
                    "missing field `callback_path` (required in issuer mode)",
                ));
            }
            if !oidc.scope.split_whitespace().any(|s| s == "openid") {
                return Err(ConfigError::invalid(
                    file,
                    format!("{auth_key}.oidc.scope"),
                    "OIDC scope must include `openid`",
                ));
            }
            ProviderSettings::Oidc(oidc)
        }
    })
}

/// `extra_providers`: each a provider block like MXCP's, with its own name and callback path.
fn extra_providers(
    gateway: &GatewayFile,
    file: &Path,
    primary: &ProviderSettings,
) -> Result<Vec<(ProviderSettings, ProviderEndpoints)>, ConfigError> {
    if gateway.extra_providers.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(primary, ProviderSettings::None) {
        return Err(ConfigError::invalid(
            file,
            "extra_providers",
            "the MXCP config has `provider: none`; extra providers need authentication on",
        ));
    }
    let mut seen_names = vec![primary.name()];
    let mut seen_paths: Vec<String> = primary.callback_path().map(str::to_string).into_iter().collect();
    let mut out = Vec::new();
    for (index, auth) in gateway.extra_providers.iter().enumerate() {
        let key = format!("extra_providers.{index}");
        if !auth.clients.is_empty() || auth.authorization.is_some() || auth.persistence.is_some() || auth.mode.is_some()
        {
            return Err(ConfigError::invalid(
                file,
                &key,
                "only `provider` and its settings belong here (clients, authorization and persistence come from the MXCP config)",
            ));
        }
        let settings = provider_settings(auth, file, &key)?;
        if matches!(settings, ProviderSettings::None) {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.provider"),
                "`none` is not a provider",
            ));
        }
        let name = settings.name();
        if seen_names.contains(&name) {
            return Err(ConfigError::invalid(
                file,
                &key,
                format!("a second provider named `{name}` (give OIDC providers distinct `provider_name`s)"),
            ));
        }
        let path = settings.callback_path().unwrap_or_default().to_string();
        if !path.starts_with('/') || seen_paths.contains(&path) {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.{}.callback_path", settings.kind().as_str()),
                format!("`{path}`: each provider needs its own callback path starting with `/`"),
            ));
        }
        let endpoints = provider_endpoints(gateway, file, settings.kind())?;
        seen_names.push(name);
        seen_paths.push(path);
        out.push((settings, endpoints));
    }
    Ok(out)
}

/// `assume_email_verified` for every configured provider it applies to (all but GitHub):
/// configured value, else `false`. A key naming no configured provider is refused.
fn assume_email_verified(
    gateway: &GatewayFile,
    file: &Path,
    primary: &ProviderSettings,
    extra: &[(ProviderSettings, ProviderEndpoints)],
) -> Result<BTreeMap<String, bool>, ConfigError> {
    let configured: Vec<&ProviderSettings> = std::iter::once(primary)
        .chain(extra.iter().map(|(settings, _)| settings))
        .filter(|settings| !matches!(settings, ProviderSettings::None))
        .collect();
    for name in gateway.assume_email_verified.keys() {
        let key = format!("assume_email_verified.{name}");
        match configured.iter().find(|settings| settings.name() == *name) {
            Some(ProviderSettings::Github(_)) => {
                return Err(ConfigError::invalid(
                    file,
                    key,
                    "GitHub marks every address (`verified` in /user/emails) and mxgate uses only verified ones; \
                     this setting does not apply to it",
                ))
            }
            Some(_) => {}
            None => {
                let names: Vec<String> = configured.iter().map(|settings| settings.name()).collect();
                let names = if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                };
                return Err(ConfigError::invalid(
                    file,
                    key,
                    format!("no configured provider is named `{name}` (configured: {names})"),
                ));
            }
        }
    }
    Ok(configured
        .iter()
        .filter(|settings| !matches!(settings, ProviderSettings::Github(_)))
        .map(|settings| {
            let name = settings.name();
            let assume = gateway.assume_email_verified.get(&name).copied().unwrap_or(false);
            (name, assume)
        })
        .collect())
}

/// The active provider's endpoints: real defaults, then `provider_overrides` (whose keys are
/// checked for every provider named there, active or not).
fn provider_endpoints(
    gateway: &GatewayFile,
    file: &Path,
    active: ProviderKind,
) -> Result<ProviderEndpoints, ConfigError> {
    for (kind, overrides) in &gateway.provider_overrides {
        let allowed = kind.overridable_endpoints();
        for (key, value) in overrides {
            let field = format!("provider_overrides.{}.{key}", kind.as_str());
            if !allowed.iter().any(|(k, _)| k == key) {
                let known: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!("unknown endpoint (known: {known})"),
                ));
            }
            let url = Url::parse(value).map_err(|e| ConfigError::invalid(file, &field, format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(file, field, "must be an http(s) URL"));
            }
        }
    }
    let mut endpoints: BTreeMap<String, String> = active
        .overridable_endpoints()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(overrides) = gateway.provider_overrides.get(&active) {
        endpoints.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.clone(), v.trim_end_matches('/').to_string())),
        );
    }
    Ok(ProviderEndpoints(endpoints))
}

/// An address (`10.0.0.1`, `::1`) or a CIDR (`10.0.0.0/8`).
fn parse_net(value: &str) -> Result<IpNet, String> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{value}` is not an IP address or CIDR"))
}

/// The admin listener's address: its own port, neither `listen` nor the redirect listener's.
fn admin_listen(
    gateway: &GatewayFile,
    listen: SocketAddr,
    tls: Option<&TlsSettings>,
    resolve_host_names: bool,
) -> Result<Option<SocketAddr>, String> {
    let Some(value) = gateway.admin_listen.as_deref() else {
        return Ok(None);
    };
    let address = parse_listen(value, resolve_host_names)?;
    let taken = [Some(listen), tls.and_then(|t| t.redirect_listen)];
    if taken.iter().flatten().any(|a| {
        a.port() == address.port()
            && (a.ip() == address.ip() || a.ip().is_unspecified() || address.ip().is_unspecified())
    }) {
        return Err(format!(
            "`{value}` is taken by `listen` or `tls.redirect_listen`; the admin listener needs its own port \
             (and must not be reachable from outside)"
        ));
    }
    Ok(Some(address))
}

pub(super) fn parse_listen(value: &str, resolve_host_names: bool) -> Result<SocketAddr, String> {
    if !resolve_host_names {
        return value
            .parse()
            .map_err(|_| format!("`{value}` is not an IP address and port (host names are not looked up here)"));
    }
    value
        .to_socket_addrs()
        .map_err(|e| format!("`{value}` is not a host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("`{value}` resolves to no address"))
}

fn parse_upstream(value: &str, resolve_host_names: bool) -> Result<Upstream, String> {
    let url = Url::parse(value).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`{value}`: only http:// upstreams are supported (the core runs on loopback or in the same pod)"
        ));
    }
    let host = url.host_str().ok_or_else(|| format!("`{value}` has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    if url.path() != "/" || url.query().is_some() {
        return Err(format!("`{value}`: give only scheme, host and port (no path or query)"));
    }
    let host_header = format!("{host}:{port}");
    let address = parse_listen(&host_header, resolve_host_names)?;
    Ok(Upstream {
        url: format!("http://{host_header}"),
        address,
        host_header,
    })
}

fn normalize_public_url(value: &str) -> Result<String, String> {
    let url = Url::parse(value).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{value}` must be an http:// or https:// URL"));
    }
    if url.host_str().is_none() {
        return Err(format!("`{value}` has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{value}`: give only scheme, host and port; serving under a path prefix is not supported"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `scheme://host[:port]` (no path), or `*`.
fn parse_allowed_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.to_string());
    }
    let url = Url::parse(value).map_err(|e| format!("`{value}` is not an origin like https://app.example: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{value}` must be an http:// or https:// origin"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "`{value}`: an origin has no path, query or user (scheme://host[:port])"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn derive_public_url(listen: SocketAddr, tls: bool) -> Result<String, String> {
    if listen.ip().is_unspecified() {
        return Err(format!(
            "mxgate listens on {listen}; set `public_url` (or MXCP's transport.http.base_url) to the URL clients use"
        ));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{listen}"))
}

pub(super) fn as_humantime<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// `store.type: redis`: exactly one of `url`, `cluster` and `sentinel`, with Redis URLs.
fn redis_settings(
    store: &super::gateway_file::StoreFile,
    base_dir: &Path,
) -> Result<RedisSettings, (&'static str, String)> {
    let topology = match (&store.url, &store.cluster, &store.sentinel) {
        (Some(url), None, None) => RedisTopology::Single { url: url.clone() },
        (None, Some(urls), None) => {
            if urls.is_empty() {
                return Err(("store.cluster", "name at least one node of the cluster".into()));
            }
            RedisTopology::Cluster { urls: urls.clone() }
        }
        (None, None, Some(sentinel)) => {
            if sentinel.urls.is_empty() || sentinel.service.is_empty() {
                return Err((
                    "store.sentinel",
                    "needs `urls` (the Sentinels) and `service` (the primary's name)".into(),
                ));
            }
            RedisTopology::Sentinel {
                urls: sentinel.urls.clone(),
                service: sentinel.service.clone(),
            }
        }
        (None, None, None) => {
            return Err((
                "store.url",
                "a Redis store needs `url` (one server), `cluster` or `sentinel`".into(),
            ))
        }
        _ => return Err(("store.url", "set only one of `url`, `cluster` and `sentinel`".into())),
    };
    let urls: Vec<&String> = match &topology {
        RedisTopology::Single { url } => vec![url],
        RedisTopology::Cluster { urls } | RedisTopology::Sentinel { urls, .. } => urls.iter().collect(),
    };
    for url in urls {
        let scheme_ok = ["redis://", "rediss://", "valkey://", "valkeys://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok || url::Url::parse(url).is_err() {
            return Err((
                "store.url",
                format!(
                    "`{}` is not a Redis URL (redis://host:port/db, rediss:// for TLS)",
                    crate::store::redact_url(url)
                ),
            ));
        }
    }
    if store.ca_file.is_some() && matches!(topology, RedisTopology::Sentinel { .. }) {
        return Err((
            "store.ca_file",
            "is not supported with `sentinel` (its servers must have certificates the system trusts)".into(),
        ));
    }
    if store.key_prefix.len() > 64 || store.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            "store.key_prefix",
            "at most 64 characters, no spaces or control characters".into(),
        ));
    }
    Ok(RedisSettings {
        topology,
        key_prefix: store.key_prefix.clone(),
        password: store.password.clone().filter(|p| !p.is_empty()),
        ca_file: store.ca_file.as_deref().map(|p| relative_to(base_dir, p)),
        outage_grace: store.outage_grace,
    })
}
