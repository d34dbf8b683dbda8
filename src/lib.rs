//! mxgate: an OAuth authentication sidecar for MCP servers (MXCP first), built on Pingora.
//!
//! - [`config`]: `mxgate.yml` and the MXCP user config → effective settings.
//! - [`oauth`]: the authorization server MCP clients talk to (pure handlers on `http` types).
//! - [`providers`]: upstream identity providers behind one trait.
//! - [`store`]: where sessions, clients, codes and tokens are kept.
//! - [`session`]: sessions and their tokens, from login to revocation (the one owner of their life).
//! - [`identity`]: the user context, the signed assertion for the core, signing keys.
//! - [`gateway`]: the Pingora adapter — the only module that knows Pingora.
//! - [`audit`]: the audit trail of authentication events.
//! - [`metrics`]: Prometheus metrics (handles resolved at start-up; `/metrics` on the admin listener).
//! - [`support`]: the clock, random ids and tokens, token hashing, private files.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod oauth;
pub mod policy;
pub mod providers;
pub mod rate_limit;
pub mod session;
pub mod store;
pub mod support;

/// What the fuzz targets in `fuzz/` call, and nothing else does; compiled only with
/// `--cfg fuzzing` (cargo-fuzz sets it).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_api {
    pub use crate::config::load_from_texts;
    pub use crate::gateway::fuzz_api::{clean_for_upstream, ClientView, ProxyTrust, RequestHeader};
    pub use crate::oauth::client_metadata::ClientMetadata;
    pub use crate::oauth::params::Params;
    pub use crate::oauth::redirect_uri::{matches, validate_for_registration};
    pub use crate::session::bearer::bearer_token;
    pub use crate::session::stateless::open_access_token;
    pub use crate::store::cipher::RecordCipher;

    /// `Authorization: Basic` client credentials, as the token and revocation endpoints read them.
    pub fn basic_credentials(
        headers: &http::HeaderMap,
    ) -> Result<Option<(String, String)>, crate::oauth::error::OAuthError> {
        crate::oauth::clients::basic_credentials(headers)
    }
}
