//! Discovery documents: OAuth protected-resource metadata (RFC 9728) for the MCP endpoint and
//! authorization-server metadata (RFC 8414). Built once at start-up. The `issuer` string is
//! byte-identical to `authorization_servers[0]` — the MCP SDK compares them exactly.

use crate::config::Settings;
use bytes::Bytes;
use serde_json::json;

pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";
pub const AUTHORIZATION_SERVER_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const REGISTER_PATH: &str = "/register";
pub const AUTHORIZE_PATH: &str = "/authorize";
pub const CONSENT_PATH: &str = "/consent";
pub const TOKEN_PATH: &str = "/token";
pub const REVOKE_PATH: &str = "/revoke";
pub const LOGOUT_PATH: &str = "/logout";
pub const LOGIN_PATH: &str = "/login";

#[derive(Clone)]
pub struct Metadata {
    pub protected_resource: Bytes,
    pub authorization_server: Bytes,
    /// Where the protected-resource metadata of the MCP endpoint lives (for 401 challenges).
    pub protected_resource_url: String,
}

// === impl Metadata ===

impl Metadata {
    /// The documents as seen from `issuer` (the public URL of the request).
    pub fn new(issuer: &str, settings: &Settings, scopes: &[String]) -> Self {
        let protected_resource = json!({
            "resource": format!("{issuer}{}", settings.mcp_path),
            "authorization_servers": [issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": format!("MXCP {}", settings.project),
        });
        let authorization_server = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
            "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
            "registration_endpoint": format!("{issuer}{REGISTER_PATH}"),
            "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": settings.client_documents.enabled,
        });
        Self {
            protected_resource: Bytes::from(protected_resource.to_string()),
            authorization_server: Bytes::from(authorization_server.to_string()),
            protected_resource_url: format!("{issuer}{PROTECTED_RESOURCE_PATH}{}", settings.mcp_path),
        }
    }
}
