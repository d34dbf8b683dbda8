//! The abuse bounds of `mxgate.yml`: what one client, one address or one signed-in user can make
//! mxgate hold or do. `limits` (connections, slow clients, in-memory tables, logins in flight),
//! `rate_limits` (requests per minute to the OAuth endpoints, per client address and per OAuth
//! client) and `dynamic_clients` (what self-registered and metadata-document clients may hold).
//! Every default is in the README's Limits table; the same structs are the validated settings.

use super::gateway_file::{byte_size, duration};
use super::settings::as_humantime;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The scope MXCP's documentation uses for plain access; what a self-registered client gets.
pub const DEFAULT_SCOPE: &str = "mxcp:access";

/// Resource bounds (`limits:` in mxgate.yml).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (trusted proxies are not counted).
    pub max_connections_per_address: usize,
    /// Time a client has to send a whole request header (slow-header clients are cut off).
    #[serde(deserialize_with = "duration", serialize_with = "as_humantime")]
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body; an OAuth request body must arrive whole
    /// within it.
    #[serde(deserialize_with = "duration", serialize_with = "as_humantime")]
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    #[serde(deserialize_with = "duration", serialize_with = "as_humantime")]
    pub idle_timeout: Duration,
    /// Sign-ins in progress (consent pages shown and logins at the provider not yet finished).
    pub max_pending_logins: u64,
    /// MCP sessions (`mcp-session-id`) one user may hold; the oldest is dropped beyond it.
    pub mcp_sessions_per_user: usize,
    /// MCP sessions held in all; the oldest are dropped beyond it.
    pub max_mcp_sessions: usize,
    /// Access tokens kept in the request-path cache.
    pub max_cached_tokens: usize,
    /// Memory the request-path cache of sessions may hold (about; `8MiB`, `64 MB` or bytes): a
    /// cached session holds its user, the provider's access token and the minted assertion,
    /// about 2.5 KiB (more with a JWT provider token). A token not cached is read from the store
    /// and its assertion minted again (BENCHMARKS.md: 50–90 µs of CPU).
    #[serde(deserialize_with = "byte_size")]
    pub token_cache_memory: u64,
    /// Largest request body mxgate reads to evaluate policies on `rpc`/`tool` (only then);
    /// a larger one is refused with 413.
    pub max_inspected_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_address: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_pending_logins: 10_000,
            mcp_sessions_per_user: 64,
            max_mcp_sessions: 100_000,
            max_cached_tokens: 100_000,
            token_cache_memory: 8 * 1024 * 1024,
            max_inspected_body: 1024 * 1024,
        }
    }
}

/// Requests per minute per client address, per OAuth endpoint; 0 turns a limit off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressRates {
    pub register: u32,
    pub authorize: u32,
    pub consent: u32,
    pub login: u32,
    pub callback: u32,
    pub token: u32,
    pub revoke: u32,
    pub logout: u32,
    /// An identity provider's back-channel logout posts (one per ended provider session).
    pub backchannel_logout: u32,
}

impl Default for AddressRates {
    fn default() -> Self {
        Self {
            register: 20,
            authorize: 60,
            consent: 60,
            login: 60,
            callback: 60,
            token: 300,
            revoke: 120,
            logout: 60,
            backchannel_logout: 120,
        }
    }
}

/// Requests per minute per OAuth client id, per endpoint; 0 turns a limit off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientRates {
    pub authorize: u32,
    pub token: u32,
    pub revoke: u32,
}

impl Default for ClientRates {
    fn default() -> Self {
        Self {
            authorize: 300,
            token: 600,
            revoke: 300,
        }
    }
}

/// `rate_limits:` in mxgate.yml.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub per_address: AddressRates,
    pub per_client: ClientRates,
}

/// `dynamic_clients:` in mxgate.yml: clients that registered themselves (RFC 7591) or that
/// name a Client ID Metadata Document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicClientsFile {
    /// The scopes such a client may be granted; default `mxcp:access` plus the MXCP config's
    /// `required_scopes`. A static client's own scopes are never among them unless listed here.
    pub scopes: Option<Vec<String>>,
    /// Registered clients kept at most; registration answers 503 beyond it.
    pub max_clients: u64,
    /// A registered client unused this long is removed (every authorization or token request
    /// renews it).
    #[serde(deserialize_with = "duration")]
    pub idle_ttl: Duration,
}

impl Default for DynamicClientsFile {
    fn default() -> Self {
        Self {
            scopes: None,
            max_clients: 10_000,
            idle_ttl: Duration::from_secs(30 * 86400),
        }
    }
}

/// The validated `dynamic_clients` settings.
#[derive(Debug, Clone, Serialize)]
pub struct DynamicClients {
    pub scopes: Vec<String>,
    pub max_clients: u64,
    #[serde(serialize_with = "as_humantime")]
    pub idle_ttl: Duration,
}

// === impl DynamicClientsFile ===

impl DynamicClientsFile {
    /// The effective settings; `Err` names the offending key.
    pub fn validate(self, required_scopes: &[String]) -> Result<DynamicClients, (&'static str, String)> {
        let scopes = match self.scopes {
            Some(scopes) if scopes.is_empty() => {
                return Err((
                    "dynamic_clients.scopes",
                    "must name at least one scope (e.g. mxcp:access)".into(),
                ))
            }
            Some(scopes) => scopes,
            None => {
                let mut scopes = vec![DEFAULT_SCOPE.to_string()];
                for scope in required_scopes {
                    if !scopes.contains(scope) {
                        scopes.push(scope.clone());
                    }
                }
                scopes
            }
        };
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err((
                "dynamic_clients.scopes",
                format!("`{bad}` is not a scope (printable ASCII without spaces, quotes or backslashes)"),
            ));
        }
        if self.max_clients == 0 {
            return Err(("dynamic_clients.max_clients", "must be at least 1".into()));
        }
        if self.idle_ttl < Duration::from_secs(3600) {
            return Err(("dynamic_clients.idle_ttl", "must be at least 1h".into()));
        }
        Ok(DynamicClients {
            scopes,
            max_clients: self.max_clients,
            idle_ttl: self.idle_ttl,
        })
    }
}

/// RFC 6749 §3.3 scope-token: `%x21 / %x23-5B / %x5D-7E`.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

// === impl Limits ===

impl Limits {
    /// Checks the bounds; `Err` names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let at_least_one = [
            ("limits.max_connections", self.max_connections as u64),
            (
                "limits.max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            ("limits.max_pending_logins", self.max_pending_logins),
            ("limits.mcp_sessions_per_user", self.mcp_sessions_per_user as u64),
            ("limits.max_mcp_sessions", self.max_mcp_sessions as u64),
            ("limits.max_cached_tokens", self.max_cached_tokens as u64),
            ("limits.token_cache_memory", self.token_cache_memory),
            ("limits.max_inspected_body", self.max_inspected_body as u64),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err((key, "must be at least 1".into()));
        }
        for (key, d) in [
            ("limits.header_timeout", self.header_timeout),
            ("limits.body_timeout", self.body_timeout),
            ("limits.idle_timeout", self.idle_timeout),
        ] {
            if d < Duration::from_secs(1) {
                return Err((key, "must be at least 1s".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_clients_get_the_default_scope_and_the_required_ones_only() {
        let settings = DynamicClientsFile::default()
            .validate(&["mxcp:read".into(), "mxcp:access".into()])
            .unwrap();
        assert_eq!(settings.scopes, vec!["mxcp:access", "mxcp:read"]);
        let explicit = DynamicClientsFile {
            scopes: Some(vec!["tools".into()]),
            ..Default::default()
        };
        assert_eq!(explicit.validate(&["mxcp:read".into()]).unwrap().scopes, vec!["tools"]);
    }

    #[test]
    fn bad_dynamic_client_settings_name_their_key() {
        let empty = DynamicClientsFile {
            scopes: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(empty.validate(&[]).unwrap_err().0, "dynamic_clients.scopes");
        let spaced = DynamicClientsFile {
            scopes: Some(vec!["a b".into()]),
            ..Default::default()
        };
        assert_eq!(spaced.validate(&[]).unwrap_err().0, "dynamic_clients.scopes");
        let short = DynamicClientsFile {
            idle_ttl: Duration::from_secs(60),
            ..Default::default()
        };
        assert_eq!(short.validate(&[]).unwrap_err().0, "dynamic_clients.idle_ttl");
    }

    #[test]
    fn zero_limits_are_refused() {
        let limits = Limits {
            max_mcp_sessions: 0,
            ..Default::default()
        };
        assert_eq!(limits.validate().unwrap_err().0, "limits.max_mcp_sessions");
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn the_token_cache_memory_takes_a_size_with_a_unit() {
        let parse = |yaml: &str| serde_yaml::from_str::<Limits>(yaml);
        assert_eq!(Limits::default().token_cache_memory, 8 * 1024 * 1024);
        assert_eq!(
            parse("token_cache_memory: 32MiB").unwrap().token_cache_memory,
            32 * 1024 * 1024
        );
        assert_eq!(
            parse("token_cache_memory: 1 GB").unwrap().token_cache_memory,
            1_000_000_000
        );
        assert_eq!(parse("token_cache_memory: 65536").unwrap().token_cache_memory, 65536);
        let error = parse("token_cache_memory: lots").unwrap_err().to_string();
        assert!(error.contains("`lots` is not a size like 100MiB"), "{error}");
        let zero = parse("token_cache_memory: 0").unwrap();
        assert_eq!(zero.validate().unwrap_err().0, "limits.token_cache_memory");
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(is_scope_token("mxcp:access"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
