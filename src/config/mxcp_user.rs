//! The MXCP 0.12.3 user configuration (`~/.mxcp/config.yml`), as far as mxgate reads it.
//!
//! The `auth` block and `transport.http` are typed in full, with MXCP's key names and
//! required/optional rules, and unknown keys are refused (MXCP's models forbid extra keys too).
//! Parts that only the MXCP core uses (`models`, `logging`, `telemetry`, profile `secrets`,
//! `plugin`, `onepassword`) are accepted as they are and not interpreted here.

use super::lenient;
use super::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `claim path → claim value → capabilities`, as MXCP's `CapabilityMapper` reads it.
pub type ClaimMappings = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default = "one")]
    pub mxcp: u8,
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectConfig>,
    #[serde(default)]
    pub vault: Option<VaultConfig>,
    #[serde(default)]
    pub onepassword: Option<serde_yaml::Value>,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub models: Option<serde_yaml::Value>,
    #[serde(default)]
    pub logging: Option<serde_yaml::Value>,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default)]
    pub secrets: Option<serde_yaml::Value>,
    #[serde(default)]
    pub plugin: Option<serde_yaml::Value>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub telemetry: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
    pub address: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub http: HttpTransportConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTransportConfig {
    #[serde(default = "default_port", deserialize_with = "lenient::u16")]
    pub port: u16,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub trust_proxy: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub stateless: bool,
}

impl Default for HttpTransportConfig {
    fn default() -> Self {
        Self {
            port: default_port(),
            host: default_host(),
            scheme: default_scheme(),
            base_url: None,
            trust_proxy: false,
            stateless: false,
        }
    }
}

fn default_port() -> u16 {
    8000
}
fn default_host() -> String {
    "localhost".into()
}
fn default_scheme() -> String {
    "http".into()
}

/// `projects.<p>.profiles.<q>.auth`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `issuer` (MXCP runs the OAuth server; mxgate's mode) or `verifier`.
    #[serde(default)]
    pub mode: Option<AuthMode>,
    #[serde(default)]
    pub provider: ProviderKind,
    #[serde(default)]
    pub clients: Vec<StaticClientConfig>,
    #[serde(default)]
    pub github: Option<GithubConfig>,
    #[serde(default)]
    pub atlassian: Option<AtlassianConfig>,
    #[serde(default)]
    pub salesforce: Option<SalesforceConfig>,
    #[serde(default)]
    pub keycloak: Option<KeycloakConfig>,
    #[serde(default)]
    pub google: Option<GoogleConfig>,
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    #[serde(default)]
    pub persistence: Option<PersistenceConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Issuer,
    Verifier,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    None,
    Github,
    Atlassian,
    Salesforce,
    Keycloak,
    Google,
    Oidc,
}

impl ProviderKind {
    /// The keys a provider accepts under `provider_overrides` in mxgate.yml, with their real defaults.
    pub fn overridable_endpoints(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Github => &[("api_url", "https://api.github.com")],
            Self::Atlassian => &[("api_url", "https://api.atlassian.com")],
            Self::Google => &[(
                "config_url",
                "https://accounts.google.com/.well-known/openid-configuration",
            )],
            Self::None | Self::Salesforce | Self::Keycloak | Self::Oidc => &[],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Github => "github",
            Self::Atlassian => "atlassian",
            Self::Salesforce => "salesforce",
            Self::Keycloak => "keycloak",
            Self::Google => "google",
            Self::Oidc => "oidc",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticClientConfig {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default)]
    pub scope: Option<String>,
    pub callback_path: String,
    pub auth_url: String,
    pub token_url: String,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AtlassianConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub callback_path: String,
    pub auth_url: String,
    pub token_url: String,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default)]
    pub scope: Option<String>,
    pub callback_path: String,
    pub auth_url: String,
    pub token_url: String,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeycloakConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub realm: String,
    pub server_url: String,
    #[serde(default)]
    pub scope: Option<String>,
    pub callback_path: String,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub callback_path: String,
    pub auth_url: String,
    pub token_url: String,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

/// `oidc`: in issuer mode `callback_path` is required; in verifier mode it is absent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub config_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    #[serde(default)]
    pub callback_path: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub extra_authorize_params: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub auth_encryption_key: Option<Secret>,
}
